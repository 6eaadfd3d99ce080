//! `lanes-load`: see the crate documentation and `lanes-load --help`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool reports on its terminal

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use lanes_load::args::{Args, DEFAULT_FANOUT_RATE, Deflate, Kind, Mode, Source};
use lanes_load::connect::{ConnectResult, open_idle, run_connect_thread};
use lanes_load::cpu::{CpuTimes, machine_cpu_times, pin, process_cpu_time, process_cpu_times};
use lanes_load::deflate::describe;
use lanes_load::echo::{EchoPlan, EchoResult, run_echo_thread};
use lanes_load::fanout::{FanoutPlan, run_fanout_metered};
use lanes_load::game::{GamePlan, run_game};
use lanes_load::memory::process_rss_kib;
use lanes_load::metrics::{Exporters, LoadMetrics, METRICS_PATH};
use lanes_load::report::{grouped, percentiles_us};
use lanes_load::rlimit::raise_nofile_limit;
use lanes_load::tls::Tls;
use serde_json::{Value, json};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Mode::Fanout {
        rate: Some(_),
        source: Source::Server,
        ..
    } = args.mode
    {
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--rate sets lanes-load's own publisher (--source client); with --source server \
                 the server sets the rate (examples/ticker --rate)",
            )
            .exit();
    }
    // Thousands of connections need more descriptors than the usual soft limit.
    if let Err(e) = raise_nofile_limit() {
        eprintln!("lanes-load: {e}; going on with the current limit");
    }
    let tls = match args
        .tls_options()
        .map(|options| Tls::new(&options))
        .transpose()
    {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("lanes-load: {message}");
            return ExitCode::from(1);
        }
    };
    let tls = tls.as_ref();
    let result = match args.mode.clone() {
        Mode::Echo {
            connections,
            depth,
            size,
            kind,
            deflate,
            rate,
        } => echo(
            &args,
            tls,
            EchoLoad {
                connections,
                depth,
                size: size as usize,
                kind,
                deflate,
                rate,
            },
        ),
        Mode::Connect { concurrency } => connect(&args, tls, concurrency),
        Mode::Idle { connections } => idle(&args, tls, connections),
        Mode::Fanout {
            subscribers,
            rate,
            source,
            ref spread,
        } => fanout(&args, tls, subscribers, rate, source, spread),
        Mode::Game {
            players,
            rooms,
            inputs_per_s,
        } => game(&args, tls, players, rooms, inputs_per_s),
    };
    match result {
        Ok(clean) if clean => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(message) => {
            eprintln!("lanes-load: {message}");
            ExitCode::from(1)
        }
    }
}

/// The run's TLS options for the JSON output (null: plain TCP).
fn tls_json(args: &Args) -> Value {
    args.tls_options()
        .map_or(Value::Null, |options| options.to_json())
}

/// The summary line about TLS, if it is on.
fn print_tls(args: &Args) {
    if let Some(options) = args.tls_options() {
        println!("  tls        : {}", options.describe());
    }
}

/// Starts exporting `metrics` as `--influx` and `--prometheus-port` ask.
fn start_exporters(args: &Args, metrics: &Arc<LoadMetrics>) -> Result<Exporters, String> {
    let exporters = Exporters::start(metrics, args.influx_config(), args.prometheus_port)?;
    if let Some(addr) = exporters.metrics_addr()
        && !args.quiet
    {
        eprintln!("lanes-load: metrics at http://{addr}{METRICS_PATH} for the run");
    }
    Ok(exporters)
}

/// Ends the export once the load threads are done, before the summary: the `/metrics` server
/// stops, and the InfluxDB reporter writes the final counts and stops.
fn finish_exporters(exporters: Exporters) {
    if let Some(warning) = exporters.finish() {
        eprintln!("lanes-load: {warning}");
    }
}

