//! The Redis backend: per node, one multiplexed connection that publishes (a pipeline of
//! `PUBLISH` per batch) and one pub/sub connection that subscribes. The bridge makes them
//! itself, notices their loss (the subscription stream ends, or a request fails or passes
//! [`BrokerConfig::timeout`]), waits its back-off, makes them anew and subscribes again to
//! every topic with local subscribers. Redis sends a node its own messages back; the node
//! skips them by their origin id.

use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};

use super::node::Node;
use crate::config::BrokerConfig;

/// How often the loop looks at the stop flag when nothing else wakes it.
const IDLE: Duration = Duration::from_millis(100);

/// Messages taken from the subscription stream per turn of the loop, at most.
const INBOUND_BURST: usize = 4096;

/// Why a session ended.
enum End {
    Stopped,
    Lost(String),
}

pub(crate) async fn run(mut node: Node, config: &BrokerConfig) {
    let client = match redis::Client::open(config.url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, url = %config.url, "broker bridge: cannot use this Redis URL; topics stay on this node");
            return;
        }
    };
    loop {
        match session(&mut node, &client, config).await {
            End::Stopped => return,
            End::Lost(error) => node.lost(&error),
        }
        let n = node.failures().saturating_sub(1);
        let unit = super::link::unit_from(node.id ^ u64::from(n));
        let delay = config
            .reconnect
            .delay(n, unit)
            .unwrap_or(config.reconnect.max);
        // Wait, taking interest changes meanwhile so that the workers' queue stays short.
        let until = tokio::time::Instant::now() + delay;
        while tokio::time::Instant::now() < until {
            if node.stopping() {
                return;
            }
            node.take_changes();
            tokio::select! {
                _ = node.wake.notified() => {}
                _ = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + IDLE)) => {}
            }
        }
    }
}

/// One connection's life: connect, subscribe to what is wanted, then move messages until the
/// connection fails or the bridge stops.
async fn session(node: &mut Node, client: &redis::Client, config: &BrokerConfig) -> End {
    let timeout = config.timeout;
    let options = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut publisher = match client
        .get_multiplexed_async_connection_with_config(&options)
        .await
    {
        Ok(publisher) => publisher,
        Err(error) => return End::Lost(error.to_string()),
    };
    let (mut sink, mut stream) =
        match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub.split(),
            Ok(Err(error)) => return End::Lost(error.to_string()),
            Err(_) => return End::Lost("timed out opening the subscription connection".into()),
        };
    node.resubscribe_all();
    node.connected();
    let mut batch = Vec::new();
    loop {
        if node.stopping() {
            return End::Stopped;
        }
        if let Err(error) = settle(node, &mut sink, timeout).await {
            return End::Lost(error);
        }
        let taken = node.next_batch(&mut batch);
        if !batch.is_empty()
            && let Err(error) = publish(&mut publisher, &batch, node).await
        {
            return End::Lost(error);
        }
        if taken == config.max_batch.max(1) || node.has_pending() {
            tokio::task::yield_now().await;
            if let Err(error) = drain_inbound(node, &mut stream) {
                return End::Lost(error);
            }
            continue;
        }
        tokio::select! {
            _ = node.wake.notified() => {}
            message = stream.next() => match message {
                Some(message) => {
                    node.deliver_on(message.get_channel_name(), message.get_payload_bytes());
                    if let Err(error) = drain_inbound(node, &mut stream) {
                        return End::Lost(error);
                    }
                }
                None => return End::Lost("the subscription connection closed".into()),
            },
            _ = tokio::time::sleep(IDLE) => {}
        }
    }
}

/// Makes and drops upstream subscriptions to match local interest.
async fn settle(node: &mut Node, sink: &mut PubSubSink, timeout: Duration) -> Result<(), String> {
    node.take_changes();
    let (subscribe, unsubscribe) = node.pending();
    let mut failed = None;
    for named in unsubscribe {
        if failed.is_some() {
            node.retry(named);
            continue;
        }
        match tokio::time::timeout(timeout, sink.unsubscribe(&named.1)).await {
            Ok(Ok(())) => node.unsubscribed(&named),
            Ok(Err(error)) => failed = Some(error.to_string()),
            Err(_) => failed = Some("unsubscribe timed out".into()),
        }
        if failed.is_some() {
            node.retry(named);
        }
    }
    for named in subscribe {
        if failed.is_some() {
            node.retry(named);
            continue;
        }
        match tokio::time::timeout(timeout, sink.subscribe(&named.1)).await {
            Ok(Ok(())) => {
                node.subscribed(named);
                continue;
            }
            Ok(Err(error)) => failed = Some(error.to_string()),
            Err(_) => failed = Some("subscribe timed out".into()),
        }
        node.retry(named);
    }
    failed.map_or(Ok(()), Err)
}

/// Sends a batch as one pipeline of `PUBLISH` commands.
async fn publish(
    publisher: &mut MultiplexedConnection,
    batch: &[(String, Vec<u8>)],
    node: &Node,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for (subject, bytes) in batch {
        pipe.cmd("PUBLISH")
            .arg(subject)
            .arg(bytes.as_slice())
            .ignore();
    }
    let result = pipe.query_async::<()>(publisher).await;
    node.sent(batch.len(), result.is_ok());
    result.map_err(|error| error.to_string())
}

/// Delivers the messages the stream holds already, without waiting.
fn drain_inbound(node: &mut Node, stream: &mut PubSubStream) -> Result<(), String> {
    use futures_util::FutureExt;
    for _ in 0..INBOUND_BURST {
        match stream.next().now_or_never() {
            Some(Some(message)) => {
                node.deliver_on(message.get_channel_name(), message.get_payload_bytes())
            }
            Some(None) => return Err("the subscription connection closed".into()),
            None => break,
        }
    }
    Ok(())
}
