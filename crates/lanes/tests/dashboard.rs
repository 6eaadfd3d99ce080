//! The Grafana dashboards (scripts/monitoring/grafana) query only what lanes and lanes-load
//! export. The exposition comes from a running server (one echo done, an InfluxDB reporter
//! configured so that its own families are there too) and from lanes-load's metric set, through
//! the same encoders `/metrics` and the reporters use; then
//! - Prometheus: every `lanes_…` name in a PromQL expression is an exported series (histograms:
//!   `_bucket`, `_sum`, `_count`), every label it matches is on that series, and every literal
//!   value it matches (`core="all"`, `cause="slow_consumer"`, `opcode=~"text|binary"`) exists;
//! - InfluxDB: every `FROM "measurement"` is written, every field a SELECT reads (`last("value")`,
//!   `max("p99")`) is one of its fields, and every tag in `WHERE "tag" = 'value'` and
//!   `GROUP BY "tag"` exists (with that value).
//!
//! Both dashboards must also cover connections, messages, bytes, backpressure, ping RTT, loop
//! lag and the load generator, and be importable (uid, title, a data source variable every
//! panel uses). The checker is run on broken dashboards too, to show that it can fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::net::TcpListener;
use std::path::PathBuf;
use std::str::CharIndices;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lanes::Config;
use lanes::metrics::{InfluxConfig, Snapshot, Value, influx, prometheus};
use lanes_load::metrics::LoadMetrics;
use lanes_proto::OpCode;
use serde_json::{Value as Json, json};
use support::{Client, start_echo};

/// What every dashboard must query (Prometheus: in an expression; InfluxDB: as a measurement).
const AREAS: [&str; 8] = [
    "lanes_connections_open",
    "lanes_messages_received_total",
    "lanes_bytes_sent_total",
    "lanes_buffered_bytes",
    "lanes_ping_rtt_seconds",
    "lanes_loop_lag_seconds",
    "lanes_load_messages_sent_total",
    "lanes_load_latency_seconds",
];

/// Labels Prometheus adds when it scrapes (not in the exposition).
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

/// Label (or tag) name → the values exported.
type Labels = BTreeMap<String, BTreeSet<String>>;

/// One InfluxDB measurement as written.
#[derive(Debug, Default)]
struct Measurement {
    fields: BTreeSet<String>,
    tags: Labels,
}

/// What the server and lanes-load export.
#[derive(Debug)]
struct Exported {
    /// Prometheus series name → its labels.
    series: BTreeMap<String, Labels>,
    /// InfluxDB measurement → its fields and tags.
    measurements: BTreeMap<String, Measurement>,
}

// ---------------------------------------------------------------- what is exported

fn loop_lag_count(snapshot: &Snapshot) -> u64 {
    match snapshot.value("lanes_loop_lag_seconds", &[("core", "all")]) {
        Some(Value::Histogram { counts, .. }) => counts.count(),
        _ => 0,
    }
}

/// The server's metrics after one echo, the InfluxDB reporter's own families included.
fn server_snapshot() -> Snapshot {
    // A port nothing listens on: the reporter's writes fail at once (and it writes once an hour).
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut influx =
        InfluxConfig::v1(format!("http://{refused}"), "lanes").interval(Duration::from_secs(3600));
    influx.timeout = Duration::from_millis(500);
    let mut config = Config::default();
    config.metrics.influx = Some(influx);
    let handle = start_echo(1, config);
    let mut client = Client::connect(handle.local_addr());
    client.send(true, OpCode::Text, b"hello");
    assert_eq!(client.recv().payload, b"hello");
    // The worker records its loop lag once it has handled the message.
    let deadline = Instant::now() + Duration::from_secs(10);
    let snapshot = loop {
        let snapshot = handle.metrics();
        if loop_lag_count(&snapshot) > 0 {
            break snapshot;
        }
        assert!(Instant::now() < deadline, "no loop lag recorded");
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(client);
    handle.shutdown().unwrap();
    snapshot
}

fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let mut snapshot = server_snapshot();
        snapshot.extend(LoadMetrics::new(1).snapshot());
        let series = prometheus_series(&prometheus::encode(&snapshot));
        let text = influx::encode(&snapshot, None, 0);
        let mut measurements = influx_measurements(&text);
        // Histograms carry the quantile fields only when values were recorded since the last
        // report; the loop lag was, so it shows them all ...
        let lag = &measurements["lanes_loop_lag_seconds"].fields;
        for (field, _) in influx::QUANTILES {
            assert!(lag.contains(field), "{field} missing from {lag:?}");
        }
        // ... and every histogram (`count` and `sum`) has them once values come.
        for m in measurements.values_mut() {
            if m.fields.contains("count") && m.fields.contains("sum") {
                m.fields
                    .extend(influx::QUANTILES.iter().map(|(f, _)| (*f).to_owned()));
            }
        }
        for family in lanes_load::metrics::FAMILIES {
            assert!(measurements.contains_key(family), "{family}");
        }
        assert!(series.contains_key("lanes_influx_batches_failed_total"));
        Exported {
            series,
            measurements,
        }
    })
}

