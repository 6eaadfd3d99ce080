//! Host names of outbound connections resolved off the workers' loops: each worker that needs
//! a lookup starts one resolver thread of its own (on first use), which runs the system's
//! resolver (`getaddrinfo`, through `ToSocketAddrs`) and queues each answer back to the worker
//! as a command. The thread ends when its worker does.
//!
//! A lookup can block its thread for as long as the system's resolver takes; the worker does
//! not wait for it: the connection's connect timeout runs on the worker's wheel, and an answer
//! that comes after it is dropped. Lookups on one worker are answered in turn.

use std::net::{SocketAddr, ToSocketAddrs};

use crossbeam_channel::{Sender, unbounded};

use crate::hub::Command;
use crate::remote::Remote;

/// One name to resolve, and where the answer goes.
pub(crate) struct Lookup {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The dial that asked (slot and generation in the worker's dial table).
    pub(crate) dial: (u32, u32),
    pub(crate) worker: usize,
    pub(crate) remote: Remote,
}

/// A worker's handle to its resolver thread.
#[derive(Default)]
pub(crate) struct Resolver {
    tx: Option<Sender<Lookup>>,
}

impl Resolver {
    /// Queues `lookup`, starting the thread on first use. False when the thread could not be
    /// started.
    pub(crate) fn resolve(&mut self, lookup: Lookup) -> bool {
        if self.tx.is_none() {
            let (tx, rx) = unbounded::<Lookup>();
            let started = std::thread::Builder::new()
                .name("lanes-resolver".into())
                .spawn(move || {
                    for lookup in rx {
                        answer(lookup);
                    }
                });
            if started.is_err() {
                return false;
            }
            self.tx = Some(tx);
        }
        self.tx.as_ref().is_some_and(|tx| tx.send(lookup).is_ok())
    }
}

/// Resolves one name and queues the answer to the worker that asked.
fn answer(lookup: Lookup) {
    let resolved: Result<Vec<SocketAddr>, String> =
        match (lookup.host.as_str(), lookup.port).to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(format!("{} has no address", lookup.host))
                } else {
                    Ok(addrs)
                }
            }
            Err(error) => Err(format!("{}: {error}", lookup.host)),
        };
    if let Some(link) = lookup.remote.link(lookup.worker) {
        // A full queue loses the answer: the connect timeout then ends the attempt.
        let _ = link.push(Command::Resolved {
            dial: lookup.dial,
            resolved,
        });
    }
}
