//! The front: an axum application that keeps its HTTP routes and hands its WebSocket route's
//! connections to lanes.
//!
//! Each accepted connection's request head is looked at without being read (`peek`): a
//! request for `/ws` is read (its head only) and the connection handed to lanes with the head
//! ([`Remote::adopt`](lanes::Remote::adopt)), on the worker that owns its `room` (`worker_for`);
//! lanes answers the upgrade and serves the connection from then on. Every other request is
//! served by axum through hyper, which reads the untouched connection from its start.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use lanes::{Accept, Handler, Message, Request, Upgrade, Ws};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// lanes' side: echoes, after saying which worker serves the connection.
pub(crate) struct Rooms {
    index: usize,
}

impl Rooms {
    /// Worker `index`'s handler.
    pub(crate) fn new(index: usize) -> Rooms {
        Rooms { index }
    }
}

impl Handler for Rooms {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) {
        ws.send_text(&format!("served by lanes worker {}", self.index));
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        match message {
            Message::Text(text) => ws.send_text(text),
            Message::Binary(bytes) => ws.send_binary(bytes),
        };
    }
}

/// The longest request head looked at.
const MAX_HEAD: usize = 8 * 1024;

/// The axum routes that stay in axum.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum\n" }))
        .route("/health", get(|| async { "ok\n" }))
}

/// Where a request goes: its path (with the query), once its head is complete, and the head's
/// length.
fn request_path(head: &[u8]) -> Option<(String, usize)> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let line = std::str::from_utf8(&head[..head.iter().position(|&b| b == b'\r')?]).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    Some((path, end))
}

/// The value of `key` in the query of `path`.
fn query_value<'p>(path: &'p str, key: &str) -> Option<&'p str> {
    path.split_once('?')?
        .1
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Waits until `stream`'s request head can be seen whole (or `MAX_HEAD` bytes of it, or the
/// peer stops sending); returns its path and length.
async fn peek_head(stream: &TcpStream) -> Option<(String, usize)> {
    let mut buf = vec![0u8; MAX_HEAD];
    for _ in 0..200 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(found) = request_path(&buf[..n]) {
            return Some(found);
        }
        if n == MAX_HEAD {
            return None;
        }
        // More of the head is on its way.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Serves `listener`: `/ws` connections go to lanes through `remote`, the rest to `router`.
pub(crate) async fn serve(listener: TcpListener, remote: lanes::Remote, router: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (remote, router) = (remote.clone(), router.clone());
        tokio::spawn(async move {
            let Some((path, head_len)) = peek_head(&stream).await else {
                return;
            };
            if path == "/ws" || path.starts_with("/ws?") {
                hand_to_lanes(stream, &path, head_len, &remote).await;
            } else {
                let service = TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
    }
}

/// Reads the head of `stream` (it is lanes' to answer) and hands the connection to the
/// worker that owns its room.
async fn hand_to_lanes(mut stream: TcpStream, path: &str, head_len: usize, remote: &lanes::Remote) {
    let mut head = vec![0u8; head_len];
    if stream.read_exact(&mut head).await.is_err() {
        return;
    }
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let worker = remote.worker_for(query_value(path, "room").unwrap_or(""));
    if let Err((error, _stream)) = remote.adopt(stream, head, worker) {
        tracing::warn!(%error, "WebSocket connection not handed to lanes");
    }
}
