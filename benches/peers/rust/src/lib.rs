//! The wss mode shared by the Rust peers: a `tokio_rustls::TlsAcceptor` made from PEM files,
//! the way a tokio server usually adds TLS.
//!
//! Same crypto as lanes, on purpose: rustls 0.23 with the ring provider (`Cargo.lock` keeps
//! the version lanes locks), TLS 1.2 and 1.3, ALPN `http/1.1`, and session resumption by
//! tickets (a ring `Ticketer`, as lanes sets by default; rustls' default session cache is kept
//! for TLS 1.2). A wss comparison then measures each server's I/O and framing around the same
//! record layer, not two TLS libraries.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The acceptor for the certificate chain `cert` and the private key `key` (PEM files).
pub fn tls_acceptor(cert: &str, key: &str) -> io::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::other(format!("{cert}: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| io::Error::other(format!("{key}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(io::Error::other)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// `PORT [CERT KEY]` from argv: the port (8080 when missing), and the TLS acceptor when both
/// PEM files are given.
pub fn args() -> io::Result<(String, Option<TlsAcceptor>)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = args.first().cloned().unwrap_or_else(|| "8080".to_string());
    let tls = match &args[1.min(args.len())..] {
        [] => None,
        [cert, key] => Some(tls_acceptor(cert, key)?),
        _ => return Err(io::Error::other("usage: PORT [CERT KEY]")),
    };
    Ok((port, tls))
}
