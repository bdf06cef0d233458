//! The server's small PKI: one CA (kept in `dir/ca.crt` + `dir/ca.key` and reused across
//! restarts), a serving certificate for loopback, the client certificate the server shows
//! to kubelets (like kube-apiserver's `--kubelet-client-certificate`), a bearer token, and
//! the kubeconfig that ties them together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::ApiServerError;

/// File names inside the server directory.
pub mod files {
    /// The CA certificate (PEM).
    pub const CA_CERT: &str = "ca.crt";
    /// The CA private key (PEM, PKCS#8).
    pub const CA_KEY: &str = "ca.key";
    /// The serving certificate (PEM).
    pub const SERVING_CERT: &str = "apiserver.crt";
    /// The serving key (PEM).
    pub const SERVING_KEY: &str = "apiserver.key";
    /// The client certificate the server presents to kubelets (PEM).
    pub const KUBELET_CLIENT_CERT: &str = "apiserver-kubelet-client.crt";
    /// Its key (PEM).
    pub const KUBELET_CLIENT_KEY: &str = "apiserver-kubelet-client.key";
    /// The admin bearer token.
    pub const TOKEN: &str = "token";
    /// The kubeconfig for kubectl and kube-rs.
    pub const KUBECONFIG: &str = "kubeconfig";
}

/// Common name of the client certificate the server presents to kubelets.
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
const CA_CN: &str = "vnode-apiserver-ca";

/// A certificate and key issued by the server's CA.
#[derive(Clone)]
pub struct IssuedCert {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// Private key, DER (PKCS#8).
    pub key_der: Vec<u8>,
}

impl IssuedCert {
    /// The key as rustls wants it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

/// The CA and the paths of everything issued from it.
pub struct Pki {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, e: std::io::Error) -> ApiServerError {
    ApiServerError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2099, 12, 31);
    p
}

fn write_private(path: &Path, contents: &str) -> Result<(), ApiServerError> {
    std::fs::write(path, contents).map_err(|e| io_err(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(path, e))?;
    }
    Ok(())
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
}

