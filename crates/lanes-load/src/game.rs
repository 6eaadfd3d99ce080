//! The game mode, for examples/game: P players in R rooms, each sending `move 1 0` at a fixed
//! rate while the server steps every room and sends each player its room's state (20 Hz in
//! examples/game). What it measures is the server's cadence as the players see it: the time
//! between two consecutive states a player receives (p50, p99, max over every player), the
//! states per second, and the server's CPU.
//!
//! Player `i` joins room `r{i % R}` as `p{i}` with the token `t-p{i}` (the rule of
//! examples/game's stand-in login service). Every player is connected before the window; its
//! inputs are spread evenly over the input interval. One client thread with its own mio loop;
//! an interval counts when both of its states arrived in the measured window.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lanes_proto::OpCode;
use lanes_proto::assembler::DEFAULT_MAX_MESSAGE_LEN;
use lanes_proto::deflate::InflateScratch;
use lanes_proto::session::{Connection, Event};
use mio::{Events, Interest, Poll, Token};

use crate::client::{Wire, push_frame, session_config, start_upgrade_to};
use crate::cpu::process_cpu_time;
use crate::echo::new_histogram;
use crate::metrics::ThreadMetrics;
use crate::rng::Rng;
use crate::tls::Tls;
use crate::transport::Transport;

/// Players whose upgrade requests are sent before the first response is read.
const CONNECT_BATCH: u32 = 128;

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// The input every player sends.
const INPUT: &[u8] = b"move 1 0";

/// What to run.
#[derive(Debug, Clone)]
pub struct GamePlan {
    /// The game server.
    pub addr: SocketAddr,
    /// TLS, for `wss://`.
    pub tls: Option<Tls>,
    /// Players to connect.
    pub players: u32,
    /// Rooms they are spread over.
    pub rooms: u32,
    /// Inputs each player sends per second.
    pub inputs_per_s: u32,
    /// Time after every player connected before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// The server's process, whose CPU time is read over the window.
    pub server_pid: Option<u32>,
}

/// What a run came to.
#[derive(Debug)]
pub struct GameResult {
    /// Time to connect every player (their logins included).
    pub connect_time: Duration,
    /// States received in the window.
    pub states: u64,
    /// Inputs sent in the window.
    pub inputs: u64,
    /// Time between two consecutive states of one player, in nanoseconds.
    pub interval_ns: Histogram<u64>,
    /// Players whose connection ended before the run did.
    pub disconnected: u64,
    /// Players that received no state in the window.
    pub silent: u64,
    /// The server's CPU time over the window (with `server_pid`).
    pub server_cpu: Option<Duration>,
    /// This process's CPU time over the window.
    pub client_cpu: Duration,
}

struct Player {
    stream: Transport,
    session: Connection,
    /// Bytes that came with the upgrade response (the welcome, maybe a state).
    early: Vec<u8>,
    /// When the last state arrived.
    last_state: Option<Instant>,
    states_in_window: u64,
    next_input: Instant,
    alive: bool,
}

/// Connects every player: room `r{i % rooms}`, name `p{i}`, token `t-p{i}`.
fn connect_players(plan: &GamePlan, poll: &Poll, rng: &mut Rng) -> Result<Vec<Player>, String> {
    let tls = plan.tls.as_ref().map(Tls::for_thread);
    let mut players = Vec::with_capacity(plan.players as usize);
    let now = Instant::now();
    for batch_start in (0..plan.players).step_by(CONNECT_BATCH as usize) {
        let mut pending = Vec::new();
        for i in batch_start..plan.players.min(batch_start + CONNECT_BATCH) {
            let path = format!(
                "/play?room=r{}&name=p{i}&token=t-p{i}",
                i % plan.rooms.max(1)
            );
            pending.push(start_upgrade_to(plan.addr, tls.as_ref(), rng, None, &path)?);
        }
        for upgrade in pending {
            let (blocking, mut early) = upgrade.finish()?;
            let (mut stream, buffered) = blocking.into_transport().map_err(|e| e.to_string())?;
            early.extend_from_slice(&buffered);
            poll.registry()
                .register(stream.source(), Token(players.len()), Interest::READABLE)
                .map_err(|e| e.to_string())?;
            players.push(Player {
                stream,
                session: Connection::new(session_config(DEFAULT_MAX_MESSAGE_LEN), 0),
                early,
                last_state: None,
                states_in_window: 0,
                next_input: now,
                alive: true,
            });
        }
    }
    Ok(players)
}

