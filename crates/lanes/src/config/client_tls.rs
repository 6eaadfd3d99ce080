//! TLS for outbound `wss://` connections: which servers to trust.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::tls::{TlsError, provider};

/// The ALPN protocol a WebSocket handshake runs on (RFC 6455 over HTTP/1.1).
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Which servers an outbound `wss://` connection trusts, and how it speaks TLS (rustls, TLS 1.2
/// and 1.3, ALPN `http/1.1`; the server name sent by SNI and checked in the certificate is the
/// URL's host).
///
/// The default ([`ClientTls::webpki_roots`]) trusts the Mozilla root certificates, bundled with
/// lanes (no system store needed). [`ClientTls::with_ca_pem`] trusts one's own CA instead;
/// [`ClientTls::insecure`] trusts any certificate (tests against a self-signed server only).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
/// # let ca_pem = ca.cert.pem();
/// let tls = lanes::ClientTls::with_ca_pem(ca_pem.as_bytes())?;
/// let connect = lanes::Connect::new("wss://localhost:9443/feed", ())?.tls(tls);
/// # let _ = connect;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl Default for ClientTls {
    fn default() -> ClientTls {
        ClientTls::webpki_roots()
    }
}

impl ClientTls {
    /// Trusts the Mozilla root certificates (the `webpki-roots` crate). Built once per process
    /// and shared.
    pub fn webpki_roots() -> ClientTls {
        static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        let config = DEFAULT.get_or_init(|| {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Arc::new(with_roots(roots))
        });
        ClientTls {
            config: Arc::clone(config),
        }
    }

    /// Trusts only the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn with_ca_pem(pem: &[u8]) -> Result<ClientTls, TlsError> {
        let mut roots = RootCertStore::empty();
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| TlsError::NoCertificate)?;
            roots.add(cert).map_err(TlsError::Rustls)?;
            any = true;
        }
        if !any {
            return Err(TlsError::NoCertificate);
        }
        Ok(ClientTls {
            config: Arc::new(with_roots(roots)),
        })
    }

    /// Trusts any certificate, for any name: **no authentication of the server**. For tests
    /// against a server with a throwaway certificate only. (The handshake's signatures are
    /// still checked, so the connection is encrypted to whoever holds the certificate's key.)
    pub fn insecure() -> ClientTls {
        let provider = provider();
        let verifier = Arc::new(AnyCertificate {
            schemes: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        ClientTls {
            config: Arc::new(config),
        }
    }

    /// A rustls client configuration taken as it is (its ALPN should offer `http/1.1`).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls { config }
    }

    /// The rustls configuration outbound connections are made with.
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }
}

/// A client configuration trusting `roots`.
fn with_roots(roots: RootCertStore) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    config
}

/// [`ClientTls::insecure`]'s verifier: any certificate passes; signatures are checked.
#[derive(Debug)]
struct AnyCertificate {
    schemes: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.schemes)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.schemes)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.supported_schemes()
    }
}
