//! Echo server for the lanes comparison, written the way fastwebsockets' own
//! examples/echo_server.rs is: hyper's HTTP/1 server with upgrades, `upgrade::upgrade`, a
//! `FragmentCollector`, and text and binary frames written back (auto pong and auto close are
//! on by default), on a `current_thread` runtime. Differences: the port from argv,
//! TCP_NODELAY (as the other peers and lanes use), no logging, and accept errors are survived
//! instead of ending the loop.
//!
//! With CERT KEY (PEM files) it serves wss the way fastwebsockets' examples/tls_server.rs
//! does: each accepted stream goes through tokio-rustls' `TlsAcceptor` (see src/lib.rs), in
//! the connection's own task, and hyper serves the TLS stream.
//!
//! Usage: fastwebsockets PORT [CERT KEY]

use std::time::Duration;

use fastwebsockets::{OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fastwebsockets::FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        let _ = tokio::task::unconstrained(handle_client(fut)).await;
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let (port, tls) = lanes_peers::args()?;
    let addr = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        println!("fastwebsockets listening on {addr} ({scheme})");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // EMFILE and friends: back off briefly rather than spin or exit.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve(stream).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream).await;
                        }
                    }
                }
            });
        }
    })
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let conn_fut = http1::Builder::new()
        .serve_connection(io, service_fn(server_upgrade))
        .with_upgrades();
    let _ = conn_fut.await;
}