/// Series name (before `{` or a space) → labels, from the Prometheus text format.
fn prometheus_series(text: &str) -> BTreeMap<String, Labels> {
    let mut series: BTreeMap<String, Labels> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = series.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            let (matchers, _) = parse_matchers(rest).unwrap();
            for m in matchers {
                labels.entry(m.label).or_default().insert(m.value);
            }
        }
    }
    series
}

/// Measurement → fields and tags, from line protocol (`measurement,tag=v field=1i 0`).
fn influx_measurements(text: &str) -> BTreeMap<String, Measurement> {
    let mut out: BTreeMap<String, Measurement> = BTreeMap::new();
    for line in text.lines() {
        let parts = split_unescaped(line, ' ');
        assert_eq!(parts.len(), 3, "{line}");
        let key = split_unescaped(parts[0], ',');
        let m = out.entry(unescape(key[0])).or_default();
        for tag in &key[1..] {
            let tag = split_unescaped(tag, '=');
            let values = m.tags.entry(unescape(tag[0])).or_default();
            values.insert(unescape(tag[1]));
        }
        for field in split_unescaped(parts[1], ',') {
            m.fields.insert(unescape(split_unescaped(field, '=')[0]));
        }
    }
    out
}

/// `text` cut at every `sep` not escaped with a backslash (escapes kept).
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    out
}

// ---------------------------------------------------------------- the dashboards

fn load(name: &str) -> Json {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/monitoring/grafana")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every panel, those inside (collapsed) rows included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The query text (`key`: `expr` or `query`) of every target, with its panel's title; a
/// target without one is a problem (the checker could not read it).
fn queries<'a>(
    dashboard: &'a Json,
    key: &str,
    problems: &mut Vec<String>,
) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            match target[key].as_str() {
                Some(query) => out.push((title.clone(), query)),
                None => problems.push(format!("{title}: a target without {key:?}")),
            }
        }
    }
    out
}

/// Importable: uid and title, a data source variable of type `kind`, which every panel and
/// target uses; timeseries panels with targets.
fn check_shape(dashboard: &Json, kind: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for key in ["uid", "title"] {
        if dashboard[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("no {key}"));
        }
    }
    let variable = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["type"] == "datasource" && v["query"] == kind);
    let Some(name) = variable.and_then(|v| v["name"].as_str()) else {
        problems.push(format!("no data source variable of type {kind}"));
        return problems;
    };
    let uses = json!({ "type": kind, "uid": format!("${{{name}}}") });
    for panel in panels(dashboard).into_iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        if panel["type"] != "timeseries" {
            problems.push(format!("{title}: not a timeseries panel"));
        }
        let targets = panel["targets"].as_array().into_iter().flatten();
        if targets.clone().next().is_none() {
            problems.push(format!("{title}: no targets"));
        }
        let sources = std::iter::once(panel).chain(targets);
        if sources.map(|p| &p["datasource"]).any(|d| *d != uses) {
            problems.push(format!("{title}: a data source other than {uses}"));
        }
    }
    problems
}

/// `needle` occurs in some query, for every area.
fn check_areas(queries: &[(String, &str)], needle: impl Fn(&str) -> String) -> Vec<String> {
    AREAS
        .iter()
        .filter(|area| !queries.iter().any(|(_, q)| q.contains(&needle(area))))
        .map(|area| format!("no panel queries {area}"))
        .collect()
}