/// Runs the plan on this thread; `metrics` gets the live counts.
pub fn run_game(plan: &GamePlan, metrics: &ThreadMetrics) -> Result<GameResult, String> {
    let mut rng = Rng::new(7);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let connecting = Instant::now();
    let mut players = connect_players(plan, &poll, &mut rng)?;
    metrics.connections_opened(players.len() as u64);
    let connect_time = connecting.elapsed();
    let began = Instant::now();
    let window_start = began + plan.warmup;
    let window_end = window_start + plan.duration;
    let interval = Duration::from_secs_f64(1.0 / f64::from(plan.inputs_per_s.max(1)));
    let count = players.len().max(1) as u32;
    for (i, player) in players.iter_mut().enumerate() {
        player.next_input = began + interval * i as u32 / count;
    }
    let mut result = GameResult {
        connect_time,
        states: 0,
        inputs: 0,
        interval_ns: new_histogram(),
        disconnected: 0,
        silent: 0,
        server_cpu: None,
        client_cpu: Duration::ZERO,
    };
    let mut inflate = InflateScratch::new(0);
    let mut window = Window {
        start: window_start,
        end: window_end,
    };
    for player in &mut players {
        let mut early = std::mem::take(&mut player.early);
        if !player.take_frames(
            &mut early,
            Instant::now(),
            &mut window,
            &mut inflate,
            &mut result,
            &mut rng,
            metrics,
        ) {
            player.alive = false;
        }
    }
    let mut cpu_before = None;
    let mut out = Vec::with_capacity(64);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        if cpu_before.is_none() && now >= window_start {
            let server = plan.server_pid.map(process_cpu_time).transpose()?;
            cpu_before = Some((server, process_cpu_time(std::process::id())?));
        }
        // Inputs that are due.
        let mut next_due = window_end;
        for player in players.iter_mut().filter(|p| p.alive) {
            while player.next_input <= now {
                out.clear();
                push_frame(&mut out, OpCode::Text, INPUT.len(), rng.key(), |o| {
                    o.extend_from_slice(INPUT)
                });
                match player.stream.write(&out) {
                    Ok(n) if n == out.len() => {
                        metrics.add_messages_sent(1);
                        metrics.add_bytes_sent(n as u64);
                        if player.next_input >= window_start {
                            result.inputs += 1;
                        }
                    }
                    // A full socket (a server that stopped reading): the input is lost.
                    Ok(_) | Err(_) => metrics.add_errors(1),
                }
                let _ = player.stream.send_pending();
                player.next_input += interval;
            }
            next_due = next_due.min(player.next_input);
        }
        let wait = next_due
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(format!("poll failed: {e}"));
        }
        for event in events.iter() {
            let Some(player) = players.get_mut(event.token().0) else {
                continue;
            };
            if player.alive
                && !player.on_readable(
                    &mut scratch,
                    &mut window,
                    &mut inflate,
                    &mut result,
                    &mut rng,
                    metrics,
                )
            {
                player.alive = false;
                result.disconnected += 1;
                metrics.add_errors(1);
                metrics.connections_closed(1);
            }
        }
    }
    if let Some((server_before, me_before)) = cpu_before {
        let server_after = plan.server_pid.map(process_cpu_time).transpose()?;
        result.server_cpu = server_after
            .zip(server_before)
            .map(|(a, b)| a.saturating_sub(b));
        result.client_cpu = process_cpu_time(std::process::id())?.saturating_sub(me_before);
    }
    result.silent = players.iter().filter(|p| p.states_in_window == 0).count() as u64;
    metrics.set_connections_open(0);
    Ok(result)
}

/// The measured window.
struct Window {
    start: Instant,
    end: Instant,
}

impl Player {
    /// Reads until the socket would block. False when the connection ended.
    #[allow(clippy::too_many_arguments)]
    fn on_readable(
        &mut self,
        scratch: &mut [u8],
        window: &mut Window,
        inflate: &mut InflateScratch,
        result: &mut GameResult,
        rng: &mut Rng,
        metrics: &ThreadMetrics,
    ) -> bool {
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            metrics.add_bytes_received(n as u64);
            let now = Instant::now();
            if !self.take_frames(
                &mut scratch[..n],
                now,
                window,
                inflate,
                result,
                rng,
                metrics,
            ) {
                return false;
            }
            if n < scratch.len() && self.stream.short_read_drains() {
                return true;
            }
        }
    }

    /// Counts the states in `data`, received at `now`. False when the connection ended.
    #[allow(clippy::too_many_arguments)]
    fn take_frames(
        &mut self,
        data: &mut [u8],
        now: Instant,
        window: &mut Window,
        inflate: &mut InflateScratch,
        result: &mut GameResult,
        rng: &mut Rng,
        metrics: &ThreadMetrics,
    ) -> bool {
        let mut pongs = Vec::new();
        let mut wire = Wire::new(&mut pongs, rng);
        let mut at = 0;
        let mut open = true;
        while at < data.len() {
            let Ok(step) = self
                .session
                .handle_bytes(&mut data[at..], inflate, 0, &mut wire)
            else {
                metrics.add_errors(1);
                open = false;
                break;
            };
            at += step.used;
            match step.event {
                Some(Event::Text(text)) => {
                    metrics.add_messages_received(1);
                    if !text.starts_with("state ") {
                        continue;
                    }
                    let in_window = now >= window.start && now < window.end;
                    if in_window {
                        result.states += 1;
                        self.states_in_window += 1;
                        if let Some(last) = self.last_state.filter(|l| *l >= window.start) {
                            let gap = now.saturating_duration_since(last).as_nanos() as u64;
                            let _ = result.interval_ns.record(gap.max(1));
                            metrics.record_latency_us(gap / 1000);
                        }
                    }
                    self.last_state = Some(now);
                }
                Some(Event::Close(_)) => {
                    open = false;
                    break;
                }
                _ => {}
            }
        }
        self.session.receiver.release();
        if !pongs.is_empty() {
            let _ = self.stream.write(&pongs);
        }
        open
    }
}
