//! The Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Each family gets a `# HELP` and a `# TYPE` line, then one line per sample; a histogram
//! sample becomes cumulative `_bucket{le="…"}` lines ending with `le="+Inf"`, then `_sum` and
//! `_count`. Label values escape `\`, `"` and line feeds; help text escapes `\` and line feeds.

use std::fmt::Write;

use crate::histogram::HistogramSnapshot;
use crate::snapshot::{Family, Snapshot, Value};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The snapshot in the text format.
pub fn encode(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(snapshot.families.len() * 256);
    for family in &snapshot.families {
        encode_family(family, &mut out);
    }
    out
}

fn encode_family(family: &Family, out: &mut String) {
    let name = &family.name;
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(&family.help, out);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
    for sample in &family.samples {
        match &sample.value {
            Value::Counter(n) => {
                line(out, name, "", &sample.labels, None);
                let _ = writeln!(out, "{n}");
            }
            Value::Gauge(v) => {
                line(out, name, "", &sample.labels, None);
                write_float(out, *v);
                out.push('\n');
            }
            Value::Histogram { counts, divisor } => {
                let mut cumulative = 0u64;
                let mut le = String::new();
                for (i, n) in counts.counts.iter().enumerate() {
                    cumulative += n;
                    le.clear();
                    match HistogramSnapshot::upper_bound(i) {
                        Some(bound) => write_float(&mut le, bound as f64 / divisor),
                        None => le.push_str("+Inf"),
                    }
                    line(out, name, "_bucket", &sample.labels, Some(&le));
                    let _ = writeln!(out, "{cumulative}");
                }
                line(out, name, "_sum", &sample.labels, None);
                write_float(out, counts.sum as f64 / divisor);
                out.push('\n');
                line(out, name, "_count", &sample.labels, None);
                let _ = writeln!(out, "{cumulative}");
            }
        }
    }
}

/// `name{labels} ` (with the trailing space), `le` last when given.
fn line(out: &mut String, name: &str, suffix: &str, labels: &[(String, String)], le: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let le_pair = le.map(|v| ("le", v));
        let pairs = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(le_pair);
        for (n, v) in pairs {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(n);
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as Prometheus reads it: `+Inf`, `-Inf`, `NaN`, or Rust's shortest round-trip form.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::histogram::{BUCKETS, Histogram};
    use crate::snapshot::Kind;

    fn sample_snapshot() -> Snapshot {
        let h = Histogram::new();
        for v in [1, 3, 3, 900, 5_000_000, 100_000_000] {
            h.record(v);
        }
        Snapshot {
            families: vec![
                Family::new(
                    "jobs_total",
                    "Jobs done.\nSecond line \\ end.",
                    Kind::Counter,
                )
                .with(&[("core", "0")], Value::Counter(7))
                .with(&[("core", "all")], Value::Counter(9)),
                Family::new("temperature", "A gauge.", Kind::Gauge)
                    .with(&[], Value::Gauge(-1.5))
                    .with(&[("room", "a \"b\" \\ c\nd")], Value::Gauge(f64::INFINITY)),
                Family::new("lag_seconds", "Lag.", Kind::Histogram).with(
                    &[("core", "1")],
                    Value::Histogram {
                        counts: Box::new(h.snapshot()),
                        divisor: 1e6,
                    },
                ),
            ],
        }
    }

    #[test]
    fn lines_are_as_the_format_says() {
        let text = encode(&sample_snapshot());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "# HELP jobs_total Jobs done.\\nSecond line \\\\ end."
        );
        assert_eq!(lines[1], "# TYPE jobs_total counter");
        assert_eq!(lines[2], "jobs_total{core=\"0\"} 7");
        assert_eq!(lines[3], "jobs_total{core=\"all\"} 9");
        assert_eq!(lines[5], "# TYPE temperature gauge");
        assert_eq!(lines[6], "temperature -1.5");
        assert_eq!(
            lines[7],
            "temperature{room=\"a \\\"b\\\" \\\\ c\\nd\"} +Inf"
        );
        assert_eq!(lines[9], "# TYPE lag_seconds histogram");
        assert_eq!(
            lines[10],
            "lag_seconds_bucket{core=\"1\",le=\"0.000001\"} 1"
        );
        assert_eq!(
            lines[11],
            "lag_seconds_bucket{core=\"1\",le=\"0.000002\"} 1"
        );
        assert_eq!(
            lines[12],
            "lag_seconds_bucket{core=\"1\",le=\"0.000004\"} 3"
        );
        assert_eq!(
            lines[10 + 10],
            "lag_seconds_bucket{core=\"1\",le=\"0.001024\"} 4"
        );
        assert_eq!(
            lines[10 + 23],
            "lag_seconds_bucket{core=\"1\",le=\"8.388608\"} 5"
        );
        assert_eq!(
            lines[10 + 24],
            "lag_seconds_bucket{core=\"1\",le=\"16.777216\"} 5"
        );
        assert_eq!(
            lines[10 + 25],
            "lag_seconds_bucket{core=\"1\",le=\"+Inf\"} 6"
        );
        assert_eq!(lines[10 + 26], "lag_seconds_sum{core=\"1\"} 105.000907");
        assert_eq!(lines[10 + 27], "lag_seconds_count{core=\"1\"} 6");
        assert_eq!(lines.len(), 10 + 28);
        assert!(text.ends_with('\n'));
    }

    /// Parsed back by an independent parser (the prometheus-parse crate).
    #[test]
    fn a_prometheus_parser_reads_it_back() {
        let text = encode(&sample_snapshot());
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let find = |name: &str, label: (&str, &str)| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
                .unwrap_or_else(|| panic!("{name} {label:?} missing"))
        };
        match find("jobs_total", ("core", "0")).value {
            prometheus_parse::Value::Counter(v) => assert_eq!(v, 7.0),
            ref other => panic!("{other:?}"),
        }
        match &find("lag_seconds", ("core", "1")).value {
            prometheus_parse::Value::Histogram(buckets) => {
                assert_eq!(buckets.len(), BUCKETS);
                assert_eq!(buckets[0].less_than, 0.000001);
                assert_eq!(buckets[2].count, 3.0);
                assert_eq!(buckets[BUCKETS - 1].less_than, f64::INFINITY);
                assert_eq!(buckets[BUCKETS - 1].count, 6.0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            scrape.docs.get("jobs_total").map(String::as_str),
            Some("Jobs done.\\nSecond line \\\\ end.")
        );
    }
}
