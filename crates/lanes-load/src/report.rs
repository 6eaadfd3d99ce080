//! Summaries: readable text and one JSON object per run.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latency percentiles in microseconds, from a nanosecond histogram.
pub fn percentiles_us(latency_ns: &Histogram<u64>) -> Value {
    let at = |q: f64| latency_ns.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p99_9": at(0.999),
        "p99_99": at(0.9999),
        "max": latency_ns.max() as f64 / 1000.0,
    })
}

/// Formats a rate with thousands separators.
pub fn grouped(value: f64) -> String {
    let whole = value.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let mut h = crate::echo::new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = percentiles_us(&h);
        let close = |key: &str, want: f64| {
            let got = p[key].as_f64().unwrap();
            assert!((got - want).abs() / want < 0.01, "{key}: {got} vs {want}");
        };
        close("p50", 500.0);
        close("p90", 900.0);
        close("p99", 990.0);
        close("p99_9", 999.0);
        close("max", 1000.0);
    }

    #[test]
    fn grouping() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1234567.0), "1,234,567");
    }
}
