//! `wss://` in every mode, against small TLS servers made here: a throwaway CA and a
//! "localhost" certificate (rcgen), rustls' `ServerConnection` over each accepted socket (one
//! thread per connection), lanes-proto's server-side upgrade, then an echo (or a ticker, for
//! the fanout mode). The servers count full and resumed handshakes, and the versions agreed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanes_load::fanout::{FanoutPlan, encode, run_fanout, unix_now_ns};
use lanes_load::tls::{Tls, TlsOptions, provider};
use lanes_proto::OpCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{HandshakeKind, ProtocolVersion, ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;
use support::{accept_upgrade, number, push_frame, serve_counting_echo, spawn_server};

/// The longest a server waits for a client's bytes: every server thread ends.
const SERVER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A CA (its certificate in a PEM file, for `--ca`) and a server configuration whose
/// certificate, for "localhost", it signed.
struct Pki {
    ca: PathBuf,
    server: Arc<ServerConfig>,
}

/// Makes a new CA and a "localhost" certificate, and writes the CA's PEM to a file of its own.
fn pki() -> Pki {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "lanes-load test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();

    let ca = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "lanes-load-tls-ca-{}-{}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&ca, ca_cert.pem()).unwrap();

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Pki {
        ca,
        server: Arc::new(server),
    }
}

/// What a TLS server counted.
#[derive(Default)]
struct Counts {
    /// Full handshakes completed.
    full: AtomicU64,
    /// Resumed handshakes completed.
    resumed: AtomicU64,
    /// Handshakes that failed (a certificate the client refused, for one).
    failed: AtomicU64,
    /// Handshakes that agreed on TLS 1.2, and on TLS 1.3.
    tls12: AtomicU64,
    tls13: AtomicU64,
    /// Handshakes in which the client offered http/1.1 by ALPN (and it was agreed).
    alpn_http11: AtomicU64,
    /// Data messages received (and echoed).
    received: AtomicU64,
    /// Close frames received (and answered).
    closes: AtomicU64,
}

impl Counts {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> u64 {
        Counts::get(&self.full) + Counts::get(&self.resumed)
    }
}

/// A running TLS server: where it listens, the CA file that verifies it, what it counted.
struct Server {
    addr: String,
    ca: String,
    counts: Arc<Counts>,
}

/// Runs the TLS handshake on an accepted socket and counts it; `None` when it failed.
fn accept_tls(
    tcp: TcpStream,
    config: &Arc<ServerConfig>,
    counts: &Counts,
) -> Option<StreamOwned<ServerConnection, TcpStream>> {
    tcp.set_read_timeout(Some(SERVER_READ_TIMEOUT)).unwrap();
    let mut tls = StreamOwned::new(ServerConnection::new(Arc::clone(config)).unwrap(), tcp);
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok((0, 0)) | Err(_) => {
                counts.failed.fetch_add(1, Ordering::SeqCst);
                return None;
            }
            Ok(_) => {}
        }
    }
    match tls.conn.handshake_kind() {
        Some(HandshakeKind::Resumed) => counts.resumed.fetch_add(1, Ordering::SeqCst),
        _ => counts.full.fetch_add(1, Ordering::SeqCst),
    };
    match tls.conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_2) => counts.tls12.fetch_add(1, Ordering::SeqCst),
        Some(ProtocolVersion::TLSv1_3) => counts.tls13.fetch_add(1, Ordering::SeqCst),
        other => panic!("{other:?}"),
    };
    if tls.conn.alpn_protocol() == Some(b"http/1.1".as_slice()) {
        counts.alpn_http11.fetch_add(1, Ordering::SeqCst);
    }
    Some(tls)
}

