//! The NATS backend: one async-nats client per node. async-nats reconnects by itself (with the
//! bridge's back-off) and sends the node's subscriptions again on each new connection; the
//! bridge follows its connection events to count losses and to hold publishes while it is
//! away. The node asks the server not to send its own messages back (`no_echo`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::node::Node;
use crate::config::BrokerConfig;

/// Messages from the broker that may wait for the bridge's loop.
const INBOUND_LEN: usize = 8192;

/// How often the loop looks at the stop flag when nothing else wakes it.
const IDLE: Duration = Duration::from_millis(100);

pub(crate) async fn run(mut node: Node, config: &BrokerConfig) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let reconnect = config.reconnect;
    let id = node.id;
    let options = ConnectOptions::new()
        .name(format!("lanes-bridge-{id:016x}"))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(config.timeout)
        .client_capacity(config.max_batch.max(128) * 4)
        .subscription_capacity(INBOUND_LEN)
        .reconnect_delay_callback(move |attempts| {
            let n = attempts.saturating_sub(1).min(u32::MAX as usize) as u32;
            let unit = super::link::unit_from(id ^ u64::from(n));
            reconnect.delay(n, unit).unwrap_or(reconnect.max)
        })
        .event_callback(move |event| {
            let events = events_tx.clone();
            async move {
                let _ = events.send(event);
            }
        });
    let client = match options.connect(config.url.as_str()).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, url = %config.url, "broker bridge: cannot use this NATS URL; topics stay on this node");
            return;
        }
    };
    let (inbound_tx, mut inbound) = mpsc::channel::<(Arc<str>, Bytes)>(INBOUND_LEN);
    let mut subscriptions: HashMap<Arc<str>, JoinHandle<()>> = HashMap::new();
    let mut batch = Vec::new();
    loop {
        if node.stopping() {
            break;
        }
        // async-nats queues subscribes and unsubscribes while it is away and sends them with
        // the rest on the next connection: interest is settled in any state.
        settle(&mut node, &client, &mut subscriptions, &inbound_tx).await;
        let mut more = false;
        if node.is_connected() {
            let taken = node.next_batch(&mut batch);
            more = taken == config.max_batch.max(1);
            let n = batch.len();
            let mut ok = true;
            for (subject, bytes) in batch.drain(..) {
                if client.publish(subject, Bytes::from(bytes)).await.is_err() {
                    ok = false;
                }
            }
            node.sent(n, ok);
        }
        if more || node.has_pending() {
            // Let the client's tasks run, then go on with what waits.
            tokio::task::yield_now().await;
            drain_events(&mut node, &mut events);
            drain_inbound(&mut node, &mut inbound);
            continue;
        }
        tokio::select! {
            _ = node.wake.notified() => {}
            Some(event) = events.recv() => on_event(&mut node, event),
            Some((topic, payload)) = inbound.recv() => {
                node.deliver(&topic, &payload);
                drain_inbound(&mut node, &mut inbound);
            }
            _ = tokio::time::sleep(IDLE) => {}
        }
    }
    for (_, task) in subscriptions.drain() {
        task.abort();
    }
    let _ = tokio::time::timeout(config.timeout, client.flush()).await;
}

/// Makes and drops upstream subscriptions to match local interest.
async fn settle(
    node: &mut Node,
    client: &Client,
    subscriptions: &mut HashMap<Arc<str>, JoinHandle<()>>,
    inbound: &mpsc::Sender<(Arc<str>, Bytes)>,
) {
    node.take_changes();
    let (subscribe, unsubscribe) = node.pending();
    for named in unsubscribe {
        if let Some(task) = subscriptions.remove(&named.0) {
            // Dropping the subscriber (with its task) unsubscribes it.
            task.abort();
        }
        node.unsubscribed(&named);
    }
    for named in subscribe {
        match client.subscribe(named.1.clone()).await {
            Ok(mut subscriber) => {
                let topic = Arc::clone(&named.0);
                let inbound = inbound.clone();
                let task = tokio::spawn(async move {
                    while let Some(message) = subscriber.next().await {
                        if inbound
                            .send((Arc::clone(&topic), message.payload))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
                subscriptions.insert(Arc::clone(&named.0), task);
                node.subscribed(named);
            }
            Err(error) => {
                tracing::debug!(%error, subject = %named.1, "broker bridge: subscribe failed; retried");
                node.retry(named);
            }
        }
    }
}

fn on_event(node: &mut Node, event: Event) {
    match event {
        Event::Connected => node.connected(),
        Event::Disconnected => node.lost(&"the connection to nats-server dropped"),
        Event::ServerError(error) => tracing::warn!(%error, "broker bridge: nats-server error"),
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                sid,
                "broker bridge: a subscription fell behind (messages lost)"
            )
        }
        other => tracing::debug!(event = %other, "broker bridge: NATS event"),
    }
}

fn drain_events(node: &mut Node, events: &mut mpsc::UnboundedReceiver<Event>) {
    while let Ok(event) = events.try_recv() {
        on_event(node, event);
    }
}

fn drain_inbound(node: &mut Node, inbound: &mut mpsc::Receiver<(Arc<str>, Bytes)>) {
    for _ in 0..INBOUND_LEN {
        let Ok((topic, payload)) = inbound.try_recv() else {
            break;
        };
        node.deliver(&topic, &payload);
    }
}
