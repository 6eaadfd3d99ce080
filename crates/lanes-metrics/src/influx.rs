//! InfluxDB line protocol (<https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/>).
//!
//! The mapping, the same for every family: the measurement is the family's name, the tags
//! are its labels, and the fields are
//! - counters: `value` as an integer (`42i`);
//! - gauges: `value` as a float;
//! - histograms: `count` (integer) and `sum` (float, in the exported unit) since the start,
//!   and `p50`, `p90`, `p99` and `p999` (floats, exported unit) of the values recorded since
//!   the previous report, when there were any.
//!
//! Measurement names escape commas and spaces; tag keys, tag values and field keys escape
//! commas, equals signs and spaces; line feeds, which the protocol cannot carry, become
//! spaces. Tags with an empty value are left out (the protocol has no empty tag values), and
//! so are gauges that are not finite.

use std::fmt::Write;

use crate::histogram::HistogramSnapshot;
use crate::snapshot::{Family, Snapshot, Value};

/// The quantiles written for histograms, with their field names.
pub const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// `snapshot` as line protocol, one line per sample, stamped `timestamp_ns` (nanoseconds
/// since the Unix epoch). `previous` is the snapshot of the previous report, for the
/// histograms' interval quantiles (`None` on the first report: quantiles since the start).
pub fn encode(snapshot: &Snapshot, previous: Option<&Snapshot>, timestamp_ns: u64) -> String {
    let mut out = String::with_capacity(snapshot.families.len() * 96);
    for family in &snapshot.families {
        let earlier = previous.and_then(|p| p.family(&family.name));
        encode_family(family, earlier, timestamp_ns, &mut out);
    }
    out
}

fn encode_family(family: &Family, earlier: Option<&Family>, timestamp_ns: u64, out: &mut String) {
    for sample in &family.samples {
        let start = out.len();
        escape(&family.name, &[',', ' '], out);
        for (name, value) in &sample.labels {
            if value.is_empty() {
                continue;
            }
            out.push(',');
            escape(name, &[',', '=', ' '], out);
            out.push('=');
            escape(value, &[',', '=', ' '], out);
        }
        out.push(' ');
        match &sample.value {
            Value::Counter(n) => {
                let _ = write!(out, "value={n}i");
            }
            Value::Gauge(v) if v.is_finite() => {
                let _ = write!(out, "value={}", float(*v));
            }
            Value::Gauge(_) => {
                out.truncate(start);
                continue;
            }
            Value::Histogram { counts, divisor } => {
                let _ = write!(
                    out,
                    "count={}i,sum={}",
                    counts.count(),
                    float(counts.sum as f64 / divisor)
                );
                let before = earlier
                    .and_then(|f| f.samples.iter().find(|s| s.labels == sample.labels))
                    .and_then(|s| match &s.value {
                        Value::Histogram { counts, .. } => Some(**counts),
                        _ => None,
                    })
                    .unwrap_or_default();
                let interval: HistogramSnapshot = counts.since(&before);
                for (field, q) in QUANTILES {
                    if let Some(v) = interval.quantile(q) {
                        let _ = write!(out, ",{field}={}", float(v / divisor));
                    }
                }
            }
        }
        let _ = writeln!(out, " {timestamp_ns}");
    }
}

/// A finite float in a form both line protocol and InfluxQL read back exactly.
fn float(v: f64) -> String {
    format!("{v:?}")
}

fn escape(text: &str, special: &[char], out: &mut String) {
    for c in text.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::histogram::Histogram;
    use crate::snapshot::Kind;

    #[test]
    fn every_kind_and_the_escapes() {
        let h = Histogram::new();
        for _ in 0..10 {
            h.record(1000);
        }
        let first = h.snapshot();
        for _ in 0..10 {
            h.record(3);
        }
        let hist = |counts| Value::Histogram {
            counts: Box::new(counts),
            divisor: 1e6,
        };
        let previous = Snapshot {
            families: vec![
                Family::new("lag_seconds", "", Kind::Histogram).with(&[("core", "0")], hist(first)),
            ],
        };
        let snapshot = Snapshot {
            families: vec![
                Family::new("jobs total,x", "", Kind::Counter)
                    .with(&[("core", "0"), ("room", "a b,c=d\ne")], Value::Counter(7))
                    .with(&[("empty", "")], Value::Counter(1)),
                Family::new("g", "", Kind::Gauge)
                    .with(&[], Value::Gauge(2.0))
                    .with(&[], Value::Gauge(f64::NAN)),
                Family::new("lag_seconds", "", Kind::Histogram)
                    .with(&[("core", "0")], hist(h.snapshot())),
            ],
        };
        let text = encode(&snapshot, Some(&previous), 1_700_000_000_000_000_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "jobs\\ total\\,x,core=0,room=a\\ b\\,c\\=d\\ e value=7i 1700000000000000000",
                "jobs\\ total\\,x value=1i 1700000000000000000",
                "g value=2.0 1700000000000000000",
            ]
        );
        assert_eq!(lines.len(), 4);
        let (head, rest) = lines[3].split_once(' ').unwrap();
        assert_eq!(head, "lag_seconds,core=0");
        let (fields, timestamp) = rest.split_once(' ').unwrap();
        assert_eq!(timestamp, "1700000000000000000");
        let field = |name: &str| -> String {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .unwrap()
                .to_owned()
        };
        assert_eq!(field("count"), "20i");
        assert_eq!(field("sum"), "0.01003");
        // The interval holds only the ten 3 µs values: bucket (2, 4] µs, interpolated.
        for (name, micros) in [("p50", 3.0), ("p90", 3.8), ("p99", 3.98), ("p999", 3.998)] {
            let v: f64 = field(name).parse().unwrap();
            assert!((v - micros * 1e-6).abs() < 1e-12, "{name} = {v}");
        }
    }
}
