//! wss:// on loopback against a rustls client: echo at every size, SNI, certificate reload,
//! session resumption, and the handshakes that must fail (plain HTTP, garbage, a client that
//! stops mid-handshake, a version the server does not accept), each dropped, counted, and
//! costing the other connections nothing. Certificates are made here, at test time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanes::{Config, TlsConfig, TlsFailure, TlsVersions};
use lanes_proto::OpCode;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::{Client, start_echo, wait_until};

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A test CA and leaf certificates it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate: its chain and key as PEM, and its DER (to compare with what a client
/// was shown).
struct Leaf {
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        Leaf {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client configuration that trusts this CA only.
    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn tls_config(leaf: &Leaf) -> TlsConfig {
    TlsConfig::from_pem(leaf.chain_pem.as_bytes(), leaf.key_pem.as_bytes()).unwrap()
}

fn config_with(tls: TlsConfig) -> Config {
    let mut config = Config::default();
    config.tls = Some(tls);
    config
}

/// Connects, completes the TLS handshake for `name`, and returns the stream.
fn tls_connect(addr: SocketAddr, name: &str, client: &Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = ClientConnection::new(Arc::clone(client), server_name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// A WebSocket client over TLS.
fn wss(addr: SocketAddr, name: &str, client: &Arc<ClientConfig>) -> Client<TlsStream> {
    Client::over(tls_connect(addr, name, client))
        .upgrade("/", None)
        .0
}

/// The leaf certificate the server showed.
fn shown(client: &Client<TlsStream>) -> CertificateDer<'static> {
    client.stream.conn.peer_certificates().unwrap()[0].clone()
}

fn echo_once(client: &mut Client<TlsStream>, opcode: OpCode, payload: &[u8]) {
    client.send(true, opcode, payload);
    let frame = client.recv();
    assert_eq!(frame.opcode, opcode);
    assert_eq!(frame.payload.len(), payload.len());
    assert!(
        frame.payload == payload,
        "echo differs at {} bytes",
        payload.len()
    );
}

#[test]
fn messages_of_every_size_echo_over_wss() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    let server = start_echo(1, config_with(tls_config(&leaf)));
    let client_config = ca.client(BOTH);
    let mut client = wss(server.local_addr(), "localhost", &client_config);
    assert_eq!(shown(&client), leaf.der);
    for len in [0, 1, 125, 126, 16 * 1024 - 10, 64 * 1024, 1 << 20] {
        let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        echo_once(&mut client, OpCode::Text, &text);
        let binary: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        echo_once(&mut client, OpCode::Binary, &binary);
    }
    // Many small messages in one TLS record, and one message across many records.
    let mut batch = Vec::new();
    for i in 0..50u8 {
        batch.extend_from_slice(&Client::encode(true, OpCode::Binary, &[i; 20]));
    }
    client.send_raw(&batch);
    for i in 0..50u8 {
        assert_eq!(client.recv().payload, vec![i; 20]);
    }
    let total = server.stats().total();
    assert_eq!(total.tls_handshakes, 1);
    assert_eq!(total.opened, 1);
    assert_eq!(total.tls_handshake_failures.iter().sum::<u64>(), 0);
}

#[test]
fn a_backlog_larger_than_the_socket_takes_goes_out_whole_and_in_order() {
    // 12 x 1 MiB sent before reading anything: the echoes pile up far beyond what loopback's
    // buffers take, so the server writes in part, keeps what is left, pauses reading, and
    // resumes as the client reads.
    let ca = Ca::new();
    let server = start_echo(1, config_with(tls_config(&ca.leaf(&["localhost"]))));
    let client_config = ca.client(BOTH);
    let mut client = wss(server.local_addr(), "localhost", &client_config);
    let messages: Vec<Vec<u8>> = (0..12u8)
        .map(|i| {
            (0..1 << 20)
                .map(|j: u32| (j as u8) ^ i.wrapping_mul(37))
                .collect()
        })
        .collect();
    let mut writer = client.stream.sock.try_clone().unwrap();
    // The TLS stream cannot be shared between threads: encrypt everything here first.
    client.stream.conn.set_buffer_limit(None);
    let mut wire = Vec::new();
    for message in &messages {
        client
            .stream
            .conn
            .writer()
            .write_all(&Client::encode(true, OpCode::Binary, message))
            .unwrap();
        while client.stream.conn.wants_write() {
            client.stream.conn.write_tls(&mut wire).unwrap();
        }
    }
    let sending = std::thread::spawn(move || writer.write_all(&wire).unwrap());
    for message in &messages {
        let echo = client.recv();
        assert!(
            echo.payload == *message,
            "an echo differs or came out of order"
        );
    }
    sending.join().unwrap();
    let total = server.stats().total();
    assert_eq!(total.messages_received, 12);
    assert_eq!(total.buffered_bytes, 0);
}

#[test]
fn the_server_prefers_aes_128_gcm_unless_told_to_follow_the_client() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    // rustls' client offers AES-256-GCM first, AES-128-GCM second.
    let client = ca.client(BOTH);
    let suite = |tls: TlsConfig| {
        let server = start_echo(1, config_with(tls));
        let mut ws = wss(server.local_addr(), "localhost", &client);
        echo_once(&mut ws, OpCode::Binary, b"suite");
        let suite = ws.stream.conn.negotiated_cipher_suite().unwrap().suite();
        drop(ws);
        server.shutdown().unwrap();
        suite
    };
    assert_eq!(
        suite(tls_config(&leaf)),
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
    );
    let follow = TlsConfig::builder()
        .certificate_pem(leaf.chain_pem.as_bytes(), leaf.key_pem.as_bytes())
        .prefer_client_cipher_order(true)
        .build()
        .unwrap();
    assert_eq!(suite(follow), rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
}

/// Echoes, but serves every connection on the worker after the one that accepted it.
struct MoveOn {
    index: usize,
}

impl lanes::Handler for MoveOn {
    type State = ();
    fn on_upgrade(&mut self, _: &lanes::Request<'_>) -> lanes::Upgrade<()> {
        lanes::Upgrade::Accept(lanes::Accept::new(()).on_worker((self.index + 1) % 2))
    }
    fn on_open(&mut self, ws: &mut lanes::Ws<'_>, _: &mut ()) {
        ws.send_text(&format!("worker {}", self.index));
    }
    fn on_message(&mut self, ws: &mut lanes::Ws<'_>, _: &mut (), message: lanes::Message<'_>) {
        match message {
            lanes::Message::Text("move") => {
                ws.move_to::<()>((self.index + 1) % 2).unwrap();
                ws.send_text("moving")
            }
            lanes::Message::Text(text) => ws.send_text(text),
            lanes::Message::Binary(bytes) => ws.send_binary(bytes),
        };
    }
}

#[test]
fn an_upgrade_placed_on_another_worker_and_moved_again_keeps_its_tls_session() {
    let ca = Ca::new();
    let server = support::start_server(
        2,
        config_with(tls_config(&ca.leaf(&["localhost"]))),
        |info| MoveOn { index: info.index },
    );
    let mut clients = Vec::new();
    for versions in [BOTH, &[&rustls::version::TLS12][..], BOTH, BOTH] {
        let mut client = wss(server.local_addr(), "localhost", &ca.client(versions));
        let first = client.recv();
        assert!(first.payload.starts_with(b"worker "));
        for len in [0, 125, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 3 + len) as u8).collect();
            echo_once(&mut client, OpCode::Binary, &bytes);
        }
        clients.push(client);
    }
    let total = server.stats().total();
    assert_eq!(total.handed_off, 4, "every connection moved");
    assert_eq!(total.adopted, 4);
    assert_eq!(total.opened, 4);
    // Those that moved before are still served.
    for client in &mut clients {
        echo_once(client, OpCode::Text, b"still here");
    }
    // Open connections moved again, their TLS sessions (and lanes' own record layer's
    // sequence numbers) with them.
    for client in &mut clients {
        for _ in 0..3 {
            client.send(true, OpCode::Text, b"move");
            assert_eq!(client.recv().payload, b"moving");
            echo_once(client, OpCode::Binary, &[9u8; 40_000]);
        }
    }
    wait_until("every move counted", || {
        server.stats().total().moved_in == 12
    });
}

#[test]
fn tls_1_2_clients_are_served_too() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    let server = start_echo(1, config_with(tls_config(&leaf)));
    let client_config = ca.client(&[&rustls::version::TLS12]);
    let mut client = wss(server.local_addr(), "localhost", &client_config);
    assert_eq!(
        client.stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    echo_once(&mut client, OpCode::Binary, &vec![5u8; 100_000]);
}

#[test]
fn each_server_name_gets_its_own_certificate() {
    let ca = Ca::new();
    let (a, b, fallback) = (
        ca.leaf(&["a.test"]),
        ca.leaf(&["b.test"]),
        ca.leaf(&["localhost"]),
    );
    let tls = TlsConfig::builder()
        .certificate_pem(fallback.chain_pem.as_bytes(), fallback.key_pem.as_bytes())
        .sni_certificate_pem("a.test", a.chain_pem.as_bytes(), a.key_pem.as_bytes())
        .sni_certificate_pem("B.TEST", b.chain_pem.as_bytes(), b.key_pem.as_bytes())
        .build()
        .unwrap();
    let server = start_echo(1, config_with(tls));
    let client_config = ca.client(BOTH);
    let mut to_a = wss(server.local_addr(), "a.test", &client_config);
    let mut to_b = wss(server.local_addr(), "b.test", &client_config);
    let to_other = wss(server.local_addr(), "localhost", &client_config);
    assert_eq!(shown(&to_a), a.der);
    assert_eq!(shown(&to_b), b.der);
    assert_eq!(shown(&to_other), fallback.der);
    echo_once(&mut to_a, OpCode::Text, b"a");
    echo_once(&mut to_b, OpCode::Text, b"b");
}

#[test]
fn a_reload_serves_new_handshakes_and_keeps_open_connections() {
    let ca = Ca::new();
    let (old, new) = (ca.leaf(&["localhost"]), ca.leaf(&["localhost"]));
    let server = start_echo(2, config_with(tls_config(&old)));
    let client_config = ca.client(BOTH);
    let mut before = wss(server.local_addr(), "localhost", &client_config);
    assert_eq!(shown(&before), old.der);
    server.reload_tls(tls_config(&new)).unwrap();
    // Both workers: several connections, every one with the new certificate (each from a
    // new client: a resumed session would not show a certificate at all).
    for _ in 0..6 {
        let mut after = wss(server.local_addr(), "localhost", &ca.client(BOTH));
        assert_eq!(shown(&after), new.der);
        echo_once(&mut after, OpCode::Text, b"new");
    }
    echo_once(&mut before, OpCode::Text, b"still here");
}

#[test]
fn reloading_a_plain_server_is_refused() {
    let ca = Ca::new();
    let server = start_echo(1, Config::default());
    let tls = tls_config(&ca.leaf(&["localhost"]));
    assert!(matches!(server.reload_tls(tls), Err(lanes::Error::NotTls)));
}

#[test]
fn a_second_connection_resumes_by_ticket() {
    let ca = Ca::new();
    let server = start_echo(1, config_with(tls_config(&ca.leaf(&["localhost"]))));
    // One client configuration: its session store keeps the tickets.
    let client_config = ca.client(BOTH);
    let mut first = wss(server.local_addr(), "localhost", &client_config);
    // The tickets come after the handshake: an echo makes sure the client has read them.
    echo_once(&mut first, OpCode::Text, b"1");
    let mut second = wss(server.local_addr(), "localhost", &client_config);
    echo_once(&mut second, OpCode::Text, b"2");
    assert_eq!(
        second.stream.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let total = server.stats().total();
    assert_eq!((total.tls_handshakes, total.tls_resumed), (2, 1));
}

/// The server drops a connection that failed its TLS handshake: end of stream or reset.
fn dropped(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // an alert
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn bad_handshakes_are_dropped_counted_and_cost_the_others_nothing() {
    let ca = Ca::new();
    let mut config = config_with(tls_config(&ca.leaf(&["localhost"])));
    config.timeouts.handshake = Duration::from_millis(500);
    let server = start_echo(1, config);
    let addr = server.local_addr();
    let client_config = ca.client(BOTH);
    let mut bystander = wss(addr, "localhost", &client_config);
    let failures = |reason| server.stats().total().tls_failed_with(reason);

    // Plain HTTP to the TLS port.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n")
        .unwrap();
    assert!(dropped(&mut plain));
    wait_until("plain_http counted", || {
        failures(TlsFailure::PlainHttp) == 1
    });
    echo_once(&mut bystander, OpCode::Text, b"after plain");

    // Random bytes.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let noise: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    garbage.write_all(&noise).unwrap();
    assert!(dropped(&mut garbage));
    wait_until("malformed counted", || failures(TlsFailure::Malformed) == 1);

    // A record header announcing more than a record may hold.
    let mut oversized = TcpStream::connect(addr).unwrap();
    oversized
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    oversized
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff])
        .unwrap();
    oversized.write_all(&[0u8; 1000]).unwrap();
    assert!(dropped(&mut oversized));
    wait_until("oversized counted", || failures(TlsFailure::Malformed) == 2);

    // A client that stops after its ClientHello: dropped at the handshake timeout.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut hello = Vec::new();
    let mut conn = ClientConnection::new(
        Arc::clone(&client_config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    conn.write_tls(&mut hello).unwrap();
    stalled.write_all(&hello).unwrap();
    assert!(dropped(&mut stalled));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    wait_until("timeout counted", || failures(TlsFailure::Timeout) == 1);

    // A client that hangs up mid-handshake.
    let mut quitter = TcpStream::connect(addr).unwrap();
    quitter.write_all(&hello[..hello.len() / 2]).unwrap();
    drop(quitter);
    wait_until("closed counted", || failures(TlsFailure::Closed) == 1);

    echo_once(&mut bystander, OpCode::Binary, &[1, 2, 3]);
    let total = server.stats().total();
    assert_eq!(total.tls_handshakes, 1, "only the bystander completed one");
    assert_eq!(total.connections, 1);
}

#[test]
fn a_version_the_server_does_not_accept_is_refused_and_counted() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    let tls = TlsConfig::builder()
        .certificate_pem(leaf.chain_pem.as_bytes(), leaf.key_pem.as_bytes())
        .versions(TlsVersions::Tls13Only)
        .build()
        .unwrap();
    let server = start_echo(1, config_with(tls));
    let client_config = ca.client(&[&rustls::version::TLS12]);
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn =
        ClientConnection::new(client_config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    let mut failed = false;
    while stream.conn.is_handshaking() {
        if stream.conn.complete_io(&mut stream.sock).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "a TLS 1.2-only client must not get through");
    wait_until("protocol_version counted", || {
        server
            .stats()
            .total()
            .tls_failed_with(TlsFailure::ProtocolVersion)
            == 1
    });
}

#[test]
fn the_metrics_page_names_tls_handshakes_and_failures() {
    let ca = Ca::new();
    let server = start_echo(1, config_with(tls_config(&ca.leaf(&["localhost"]))));
    let client_config = ca.client(BOTH);
    let _client = wss(server.local_addr(), "localhost", &client_config);
    let page = lanes::metrics::prometheus::encode(&server.metrics());
    assert!(
        page.contains("lanes_tls_handshakes_total{core=\"all\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("lanes_tls_handshake_failures_total{core=\"all\",reason=\"plain_http\"} 0")
    );
}