// ---------------------------------------------------------------- Prometheus

/// A label matcher: `label op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// The matchers of a selector, from just after its `{`, and the length up to and including
/// its `}`.
fn parse_matchers(text: &str) -> Result<(Vec<Matcher>, usize), String> {
    fn take(chars: &mut Peekable<CharIndices<'_>>, keep: fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some((_, c)) = chars.next_if(|&(_, c)| keep(c)) {
            s.push(c);
        }
        s
    }
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        take(&mut chars, |c| c == ' ' || c == ',');
        match chars.peek() {
            Some(&(i, '}')) => return Ok((out, i + 1)),
            None => return Err(format!("unclosed selector {{{text}")),
            _ => {}
        }
        let label = take(&mut chars, |c| c.is_ascii_alphanumeric() || c == '_');
        take(&mut chars, |c| c == ' ');
        let op = take(&mut chars, |c| matches!(c, '=' | '!' | '~'));
        take(&mut chars, |c| c == ' ');
        if label.is_empty() || op.is_empty() || chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("cannot read the matchers {{{text}"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some((_, '"')) => break,
                Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                Some((_, c)) => value.push(c),
                None => return Err(format!("unclosed label value {{{text}")),
            }
        }
        out.push(Matcher { label, op, value });
    }
}

/// Every `lanes_…` metric name in a PromQL expression, with its selector's matchers.
fn selectors(expr: &str) -> Result<Vec<(String, Vec<Matcher>)>, String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = expr[at..].find("lanes_") {
        let start = at + found;
        let end = expr[start..]
            .find(|c| !ident(c))
            .map_or(expr.len(), |n| start + n);
        at = end;
        if expr[..start].chars().next_back().is_some_and(ident) {
            continue; // inside another name
        }
        let mut matchers = Vec::new();
        if let Some(rest) = expr[end..].trim_start().strip_prefix('{') {
            let (found, len) = parse_matchers(rest)?;
            matchers = found;
            at = expr.len() - rest.len() + len;
        }
        out.push((expr[start..end].to_owned(), matchers));
    }
    Ok(out)
}

/// The problems with one selector: a series or label not exported, a value no sample has.
/// Regex matchers must be alternations of literal values (`a|b`); `$variables` are skipped.
fn check_selector(name: &str, matchers: &[Matcher], exported: &Exported) -> Vec<String> {
    let Some(labels) = exported.series.get(name) else {
        return vec![format!("{name} is not exported")];
    };
    let mut problems = Vec::new();
    for m in matchers
        .iter()
        .filter(|m| !SCRAPE_LABELS.contains(&m.label.as_str()))
    {
        let Some(values) = labels.get(&m.label) else {
            problems.push(format!("{name} has no label {}", m.label));
            continue;
        };
        if m.value.contains('$') {
            continue;
        }
        let literals: Vec<&str> = match m.op.contains('~') {
            true => m.value.split('|').collect(),
            false => vec![&m.value],
        };
        for value in literals.into_iter().filter(|v| !values.contains(*v)) {
            problems.push(format!(
                "{name}{{{}{}\"{}\"}}: no sample has {}=\"{value}\" (it has {values:?})",
                m.label, m.op, m.value, m.label
            ));
        }
    }
    problems
}

fn check_prometheus(dashboard: &Json, exported: &Exported) -> Vec<String> {
    let mut problems = check_shape(dashboard, "prometheus");
    let mut exprs = queries(dashboard, "expr", &mut problems);
    // Query variables (label_values(lanes_…, instance)) too.
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(query)) = (v["name"].as_str(), v["query"].as_str()) {
            exprs.push((format!("variable {name}"), query));
        }
    }
    for (title, expr) in &exprs {
        match selectors(expr) {
            Ok(found) => {
                for (name, matchers) in found {
                    let found = check_selector(&name, &matchers, exported);
                    problems.extend(found.into_iter().map(|p| format!("{title}: {p}")));
                }
            }
            Err(e) => problems.push(format!("{title}: {e}")),
        }
    }
    problems.extend(check_areas(&exprs, str::to_owned));
    problems
}

// ---------------------------------------------------------------- InfluxDB

