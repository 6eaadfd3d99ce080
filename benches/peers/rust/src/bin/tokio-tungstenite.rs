//! Echo server for the lanes comparison, written the way tokio-tungstenite's own
//! examples/echo-server.rs is: `TcpListener`, `accept_async`, split, and forward the text and
//! binary messages back (tungstenite answers pings and closes by itself). Differences: a
//! single-threaded (`current_thread`) runtime, the port from argv, TCP_NODELAY (as the other
//! peers and lanes use), no logging, and accept errors are survived instead of ending the loop.
//!
//! With CERT KEY (PEM files) it serves wss: each accepted stream goes through tokio-rustls'
//! `TlsAcceptor` (see src/lib.rs) before `accept_async`, in the connection's own task.
//!
//! Usage: tokio-tungstenite PORT [CERT KEY]

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let (port, tls) = lanes_peers::args()?;
    let addr = format!("127.0.0.1:{port}");
    let listener = TcpListener::bind(&addr).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("tokio-tungstenite listening on {addr} ({scheme})");

    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(accept_connection(stream, tls.clone()));
            }
            // EMFILE and friends: back off briefly rather than spin or exit.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn accept_connection(stream: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => echo(stream).await,
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                echo(stream).await;
            }
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
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
