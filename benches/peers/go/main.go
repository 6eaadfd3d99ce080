// Echo server for the lanes comparison, written the way gorilla/websocket's own
// examples/echo/server.go is: a default Upgrader and a ReadMessage/WriteMessage loop (the
// default handlers answer pings and closes). Differences: GOMAXPROCS=1, the port from argv,
// every path is the echo endpoint, and no per-message or per-connection logging.
//
// With CERT KEY (PEM files) it serves wss with Go's crypto/tls, through
// http.ListenAndServeTLS as a Go server usually does: its defaults (TLS 1.2 and 1.3, session
// tickets on, keys made at start) untouched.
//
// Usage: gorilla PORT [CERT KEY]
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{} // use default options

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		mt, message, err := c.ReadMessage()
		if err != nil {
			break
		}
		if err = c.WriteMessage(mt, message); err != nil {
			break
		}
	}
}

func main() {
	runtime.GOMAXPROCS(1)
	port := "8080"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	addr := "127.0.0.1:" + port
	http.HandleFunc("/", echo)
	if len(os.Args) == 4 {
		fmt.Println("gorilla listening on", addr, "(wss)")
		log.Fatal(http.ListenAndServeTLS(addr, os.Args[2], os.Args[3], nil))
	}
	if len(os.Args) > 2 {
		log.Fatal("usage: gorilla PORT [CERT KEY]")
	}
	fmt.Println("gorilla listening on", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