/// Starts a TLS echo server on a free loopback port: every data message is echoed, a close
/// frame is answered after the echoes before it. It runs until the test process ends.
fn echo_server() -> Server {
    let Pki { ca, server } = pki();
    let counts = Arc::new(Counts::default());
    let shared = Arc::clone(&counts);
    let addr = spawn_server(move |tcp| {
        let Some(mut tls) = accept_tls(tcp, &server, &shared) else {
            return;
        };
        let Some(buf) = accept_upgrade(&mut tls) else {
            return;
        };
        serve_counting_echo(&mut tls, buf, &shared.received, &shared.closes);
        // No close_notify: the TCP connection just ends, as many servers do.
    });
    Server {
        addr: addr.to_string(),
        ca: ca.display().to_string(),
        counts,
    }
}

fn lanes_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanes-load"))
        .args(args)
        .output()
        .unwrap()
}

/// The run's JSON summary; panics (showing stderr) when the run failed.
fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\nstderr: {stderr}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("no JSON: {stdout}\nstderr: {stderr}"))
}

/// A failed run's exit code and stderr.
fn failure(output: &Output) -> (i32, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn echo_over_wss_with_the_ca_echoes_and_counts_every_message() {
    for (version, load) in [
        ("1.3", &["-c", "4", "-d", "8", "-s", "100"][..]),
        (
            "1.2",
            &["-c", "4", "-d", "8", "-s", "100", "--kind", "text"],
        ),
        // Messages longer than a TLS record (16 KiB): every read ends inside one.
        ("1.3", &["-c", "2", "-d", "4", "-s", "40000"]),
    ] {
        let server = echo_server();
        let mut args = vec![
            "--addr",
            &server.addr,
            "--ca",
            &server.ca,
            "--tls-version",
            version,
            "--threads",
            "2",
            "--warmup",
            "0.2",
            "--duration",
            "0.5",
            "--json",
            "--quiet",
            "echo",
        ];
        args.extend_from_slice(load);
        let run = summary(&lanes_load(&args));
        let connections = number(&run, "connections");
        let counts = &server.counts;
        assert_eq!(number(&run, "errors"), 0, "{run}");
        assert!(number(&run, "messages") > 0, "{run}");
        // Every message counted as sent reached the server, and every echo was checked.
        assert_eq!(
            number(&run, "sent_total"),
            Counts::get(&counts.received),
            "{run}"
        );
        assert_eq!(Counts::get(&counts.closes), connections, "{run}");
        assert_eq!(counts.handshakes(), connections);
        assert_eq!(Counts::get(&counts.alpn_http11), connections);
        let agreed = if version == "1.2" {
            &counts.tls12
        } else {
            &counts.tls13
        };
        assert_eq!(Counts::get(agreed), connections, "TLS {version}");
        assert_eq!(run["tls"]["version"], version, "{run}");
        assert_eq!(run["tls"]["server_name"], "localhost", "{run}");
    }
}

/// Runs the connect mode with one thread and no warm-up; returns its summary.
fn connect_run(server: &Server, tls: &[&str]) -> Value {
    let mut args = vec!["--addr", &server.addr];
    args.extend_from_slice(tls);
    args.extend_from_slice(&[
        "--warmup",
        "0",
        "--duration",
        "0.5",
        "--json",
        "--quiet",
        "connect",
        "-c",
        "1",
    ]);
    summary(&lanes_load(&args))
}

#[test]
fn connect_resumes_tls_sessions_after_the_first_handshake() {
    for version in ["1.3", "1.2"] {
        let server = echo_server();
        // --tls-resume is the default: both ways of asking are the same.
        for resume in [&[][..], &["--tls-resume"]] {
            let before = server.counts.handshakes();
            let mut tls = vec!["--ca", server.ca.as_str(), "--tls-version", version];
            tls.extend_from_slice(resume);
            let run = connect_run(&server, &tls);
            let handshakes = number(&run, "handshakes");
            assert!(handshakes >= 3, "{run}");
            assert_eq!(number(&run, "errors"), 0, "{run}");
            // One thread, one session cache: only its first handshake is a full one.
            assert_eq!(number(&run, "tls_resumed"), handshakes - 1, "{run}");
            assert_eq!(run["tls"]["resume"], true);
            assert_eq!(server.counts.handshakes() - before, handshakes);
        }
        // Two runs, each with a full handshake first; the server saw the others resumed.
        assert_eq!(Counts::get(&server.counts.full), 2, "TLS {version}");
        assert_eq!(
            Counts::get(&server.counts.resumed),
            server.counts.handshakes() - 2
        );
        assert_eq!(Counts::get(&server.counts.failed), 0);
    }
}

#[test]
fn without_resumption_every_handshake_is_a_full_one() {
    let server = echo_server();
    let run = connect_run(&server, &["--ca", &server.ca, "--no-tls-resume"]);
    let handshakes = number(&run, "handshakes");
    assert!(handshakes >= 3, "{run}");
    assert_eq!(number(&run, "tls_resumed"), 0, "{run}");
    assert_eq!(run["tls"]["resume"], false);
    assert_eq!(Counts::get(&server.counts.full), handshakes);
    assert_eq!(Counts::get(&server.counts.resumed), 0);
}

#[test]
fn a_certificate_that_does_not_verify_fails_the_handshake_with_the_reason() {
    let server = echo_server();
    let common = ["--warmup", "0", "--duration", "0.3", "--quiet"];
    // --tls alone trusts no CA; another CA of the same name (a regenerated test CA) did not
    // sign the certificate; the right CA, for another name.
    let other_ca = pki().ca.display().to_string();
    for (tls, reason) in [
        (&["--tls"][..], "UnknownIssuer"),
        (&["--ca", &other_ca], "BadSignature"),
        (
            &["--ca", &server.ca, "--server-name", "example.test"],
            "not valid for name",
        ),
    ] {
        for mode in [
            &["echo", "-c", "2"][..],
            &["connect", "-c", "1"],
            &["idle", "-n", "2"],
        ] {
            let mut args = vec!["--addr", server.addr.as_str()];
            args.extend_from_slice(tls);
            args.extend_from_slice(&common);
            args.extend_from_slice(mode);
            let (code, stderr) = failure(&lanes_load(&args));
            assert_eq!(code, 1, "{tls:?} {mode:?}: {stderr}");
            assert!(
                stderr.contains(&format!("TLS handshake with {} failed", server.addr))
                    && stderr.contains("invalid peer certificate")
                    && stderr.contains(reason),
                "{tls:?} {mode:?}: {stderr}"
            );
        }
    }
    assert_eq!(server.counts.handshakes(), 0);
    assert!(Counts::get(&server.counts.failed) > 0);
}

#[test]
fn insecure_accepts_the_test_certificate_whatever_the_name() {
    let server = echo_server();
    for name in ["localhost", "example.test"] {
        let run = summary(&lanes_load(&[
            "--addr",
            &server.addr,
            "--insecure",
            "--server-name",
            name,
            "--warmup",
            "0",
            "--duration",
            "0.3",
            "--json",
            "--quiet",
            "echo",
            "-c",
            "2",
        ]));
        assert_eq!(number(&run, "errors"), 0, "{run}");
        assert!(number(&run, "messages") > 0, "{run}");
        assert_eq!(run["tls"]["insecure"], true);
    }
}

#[test]
fn bad_tls_options_are_refused_with_a_message() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lanes-load-no-such-ca.pem");
    let missing = missing.display().to_string();
    let not_pem = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lanes-load-not-pem.txt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let not_pem = not_pem.display().to_string();
    for (args, expected) in [
        (&["--ca", missing.as_str()][..], "--ca"),
        (&["--ca", not_pem.as_str()], "no certificate"),
        (&["--tls", "--server-name", "not a name!"], "--server-name"),
    ] {
        let mut argv = args.to_vec();
        argv.extend_from_slice(&["--addr", "127.0.0.1:9", "connect"]);
        let (code, stderr) = failure(&lanes_load(&argv));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // TLS options without TLS, and --ca with --insecure, are usage errors.
    for args in [
        &["--server-name", "localhost"][..],
        &["--tls-version", "1.3"],
        &["--no-tls-resume"],
        &["--ca", "x.pem", "--insecure"],
        &["--tls", "--tls-version", "1.1"],
    ] {
        let mut argv = args.to_vec();
        argv.push("connect");
        let (code, stderr) = failure(&lanes_load(&argv));
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
}

#[test]
fn idle_holds_wss_connections_resuming_after_the_first() {
    let server = echo_server();
    let output = lanes_load(&[
        "--addr",
        &server.addr,
        "--ca",
        &server.ca,
        "--duration",
        "0.2",
        "--json",
        "--quiet",
        "idle",
        "-n",
        "5",
    ]);
    let run = summary(&output);
    assert_eq!(number(&run, "connections"), 5, "{run}");
    assert_eq!(Counts::get(&server.counts.full), 1);
    assert_eq!(Counts::get(&server.counts.resumed), 4);
}

/// A TLS ticker: every accepted connection is upgraded, then sent a stamped message every
/// `interval` (sequence numbers count from the server's start).
fn tls_ticker(interval: Duration) -> (SocketAddr, PathBuf, Arc<Counts>) {
    let Pki { ca, server } = pki();
    let counts = Arc::new(Counts::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    type Peer = StreamOwned<ServerConnection, TcpStream>;
    let peers: Arc<Mutex<Vec<Peer>>> = Arc::default();
    let (accepted, shared) = (Arc::clone(&peers), Arc::clone(&counts));
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            tcp.set_nodelay(true).unwrap();
            let (accepted, shared, server) = (
                Arc::clone(&accepted),
                Arc::clone(&shared),
                Arc::clone(&server),
            );
            std::thread::spawn(move || {
                if let Some(mut tls) = accept_tls(tcp, &server, &shared)
                    && accept_upgrade(&mut tls).is_some()
                {
                    accepted.lock().unwrap().push(tls);
                }
            });
        }
    });
    std::thread::spawn(move || {
        let start = Instant::now();
        // Bounded: a minute of ticks at most.
        for seq in 0u64..(60_000 / interval.as_millis().max(1) as u64) {
            let due = start + interval * seq as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let mut bytes = Vec::new();
            push_frame(
                &mut bytes,
                OpCode::Binary,
                0,
                &encode(seq, unix_now_ns().unwrap()),
            );
            peers
                .lock()
                .unwrap()
                .retain_mut(|peer| peer.write_all(&bytes).is_ok());
        }
    });
    (addr, ca, counts)
}

#[test]
fn fanout_subscribes_over_wss() {
    let (addr, ca, counts) = tls_ticker(Duration::from_millis(10));
    let tls = Tls::new(&TlsOptions::with_ca(ca)).unwrap();
    let plan = FanoutPlan {
        tls: Some(tls),
        threads: 2,
        ..FanoutPlan::new(
            addr,
            6,
            None,
            Duration::from_millis(200),
            Duration::from_millis(500),
        )
    };
    let result = run_fanout(&plan, &AtomicU64::new(0)).unwrap();
    assert!(result.published >= 30, "{}", result.published);
    assert!(result.deliveries >= result.published, "{result:?}");
    assert_eq!(
        (
            result.missed,
            result.out_of_order,
            result.malformed,
            result.disconnected,
            result.silent
        ),
        (0, 0, 0, 0, 0),
        "{result:?}"
    );
    // Every subscriber of a connect batch shakes hands before the first reads its response
    // (and the session tickets before it), so these are full handshakes: resumption starts
    // with the next batch.
    assert_eq!(counts.handshakes(), 6);
    assert_eq!(Counts::get(&counts.tls13), 6);
}
