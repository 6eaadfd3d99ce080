//! Outbound connections (`Remote::connect`) on a worker's loop: against a lanes server (ws and
//! wss, with and without permessage-deflate, messages of every size class), against raw
//! sockets that answer wrong (403, an invalid accept, silence, a drop mid-handshake), against
//! addresses that refuse or do not resolve; and reconnection after the server goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lanes::{
    Accept, Closed, Config, Connect, ConnectError, ConnectFailure, Handler, Message, Reconnect,
    Request, Upgrade, WorkerContext, Ws,
};
use support::{start_echo, start_server};

/// What the dialing side saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Open {
        tag: String,
        outbound: bool,
        subprotocol: Option<String>,
    },
    Text(String),
    Binary(Vec<u8>),
    Closed {
        tag: String,
        code: u16,
        reconnect_in: Option<Duration>,
    },
    Failed {
        tag: String,
        error: ConnectError,
        retry_in: Option<Duration>,
    },
}

/// A handler that only dials: each outbound connection's state is a tag; on open it sends the
/// tag's script (the `send` messages), and it reports everything it sees.
struct Dialer {
    seen: mpsc::Sender<Seen>,
    send: Vec<Vec<u8>>,
}

impl Handler for Dialer {
    type State = String;

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<String> {
        Upgrade::Accept(Accept::new("accepted".into()))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, tag: &mut String) {
        let _ = self.seen.send(Seen::Open {
            tag: tag.clone(),
            outbound: ws.is_outbound(),
            subprotocol: ws.subprotocol().map(str::to_string),
        });
        for message in &self.send {
            match std::str::from_utf8(message) {
                Ok(text) => ws.send_text(text),
                Err(_) => ws.send_binary(message),
            };
        }
    }

    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut String, message: Message<'_>) {
        let _ = self.seen.send(match message {
            Message::Text(text) => Seen::Text(text.to_string()),
            Message::Binary(bytes) => Seen::Binary(bytes.to_vec()),
        });
    }

    fn on_close(&mut self, tag: String, closed: &mut Closed<'_>) {
        let _ = self.seen.send(Seen::Closed {
            tag,
            code: closed.code().as_u16(),
            reconnect_in: closed.reconnect_in(),
        });
    }

    fn on_connect_failed(
        &mut self,
        _: &mut WorkerContext<'_, String>,
        tag: String,
        failure: &ConnectFailure,
    ) {
        let _ = self.seen.send(Seen::Failed {
            tag,
            error: failure.error().clone(),
            retry_in: failure.retry_in(),
        });
    }
}

/// A one-worker dialing server that sends `send` on each outbound connection it opens.
fn dialer(send: Vec<Vec<u8>>) -> (lanes::ServerHandle, mpsc::Receiver<Seen>) {
    dialer_with(Config::default(), send)
}

fn dialer_with(config: Config, send: Vec<Vec<u8>>) -> (lanes::ServerHandle, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let server = start_server(1, config, move |_| Dialer {
        seen: tx.clone(),
        send: send.clone(),
    });
    (server, rx)
}

