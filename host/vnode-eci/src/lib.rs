//! The Alibaba Cloud ECI OpenAPI (2018-08-08) client: signing, typed actions, retries,
//! pacing.
//!
//! This is the only crate in vnode that knows ECI's wire format:
//!
//! * [`wire`]: RFC 3986 encoding, both signature schemes (`ACS3-HMAC-SHA256` "v3", the
//!   default, and `HMAC-SHA1` "v1"), parameter flattening (`Container.1.EnvironmentVar.2.Key`).
//!   Public so the emulator verifies exactly what this client produces.
//! * [`model`]: one typed request and response per action; wire names are serde attributes
//!   in this crate only. Build requests with struct-update syntax from `Default`.
//! * [`EciClient`]: one async method per action, with a per-action client-side rate limiter
//!   sized to the documented quotas ([`RateLimits`]), jittered exponential retries on
//!   throttling/5xx/transport errors ([`RetryPolicy`]) honouring `x-acs-retry-after`, and
//!   typed [`EciError`]s.
//!
//! Idempotent creation: give every create a [`client_token_for_pod`] token; a retry after a
//! timeout then returns the original group instead of creating a second one. Creates without
//! a token are never retried after a timeout or 5xx.
//!
//! Credentials ([`Credentials`]) come from `ECI_ACCESS_KEY`/`ECI_SECRET_KEY` or a file, and
//! never appear in `Debug` output, logs or errors. The endpoint is `eci.<region>.aliyuncs.com`
//! unless `ECI_ENDPOINT` (or [`EciClientConfig::endpoint`]) says otherwise; `http://` is
//! allowed for the emulator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vnode_eci::EciError> {
//! use vnode_eci::{model::*, Credentials, EciClient, EciClientConfig};
//! let client = EciClient::new(EciClientConfig::new("cn-hangzhou", Credentials::from_env()?))?;
//! let created = client
//!     .create_container_group(&CreateContainerGroupRequest {
//!         container_group_name: "web-1".into(),
//!         containers: vec![Container { name: "web".into(), image: "nginx:1.25".into(), ..Default::default() }],
//!         client_token: Some(vnode_eci::client_token_for_pod("6f1d2c3b-…", 0)),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("{}", created.container_group_id);
//! # Ok(()) }
//! ```

mod action;
mod client;
mod error;
pub mod model;
pub mod wire;

pub use action::Action;
pub use client::{
    ACCESS_KEY_ENV, Credentials, ENDPOINT_ENV, EciClient, EciClientConfig, RateLimits, RetryPolicy,
    SECRET_KEY_ENV, SignatureVersion, client_token_for_pod,
};
pub use error::EciError;
