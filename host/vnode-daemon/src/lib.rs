//! The virtual-node daemon behind `vnode run`.
//!
//! Module map:
//! - [`config`]: one typed, validated [`config::Config`] from flags, environment and a YAML file.
//! - [`kube_client`]: the Kubernetes client and the start-up preflight.
//! - [`node`]: Node registration and re-creation, status, the heartbeat Lease, plugin health.
//! - [`leader`]: Lease-based leader election between replicas.
//! - [`kubelet_api`]: the kubelet HTTPS API (logs, pods, stats, exec) and its authn/authz.
//! - [`metrics`]: the `vnode_` Prometheus registry and the `/metrics` `/healthz` `/readyz` server.
//! - [`plugins`]: the placement/translator slots (built-in defaults or files, hot reload).
//! - [`pods`]: the pod controller: watcher, keyed queue, the pure lifecycle `step`, and the
//!   production pod path (plugins → ECI).
//! - [`groups`]: pod UID → ECI container group index, ECI tag/annotation names, the observer.
//! - [`events`]: pod events, queued and written in the background (never on a pod's path).
//! - [`daemon`]: wiring of all of the above under one cancellation token.

pub mod config;
pub mod daemon;
pub mod events;
pub mod groups;
pub mod kube_client;
pub mod kubelet_api;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod plugins;
pub mod pods;

#[cfg(test)]
pub(crate) mod testing;
