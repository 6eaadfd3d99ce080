//! A point-in-time copy of a set of metrics: what the exporters read.

use crate::histogram::HistogramSnapshot;

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (or restarts at zero with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in power-of-two buckets.
    Histogram,
}

impl Kind {
    /// The name the Prometheus `# TYPE` line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One value of a family.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's value.
    Counter(u64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram's counts, recorded in some unit and exported in another: exported value =
    /// recorded value / `divisor` (1e6 for microseconds exported as seconds).
    Histogram {
        /// The counts.
        counts: Box<HistogramSnapshot>,
        /// Recorded units per exported unit.
        divisor: f64,
    },
}

/// One labelled value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values, in order (e.g. `[("core", "0")]`).
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: Value,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A named metric with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The metric name, e.g. `lanes_messages_received_total`.
    pub name: String,
    /// One line saying what it counts.
    pub help: String,
    /// Counter, gauge or histogram; every sample's value is of this kind.
    pub kind: Kind,
    /// The values, one per label set.
    pub samples: Vec<Sample>,
}

impl Family {
    /// An empty family.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: Kind) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample (builder style).
    pub fn with(mut self, labels: &[(&str, &str)], value: Value) -> Family {
        self.push(labels, value);
        self
    }

    /// Adds a sample.
    pub fn push(&mut self, labels: &[(&str, &str)], value: Value) {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        });
    }
}

/// Every family of a set of metrics at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The families, in export order.
    pub families: Vec<Family>,
}

impl Snapshot {
    /// The family called `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        self.family(name)?
            .samples
            .iter()
            .find(|s| labels.iter().all(|(n, v)| s.label(n) == Some(*v)))
            .map(|s| &s.value)
    }

    /// A counter's value, as [`Snapshot::value`] finds it.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        match self.value(name, labels)? {
            Value::Counter(n) => Some(*n),
            _ => None,
        }
    }

    /// Appends another snapshot's families.
    pub fn extend(&mut self, other: Snapshot) {
        self.families.extend(other.families);
    }
}
