//! The kubelet API's rustls configuration: serving certificate from files or self-signed,
//! and optional client-certificate verification against a CA.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::KubeletServerConfig;

/// The TLS setup failed; names the file.
#[derive(Debug, thiserror::Error)]
#[error("kubelet TLS: {0}")]
pub struct TlsError(String);

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds the server config. `san` names go into a self-signed certificate when no
/// certificate file is configured (the node name and InternalIP, so a client that pins
/// this certificate can verify the host).
pub fn server_config(
    cfg: &KubeletServerConfig,
    san: Vec<String>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| TlsError(format!("{}: {e}", key.display())))?;
            (chain, key)
        }
        _ => {
            let generated = rcgen::generate_simple_self_signed(san)
                .map_err(|e| TlsError(format!("generating a self-signed certificate: {e}")))?;
            tracing::info!(
                "kubelet API uses a self-signed serving certificate (set kubelet.tlsCertFile/tlsKeyFile to replace it)"
            );
            let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
                .map_err(|e| TlsError(format!("self-signed key: {e}")))?;
            (vec![generated.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            }
            // Clients without a certificate may still authenticate with a bearer token; a
            // certificate that is presented must chain to the CA or the handshake fails.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
