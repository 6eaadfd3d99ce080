//! Counters and gauges an application registers, exported beside lanes' own metrics.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::snapshot::{Family, Kind, Sample, Snapshot, Value};

/// A counter from a [`Registry`]. `Clone + Send + Sync`; [`Counter::add`] is one atomic add,
/// so keep a counter per thread (a `core` label) where it is hot.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The value now.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge from a [`Registry`]: a value that goes up and down. `Clone + Send + Sync`.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract).
    #[inline]
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// The value now.
    pub fn value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A metric or label name that Prometheus would not accept, or a name registered twice with
/// a different kind or help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// The offending name.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metric name {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for NameError {}

enum Handle {
    Counter(Counter),
    Gauge(Gauge),
}

struct Entry {
    name: String,
    help: String,
    labels: Vec<(String, String)>,
    handle: Handle,
}

/// The application's own metrics. `Clone` shares the same set; registering takes a lock
/// (rare), updating a [`Counter`] or [`Gauge`] does not.
///
/// The server's registry is reachable from `lanes::ServerHandle::registry` and, in a handler
/// factory, from `info.remote.registry()` (`lanes::Remote::registry`), and is exported with
/// lanes' metrics on `/metrics` and to InfluxDB.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a counter called `name` with these labels (or returns the one already
    /// registered under the same name and labels).
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, NameError> {
        match self.register(name, help, labels, Kind::Counter)? {
            Handle::Counter(c) => Ok(c),
            Handle::Gauge(_) => Err(NameError {
                name: name.to_owned(),
                reason: "already registered as a gauge",
            }),
        }
    }

    /// Registers a gauge called `name` with these labels (or returns the one already
    /// registered under the same name and labels).
    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<Gauge, NameError> {
        match self.register(name, help, labels, Kind::Gauge)? {
            Handle::Gauge(g) => Ok(g),
            Handle::Counter(_) => Err(NameError {
                name: name.to_owned(),
                reason: "already registered as a counter",
            }),
        }
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        kind: Kind,
    ) -> Result<Handle, NameError> {
        check_metric_name(name)?;
        for (label, _) in labels {
            check_label_name(label)?;
        }
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries.iter().filter(|e| e.name == name) {
            let same_kind = matches!(
                (&e.handle, kind),
                (Handle::Counter(_), Kind::Counter) | (Handle::Gauge(_), Kind::Gauge)
            );
            if !same_kind {
                return Err(NameError {
                    name: name.to_owned(),
                    reason: "already registered with another kind",
                });
            }
            if e.labels == labels {
                return Ok(match &e.handle {
                    Handle::Counter(c) => Handle::Counter(c.clone()),
                    Handle::Gauge(g) => Handle::Gauge(g.clone()),
                });
            }
        }
        let handle = match kind {
            Kind::Gauge => Handle::Gauge(Gauge(Arc::default())),
            _ => Handle::Counter(Counter(Arc::default())),
        };
        let copy = match &handle {
            Handle::Counter(c) => Handle::Counter(c.clone()),
            Handle::Gauge(g) => Handle::Gauge(g.clone()),
        };
        entries.push(Entry {
            name: name.to_owned(),
            help: help.to_owned(),
            labels,
            handle,
        });
        Ok(copy)
    }

    /// The registered metrics now, one family per name (in order of first registration).
    pub fn snapshot(&self) -> Snapshot {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut snapshot = Snapshot::default();
        for e in entries.iter() {
            let (kind, value) = match &e.handle {
                Handle::Counter(c) => (Kind::Counter, Value::Counter(c.value())),
                Handle::Gauge(g) => (Kind::Gauge, Value::Gauge(g.value() as f64)),
            };
            let sample = Sample {
                labels: e.labels.clone(),
                value,
            };
            match snapshot.families.iter_mut().find(|f| f.name == e.name) {
                Some(family) => family.samples.push(sample),
                None => {
                    let mut family = Family::new(e.name.clone(), e.help.clone(), kind);
                    family.samples.push(sample);
                    snapshot.families.push(family);
                }
            }
        }
        snapshot
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, as Prometheus requires of metric names.
fn check_metric_name(name: &str) -> Result<(), NameError> {
    check(name, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved), as Prometheus requires of
/// label names; `le` is reserved for histogram buckets.
fn check_label_name(name: &str) -> Result<(), NameError> {
    if name.starts_with("__") || name == "le" {
        return Err(NameError {
            name: name.to_owned(),
            reason: "reserved label name",
        });
    }
    check(name, |c| c.is_ascii_alphanumeric() || c == '_')
}

fn check(name: &str, allowed: impl Fn(char) -> bool) -> Result<(), NameError> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| !c.is_ascii_digit() && allowed(c));
    if !first_ok || !name.chars().all(allowed) {
        return Err(NameError {
            name: name.to_owned(),
            reason: "not a valid Prometheus name",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registers_reuses_and_refuses() {
        let r = Registry::new();
        let a = r.counter("jobs_total", "Jobs.", &[("core", "0")]).unwrap();
        let b = r.counter("jobs_total", "Jobs.", &[("core", "1")]).unwrap();
        let a2 = r.counter("jobs_total", "Jobs.", &[("core", "0")]).unwrap();
        a.add(2);
        a2.add(1);
        b.add(5);
        let s = r.snapshot();
        assert_eq!(s.families.len(), 1);
        assert_eq!(s.counter("jobs_total", &[("core", "0")]), Some(3));
        assert_eq!(s.counter("jobs_total", &[("core", "1")]), Some(5));
        assert!(r.gauge("jobs_total", "", &[]).is_err());
        assert!(r.counter("9lives", "", &[]).is_err());
        assert!(r.counter("a-b", "", &[]).is_err());
        assert!(r.counter("ok", "", &[("le", "1")]).is_err());
        assert!(r.counter("ok", "", &[("__x", "1")]).is_err());
        let g = r.gauge("queue", "Queue.", &[]).unwrap();
        g.set(7);
        g.add(-2);
        assert_eq!(r.snapshot().value("queue", &[]), Some(&Value::Gauge(5.0)));
    }
}
