//! TLS for a server's port (`wss://`): certificates, SNI, protocol versions and session tickets,
//! made into one rustls server configuration that every worker shares.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol a WebSocket handshake runs on (RFC 6455 over HTTP/1.1).
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The crypto provider lanes builds its TLS configurations with: ring (chosen by measurement on
/// handshakes per second, record throughput, per-connection memory and build time; see the
/// README's TLS section).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// [`provider`] with the AES-128-GCM suites first: the server's preference unless
/// [`TlsConfigBuilder::prefer_client_cipher_order`] is set. Measured here against AES-256-GCM
/// (the first choice of rustls, OpenSSL and Node clients), the SHA-256 of its handshake runs
/// on the CPU's SHA extensions where SHA-384 runs in software (12% of a resumed handshake's
/// server CPU), and its records take 10 AES rounds instead of 14. Browsers and Go put it first
/// too.
fn server_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !is_aes_128_gcm(suite.suite()));
    Arc::new(provider)
}

fn is_aes_128_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

/// TLS on a server's port: every connection on it speaks TLS (a plain request is dropped and
/// counted), and the WebSocket handshake runs inside.
///
/// Built from PEM (one certificate, or several chosen by SNI) with [`TlsConfig::from_pem`],
/// [`TlsConfig::from_pem_files`] or [`TlsConfig::builder`], or taken whole from a rustls
/// configuration with [`TlsConfig::from_rustls`]. The defaults: TLS 1.2 and 1.3, ALPN
/// `http/1.1`, session resumption by tickets (two tickets after each TLS 1.3 handshake, keys
/// rotated every 6 hours) and by a cache of 256 TLS 1.2 sessions per server, and the server's
/// cipher suite preference: AES-128-GCM first, then AES-256-GCM, then ChaCha20-Poly1305
/// ([`TlsConfigBuilder::prefer_client_cipher_order`] to follow the client's).
///
/// A running server takes a new one with
/// [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls): new handshakes use it, open
/// connections keep theirs.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
/// # let (chain_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
/// let mut config = lanes::Config::default();
/// config.tls = Some(lanes::TlsConfig::from_pem(chain_pem.as_bytes(), key_pem.as_bytes())?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
    /// Made by our builder with tickets on: a reload keeps the running ticket keys, so tickets
    /// issued before it still resume.
    own_tickets: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn_protocols", &self.server.alpn_protocols.len())
            .field("tickets", &self.server.ticketer.enabled())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// One certificate for every name: `cert_chain` is the PEM of the certificate chain (leaf
    /// first), `key` the PEM of its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        TlsConfig::builder()
            .certificate_pem(cert_chain, key)
            .build()
    }

    /// [`from_pem`](Self::from_pem), reading the two PEM files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::builder()
            .certificate_pem_files(cert_chain, key)
            .build()
    }

    /// A builder: a default certificate, certificates by server name (SNI), versions and
    /// tickets.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            default: None,
            by_name: HashMap::new(),
            versions: TlsVersions::Tls12And13,
            tickets: true,
            client_cipher_order: false,
            error: None,
        }
    }

    /// A rustls configuration of the application's own, used as it is (its ALPN list
    /// included: a WebSocket client that offers ALPN expects `http/1.1`). Its crypto provider
    /// may be any.
    ///
    /// With `enable_secret_extraction` set, TLS 1.3 connections go over to lanes' own record
    /// layer after the handshake (records opened and sealed in place in the worker's buffers,
    /// as with [`build`](TlsConfigBuilder::build)'s configurations); without it rustls protects
    /// the records, at one copy and one allocation more per record each way.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsConfig {
        TlsConfig {
            server: config,
            own_tickets: false,
        }
    }

    /// The rustls configuration the workers use.
    pub fn rustls_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.server
    }

    /// This configuration, taking over the ticket keys of `running` when both were made by the
    /// builder with tickets on (so that a reload does not cost every client its resumption).
    pub(crate) fn succeeding(mut self, running: &TlsConfig) -> TlsConfig {
        if self.own_tickets && running.own_tickets {
            Arc::make_mut(&mut self.server).ticketer = Arc::clone(&running.server.ticketer);
        }
        self
    }
}

/// The TLS versions a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersions {
    /// TLS 1.2 and 1.3 (the default): every browser and client library of the last ten years.
    Tls12And13,
    /// TLS 1.3 only.
    Tls13Only,
}

/// Builds a [`TlsConfig`]; see [`TlsConfig::builder`]. Errors (an unreadable file, a PEM with
/// no certificate) are kept and returned by [`build`](Self::build).
#[derive(Debug)]
#[must_use]
pub struct TlsConfigBuilder {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
    versions: TlsVersions,
    tickets: bool,
    client_cipher_order: bool,
    error: Option<TlsError>,
}

