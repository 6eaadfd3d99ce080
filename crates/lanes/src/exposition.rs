//! Lanes' metrics as metric families: the names, help texts and labels that `/metrics` and the
//! InfluxDB reporter export.
//!
//! Every per-worker family has a `core` label (the core the worker is pinned to, or its index
//! when pinning is off) and one more sample with `core="all"`, the sum over workers. Sum over
//! `core!="all"` or read `core="all"`, never both.

use lanes_metrics::{Family, HistogramSnapshot, Kind, Registry, Snapshot, Value};

use crate::stats::{
    CloseCause, OPCODES, PROTOCOL_ERROR_CODES, REJECT_STATUSES, Stats, TlsFailure, WorkerStats,
};

/// Microseconds per second: histograms of times are recorded in µs and exported in seconds.
const MICROS: f64 = 1e6;

/// A family with one sample per worker: name, help, kind, and the value from a worker's figures.
type PerWorker = (&'static str, &'static str, Kind, fn(&WorkerStats) -> Value);

fn counter(n: u64) -> Value {
    Value::Counter(n)
}

fn gauge(n: u64) -> Value {
    Value::Gauge(n as f64)
}

fn micros(counts: &HistogramSnapshot) -> Value {
    Value::Histogram {
        counts: Box::new(*counts),
        divisor: MICROS,
    }
}

/// The families labelled by `core` alone.
const FAMILIES: &[PerWorker] = &[
    (
        "lanes_connections_accepted_total",
        "TCP connections accepted.",
        Kind::Counter,
        |w| counter(w.accepted),
    ),
    (
        "lanes_connections_opened_total",
        "WebSocket upgrades completed.",
        Kind::Counter,
        |w| counter(w.opened),
    ),
    (
        "lanes_connections_open",
        "Open WebSocket connections.",
        Kind::Gauge,
        |w| gauge(w.connections),
    ),
    (
        "lanes_messages_received_total",
        "Data messages received (frames that begin a message: a fragmented message counts once).",
        Kind::Counter,
        |w| counter(w.messages_received),
    ),
    (
        "lanes_messages_sent_total",
        "Data messages queued to be sent.",
        Kind::Counter,
        |w| counter(w.messages_sent),
    ),
    (
        "lanes_bytes_received_total",
        "Bytes read from sockets.",
        Kind::Counter,
        |w| counter(w.bytes_received),
    ),
    (
        "lanes_bytes_sent_total",
        "Bytes written to sockets.",
        Kind::Counter,
        |w| counter(w.bytes_sent),
    ),
    (
        "lanes_tls_handshakes_total",
        "TLS handshakes completed (resumed ones included).",
        Kind::Counter,
        |w| counter(w.tls_handshakes),
    ),
    (
        "lanes_tls_handshakes_resumed_total",
        "TLS handshakes that resumed a session.",
        Kind::Counter,
        |w| counter(w.tls_resumed),
    ),
    (
        "lanes_pings_sent_total",
        "Keepalive pings sent.",
        Kind::Counter,
        |w| counter(w.pings_sent),
    ),
    (
        "lanes_pongs_received_total",
        "Pongs received.",
        Kind::Counter,
        |w| counter(w.pongs_received),
    ),
    (
        "lanes_buffered_bytes",
        "Bytes waiting in send backlogs after the last write.",
        Kind::Gauge,
        |w| gauge(w.buffered_bytes),
    ),
    (
        "lanes_messages_dropped_total",
        "Messages dropped by the slow-consumer policy (drop).",
        Kind::Counter,
        |w| counter(w.messages_dropped),
    ),
    (
        "lanes_messages_conflated_total",
        "Keyed published messages replaced by a newer one while their subscriber was behind.",
        Kind::Counter,
        |w| counter(w.messages_conflated),
    ),
    (
        "lanes_subscriptions",
        "Topic subscriptions.",
        Kind::Gauge,
        |w| gauge(w.subscriptions),
    ),
    (
        "lanes_published_total",
        "Publishes and broadcasts handled (once per worker).",
        Kind::Counter,
        |w| counter(w.published),
    ),
    (
        "lanes_delivered_total",
        "Published messages queued to subscribers.",
        Kind::Counter,
        |w| counter(w.delivered),
    ),
    (
        "lanes_remote_queue_depth",
        "Commands waiting in the worker's cross-core queue.",
        Kind::Gauge,
        |w| gauge(w.queue_depth),
    ),
    (
        "lanes_remote_queue_full_total",
        "Cross-core commands refused because the queue was full.",
        Kind::Counter,
        |w| counter(w.queue_full),
    ),
    (
        "lanes_handed_off_total",
        "Upgrades accepted here and handed to the worker the handler placed them on.",
        Kind::Counter,
        |w| counter(w.handed_off),
    ),
    (
        "lanes_adopted_total",
        "Connections another worker (or another server, through Remote::adopt) handed to this one.",
        Kind::Counter,
        |w| counter(w.adopted),
    ),
    (
        "lanes_deferred_upgrades_total",
        "Upgrades the handler deferred, to answer later.",
        Kind::Counter,
        |w| counter(w.deferred),
    ),
    (
        "lanes_deferred_upgrade_bytes",
        "Bytes held by upgrades waiting for the handler's answer (their request heads).",
        Kind::Gauge,
        |w| gauge(w.deferred_bytes),
    ),
    (
        "lanes_moved_out_total",
        "Open connections moved from this worker to another.",
        Kind::Counter,
        |w| counter(w.moved_out),
    ),
    (
        "lanes_moved_in_total",
        "Open connections moved here from another worker.",
        Kind::Counter,
        |w| counter(w.moved_in),
    ),
    (
        "lanes_outbound_opened_total",
        "Outbound connections opened (reconnections included).",
        Kind::Counter,
        |w| counter(w.outbound_opened),
    ),
    (
        "lanes_outbound_failed_total",
        "Outbound connection attempts that failed.",
        Kind::Counter,
        |w| counter(w.outbound_failed),
    ),
    (
        "lanes_remote_stale_total",
        "Cross-core commands for connections that had ended.",
        Kind::Counter,
        |w| counter(w.stale),
    ),
    (
        "lanes_handler_panics_total",
        "Handler callbacks that panicked (each contained to its connection, or its tick).",
        Kind::Counter,
        |w| counter(w.handler_panics),
    ),
    (
        "lanes_loop_iterations_total",
        "Event loop iterations.",
        Kind::Counter,
        |w| counter(w.loop_iterations),
    ),
    (
        "lanes_ping_rtt_seconds",
        "Keepalive ping to pong round-trip time.",
        Kind::Histogram,
        |w| micros(&w.ping_rtt_us),
    ),
    (
        "lanes_loop_lag_seconds",
        "Per loop iteration with ready sockets: from the poll returning to the end of handling them.",
        Kind::Histogram,
        |w| micros(&w.loop_lag_us),
    ),
    (
        "lanes_loop_events",
        "Readiness events per loop iteration.",
        Kind::Histogram,
        |w| Value::Histogram {
            counts: Box::new(w.loop_events),
            divisor: 1.0,
        },
    ),
];