/// What one InfluxQL SELECT reads.
#[derive(Debug)]
struct Select {
    measurement: String,
    /// Quoted names in the SELECT clause, aliases (`AS "p99"`) left out.
    fields: Vec<String>,
    /// `"tag" op 'value'` conditions of the WHERE clause.
    conditions: Vec<(String, String)>,
    /// Quoted tags of the GROUP BY clause.
    group_by: Vec<String>,
}

/// Every `"quoted"` name in `text`, with the text before it.
fn quoted(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut parts = text.split('"');
    let mut offset = 0;
    while let (Some(before), Some(name)) = (parts.next(), parts.next()) {
        offset += before.len() + 1;
        out.push((&text[..offset - 1], name));
        offset += name.len() + 1;
    }
    out
}

fn parse_influxql(query: &str) -> Result<Select, String> {
    let select = query
        .strip_prefix("SELECT ")
        .filter(|_| !query.contains(';'))
        .ok_or("not one SELECT statement")?;
    let (fields, rest) = select
        .split_once(" FROM \"")
        .ok_or("no FROM \"measurement\"")?;
    let (measurement, rest) = rest.split_once('"').ok_or("unclosed measurement")?;
    let (filter, group) = rest.split_once(" GROUP BY ").unwrap_or((rest, ""));
    let fields = quoted(fields)
        .into_iter()
        .filter(|(before, _)| !before.trim_end().to_ascii_uppercase().ends_with(" AS"))
        .map(|(_, name)| name.to_owned())
        .collect();
    let mut conditions = Vec::new();
    for (before, tag) in quoted(filter) {
        let after = filter[before.len() + tag.len() + 2..].trim_start();
        let value = after
            .trim_start_matches(['=', '!', '<', '>', '~'])
            .trim_start();
        if let Some((value, _)) = value.strip_prefix('\'').and_then(|v| v.split_once('\'')) {
            conditions.push((tag.to_owned(), value.to_owned()));
        }
    }
    Ok(Select {
        measurement: measurement.to_owned(),
        fields,
        conditions,
        group_by: quoted(group)
            .into_iter()
            .map(|(_, t)| t.to_owned())
            .collect(),
    })
}

fn check_select(select: &Select, exported: &Exported) -> Vec<String> {
    let name = &select.measurement;
    let Some(m) = exported.measurements.get(name) else {
        return vec![format!("measurement {name} is not written")];
    };
    let mut problems = Vec::new();
    for field in select.fields.iter().filter(|f| !m.fields.contains(*f)) {
        problems.push(format!(
            "{name} has no field {field:?} (it has {:?})",
            m.fields
        ));
    }
    let tags = select
        .conditions
        .iter()
        .map(|(t, _)| t)
        .chain(&select.group_by);
    for tag in tags.filter(|t| !m.tags.contains_key(*t)) {
        problems.push(format!("{name} has no tag {tag:?}"));
    }
    for (tag, value) in &select.conditions {
        let values = m.tags.get(tag);
        if !value.contains('$') && values.is_some_and(|v| !v.contains(value)) {
            problems.push(format!("{name}: no point has {tag}='{value}' ({values:?})"));
        }
    }
    problems
}

fn check_influxdb(dashboard: &Json, exported: &Exported) -> Vec<String> {
    let mut problems = check_shape(dashboard, "influxdb");
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if target["rawQuery"] != true {
                problems.push(format!("{}: not a raw InfluxQL query", panel["title"]));
            }
        }
    }
    let selects = queries(dashboard, "query", &mut problems);
    for (title, query) in &selects {
        match parse_influxql(query) {
            Ok(select) => problems.extend(
                check_select(&select, exported)
                    .into_iter()
                    .map(|p| format!("{title}: {p}")),
            ),
            Err(e) => problems.push(format!("{title}: {e}: {query}")),
        }
    }
    problems.extend(check_areas(&selects, |area| format!("FROM \"{area}\"")));
    problems
}

// ---------------------------------------------------------------- the tests