impl Pki {
    /// Loads the CA from `dir`, or creates it (and `dir`) when absent. Idempotent: the
    /// daemon or a test may call it on the same directory as the server to share the CA.
    pub fn load_or_create(dir: &Path) -> Result<Self, ApiServerError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let cert_path = dir.join(files::CA_CERT);
        let key_path = dir.join(files::CA_KEY);
        let params = ca_params();
        let (key, cert_pem) = if cert_path.exists() && key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(|e| io_err(&key_path, e))?;
            let cert_pem =
                std::fs::read_to_string(&cert_path).map_err(|e| io_err(&cert_path, e))?;
            let key = KeyPair::from_pem(&key_pem)
                .map_err(|e| ApiServerError::Pki(format!("{}: {e}", key_path.display())))?;
            (key, cert_pem)
        } else {
            let key = KeyPair::generate().map_err(|e| ApiServerError::Pki(e.to_string()))?;
            let cert = params
                .self_signed(&key)
                .map_err(|e| ApiServerError::Pki(e.to_string()))?;
            let cert_pem = cert.pem();
            write_private(&key_path, &key.serialize_pem())?;
            std::fs::write(&cert_path, &cert_pem).map_err(|e| io_err(&cert_path, e))?;
            (key, cert_pem)
        };
        let der = pem_to_der(&cert_pem).ok_or_else(|| {
            ApiServerError::Pki(format!("{}: not a PEM certificate", cert_path.display()))
        })?;
        // The issuer is rebuilt from the same subject and key: that is all a signature by
        // this CA needs (issuer name + authority key id derived from the key).
        let issuer = Issuer::new(params, key);
        Ok(Self {
            dir: dir.to_path_buf(),
            ca_cert_pem: cert_pem,
            ca_cert_der: CertificateDer::from(der),
            issuer,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    /// Issues a certificate signed by the CA. `sans` are DNS names or IP addresses;
    /// `organizations` become `O=` (Kubernetes groups for client certificates).
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        sans: &[String],
        server_auth: bool,
        client_auth: bool,
    ) -> Result<IssuedCert, ApiServerError> {
        let pki_err = |e: rcgen::Error| ApiServerError::Pki(e.to_string());
        let mut p = CertificateParams::new(sans.to_vec()).map_err(pki_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        for o in organizations {
            dn.push(DnType::OrganizationName, *o);
        }
        p.distinguished_name = dn;
        p.not_before = date_time_ymd(2024, 1, 1);
        p.not_after = date_time_ymd(2099, 12, 31);
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if server_auth {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client_auth {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let key = KeyPair::generate().map_err(pki_err)?;
        let cert = p.signed_by(&key, &self.issuer).map_err(pki_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// Issues a serving certificate (e.g. for a kubelet API endpoint).
    pub fn issue_server_cert(
        &self,
        common_name: &str,
        sans: &[String],
    ) -> Result<IssuedCert, ApiServerError> {
        self.issue(common_name, &[], sans, true, false)
    }

    /// Issues a client certificate; `groups` become the Kubernetes groups (`O=`).
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        groups: &[&str],
    ) -> Result<IssuedCert, ApiServerError> {
        self.issue(common_name, groups, &[], false, true)
    }

    /// Writes an issued certificate pair to `dir/<stem>.crt` and `dir/<stem>.key`.
    pub fn write_pair(
        &self,
        stem_cert: &str,
        stem_key: &str,
        c: &IssuedCert,
    ) -> Result<(), ApiServerError> {
        let cp = self.dir.join(stem_cert);
        std::fs::write(&cp, &c.cert_pem).map_err(|e| io_err(&cp, e))?;
        write_private(&self.dir.join(stem_key), &c.key_pem)
    }

    /// A rustls client config that trusts only this CA (for verifying kubelets and for
    /// clients of this server).
    pub fn client_tls(
        &self,
        identity: Option<&IssuedCert>,
    ) -> Result<rustls::ClientConfig, ApiServerError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_cert_der.clone())
            .map_err(|e| ApiServerError::Pki(e.to_string()))?;
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiServerError::Pki(e.to_string()))?
        .with_root_certificates(roots);
        match identity {
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert_der.clone()], id.private_key())
                .map_err(|e| ApiServerError::Pki(e.to_string())),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Loads or creates the admin bearer token in `dir/token`.
pub fn load_or_create_token(dir: &Path) -> Result<String, ApiServerError> {
    let path = dir.join(files::TOKEN);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &token)?;
    Ok(token)
}

/// The kubeconfig text for `server` (an `https://` URL), the CA and a token.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: vnode\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: vnode\n  context:\n    cluster: vnode\n    user: vnode-admin\n    namespace: default\ncurrent-context: vnode\nusers:\n- name: vnode-admin\n  user:\n    token: {token}\npreferences: {{}}\n"
    )
}

/// Writes the kubeconfig to `dir/kubeconfig` (mode 0600: it holds the token).
pub fn write_kubeconfig(
    dir: &Path,
    server: &str,
    ca_pem: &str,
    token: &str,
) -> Result<PathBuf, ApiServerError> {
    let path = dir.join(files::KUBECONFIG);
    write_private(&path, &kubeconfig_yaml(server, ca_pem, token))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_reused_and_signs_verifiable_leaves() {
        use rustls::client::danger::ServerCertVerifier as _;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Pki::load_or_create(dir.path()).expect("create");
        let b = Pki::load_or_create(dir.path()).expect("load");
        assert_eq!(a.ca_pem(), b.ca_pem());
        // A leaf issued by the reloaded CA verifies against the original CA certificate.
        let leaf = b
            .issue_server_cert("kubelet", &["127.0.0.1".into()])
            .expect("issue");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(a.ca_der().clone()).expect("root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("ip");
        verifier
            .verify_server_cert(
                &leaf.cert_der,
                &[],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .expect("leaf verifies against the CA");
        let t1 = load_or_create_token(dir.path()).expect("token");
        assert_eq!(t1, load_or_create_token(dir.path()).expect("token"));
    }
}