/// The broker bridge's families (`lanes_bridge_*`), one sample each (the bridge is one per
/// node, not per worker).
#[cfg(feature = "bridge")]
pub(crate) fn bridge(stats: &crate::bridge::BridgeStats) -> Snapshot {
    let one = |name: &str, help: &str, kind: Kind, value: Value| {
        Family::new(name, help, kind).with(&[], value)
    };
    let mut dropped = Family::new(
        "lanes_bridge_dropped_total",
        "Messages the bridge dropped, by reason: queue_full (a publish found the queue to the \
         broker full), send_failed (lost in a failed write to the broker), delivery (a worker's \
         queue had no room for a message from the broker).",
        Kind::Counter,
    );
    dropped.push(
        &[("reason", "queue_full")],
        counter(stats.dropped_queue_full),
    );
    dropped.push(
        &[("reason", "send_failed")],
        counter(stats.dropped_send_failed),
    );
    dropped.push(&[("reason", "delivery")], counter(stats.dropped_delivery));
    Snapshot {
        families: vec![
            one(
                "lanes_bridge_connected",
                "1 while the bridge is connected to the broker, else 0.",
                Kind::Gauge,
                gauge(u64::from(stats.connected)),
            ),
            one(
                "lanes_bridge_messages_out_total",
                "This node's publishes sent to the broker.",
                Kind::Counter,
                counter(stats.sent),
            ),
            one(
                "lanes_bridge_messages_in_total",
                "Messages from other nodes handed to this node's workers.",
                Kind::Counter,
                counter(stats.received),
            ),
            one(
                "lanes_bridge_own_echoes_total",
                "This node's own messages sent back by the broker, skipped.",
                Kind::Counter,
                counter(stats.own_echoes),
            ),
            one(
                "lanes_bridge_malformed_total",
                "Messages on the bridge's subjects that were not lanes messages, skipped.",
                Kind::Counter,
                counter(stats.malformed),
            ),
            dropped,
            one(
                "lanes_bridge_refused_topics_total",
                "Publishes and subscriptions whose topic cannot cross (empty, too long), kept local.",
                Kind::Counter,
                counter(stats.refused_topics),
            ),
            one(
                "lanes_bridge_queue_depth",
                "Publishes waiting for the broker.",
                Kind::Gauge,
                gauge(stats.queue_depth),
            ),
            one(
                "lanes_bridge_losses_total",
                "Times the connection to the broker was lost or could not be made.",
                Kind::Counter,
                counter(stats.losses),
            ),
            one(
                "lanes_bridge_reconnects_total",
                "Times the bridge connected again after a loss.",
                Kind::Counter,
                counter(stats.reconnects),
            ),
            one(
                "lanes_bridge_upstream_subscriptions",
                "Topics this node has subscribed at the broker.",
                Kind::Gauge,
                gauge(stats.upstream_subscriptions),
            ),
            one(
                "lanes_bridge_latency_seconds",
                "From a message's publish on its node to its hand-over to this node's workers.",
                Kind::Histogram,
                micros(&stats.latency_us),
            ),
        ],
    }
}

