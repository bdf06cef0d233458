//! An embedded Kubernetes API server that kubectl and kube-rs talk to unchanged.
