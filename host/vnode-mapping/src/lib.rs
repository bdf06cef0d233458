//! Pure conversions at the edges of the plugin contract. No I/O: callers fetch, this crate
//! converts. Each module knows exactly two vocabularies, never Kubernetes and the ECI wire
//! format together:
//!
//! - [`quantity`]: Kubernetes quantity strings (`500m`, `1Gi`) to numbers.
//! - [`placement_input`]: a Kubernetes `Pod` → the placement plugin's `pod-view`.
//! - [`translator_input`]: a Kubernetes `Pod` plus the objects it references (already fetched)
//!   → the translator plugin's `resolved-pod`.
//! - [`eci_request`]: the translator's `container-group-request` → `vnode_eci`'s typed
//!   CreateContainerGroup model (the client owns the wire encoding).
//! - [`pod_status`]: `vnode_eci`'s typed container-group status → Kubernetes `PodStatus`.

pub mod eci_request;
pub mod placement_input;
pub mod pod_status;
pub mod quantity;
pub mod translator_input;