/// Every lanes metric, then the application's registry, then `extra` (the InfluxDB
/// reporter's own figures, where one runs).
pub(crate) fn snapshot(stats: &Stats, registry: &Registry, extra: Option<Snapshot>) -> Snapshot {
    let total = stats.total();
    let mut workers: Vec<(String, &WorkerStats)> = stats
        .workers
        .iter()
        .map(|w| (w.core.unwrap_or(w.index).to_string(), w))
        .collect();
    workers.push(("all".to_owned(), &total));
    let mut out = Snapshot::default();
    for (name, help, kind, get) in FAMILIES {
        let mut family = Family::new(*name, *help, *kind);
        for (core, w) in &workers {
            family.push(&[("core", core)], get(w));
        }
        out.families.push(family);
    }
    // Families with a second label.
    let mut closed = Family::new(
        "lanes_connections_closed_total",
        "Open connections that ended, by cause.",
        Kind::Counter,
    );
    let mut errors = Family::new(
        "lanes_protocol_errors_total",
        "Connections closed for a protocol error, by the close code sent.",
        Kind::Counter,
    );
    let mut rejected = Family::new(
        "lanes_handshakes_rejected_total",
        "Handshakes answered with an HTTP error, by status.",
        Kind::Counter,
    );
    let mut tls_failures = Family::new(
        "lanes_tls_handshake_failures_total",
        "TLS handshakes that failed, by reason.",
        Kind::Counter,
    );
    let mut frames_in = Family::new(
        "lanes_frames_received_total",
        "Frames received, by opcode.",
        Kind::Counter,
    );
    let mut frames_out = Family::new(
        "lanes_frames_sent_total",
        "Frames queued to be sent, by opcode.",
        Kind::Counter,
    );
    let codes: Vec<String> = PROTOCOL_ERROR_CODES
        .iter()
        .map(u16::to_string)
        .chain(["other".to_owned()])
        .collect();
    let statuses: Vec<String> = REJECT_STATUSES
        .iter()
        .map(u16::to_string)
        .chain(["other".to_owned()])
        .collect();
    for (core, w) in &workers {
        for cause in CloseCause::ALL {
            let labels = [("core", core.as_str()), ("cause", cause.as_str())];
            closed.push(&labels, counter(w.closed_by(cause)));
        }
        for (code, n) in codes.iter().zip(&w.protocol_errors) {
            errors.push(&[("core", core), ("code", code)], counter(*n));
        }
        for (status, n) in statuses.iter().zip(&w.handshakes_rejected) {
            rejected.push(&[("core", core), ("status", status)], counter(*n));
        }
        for reason in TlsFailure::ALL {
            let labels = [("core", core.as_str()), ("reason", reason.as_str())];
            tls_failures.push(&labels, counter(w.tls_failed_with(reason)));
        }
        for (i, opcode) in OPCODES.iter().enumerate() {
            let name = opcode_name(*opcode);
            frames_in.push(
                &[("core", core), ("opcode", name)],
                counter(w.frames_received[i]),
            );
            frames_out.push(
                &[("core", core), ("opcode", name)],
                counter(w.frames_sent[i]),
            );
        }
    }
    out.families.extend([
        closed,
        errors,
        rejected,
        tls_failures,
        frames_in,
        frames_out,
    ]);
    out.extend(registry.snapshot());
    if let Some(extra) = extra {
        out.extend(extra);
    }
    out
}

fn opcode_name(opcode: lanes_proto::OpCode) -> &'static str {
    use lanes_proto::OpCode;
    match opcode {
        OpCode::Continuation => "continuation",
        OpCode::Text => "text",
        OpCode::Binary => "binary",
        OpCode::Close => "close",
        OpCode::Ping => "ping",
        OpCode::Pong => "pong",
    }
}