impl TlsConfigBuilder {
    /// The certificate for clients that send no server name, or one no SNI certificate is for.
    pub fn certificate_pem(mut self, cert_chain: &[u8], key: &[u8]) -> Self {
        match certified_key(cert_chain, key) {
            Ok(key) => self.default = Some(key),
            Err(e) => self.fail(e),
        }
        self
    }

    /// [`certificate_pem`](Self::certificate_pem), reading the two PEM files.
    pub fn certificate_pem_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Self {
        match read_pair(cert_chain.as_ref(), key.as_ref()) {
            Ok((chain, key)) => self.certificate_pem(&chain, &key),
            Err(e) => self.failed(e),
        }
    }

    /// The certificate for clients that ask for `server_name` (SNI; compared without regard to
    /// case).
    pub fn sni_certificate_pem(mut self, server_name: &str, cert_chain: &[u8], key: &[u8]) -> Self {
        match certified_key(cert_chain, key) {
            Ok(key) => {
                self.by_name.insert(server_name.to_ascii_lowercase(), key);
            }
            Err(e) => self.fail(e),
        }
        self
    }

    /// [`sni_certificate_pem`](Self::sni_certificate_pem), reading the two PEM files.
    pub fn sni_certificate_pem_files(
        self,
        server_name: &str,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Self {
        match read_pair(cert_chain.as_ref(), key.as_ref()) {
            Ok((chain, key)) => self.sni_certificate_pem(server_name, &chain, &key),
            Err(e) => self.failed(e),
        }
    }

    /// Which TLS versions are accepted. Default: [`TlsVersions::Tls12And13`].
    pub fn versions(mut self, versions: TlsVersions) -> Self {
        self.versions = versions;
        self
    }

    /// Session resumption by tickets (TLS 1.3 and 1.2). Default: on. Off, TLS 1.3 clients
    /// make a full handshake every time (TLS 1.2 ones can still resume from the server's
    /// session cache).
    pub fn session_tickets(mut self, on: bool) -> Self {
        self.tickets = on;
        self
    }

    /// Whose cipher suite preference decides. Default (`false`): the server's, AES-128-GCM
    /// first (the cheapest suite for the server on CPUs with AES and SHA instructions, see
    /// [`TlsConfig`]). `true`: the client's first choice among the suites the server has,
    /// e.g. for clients without AES instructions, which put ChaCha20-Poly1305 first.
    pub fn prefer_client_cipher_order(mut self, on: bool) -> Self {
        self.client_cipher_order = on;
        self
    }

    /// The configuration, or the first error met.
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.default.is_none() && self.by_name.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match self.versions {
            TlsVersions::Tls12And13 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersions::Tls13Only => &[&rustls::version::TLS13],
        };
        let resolver = Arc::new(SniResolver {
            default: self.default,
            by_name: self.by_name,
        });
        let mut server = rustls::ServerConfig::builder_with_provider(server_provider())
            .with_protocol_versions(versions)
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        server.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        server.ignore_client_order = !self.client_cipher_order;
        // rustls hands the traffic secrets of a TLS 1.3 connection over to lanes' record layer
        // once its handshake is over (they never leave the process).
        server.enable_secret_extraction = true;
        if self.tickets {
            server.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Rustls)?;
        }
        Ok(TlsConfig {
            server: Arc::new(server),
            own_tickets: self.tickets,
        })
    }

    fn fail(&mut self, error: TlsError) {
        self.error.get_or_insert(error);
    }

    fn failed(mut self, error: TlsError) -> Self {
        self.fail(error);
        self
    }
}

/// Why a [`TlsConfig`] could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    /// No certificate was given, or a PEM held none.
    NoCertificate,
    /// The key PEM held no private key (or one in no known form).
    NoPrivateKey,
    /// rustls refused the key or the configuration (an unsupported key type, a key that does
    /// not match the certificate, ...).
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TlsError::NoCertificate => {
                f.write_str("no certificate (a PEM with no CERTIFICATE block?)")
            }
            TlsError::NoPrivateKey => f.write_str("no private key in the key PEM"),
            TlsError::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads a certificate chain file and a key file.
fn read_pair(cert_chain: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(cert_chain)?, read(key)?))
}

/// A certificate chain and its key, parsed and checked against each other.
fn certified_key(cert_chain: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoPrivateKey)?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Rustls)?;
    Ok(Arc::new(key))
}

/// Picks the certificate by the server name the client asked for, else the default one.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls gives the name as the client sent it, checked as a DNS name.
        let named = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        named.or(self.default.as_ref()).cloned()
    }
}