#[test]
fn the_prometheus_dashboard_queries_only_exported_series() {
    let problems = check_prometheus(&load("lanes-prometheus.json"), exported());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_influxdb_dashboard_queries_only_written_measurements_and_fields() {
    let problems = check_influxdb(&load("lanes-influxdb.json"), exported());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `problems` has one mentioning each of `expected`.
fn assert_reported(problems: &[String], expected: &[&str]) {
    for e in expected {
        assert!(problems.iter().any(|p| p.contains(e)), "{e}: {problems:#?}");
    }
}

#[test]
fn the_checker_reports_misspellings() {
    let exported = exported();
    let source = |kind: &str| json!({ "type": kind, "uid": "${datasource}" });
    let dashboard = |kind: &str, targets: Json| {
        json!({
            "uid": "broken", "title": "broken", "schemaVersion": 39,
            "templating": { "list": [{ "name": "datasource", "type": "datasource", "query": kind }] },
            "panels": [{ "type": "row", "title": "row", "collapsed": true, "panels": [{
                "type": "timeseries", "title": "typos", "datasource": source(kind), "targets": targets,
            }]}],
        })
    };
    let prometheus = dashboard(
        "prometheus",
        json!([
            { "datasource": source("prometheus"),
              "expr": "rate(lanes_mesages_received_total{core=\"all\"}[1m])" },
            { "datasource": source("prometheus"),
              "expr": "rate(lanes_connections_closed_total{core=\"all\", cause=~\"clean|slowconsumer\"}[1m])" },
            { "datasource": source("prometheus"),
              "expr": "histogram_quantile(0.99, rate(lanes_loop_lag_seconds_bucket{cores!=\"all\"}[1m]))" },
            { "datasource": source("prometheus"),
              "expr": "rate(lanes_ping_rtt_seconds{core=\"all\"}[1m])" },
        ]),
    );
    let problems = check_prometheus(&prometheus, exported);
    assert_reported(
        &problems,
        &[
            "lanes_mesages_received_total is not exported",
            "cause=\"slowconsumer\"",
            "has no label cores",
            // A histogram's own name is no series: only _bucket, _sum and _count are.
            "lanes_ping_rtt_seconds is not exported",
            "no panel queries lanes_buffered_bytes",
        ],
    );
    assert!(
        !problems.iter().any(|p| p.contains("has cause=\"clean\"")),
        "{problems:#?}"
    );

    let influxdb = dashboard(
        "influxdb",
        json!([
            { "datasource": source("influxdb"), "rawQuery": true,
              "query": "SELECT last(\"valeu\") AS \"value\" FROM \"lanes_connections_open\" WHERE \"core\" = 'all' AND $timeFilter GROUP BY time($__interval)" },
            { "datasource": source("influxdb"), "rawQuery": true,
              "query": "SELECT max(\"p99\") FROM \"lanes_loop_lag_seconds\" WHERE \"core\" != 'al' AND $timeFilter GROUP BY time($__interval), \"cor\"" },
            { "datasource": source("influxdb"), "rawQuery": true,
              "query": "SELECT last(\"value\") FROM \"lanes_conections_open\" WHERE $timeFilter" },
            { "datasource": source("prometheus"), "rawQuery": true,
              "query": "SELECT max(\"p95\") FROM \"lanes_load_latency_seconds\" WHERE $timeFilter" },
        ]),
    );
    let problems = check_influxdb(&influxdb, exported);
    assert_reported(
        &problems,
        &[
            "lanes_connections_open has no field \"valeu\"",
            "core='al'",
            "has no tag \"cor\"",
            "measurement lanes_conections_open is not written",
            "lanes_load_latency_seconds has no field \"p95\"",
            "a data source other than",
            "no panel queries lanes_bytes_sent_total",
        ],
    );
    assert!(
        !problems.iter().any(|p| p.contains("no field \"p99\"")),
        "{problems:#?}"
    );
}

/// One name misspelt in the real dashboards is found.
#[test]
fn a_misspelling_in_the_real_dashboards_is_found() {
    for (file, check) in [
        (
            "lanes-prometheus.json",
            check_prometheus as fn(&Json, &Exported) -> Vec<String>,
        ),
        ("lanes-influxdb.json", check_influxdb),
    ] {
        let text = load(file).to_string();
        assert!(text.contains("lanes_bytes_sent_total"), "{file}");
        let broken = text.replacen("lanes_bytes_sent_total", "lanes_bytes_send_total", 1);
        let problems = check(&serde_json::from_str(&broken).unwrap(), exported());
        assert_reported(&problems, &["lanes_bytes_send_total"]);
    }
}
