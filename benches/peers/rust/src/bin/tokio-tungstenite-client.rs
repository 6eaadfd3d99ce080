//! Echo load client for scripts/client_cost.sh, written the way tokio-tungstenite's own client
//! examples are (`client_async` on a `TcpStream`, split into a sink and a stream): CONNS
//! connections, each keeping DEPTH messages of SIZE bytes (binary) in flight against an echo
//! server, for SECONDS. A single-threaded (`current_thread`) runtime, as lanes' client runs on
//! one worker. Prints `messages=N cpu_s=X` (messages echoed back, and this process's CPU time
//! from /proc/self/stat, both from the first connection's start to the end).
//!
//! Usage: tokio-tungstenite-client URL CONNS SIZE DEPTH SECONDS

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;

/// This process's CPU time (user and system), from /proc/self/stat (clock ticks of 100 Hz).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // utime and stime, fields 14 and 15 of stat: the 12th and 13th after the ")".
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 {
        eprintln!("usage: tokio-tungstenite-client URL CONNS SIZE DEPTH SECONDS");
        std::process::exit(2);
    }
    let url = args[0].clone();
    let parse = |i: usize| args[i].parse::<usize>().unwrap_or(0);
    let (conns, size, depth, seconds) = (parse(1), parse(2), parse(3), parse(4));
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let echoed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start_cpu = cpu_seconds();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, addr) = (url.clone(), addr.clone());
        let (echoed, stop) = (Arc::clone(&echoed), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (ws, _) = client_async(url.as_str(), stream).await.expect("handshake");
            let (mut sink, mut source) = ws.split();
            let payload = vec![0x5au8; size];
            for _ in 0..depth {
                sink.send(Message::binary(payload.clone())).await.expect("send");
            }
            while let Some(message) = source.next().await {
                match message {
                    Ok(Message::Binary(_)) => {
                        echoed.fetch_add(1, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if sink.send(Message::binary(payload.clone())).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    let messages = echoed.load(Ordering::Relaxed);
    let cpu = cpu_seconds() - start_cpu;
    stop.store(true, Ordering::Relaxed);
    println!("messages={messages} cpu_s={cpu:.3}");
    std::process::exit(0);
}
