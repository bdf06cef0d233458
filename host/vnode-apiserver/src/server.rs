//! The HTTPS front: TLS (HTTP/2 and HTTP/1.1 by ALPN), authentication, graceful shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, ConnInfo};
use crate::pki::{self, Pki, files};
use crate::store::Store;
use crate::{ApiServerConfig, ApiServerError, controllers};

/// A server that has its certificates, token and kubeconfig in place and is ready to
/// accept connections. [`serve`] is `bind` + `run`; callers that need the URL or the
/// kubeconfig before serving (the CLI's ready line, in-process tests) use the two steps.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<AppState>,
    config: ApiServerConfig,
    url: String,
    pki: Pki,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Serves the API on `listener` until `shutdown` resolves (see [`ApiServer::bind`]).
pub async fn serve(
    listener: TcpListener,
    config: ApiServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiServerError> {
    ApiServer::bind(listener, config)?.run(shutdown).await
}

impl ApiServer {
    /// Loads or creates the CA in `config.dir`, issues the serving certificate (SANs
    /// 127.0.0.1, ::1, localhost, the bound address and `extra_sans`) and the kubelet
    /// client certificate, loads or creates the bearer token, and writes `kubeconfig`
    /// with the bound port. Nothing is accepted until [`ApiServer::run`].
    pub fn bind(listener: TcpListener, config: ApiServerConfig) -> Result<Self, ApiServerError> {
        let local = listener.local_addr().map_err(ApiServerError::Listener)?;
        let pki = Pki::load_or_create(&config.dir)?;
        let host = match local.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let url = format!("https://{host}:{}", local.port());
        let mut sans: Vec<String> = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
        if !local.ip().is_unspecified() && !sans.contains(&local.ip().to_string()) {
            sans.push(local.ip().to_string());
        }
        sans.extend(config.extra_sans.iter().cloned());
        let serving = pki.issue_server_cert("kube-apiserver", &sans)?;
        pki.write_pair(files::SERVING_CERT, files::SERVING_KEY, &serving)?;
        let kubelet_client = pki.issue_client_cert(pki::KUBELET_CLIENT_CN, &["system:masters"])?;
        pki.write_pair(
            files::KUBELET_CLIENT_CERT,
            files::KUBELET_CLIENT_KEY,
            &kubelet_client,
        )?;
        let token = pki::load_or_create_token(&config.dir)?;
        pki::write_kubeconfig(&config.dir, &url, pki.ca_pem(), &token)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(pki.ca_der().clone())
            .map_err(|e| ApiServerError::Tls(e.to_string()))?;
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| ApiServerError::Tls(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiServerError::Tls(e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(
                vec![serving.cert_der.clone(), pki.ca_der().clone()],
                serving.private_key(),
            )
            .map_err(|e| ApiServerError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let mut kubelet_tls = pki.client_tls(Some(&kubelet_client))?;
        kubelet_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let kubelet_tls = Arc::new(kubelet_tls);
        let kubelet_http = reqwest::Client::builder()
            .tls_backend_preconfigured((*kubelet_tls).clone())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ApiServerError::Tls(e.to_string()))?;

        let audit = match &config.audit_log {
            Some(path) => Some(Arc::new(crate::auth::AuditLog::open(path).map_err(
                |e| ApiServerError::Io {
                    path: path.clone(),
                    source: e,
                },
            )?)),
            None => None,
        };
        let cancel = CancellationToken::new();
        let state = Arc::new(AppState {
            store: Arc::new(Store::new(config.watch_window)),
            token,
            server_address: format!("{host}:{}", local.port()),
            kubelet_http,
            kubelet_tls,
            shutdown: cancel,
            bookmark_interval: config.bookmark_interval,
            ca_pem: pki.ca_pem().to_string(),
            tokens: crate::auth::TokenIssuer::default(),
            audit,
            drop_watches_every: config.drop_watches_every,
        });
        api::seed(&state);
        Ok(Self {
            listener,
            acceptor,
            state,
            config,
            url,
            pki,
        })
    }

    /// The server's `https://` URL (what the kubeconfig says).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Path of the kubeconfig written by [`ApiServer::bind`].
    pub fn kubeconfig_path(&self) -> std::path::PathBuf {
        self.config.kubeconfig_path()
    }

    /// The CA (to issue kubelet serving certificates or client certificates).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The admin bearer token.
    pub fn token(&self) -> &str {
        &self.state.token
    }

    /// Serves until `shutdown` resolves, then closes watches and drains connections
    /// (at most 5 s).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ApiServerError> {
        let Self {
            listener,
            acceptor,
            state,
            config,
            url,
            pki: _,
        } = self;
        let cancel = state.shutdown.clone();
        let controllers = tokio::spawn(controllers::run(
            state.store.clone(),
            cancel.clone(),
            config.scheduler,
        ));
        let state_drops_watches = state.drop_watches_every.is_some();
        let audit = state.audit.clone();
        let router = api::router(state);
        tracing::info!(%url, dir = %config.dir.display(), "apiserver serving");
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Transient (EMFILE, aborted handshakes): log and keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            // With the watch-drop switch on, keep a second handle on the socket so a watch
            // can reset the whole connection (SO_LINGER 0, then close: the peer gets RST).
            let (tcp, reset_handle) = if state_drops_watches {
                match split_reset_handle(tcp) {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "duplicating the socket failed");
                        continue;
                    }
                }
            } else {
                (tcp, None)
            };
            let reset = reset_handle.as_ref().map(|_| CancellationToken::new());
            let acceptor = acceptor.clone();
            let router = router.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                // The verifier only lets a certificate through if the CA signed it.
                let info = ConnInfo {
                    cert_user: tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|leaf| crate::auth::User::from_certificate(leaf.as_ref()))
                        .map(Arc::new),
                    reset: reset.clone(),
                };
                let svc = tower::ServiceExt::map_request(
                    router,
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        req
                    },
                );
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(tls),
                    TowerToHyperService::new(svc),
                );
                let served = watcher.watch(conn.into_owned());
                let reset_requested = async {
                    match &reset {
                        Some(token) => token.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    result = served => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    () = reset_requested => {
                        if let Some(handle) = &reset_handle
                            && let Err(e) = handle.set_zero_linger()
                        {
                            tracing::debug!(%peer, error = %e, "SO_LINGER 0 failed");
                        }
                        tracing::debug!(%peer, "connection reset on purpose (--drop-watches-every)");
                        // Dropping the connection and the second handle closes the socket.
                    }
                }
            });
        }
        tracing::info!("apiserver shutting down");
        cancel.cancel();
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 5 s; closing them");
        }
        let _ = controllers.await;
        // The audit writer batches records; everything answered so far reaches the file.
        if let Some(audit) = audit {
            audit.flush();
        }
        Ok(())
    }
}

/// Splits a socket into the stream that serves it and a second handle (a duplicated file
/// descriptor of the same socket) used only to set `SO_LINGER 0` before a deliberate reset.
fn split_reset_handle(
    tcp: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, Option<tokio::net::TcpStream>)> {
    let std_stream = tcp.into_std()?;
    let dup = std_stream.try_clone()?;
    Ok((
        tokio::net::TcpStream::from_std(std_stream)?,
        Some(tokio::net::TcpStream::from_std(dup)?),
    ))
}