/// A live progress line on stderr while `done` counts up; `total` is the run's length.
fn progress_line(args: &Args, label: &str) -> Option<ProgressBar> {
    if args.quiet || args.json {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    Some(bar)
}

/// Waits for `threads`, updating the progress line with the rate of `counter`.
fn watch<T>(
    threads: Vec<JoinHandle<T>>,
    counter: &AtomicU64,
    bar: Option<&ProgressBar>,
    unit: &str,
) -> Vec<Option<T>> {
    let mut last = (Instant::now(), 0u64);
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(bar) = bar {
            let now = Instant::now();
            let count = counter.load(Ordering::Relaxed);
            let rate = (count - last.1) as f64 / (now - last.0).as_secs_f64();
            bar.set_message(format!(
                "{} {unit}/s, {} total",
                grouped(rate),
                grouped(count as f64)
            ));
            last = (now, count);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    threads.into_iter().map(|t| t.join().ok()).collect()
}

/// What the sampler read over the measured window.
struct Sampled {
    server_cpu: Option<Duration>,
    client_cpu: Duration,
    /// What the rest of the machine used: its busy time less the server's (when known) and
    /// ours; `user` is the user-mode part, near zero when nothing else runs.
    other_cpu: CpuTimes,
    server_rss_kib: Option<u64>,
}

/// The wire bytes per payload byte, when any payload was counted.
fn ratio(wire: u64, payload: u64) -> Option<f64> {
    (payload > 0).then(|| wire as f64 / payload as f64)
}

/// The echo mode's own options.
struct EchoLoad {
    connections: u32,
    depth: u32,
    size: usize,
    kind: Kind,
    deflate: Deflate,
    /// Open loop: messages per second in total.
    rate: Option<u32>,
}

fn echo(args: &Args, tls: Option<&Tls>, load: EchoLoad) -> Result<bool, String> {
    let EchoLoad {
        connections,
        depth,
        size,
        kind,
        deflate,
        rate: open_rate,
    } = load;
    let threads = u32::from(args.threads).min(connections);
    let metrics = Arc::new(LoadMetrics::new(threads as usize));
    let exporters = start_exporters(args, &metrics)?;
    // The client threads and this one meet once every connection is up.
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let failed = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    // Set once the server's memory is read; the client threads hold their connections till then.
    let released = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for thread in 0..threads {
        // Spread the connections as evenly as possible.
        let share = connections / threads + u32::from(thread < connections % threads);
        let plan = EchoPlan {
            addr: args.addr,
            tls: tls.cloned(),
            connections: share,
            depth,
            size,
            kind,
            deflate,
            warmup: args.warmup,
            duration: args.duration,
            thread: thread as usize,
            // Each thread's share of the rate is its share of the connections.
            rate: open_rate.map(|r| f64::from(r) * f64::from(share) / f64::from(connections)),
        };
        let (start, failed, progress, released, cores, metrics) = (
            Arc::clone(&start),
            Arc::clone(&failed),
            Arc::clone(&progress),
            Arc::clone(&released),
            args.cores.clone(),
            Arc::clone(&metrics),
        );
        handles.push(std::thread::spawn(move || {
            pin(&cores, thread as usize);
            let metrics = metrics.thread(thread as usize);
            run_echo_thread(&plan, &start, &progress, &failed, &released, metrics)
        }));
    }
    let bar = progress_line(args, "connecting");
    start.wait();
    // CPU time of the server (when its PID is given) and of this client over the measured
    // window, sampled at its start and end; the server's memory at the end, connections open.
    let sampler = {
        let (warmup, duration, server) = (args.warmup, args.duration, args.server_pid);
        let released = Arc::clone(&released);
        let me = std::process::id();
        std::thread::spawn(move || {
            let sampled = (|| {
                std::thread::sleep(warmup);
                let server_before = server.map(process_cpu_times).transpose()?;
                let me_before = process_cpu_times(me)?;
                let machine_before = machine_cpu_times()?;
                std::thread::sleep(duration);
                let server_after = server.map(process_cpu_times).transpose()?;
                let me_after = process_cpu_times(me)?;
                let machine_after = machine_cpu_times()?;
                let server_rss_kib = server.map(process_rss_kib).transpose()?;
                let server_cpu = server_after.zip(server_before).map(|(a, b)| a.since(b));
                let client_cpu = me_after.since(me_before);
                let machine = machine_after.since(machine_before);
                let server_or_zero = server_cpu.unwrap_or_default();
                Ok::<_, String>(Sampled {
                    server_cpu: server_cpu.map(|c| c.total),
                    client_cpu: client_cpu.total,
                    other_cpu: CpuTimes {
                        user: machine
                            .user
                            .saturating_sub(client_cpu.user)
                            .saturating_sub(server_or_zero.user),
                        total: machine
                            .total
                            .saturating_sub(client_cpu.total)
                            .saturating_sub(server_or_zero.total),
                    },
                    server_rss_kib,
                })
            })();
            released.store(true, Ordering::Release);
            sampled
        })
    };
    let results = watch(handles, &progress, bar.as_ref(), "msg");
    // Every connection is closed: the final counts go out before the summary.
    finish_exporters(exporters);
    let Sampled {
        server_cpu,
        client_cpu,
        other_cpu,
        server_rss_kib,
    } = match sampler.join() {
        Ok(Ok(sampled)) => sampled,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("the CPU sampler panicked".into()),
    };
    let mut total = EchoResult::empty();
    for result in results {
        match result {
            Some(Ok(r)) => total.merge(&r),
            Some(Err(e)) => return Err(e),
            None => return Err("a client thread panicked".into()),
        }
    }
    let seconds = args.duration.as_secs_f64();
    let rate = total.messages as f64 / seconds;
    let mbps = total.bytes as f64 / seconds / 1e6;
    let latency = percentiles_us(&total.latency_ns);
    let server_cpu_s = server_cpu.map(|c| c.as_secs_f64());
    let per_cpu_s = server_cpu_s
        .filter(|c| *c > 0.0)
        .map(|c| total.messages as f64 / c);
    let client_cpu_s = client_cpu.as_secs_f64();
    let per_client_cpu_s = (client_cpu_s > 0.0).then(|| total.messages as f64 / client_cpu_s);
    let ratio_sent = ratio(total.wire_bytes_sent, total.payload_bytes_sent);
    let ratio_received = ratio(total.wire_bytes_received, total.bytes);
    // Open loop: what was asked, what went out, and whether the schedule held.
    let open_loop = open_rate.map(|offered| {
        let schedule = lanes_load::schedule::Schedule::new(f64::from(offered) / f64::from(threads));
        let kept = lanes_load::schedule::kept(&schedule, total.max_send_lag);
        json!({
            "offered_per_s": offered,
            "sent_per_s": total.sent as f64 / seconds,
            "max_send_lag_us": total.max_send_lag.as_secs_f64() * 1e6,
            "schedule_kept": kept,
        })
    });
    if args.json {
        let params = total.deflate_params.map(|p| {
            json!({
                "server_no_context_takeover": p.server_no_context_takeover,
                "client_no_context_takeover": p.client_no_context_takeover,
                "server_max_window_bits": p.server_max_window_bits,
                "client_max_window_bits": p.client_max_window_bits,
            })
        });
        let object = json!({
            "mode": "echo",
            "addr": args.addr.to_string(),
            "tls": tls_json(args),
            "threads": threads,
            "connections": connections,
            "depth": depth,
            "size": size,
            "kind": if kind == Kind::Text { "text" } else { "binary" },
            "deflate": deflate.name(),
            "deflate_params": params,
            "warmup_s": args.warmup.as_secs_f64(),
            "duration_s": seconds,
            "messages": total.messages,
            "messages_per_s": rate,
            "mb_per_s": mbps,
            "payload_bytes_received": total.bytes,
            "wire_bytes_received": total.wire_bytes_received,
            "compressed_received": total.compressed_received,
            "sent": total.sent,
            "sent_total": total.sent_total,
            "payload_bytes_sent": total.payload_bytes_sent,
            "wire_bytes_sent": total.wire_bytes_sent,
            "compressed_sent": total.compressed_sent,
            "wire_ratio_sent": ratio_sent,
            "wire_ratio_received": ratio_received,
            "latency_us": latency,
            "open_loop": open_loop,
            "echo_check": "full",
            "server_cpu_s": server_cpu_s,
            "messages_per_server_cpu_s": per_cpu_s,
            "client_cpu_s": client_cpu_s,
            "messages_per_client_cpu_s": per_client_cpu_s,
            "other_cpu_s": other_cpu.total.as_secs_f64(),
            "other_user_cpu_s": other_cpu.user.as_secs_f64(),
            "server_rss_kib": server_rss_kib,
            "errors": total.errors,
            "first_error": total.first_error,
        });
        println!("{object}");
    } else {
        println!(
            "echo {connections} conns x depth {depth} x {size} B ({}), {threads} thread(s), {:.1} s measured",
            if kind == Kind::Text { "text" } else { "binary" },
            seconds
        );
        print_tls(args);
        println!("  messages/s : {}", grouped(rate));
        if let Some(open) = &open_loop {
            println!(
                "  open loop  : {} offered/s, {} sent/s, latest send {:.0} us after due{}",
                open["offered_per_s"],
                grouped(open["sent_per_s"].as_f64().unwrap_or(0.0)),
                open["max_send_lag_us"].as_f64().unwrap_or(0.0),
                if open["schedule_kept"] == true {
                    ""
                } else {
                    " (SCHEDULE NOT KEPT: the client offered less than asked)"
                }
            );
        }
        println!("  MB/s       : {mbps:.1} (payload, uncompressed)");
        println!(
            "  sent       : {} in the window, {} in all (warm-up and the end of the run included)",
            grouped(total.sent as f64),
            grouped(total.sent_total as f64)
        );
        match &total.deflate_params {
            Some(params) => {
                println!(
                    "  deflate    : {} offered; agreed {}",
                    deflate.name(),
                    describe(params)
                );
                let show = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.3}", r));
                println!(
                    "  wire bytes : sent {} of {} payload ({} wire/payload, {} of {} messages compressed)",
                    grouped(total.wire_bytes_sent as f64),
                    grouped(total.payload_bytes_sent as f64),
                    show(ratio_sent),
                    grouped(total.compressed_sent as f64),
                    grouped(total.sent as f64)
                );
                println!(
                    "               received {} of {} payload ({} wire/payload, {} of {} echoes compressed)",
                    grouped(total.wire_bytes_received as f64),
                    grouped(total.bytes as f64),
                    show(ratio_received),
                    grouped(total.compressed_received as f64),
                    grouped(total.messages as f64)
                );
            }
            None => println!("  deflate    : off (no offer)"),
        }
        println!(
            "  latency us : p50 {} p90 {} p99 {} p99.9 {} p99.99 {} max {}{}",
            latency["p50"],
            latency["p90"],
            latency["p99"],
            latency["p99_9"],
            latency["p99_99"],
            latency["max"],
            if open_loop.is_some() {
                " (from when each message was due)"
            } else {
                ""
            }
        );
        if let (Some(cpu), Some(per)) = (server_cpu_s, per_cpu_s) {
            println!(
                "  server CPU : {cpu:.2} s, {} messages per server CPU-second",
                grouped(per)
            );
        }
        if let Some(per) = per_client_cpu_s {
            println!(
                "  client CPU : {client_cpu_s:.2} s, {} messages per client CPU-second (the client's own limit)",
                grouped(per)
            );
        }
        println!(
            "  others CPU : {:.2} s, {:.2} s of it in user mode (the rest of the machine in the \
             window; kernel network work included, other programs in user mode)",
            other_cpu.total.as_secs_f64(),
            other_cpu.user.as_secs_f64()
        );
        if let Some(rss) = server_rss_kib {
            println!(
                "  server RSS : {} KiB at the end of the window, connections open",
                grouped(rss as f64)
            );
        }
        println!("  checked    : every echo, in full (length, sequence, content)");
        println!("  errors     : {}", total.errors);
        if let Some(first) = &total.first_error {
            println!("  first error: {first}");
        }
    }
    let kept = open_loop.is_none_or(|open| open["schedule_kept"] == true);
    Ok(total.errors == 0 && kept)
}

fn connect(args: &Args, tls: Option<&Tls>, concurrency: u32) -> Result<bool, String> {
    let threads = concurrency.max(1);
    let metrics = Arc::new(LoadMetrics::new(threads as usize));
    let exporters = start_exporters(args, &metrics)?;
    let progress = Arc::new(AtomicU64::new(0));
    let warm_end = Instant::now() + args.warmup;
    let end = warm_end + args.duration;
    let mut handles = Vec::new();
    for thread in 0..threads {
        let (addr, progress, cores, metrics) = (
            args.addr,
            Arc::clone(&progress),
            args.cores.clone(),
            Arc::clone(&metrics),
        );
        // One session cache per thread, kept from the warm-up into the measured run.
        let tls = tls.map(Tls::for_thread);
        handles.push(std::thread::spawn(move || {
            pin(&cores, thread as usize);
            let metrics = metrics.thread(thread as usize);
            let tls = tls.as_ref();
            // Warm-up handshakes are not counted (but are in the live metrics).
            let _ = run_connect_thread(
                addr,
                tls,
                thread as usize,
                warm_end,
                &AtomicU64::new(0),
                metrics,
            );
            run_connect_thread(addr, tls, thread as usize, end, &progress, metrics)
        }));
    }
    // The server's CPU time over the measured window (when its PID is given).
    let server_cpu = args.server_pid.map(|pid| {
        std::thread::spawn(move || {
            std::thread::sleep(warm_end.saturating_duration_since(Instant::now()));
            let before = process_cpu_time(pid).ok()?;
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            Some(process_cpu_time(pid).ok()?.saturating_sub(before))
        })
    });
    let bar = progress_line(args, "handshaking");
    let results = watch(handles, &progress, bar.as_ref(), "handshakes");
    let server_cpu_s = server_cpu
        .and_then(|sampler| sampler.join().ok().flatten())
        .map(|cpu| cpu.as_secs_f64());
    finish_exporters(exporters);
    let mut total = ConnectResult::default();
    for result in results.into_iter().flatten() {
        total.merge(&result);
    }
    let ConnectResult {
        done,
        tls_resumed,
        errors,
        first_error: first,
    } = total;
    let rate = done as f64 / args.duration.as_secs_f64();
    let per_server_cpu_s = server_cpu_s
        .filter(|cpu| *cpu > 0.0)
        .map(|cpu| done as f64 / cpu);
    let first_error = first.clone();
    if args.json {
        println!(
            "{}",
            json!({"mode": "connect", "addr": args.addr.to_string(), "tls": tls_json(args),
                   "concurrency": threads,
                   "duration_s": args.duration.as_secs_f64(), "handshakes": done,
                   "handshakes_per_s": rate, "tls_resumed": tls.map(|_| tls_resumed),
                   "server_cpu_s": server_cpu_s,
                   "handshakes_per_server_cpu_s": per_server_cpu_s,
                   "errors": errors, "first_error": first})
        );
    } else {
        println!(
            "connect: {} handshakes/s ({done} in {:.1} s, {threads} at a time), errors {errors}",
            grouped(rate),
            args.duration.as_secs_f64()
        );
        if let Some(per) = per_server_cpu_s {
            println!("  {} handshakes per server CPU-second", grouped(per));
        }
        if tls.is_some() {
            print_tls(args);
            println!("  resumed    : {tls_resumed} of {done} TLS handshakes");
        }
        if let Some(first) = first {
            println!("  first error: {first}");
        }
    }
    if done == 0 {
        let why = first_error.unwrap_or_else(|| "no attempt finished in time".into());
        return Err(format!("no handshake completed with {}: {why}", args.addr));
    }
    Ok(errors == 0)
}

fn idle(args: &Args, tls: Option<&Tls>, connections: u32) -> Result<bool, String> {
    let metrics = Arc::new(LoadMetrics::new(1));
    let exporters = start_exporters(args, &metrics)?;
    let progress = AtomicU64::new(0);
    let bar = progress_line(args, "opening");
    let started = Instant::now();
    let conns = open_idle(args.addr, tls, connections, &progress, metrics.thread(0))?;
    let opened_in = started.elapsed();
    if let Some(bar) = &bar {
        bar.set_message(format!("holding {} connections", conns.len()));
    }
    // Marker line for scripts: the connections are open; read the server's memory now.
    if !args.json {
        eprintln!("lanes-load: {} connections open", conns.len());
    }
    std::thread::sleep(args.duration);
    // The server's memory with every connection still open.
    let server_rss_kib = args.server_pid.map(process_rss_kib).transpose()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let held = conns.len();
    drop(conns);
    metrics.thread(0).set_connections_open(0);
    finish_exporters(exporters);
    if args.json {
        println!(
            "{}",
            json!({"mode": "idle", "addr": args.addr.to_string(), "tls": tls_json(args),
                   "connections": held,
                   "open_s": opened_in.as_secs_f64(), "held_s": args.duration.as_secs_f64(),
                   "server_rss_kib": server_rss_kib})
        );
    } else {
        println!(
            "idle: held {} connections for {:.1} s (opened in {:.2} s)",
            held,
            args.duration.as_secs_f64(),
            opened_in.as_secs_f64()
        );
        print_tls(args);
        if let Some(rss) = server_rss_kib {
            println!(
                "  server RSS : {} KiB at the end, connections open",
                grouped(rss as f64)
            );
        }
    }
    Ok(true)
}

fn game(
    args: &Args,
    tls: Option<&Tls>,
    players: u32,
    rooms: u32,
    inputs_per_s: u32,
) -> Result<bool, String> {
    let plan = GamePlan {
        addr: args.addr,
        tls: tls.cloned(),
        players,
        rooms,
        inputs_per_s,
        warmup: args.warmup,
        duration: args.duration,
        server_pid: args.server_pid,
    };
    let metrics = Arc::new(LoadMetrics::new(1));
    let exporters = start_exporters(args, &metrics)?;
    let cores = args.cores.clone();
    let runner = {
        let metrics = Arc::clone(&metrics);
        std::thread::spawn(move || {
            pin(&cores, 0);
            run_game(&plan, metrics.thread(0))
        })
    };
    let bar = progress_line(args, "playing");
    let result = watch(vec![runner], &AtomicU64::new(0), bar.as_ref(), "states").pop();
    finish_exporters(exporters);
    let result = match result {
        Some(Some(result)) => result?,
        _ => return Err("the game run panicked".into()),
    };
    let seconds = args.duration.as_secs_f64();
    let interval = percentiles_us(&result.interval_ns);
    let server_cpu_s = result.server_cpu.map(|c| c.as_secs_f64());
    let client_cpu_s = result.client_cpu.as_secs_f64();
    let clean = result.states > 0 && result.disconnected == 0 && result.silent == 0;
    if args.json {
        println!(
            "{}",
            json!({"mode": "game", "addr": args.addr.to_string(), "tls": tls_json(args),
                   "players": players, "rooms": rooms, "inputs_per_s": inputs_per_s,
                   "warmup_s": args.warmup.as_secs_f64(), "duration_s": seconds,
                   "connect_s": result.connect_time.as_secs_f64(),
                   "states": result.states, "states_per_s": result.states as f64 / seconds,
                   "inputs": result.inputs, "inputs_per_s_sent": result.inputs as f64 / seconds,
                   "state_interval_us": interval,
                   "disconnected": result.disconnected, "silent": result.silent,
                   "server_cpu_s": server_cpu_s,
                   "server_cores": server_cpu_s.map(|c| c / seconds),
                   "client_cpu_s": client_cpu_s})
        );
    } else {
        println!(
            "game {players} players in {rooms} rooms, {inputs_per_s} inputs/s each, {seconds:.1} s measured"
        );
        println!(
            "  connected in  : {:.2} s",
            result.connect_time.as_secs_f64()
        );
        println!(
            "  states/s      : {} ({} inputs/s sent)",
            grouped(result.states as f64 / seconds),
            grouped(result.inputs as f64 / seconds)
        );
        println!(
            "  interval us   : p50 {} p90 {} p99 {} p99.9 {} max {}",
            interval["p50"], interval["p90"], interval["p99"], interval["p99_9"], interval["max"]
        );
        if let Some(cpu) = server_cpu_s {
            println!(
                "  server CPU    : {cpu:.2} s ({:.1}% of a core)",
                100.0 * cpu / seconds
            );
        }
        println!("  client CPU    : {client_cpu_s:.2} s");
        println!(
            "  disconnected  : {}, players without a state: {}",
            result.disconnected, result.silent
        );
    }
    Ok(clean)
}

fn fanout(
    args: &Args,
    tls: Option<&Tls>,
    subscribers: u32,
    rate: Option<u32>,
    source: Source,
    spread: &[std::net::SocketAddr],
) -> Result<bool, String> {
    let publish_rate = match source {
        Source::Client => Some(rate.unwrap_or(DEFAULT_FANOUT_RATE)),
        Source::Server => None,
    };
    let plan = FanoutPlan {
        tls: tls.cloned(),
        threads: u32::from(args.threads),
        cores: args.cores.clone(),
        server_pid: args.server_pid,
        spread: spread.to_vec(),
        ..FanoutPlan::new(
            args.addr,
            subscribers,
            publish_rate,
            args.warmup,
            args.duration,
        )
    };
    let threads = plan.threads.clamp(1, subscribers);
    let metrics = Arc::new(LoadMetrics::new(threads as usize));
    let exporters = start_exporters(args, &metrics)?;
    let progress = Arc::new(AtomicU64::new(0));
    let bar = progress_line(args, "connecting subscribers");
    let runner = {
        let (progress, metrics) = (Arc::clone(&progress), Arc::clone(&metrics));
        std::thread::spawn(move || run_fanout_metered(&plan, &progress, &metrics))
    };
    let result = watch(vec![runner], &progress, bar.as_ref(), "deliveries").pop();
    finish_exporters(exporters);
    let result = match result {
        Some(Some(result)) => result?,
        _ => return Err("the fanout run panicked".into()),
    };
    let seconds = args.duration.as_secs_f64();
    let deliveries_per_s = result.deliveries as f64 / seconds;
    let latency = percentiles_us(&result.latency_ns);
    let server_cpu_s = result.server_cpu.map(|c| c.as_secs_f64());
    let per_server_cpu_s = server_cpu_s
        .filter(|c| *c > 0.0)
        .map(|c| result.deliveries as f64 / c);
    let client_cpu_s = result.client_cpu.as_secs_f64();
    let per_client_cpu_s = (client_cpu_s > 0.0).then(|| result.deliveries as f64 / client_cpu_s);
    let clean = result.deliveries > 0
        && result.missed == 0
        && result.out_of_order == 0
        && result.malformed == 0
        && result.disconnected == 0
        && result.silent == 0;
    if args.json {
        println!(
            "{}",
            json!({"mode": "fanout", "source": source.name(), "addr": args.addr.to_string(),
                   "tls": tls_json(args),
                   "threads": threads, "subscribers": subscribers, "rate": publish_rate,
                   "warmup_s": args.warmup.as_secs_f64(), "duration_s": seconds,
                   "connect_s": result.connect_time.as_secs_f64(),
                   "published": result.published,
                   "published_per_s": result.published as f64 / seconds,
                   "deliveries": result.deliveries, "deliveries_per_s": deliveries_per_s,
                   "latency_us": latency, "missed": result.missed,
                   "out_of_order": result.out_of_order, "malformed": result.malformed,
                   "disconnected": result.disconnected, "silent": result.silent,
                   "server_cpu_s": server_cpu_s,
                   "deliveries_per_server_cpu_s": per_server_cpu_s,
                   "client_cpu_s": client_cpu_s,
                   "deliveries_per_client_cpu_s": per_client_cpu_s,
                   "server_rss_kib": result.server_rss_kib})
        );
    } else {
        match publish_rate {
            Some(rate) => println!(
                "fanout {subscribers} subscribers x {rate} msg/s published by lanes-load, \
                 {threads} thread(s), {seconds:.1} s measured"
            ),
            None => println!(
                "fanout {subscribers} subscribers, published by the server, {threads} thread(s), \
                 {seconds:.1} s measured"
            ),
        }
        println!(
            "  connected in  : {:.2} s",
            result.connect_time.as_secs_f64()
        );
        if let Some(options) = args.tls_options() {
            println!("  tls           : {}", options.describe());
        }
        let published_what = match source {
            Source::Client => "sent by lanes-load in the window",
            Source::Server => "distinct sequence numbers received, sent in the window",
        };
        println!(
            "  published     : {} ({}/s; {published_what})",
            result.published,
            grouped(result.published as f64 / seconds)
        );
        println!("  deliveries/s  : {}", grouped(deliveries_per_s));
        println!(
            "  latency us    : p50 {} p90 {} p99 {} p99.9 {} max {}",
            latency["p50"], latency["p90"], latency["p99"], latency["p99_9"], latency["max"]
        );
        if let (Some(cpu), Some(per)) = (server_cpu_s, per_server_cpu_s) {
            println!(
                "  server CPU    : {cpu:.2} s, {} deliveries per server CPU-second",
                grouped(per)
            );
        }
        if let Some(per) = per_client_cpu_s {
            println!(
                "  client CPU    : {client_cpu_s:.2} s, {} deliveries per client CPU-second (the client's own limit)",
                grouped(per)
            );
        }
        if let Some(rss) = result.server_rss_kib {
            println!(
                "  server RSS    : {} KiB at the end of the window",
                grouped(rss as f64)
            );
        }
        println!(
            "  missed {} out of order {} malformed {} disconnected {} silent {}",
            result.missed,
            result.out_of_order,
            result.malformed,
            result.disconnected,
            result.silent
        );
        if result.deliveries == 0 && source == Source::Server {
            println!("  no delivery in the window: does the server publish to its connections?");
        }
    }
    Ok(clean)
}
