//! Echo server for the lanes comparison, written the way tokio-tungstenite's own
//! examples/echo-server.rs is: `TcpListener`, `accept_async`, split, and forward the text and
//! binary messages back (tungstenite answers pings and closes by itself). Differences: a
//! single-threaded (`current_thread`) runtime, the port from argv, TCP_NODELAY (as the other
//! peers and lanes use), no logging, and accept errors are survived instead of ending the loop.
//!
//! Usage: tokio-tungstenite PORT

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "8080".to_string());
    let addr = format!("127.0.0.1:{port}");
    let listener = TcpListener::bind(&addr).await?;
    println!("tokio-tungstenite listening on {addr}");

    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(accept_connection(stream));
            }
            // EMFILE and friends: back off briefly rather than spin or exit.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn accept_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws_stream) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws_stream.split();
    // We should not forward messages other than text or binary.
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
