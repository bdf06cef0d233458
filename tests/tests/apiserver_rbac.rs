//! `vnode apiserver` authenticates service-account tokens (`kubectl create token`) and
//! enforces RBAC for them; `kubectl auth can-i` (SelfSubjectAccessReview) answers from the
//! same rules; the audit log records who did what.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::Value;
use vnode_tests::{VnodeProcess, kubectl, wait_for};

fn run_ok(kc: &Path, args: &[&str]) -> Result<String> {
    let (code, out, err) = kubectl(kc, args)?;
    ensure!(code == 0, "kubectl {args:?}: {out}{err}");
    Ok(out)
}

#[test]
fn service_account_tokens_get_exactly_what_rbac_grants() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let audit = dir.path().join("audit.jsonl");
    let d = dir.path().to_string_lossy().to_string();
    let a = audit.to_string_lossy().to_string();
    let _api = VnodeProcess::start(
        &[
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            &d,
            "--audit-log",
            &a,
        ],
        Duration::from_secs(30),
    )?;
    let admin = dir.path().join("kubeconfig");
    run_ok(&admin, &["create", "serviceaccount", "reader"])?;
    let token = run_ok(&admin, &["create", "token", "reader", "--duration=20m"])?
        .trim()
        .to_string();
    ensure!(!token.is_empty());
    let as_reader = |args: &[&str]| -> Result<(i32, String, String)> {
        let mut all = vec!["--token", token.as_str()];
        all.extend_from_slice(args);
        kubectl(&admin, &all)
    };

    // Authenticated (discovery works), but nothing granted yet.
    let (code, _, err) = as_reader(&["get", "pods"])?;
    ensure!(code != 0, "listing pods must be refused");
    ensure!(
        err.contains(
            "pods is forbidden: User \"system:serviceaccount:default:reader\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    let (_, out, _) = as_reader(&["auth", "can-i", "list", "pods"])?;
    ensure!(out.trim() == "no", "{out}");

    // A Role + RoleBinding in default grants list, only there. (`kubectl create role` sends
    // protobuf, which this server decodes only for a few kinds: apply YAML instead.)
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: pod-reader, namespace: default}\nrules:\n- {apiGroups: [\"\"], resources: [pods], verbs: [get, list]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader, namespace: default}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}\nsubjects:\n- {kind: ServiceAccount, name: reader, namespace: default}\n",
    )?;
    run_ok(&admin, &["apply", "-f", &rbac.to_string_lossy()])?;
    let (code, out, err) = as_reader(&["get", "pods"])?;
    ensure!(code == 0, "{out}{err}");
    let (_, out, _) = as_reader(&["auth", "can-i", "list", "pods"])?;
    ensure!(out.trim() == "yes", "{out}");
    let (_, out, _) = as_reader(&["auth", "can-i", "delete", "pods"])?;
    ensure!(out.trim() == "no", "{out}");
    let (code, _, err) = as_reader(&["-n", "kube-system", "get", "pods"])?;
    ensure!(code != 0 && err.contains("forbidden"), "{err}");

    // A ClusterRoleBinding grants cluster-wide.
    let cluster = dir.path().join("cluster-rbac.yaml");
    std::fs::write(
        &cluster,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: node-reader}\nrules:\n- {apiGroups: [\"\"], resources: [nodes], verbs: [get, list]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: reader}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}\nsubjects:\n- {kind: ServiceAccount, name: reader, namespace: default}\n",
    )?;
    run_ok(&admin, &["apply", "-f", &cluster.to_string_lossy()])?;
    let (code, out, err) = as_reader(&["get", "nodes"])?;
    ensure!(code == 0, "{out}{err}");

    // Deleting the ServiceAccount invalidates its tokens.
    run_ok(&admin, &["delete", "serviceaccount", "reader"])?;
    let (code, _, err) = as_reader(&["get", "pods"])?;
    ensure!(code != 0 && err.contains("Unauthorized"), "{err}");

    // The audit log saw the refusals and the grants, with the caller's name. The server
    // writes its records in batches a few milliseconds apart, so wait for them.
    let reader = "system:serviceaccount:default:reader";
    wait_for(
        "the audit records of the reader's refusal and grant and of the token request",
        Duration::from_secs(30),
        || {
            let records: Vec<Value> = std::fs::read_to_string(&audit)?
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            let refused = records.iter().any(|r| {
                r["user"] == reader
                    && r["verb"] == "list"
                    && r["resource"] == "pods"
                    && r["namespace"] == "default"
                    && r["code"] == 403
            });
            let granted = records.iter().any(|r| {
                r["user"] == reader
                    && r["verb"] == "list"
                    && r["resource"] == "nodes"
                    && r["code"] == 200
            });
            let token = records.iter().any(|r| {
                r["user"] == "vnode-admin"
                    && r["verb"] == "create"
                    && r["resource"] == "serviceaccounts"
                    && r["subresource"] == "token"
            });
            Ok((refused && granted && token).then_some(()))
        },
    )?;
    Ok(())
}
