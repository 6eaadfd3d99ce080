//! TLS for `wss://` targets: the client configuration that `--tls`, `--ca`, `--insecure`,
//! `--server-name`, `--tls-version` and `--tls-resume` ask for, and the handshake.
//!
//! lanes-load speaks TLS through rustls' buffered [`ClientConnection`]: records are decrypted
//! into rustls' own buffer and copied out. That is one copy per byte more than the plain path,
//! which a load generator can afford (the zero-copy work is the server's). The crypto provider
//! is chosen in one place, [`provider`].
//!
//! Trust: only the certificates of `--ca` (no system or built-in roots), or none at all with
//! `--insecure` (certificates unchecked; handshake signatures still checked). `--tls` alone
//! trusts nothing, so every handshake fails with `UnknownIssuer`: it is there to show that
//! verification is on.
//!
//! Session resumption: one in-memory session cache (rustls' `ClientSessionMemoryCache`) per
//! client thread, shared by that thread's connections ([`Tls::for_thread`]); with
//! `--no-tls-resume` none, so every handshake is a full one.

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore,
    SignatureScheme, StreamOwned,
};

/// The ALPN protocol offered: the opening handshake is HTTP/1.1 (RFC 6455 §4.1).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The crypto provider of every TLS connection lanes-load makes (ring). The one place to
/// change it.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS protocol version to restrict the handshakes to (`--tls-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// The name used on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

/// What the TLS options of the command line ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust (none: trust nothing, unless `insecure`).
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (test certificates); handshake signatures are still
    /// checked.
    pub insecure: bool,
    /// Sent as SNI and the name the certificate must be valid for (a DNS name or an IP
    /// address).
    pub server_name: String,
    /// The only protocol version offered (none: 1.2 and 1.3).
    pub version: Option<TlsVersion>,
    /// Keep sessions for resumed handshakes (one cache per client thread).
    pub resume: bool,
}

impl TlsOptions {
    /// Verification against `ca`, SNI `localhost`, both versions, resumption on.
    pub fn with_ca(ca: impl Into<PathBuf>) -> TlsOptions {
        TlsOptions {
            ca: Some(ca.into()),
            insecure: false,
            server_name: "localhost".into(),
            version: None,
            resume: true,
        }
    }
}

impl TlsOptions {
    /// One line for a run's summary: versions, SNI, trust, resumption.
    pub fn describe(&self) -> String {
        let versions = self.version.map_or("1.2 and 1.3", TlsVersion::name);
        let trust = match (&self.ca, self.insecure) {
            (_, true) => "certificate not verified (--insecure)".to_string(),
            (Some(ca), false) => format!("verified against {}", ca.display()),
            (None, false) => "no CA trusted".to_string(),
        };
        let resumption = if self.resume { "on" } else { "off" };
        format!(
            "TLS {versions}, server name {}, {trust}, resumption {resumption}",
            self.server_name
        )
    }

    /// The options as a JSON object for a run's `--json` output.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "server_name": self.server_name,
            "version": self.version.map(TlsVersion::name),
            "ca": self.ca.as_ref().map(|ca| ca.display().to_string()),
            "insecure": self.insecure,
            "resume": self.resume,
        })
    }
}

/// A TLS client configuration: cheap to clone, shared by connections.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    resume: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Builds the configuration: reads the CA file, checks the server name.
    pub fn new(options: &TlsOptions) -> Result<Tls, String> {
        let server_name = ServerName::try_from(options.server_name.clone())
            .map_err(|e| format!("--server-name {:?}: {e}", options.server_name))?;
        let provider = provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match options.version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let mut config = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth()
        } else {
            let roots = match &options.ca {
                Some(path) => read_roots(path)?,
                None => RootCertStore::empty(),
            };
            // An empty store is allowed: every handshake then fails with UnknownIssuer, as
            // `--tls` alone should.
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        if !options.resume {
            config.resumption = Resumption::disabled();
        }
        Ok(Tls {
            config: Arc::new(config),
            server_name,
            resume: options.resume,
        })
    }

    /// The same configuration with a session cache of its own (when resumption is on): the one
    /// that a client thread's connections share.
    pub fn for_thread(&self) -> Tls {
        if !self.resume {
            return self.clone();
        }
        let mut config = (*self.config).clone();
        config.resumption = Resumption::default();
        Tls {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
            resume: true,
        }
    }

    /// Whether sessions are kept for resumed handshakes.
    pub fn resumes(&self) -> bool {
        self.resume
    }

    /// Runs the TLS handshake on `sock`, a blocking TCP connection to `addr` (its read timeout
    /// bounds the wait for the server).
    pub fn handshake(
        &self,
        addr: SocketAddr,
        mut sock: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
        let failed = |e: &dyn fmt::Display| format!("TLS handshake with {addr} failed: {e}");
        let mut conn = ClientConnection::new(Arc::clone(&self.config), self.server_name.clone())
            .map_err(|e| failed(&e))?;
        while conn.is_handshaking() {
            match conn.complete_io(&mut sock) {
                // A rustls error (a bad certificate, an alert from the server) comes wrapped in
                // an io::Error whose text is rustls' own.
                Err(e) => return Err(failed(&e)),
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(failed(&"the server closed the connection"));
                }
                Ok(_) => {}
            }
        }
        Ok(StreamOwned::new(conn, sock))
    }
}

/// Whether `conn`'s handshake resumed a session.
pub fn resumed(conn: &ClientConnection) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// Reads the certificates of a PEM file into a root store.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("--ca {shown}: {e}"))? {
        let cert = cert.map_err(|e| format!("--ca {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {shown}: a certificate was refused: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {shown}: no certificate in the file"));
    }
    Ok(roots)
}

/// `--insecure`: any certificate is accepted; the handshake's signatures are still checked with
/// the provider's algorithms, so the connection is encrypted, only not authenticated.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