fn next(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("nothing seen within 10 s")
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

#[test]
fn an_outbound_connection_echoes_every_size_through_a_lanes_server() {
    let echo = start_echo(1, Config::default());
    let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 1 << 20];
    let mut script: Vec<Vec<u8>> = vec![b"hello".to_vec()];
    for (i, size) in sizes.iter().enumerate() {
        script.push((0..*size).map(|b| (b * 7 + i) as u8 | 0x80).collect());
    }
    let (dialer, rx) = dialer(script.clone());
    let connect = Connect::new(&url(echo.local_addr(), "/echo"), "up".to_string()).unwrap();
    dialer.remote().connect(0, connect).unwrap();
    assert_eq!(
        next(&rx),
        Seen::Open {
            tag: "up".into(),
            outbound: true,
            subprotocol: None
        }
    );
    assert_eq!(next(&rx), Seen::Text("hello".into()));
    for message in &script[1..] {
        match next(&rx) {
            Seen::Binary(bytes) => assert!(bytes == *message, "{} bytes differ", bytes.len()),
            // A zero-length binary payload is valid UTF-8: it went out as text.
            Seen::Text(text) => assert!(text.is_empty() && message.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    let stats = dialer.remote().stats();
    assert_eq!(stats.total().outbound_opened, 1);
    assert_eq!(stats.total().outbound_failed, 0);
    let _ = dialer.shutdown();
    assert!(matches!(
        next(&rx),
        Seen::Closed {
            code: 1001,
            reconnect_in: None,
            ..
        }
    ));
}

#[cfg(feature = "deflate")]
#[test]
fn permessage_deflate_is_offered_and_used_with_and_without_context_takeover() {
    for no_takeover in [false, true] {
        let mut server_config = Config::default();
        server_config.deflate.enabled = true;
        server_config.deflate.server_no_context_takeover = no_takeover;
        let echo = start_echo(1, server_config);
        let text = "compressible ".repeat(1000);
        let (dialer, rx) = dialer(vec![text.clone().into_bytes(), text.clone().into_bytes()]);
        let connect = Connect::new(&url(echo.local_addr(), "/"), "z".to_string())
            .unwrap()
            .deflate(true);
        dialer.remote().connect(0, connect).unwrap();
        assert!(matches!(next(&rx), Seen::Open { .. }));
        assert_eq!(next(&rx), Seen::Text(text.clone()));
        assert_eq!(next(&rx), Seen::Text(text.clone()));
        // Compressed both ways: the bytes on the wire are far fewer than the text's.
        let sent = dialer.remote().stats().total().bytes_sent;
        assert!(
            sent < text.len() as u64,
            "{sent} bytes sent for two {}-byte messages",
            text.len()
        );
        let echoed = echo.remote().stats().total().bytes_sent;
        assert!(echoed < text.len() as u64, "{echoed}");
    }
}

#[test]
fn subprotocol_and_headers_reach_the_server_and_the_choice_comes_back() {
    struct Picky {
        headers: mpsc::Sender<Option<Vec<u8>>>,
    }
    impl Handler for Picky {
        type State = ();
        fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<()> {
            let _ = self
                .headers
                .send(request.header("authorization").map(<[u8]>::to_vec));
            assert_eq!(request.subprotocols(), ["v2", "v1"]);
            Upgrade::Accept(Accept::new(()).with_subprotocol("v1"))
        }
        fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
    }
    let (htx, hrx) = mpsc::channel();
    let server = start_server(1, Config::default(), move |_| Picky {
        headers: htx.clone(),
    });
    let (dialer, rx) = dialer(Vec::new());
    let connect = Connect::new(&url(server.local_addr(), "/"), "p".to_string())
        .unwrap()
        .subprotocol("v2")
        .subprotocol("v1")
        .header("Authorization", "Bearer t0ken");
    dialer.remote().connect(0, connect).unwrap();
    assert_eq!(
        hrx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Some(b"Bearer t0ken".to_vec())
    );
    assert_eq!(
        next(&rx),
        Seen::Open {
            tag: "p".into(),
            outbound: true,
            subprotocol: Some("v1".into())
        }
    );
}

/// A raw server: accepts one connection, reads the request head, answers `answer` (or
/// nothing), then holds the socket open for a while or drops it.
fn raw_server(answer: Option<Vec<u8>>, hold: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        if let Some(answer) = answer {
            let _ = socket.write_all(&answer);
        }
        thread::sleep(hold);
    });
    addr
}

fn failure_of(connect: Connect<String>, config: Config) -> (ConnectError, u64) {
    let (dialer, rx) = dialer_with(config, Vec::new());
    dialer.remote().connect(0, connect).unwrap();
    match next(&rx) {
        Seen::Failed {
            tag,
            error,
            retry_in: None,
        } => {
            assert_eq!(tag, "t");
            support::wait_until("the failure counted", || {
                dialer.remote().stats().total().outbound_failed == 1
            });
            (error, dialer.remote().stats().total().connections)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_that_answers_wrong_is_a_clear_error_and_leaves_nothing_behind() {
    type Case = (Option<&'static [u8]>, Duration, fn(&ConnectError) -> bool);
    let cases: Vec<Case> = vec![
        (
            Some(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
            Duration::from_secs(1),
            |e| *e == ConnectError::Status(403),
        ),
        (
            Some(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBhY2NlcHQ=\r\n\r\n",
            ),
            Duration::from_secs(1),
            |e| matches!(e, ConnectError::Handshake(_)),
        ),
        // Drops the connection without an answer.
        (None, Duration::ZERO, |e| *e == ConnectError::Closed),
        // Never answers.
        (None, Duration::from_secs(5), |e| *e == ConnectError::HandshakeTimedOut),
    ];
    for (answer, hold, expected) in cases {
        let addr = raw_server(answer.map(<[u8]>::to_vec), hold);
        let connect = Connect::new(&url(addr, "/"), "t".to_string())
            .unwrap()
            .handshake_timeout(Duration::from_millis(300));
        let (error, connections) = failure_of(connect, Config::default());
        assert!(expected(&error), "{error:?}");
        assert_eq!(connections, 0);
    }
}

#[test]
fn refused_and_unresolvable_addresses_are_clear_errors() {
    // A port nothing listens on: bound, then closed.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let connect = Connect::new(&url(closed, "/"), "t".to_string()).unwrap();
    let (error, _) = failure_of(connect, Config::default());
    assert_eq!(
        error,
        ConnectError::Io(std::io::ErrorKind::ConnectionRefused)
    );
    // `.invalid` never resolves (RFC 2606).
    let connect = Connect::new("ws://no-such-host.invalid:80/", "t".to_string()).unwrap();
    let (error, _) = failure_of(connect, Config::default());
    assert!(matches!(error, ConnectError::Resolve(_)), "{error:?}");
}

#[test]
fn a_host_name_is_resolved_off_the_loop() {
    let echo = start_echo(1, Config::default());
    let (dialer, rx) = dialer(vec![b"by name".to_vec()]);
    let port = echo.local_addr().port();
    let connect = Connect::new(&format!("ws://localhost:{port}/"), "n".to_string()).unwrap();
    dialer.remote().connect(0, connect).unwrap();
    // localhost may resolve to ::1 first, where nothing listens: that address is skipped.
    assert!(matches!(next(&rx), Seen::Open { .. }));
    assert_eq!(next(&rx), Seen::Text("by name".into()));
}

/// Starts the echo server on `addr` (the port a stopped one had).
fn echo_at(addr: SocketAddr) -> lanes::ServerHandle {
    lanes::Server::new(addr, |_| support::TestEcho)
        .cores(lanes::Cores::Count(1))
        .pin(false)
        .start()
        .unwrap()
}

/// Whether `wait` is a jittered back-off `n` of `policy`.
fn within(policy: &Reconnect, n: u32, wait: Duration) -> bool {
    let full = policy.backoff(n);
    wait <= full && wait >= full.mul_f64(1.0 - policy.jitter) - Duration::from_micros(1)
}

#[test]
fn a_lost_connection_is_made_again_after_each_restart_within_the_back_off() {
    let mut echo = start_echo(1, Config::default());
    let addr = echo.local_addr();
    let (dialer, rx) = dialer(vec![b"hi".to_vec()]);
    let policy = Reconnect {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(300),
        multiplier: 2.0,
        jitter: 0.5,
        max_retries: None,
    };
    let connect = Connect::new(&url(addr, "/"), "r".to_string())
        .unwrap()
        .reconnect(policy);
    dialer.remote().connect(0, connect).unwrap();
    assert!(matches!(next(&rx), Seen::Open { .. }));
    assert_eq!(next(&rx), Seen::Text("hi".into()));
    for _restart in 0..3 {
        let _ = echo.shutdown();
        match next(&rx) {
            Seen::Closed {
                tag,
                code,
                reconnect_in: Some(wait),
            } => {
                assert_eq!((tag.as_str(), code), ("r", 1001));
                assert!(within(&policy, 0, wait), "{wait:?}");
            }
            other => panic!("{other:?}"),
        }
        // Down for a while: attempts fail, each with the next back-off.
        let down_until = std::time::Instant::now() + Duration::from_millis(400);
        let mut failures = 0u32;
        while std::time::Instant::now() < down_until {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Seen::Failed {
                    error: ConnectError::Io(_),
                    retry_in: Some(wait),
                    ..
                }) => {
                    failures += 1;
                    assert!(
                        within(&policy, failures, wait),
                        "retry {failures}: {wait:?}"
                    );
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) => {}
            }
        }
        assert!(failures >= 1, "no attempt while the server was down");
        echo = echo_at(addr);
        loop {
            match next(&rx) {
                Seen::Open { tag, .. } => {
                    assert_eq!(tag, "r", "each attempt starts from a clone of the state");
                    break;
                }
                Seen::Failed {
                    retry_in: Some(_), ..
                } => {} // raced the restart
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(next(&rx), Seen::Text("hi".into()));
    }
    assert_eq!(dialer.remote().stats().total().outbound_opened, 4);
}

#[cfg(feature = "tls")]
mod wss {
    use super::*;
    use lanes::{ClientTls, TlsConfig};
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    /// A test CA and a leaf for `localhost`, as PEM.
    fn tls_pair() -> (String, TlsConfig) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let tls =
            TlsConfig::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        (issuer.pem(), tls)
    }

    #[test]
    fn wss_connects_with_a_custom_ca_and_refuses_an_untrusted_server() {
        let (ca_pem, tls) = tls_pair();
        let mut config = Config::default();
        config.tls = Some(tls);
        let echo = start_echo(1, config);
        let port = echo.local_addr().port();
        let (first, rx) = dialer(vec![b"secret".to_vec(), vec![0xAB; 100_000]]);
        let connect = Connect::new(&format!("wss://localhost:{port}/"), "s".to_string())
            .unwrap()
            .tls(ClientTls::with_ca_pem(ca_pem.as_bytes()).unwrap());
        first.remote().connect(0, connect).unwrap();
        assert!(matches!(next(&rx), Seen::Open { .. }));
        assert_eq!(next(&rx), Seen::Text("secret".into()));
        assert_eq!(next(&rx), Seen::Binary(vec![0xAB; 100_000]));
        // The default roots do not include the test CA.
        let connect = Connect::new(&format!("wss://localhost:{port}/"), "t".to_string()).unwrap();
        let (error, _) = failure_of(connect, Config::default());
        assert!(matches!(error, ConnectError::Tls(_)), "{error:?}");
        // insecure() takes any certificate.
        let (third, rx) = dialer(vec![b"any".to_vec()]);
        let connect = Connect::new(&format!("wss://127.0.0.1:{port}/"), "i".to_string())
            .unwrap()
            .tls(ClientTls::insecure());
        third.remote().connect(0, connect).unwrap();
        assert!(matches!(next(&rx), Seen::Open { .. }));
        assert_eq!(next(&rx), Seen::Text("any".into()));
    }
}
