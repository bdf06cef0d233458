//! `examples/`: the deploy manifests and example pods apply cleanly against `vnode apiserver`,
//! and the example RBAC is exactly enough: the daemon, run as the example ServiceAccount
//! with the example config and the Deployment's environment against an API server that
//! enforces RBAC and audits every request, does its work and never uses a permission the
//! example roles do not grant.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use vnode_apiserver::auth::{Attributes, rule_allows};
use vnode_tests::{Sandbox, VnodeProcess, kubectl, node_is_ready, repo_root, wait_for};

/// The example pods meant for `kubectl apply` (`mixed.yaml` is `vnode plugin simulate` input:
/// its namespaces and owners do not exist in a fresh cluster).
const POD_EXAMPLES: &[&str] = &["nginx.yaml", "multi-zone.yaml", "spot.yaml", "job.yaml"];
const SIMULATE_ONLY: &[&str] = &["mixed.yaml"];
const DAEMON_USER: &str = "system:serviceaccount:vnode-system:vnode";

fn apply_args() -> Result<Vec<String>> {
    let root = repo_root();
    let mut args = vec![
        "apply".to_string(),
        "-f".into(),
        root.join("examples/deploy").to_string_lossy().into(),
    ];
    for f in POD_EXAMPLES {
        args.push("-f".into());
        args.push(root.join("examples/pods").join(f).to_string_lossy().into());
    }
    Ok(args)
}

fn run_ok(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let (code, out, err) = kubectl(kubeconfig, args)?;
    ensure!(code == 0, "kubectl {args:?} failed ({code}): {out}{err}");
    Ok(out)
}

#[test]
fn every_pod_example_is_applied_or_declared_simulate_only() -> Result<()> {
    for entry in std::fs::read_dir(repo_root().join("examples/pods"))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if name.ends_with(".yaml") {
            ensure!(
                POD_EXAMPLES.contains(&name.as_str()) || SIMULATE_ONLY.contains(&name.as_str()),
                "examples/pods/{name} is neither applied by this test nor declared simulate-only"
            );
        }
    }
    Ok(())
}

#[test]
fn examples_apply_and_show_up_in_kubectl_get() -> Result<()> {
    // Only the API server: a fresh cluster with nothing applied.
    let sb = Sandbox::builder()
        .without_emulator()
        .without_daemon()
        .with_service_account_token()
        .start()?;
    let kc = sb.kubeconfig.clone();
    let args = apply_args()?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_ok(&kc, &args)?;
    for created in [
        "namespace/vnode-system created",
        "serviceaccount/vnode created",
        "clusterrole.rbac.authorization.k8s.io/vnode created",
        "clusterrolebinding.rbac.authorization.k8s.io/vnode created",
        "role.rbac.authorization.k8s.io/vnode-node-lease created",
        "secret/vnode-eci-credentials created",
        "configmap/vnode-config created",
        "deployment.apps/vnode created",
        "pod/nginx created",
        "pod/web-multi-zone created",
        "pod/render-spot created",
        "job.batch/pi created",
    ] {
        ensure!(out.contains(created), "missing {created:?} in:\n{out}");
    }
    // A second apply creates nothing new. (The Secret's `stringData` and the pods' admission
    // defaults make kubectl send a patch, "configured", as against a real cluster.)
    let again = run_ok(&kc, &args)?;
    ensure!(!again.contains(" created"), "{again}");
    ensure!(again.contains("deployment.apps/vnode unchanged"), "{again}");

    let deploy = run_ok(&kc, &["-n", "vnode-system", "get", "deployment", "vnode"])?;
    ensure!(deploy.contains("vnode"), "{deploy}");
    let dep: Value = serde_json::from_str(&run_ok(
        &kc,
        &[
            "-n",
            "vnode-system",
            "get",
            "deployment",
            "vnode",
            "-o",
            "json",
        ],
    )?)?;
    ensure!(dep["spec"]["replicas"] == 2, "{dep}");
    let pods = run_ok(&kc, &["get", "pods"])?;
    for p in ["nginx", "web-multi-zone", "render-spot"] {
        ensure!(pods.contains(p), "{pods}");
    }
    let jobs = run_ok(&kc, &["get", "jobs"])?;
    ensure!(jobs.contains("pi"), "{jobs}");
    let roles = run_ok(&kc, &["get", "clusterrole", "vnode", "-o", "json"])?;
    ensure!(
        !roles.contains("\"*\""),
        "the example ClusterRole uses a wildcard: {roles}"
    );
    Ok(())
}

/// The RBAC objects of `examples/deploy/10-rbac.yaml`.
struct ExampleRbac {
    docs: Vec<Value>,
}

impl ExampleRbac {
    fn load() -> Result<Self> {
        let text = std::fs::read_to_string(repo_root().join("examples/deploy/10-rbac.yaml"))?;
        let mut docs = Vec::new();
        for doc in text.split("\n---\n") {
            let v: Value = serde_yaml::from_str(doc)?;
            if !v.is_null() {
                docs.push(v);
            }
        }
        Ok(Self { docs })
    }

    fn role(&self, kind: &str, name: &str, ns: Option<&str>) -> Option<&Value> {
        self.docs.iter().find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && ns.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        })
    }

    /// Whether the example bindings grant `a` to the daemon's ServiceAccount.
    fn allows(&self, a: &Attributes) -> bool {
        // Upstream's defaults for every authenticated user (discovery, self reviews).
        if a.resource.is_empty() && a.verb == "get" {
            return true;
        }
        if a.verb == "create" && a.resource == "selfsubjectaccessreviews" {
            return true;
        }
        let is_daemon = |b: &Value| {
            b["subjects"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == "vnode"
                        && s["namespace"] == "vnode-system"
                })
            })
        };
        self.docs.iter().any(|b| {
            let scope = match b["kind"].as_str() {
                Some("ClusterRoleBinding") => None,
                Some("RoleBinding") => b["metadata"]["namespace"].as_str(),
                _ => return false,
            };
            if !is_daemon(b) || scope.is_some_and(|ns| ns != a.namespace) {
                return false;
            }
            let rr = &b["roleRef"];
            let role = match rr["kind"].as_str() {
                Some("ClusterRole") => {
                    self.role("ClusterRole", rr["name"].as_str().unwrap_or(""), None)
                }
                Some("Role") => self.role("Role", rr["name"].as_str().unwrap_or(""), scope),
                _ => None,
            };
            role.and_then(|r| r["rules"].as_array())
                .is_some_and(|rules| rules.iter().any(|rule| rule_allows(rule, a)))
        })
    }
}

/// The Deployment's container environment with the downward API and Secret references
/// resolved as the kubelet would, for a pod named `pod` in `vnode-system` with IP 127.0.0.1.
fn deployment_env(pod: &str) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(repo_root().join("examples/deploy/40-deployment.yaml"))?;
    let dep: Value = serde_yaml::from_str(&text)?;
    let container = &dep["spec"]["template"]["spec"]["containers"][0];
    let mut env = Vec::new();
    for e in container["env"].as_array().context("env")? {
        let name = e["name"].as_str().context("env name")?.to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "status.podIP" => "127.0.0.1".into(),
                "metadata.namespace" => "vnode-system".into(),
                "metadata.name" => pod.into(),
                other => bail!("unexpected fieldRef {other}"),
            }
        } else if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
            match key {
                "access-key-id" => vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.into(),
                "access-key-secret" => vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.into(),
                other => bail!("unexpected secret key {other}"),
            }
        } else {
            bail!("env {name} has no value");
        };
        env.push((name, value));
    }
    Ok(env)
}

fn deployment_args() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("examples/deploy/40-deployment.yaml"))?;
    let dep: Value = serde_yaml::from_str(&text)?;
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .context("args")?;
    Ok(args
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect())
}

/// A GET on the daemon's kubelet API with a bearer token (TLS verified against `pki`'s CA).
async fn kubelet_get(
    pki: &vnode_apiserver::Pki,
    port: u16,
    path: &str,
    token: &str,
) -> Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tls = pki.client_tls(None)?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let mut stream = connector.connect(name, tcp).await?;
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut out = Vec::new();
    // A close_notify-less shutdown is fine here: the whole response has arrived by then.
    let _ = stream.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn the_daemon_needs_nothing_beyond_the_example_rbac() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The API server audits every request; the ECI emulator keeps its quotas; the daemon
    // is started below as the example Deployment runs it. The default ServiceAccount keeps
    // its token, so the daemon's TokenRequest is part of what the RBAC must allow.
    let sb = Sandbox::builder()
        .audit_log()
        .emulator_args(&[])
        .without_daemon()
        .with_service_account_token()
        .start()?;
    let dir = &sb.dir;
    let api_dir = sb.api_dir.clone();
    let audit = sb.audit_log.clone().context("audit log")?;
    let admin = sb.kubeconfig.clone();
    run_ok(
        &admin,
        &[
            "apply",
            "-f",
            &repo_root().join("examples/deploy").to_string_lossy(),
        ],
    )?;

    // The daemon's identity: a token for the example ServiceAccount (what its pod would mount).
    let token = run_ok(&admin, &["-n", "vnode-system", "create", "token", "vnode"])?
        .trim()
        .to_string();
    let sa_kubeconfig = dir.path().join("sa-kubeconfig");
    let admin_text = std::fs::read_to_string(&admin)?;
    let admin_token = std::fs::read_to_string(api_dir.join("token"))?
        .trim()
        .to_string();
    std::fs::write(&sa_kubeconfig, admin_text.replace(&admin_token, &token))?;
    // The token is honoured, and the API server enforces RBAC for it.
    let (code, _, err) = kubectl(&sa_kubeconfig, &["-n", "default", "get", "serviceaccounts"])?;
    ensure!(code != 0 && err.contains("forbidden"), "{err}");

    // The example config, exactly as the ConfigMap mounts it, plus a serving certificate
    // from the cluster CA so this test can verify the kubelet API it talks to.
    let config_text = run_ok(
        &admin,
        &[
            "-n",
            "vnode-system",
            "get",
            "configmap",
            "vnode-config",
            "-o",
            "jsonpath={.data.vnode\\.yaml}",
        ],
    )?;
    let mut config: serde_yaml::Value = serde_yaml::from_str(&config_text)?;
    let pki = vnode_apiserver::Pki::load_or_create(&api_dir)?;
    let cert = pki.issue_server_cert("virtual-kubelet", &["127.0.0.1".into()])?;
    pki.write_pair("kubelet.crt", "kubelet.key", &cert)?;
    config["kubelet"]["tlsCertFile"] = api_dir.join("kubelet.crt").to_string_lossy().into();
    config["kubelet"]["tlsKeyFile"] = api_dir.join("kubelet.key").to_string_lossy().into();
    let config_path = dir.path().join("example-vnode.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;

    // Only what the daemon does from here on counts (not this test's own probe above).
    let audit_skip = std::fs::read_to_string(&audit)?.lines().count();
    let mut env = deployment_env("vnode-test-0")?;
    env.push(("ECI_ENDPOINT".into(), sb.eci_url.clone()));
    let mut args = deployment_args()?;
    let config_arg = args
        .iter()
        .position(|a| a == "--config")
        .context("the Deployment passes --config")?;
    args[config_arg + 1] = config_path.to_string_lossy().into();
    let sa_kc = sa_kubeconfig.to_string_lossy().to_string();
    args.extend(
        [
            "--kubeconfig",
            &sa_kc,
            "--listen",
            "127.0.0.1:0",
            "--kubelet-listen",
            "127.0.0.1:0",
        ]
        .map(String::from),
    );
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = VnodeProcess::start_with_env(&arg_refs, &env_refs, Duration::from_secs(60))?;

    let node = wait_for("node Ready", Duration::from_secs(40), || {
        let (code, out, _) = kubectl(&admin, &["get", "node", "virtual-kubelet", "-o", "json"])?;
        if code != 0 {
            return Ok(None);
        }
        let node: Value = serde_json::from_str(&out)?;
        Ok(node_is_ready(&node).then_some(node))
    })?;

    // A pod through its life: the daemon acts on it (a container group, or an event saying
    // why not), then the pod is deleted and the daemon finishes the deletion.
    let nginx = repo_root().join("examples/pods/nginx.yaml");
    run_ok(&admin, &["apply", "-f", &nginx.to_string_lossy()])?;
    wait_for(
        "the daemon to act on the pod",
        Duration::from_secs(40),
        || {
            let pod: Value =
                serde_json::from_str(&run_ok(&admin, &["get", "pod", "nginx", "-o", "json"])?)?;
            if pod["metadata"]["annotations"]["vnode.io/container-group-id"].is_string() {
                return Ok(Some(()));
            }
            let events = run_ok(
                &admin,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=nginx",
                    "-o",
                    "json",
                ],
            )?;
            let events: Value = serde_json::from_str(&events)?;
            // Anything but the scheduler's own events came from the daemon.
            let from_vnode = events["items"].as_array().is_some_and(|items| {
                items.iter().any(|e| {
                    e["reportingComponent"] != "default-scheduler"
                        && e["source"]["component"] != "default-scheduler"
                })
            });
            Ok(from_vnode.then_some(()))
        },
    )?;
    run_ok(&admin, &["delete", "pod", "nginx", "--timeout=60s"])?;

    // A pod waiting for a ConfigMap that does not exist yet: the daemon watches exactly that
    // object and starts the pod when it appears.
    let waiting = dir.path().join("waits-for-config.yaml");
    std::fs::write(
        &waiting,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: waits-for-config, namespace: default}\n\
         spec:\n  containers:\n  - name: app\n    image: nginx\n    env:\n    - name: GREETING\n      \
         valueFrom: {configMapKeyRef: {name: late-config, key: greeting}}\n  \
         tolerations: [{key: virtual-kubelet.io/provider, operator: Exists}]\n",
    )?;
    run_ok(&admin, &["apply", "-f", &waiting.to_string_lossy()])?;
    wait_for(
        "MandatoryConfigMapNotFound",
        Duration::from_secs(40),
        || {
            let events: Value = serde_json::from_str(&run_ok(
                &admin,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=waits-for-config",
                    "-o",
                    "json",
                ],
            )?)?;
            Ok(events["items"]
                .as_array()
                .is_some_and(|items| {
                    items
                        .iter()
                        .any(|e| e["reason"] == "MandatoryConfigMapNotFound")
                })
                .then_some(()))
        },
    )?;
    run_ok(
        &admin,
        &[
            "create",
            "configmap",
            "late-config",
            "--from-literal=greeting=hi",
        ],
    )?;
    wait_for(
        "the waiting pod to be created",
        Duration::from_secs(20),
        || {
            let pod: Value = serde_json::from_str(&run_ok(
                &admin,
                &["get", "pod", "waits-for-config", "-o", "json"],
            )?)?;
            Ok(
                pod["metadata"]["annotations"]["vnode.io/container-group-id"]
                    .is_string()
                    .then_some(()),
            )
        },
    )?;
    run_ok(
        &admin,
        &["delete", "pod", "waits-for-config", "--timeout=60s"],
    )?;

    // The kubelet API: a bearer token goes through TokenReview and SubjectAccessReview.
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .context("kubelet port")? as u16;
    let rt = tokio::runtime::Runtime::new()?;
    let pods = rt.block_on(kubelet_get(&pki, port, "/pods", &admin_token))?;
    ensure!(pods.starts_with("HTTP/1.1 200"), "{pods}");
    let refused = rt.block_on(kubelet_get(&pki, port, "/pods", "not-a-token"))?;
    ensure!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let status = daemon.terminate(Duration::from_secs(40))?;
    ensure!(status.success(), "daemon exit status {status:?}");

    // Every request the daemon made, against the example roles.
    let rbac = ExampleRbac::load()?;
    let mut used = BTreeSet::new();
    let mut denied = Vec::new();
    let mut not_granted = Vec::new();
    for line in std::fs::read_to_string(&audit)?.lines().skip(audit_skip) {
        let rec: Value = serde_json::from_str(line)?;
        if rec["user"] != DAEMON_USER {
            continue;
        }
        let s = |k: &str| rec[k].as_str().unwrap_or("").to_string();
        let a = Attributes {
            verb: s("verb"),
            group: s("apiGroup"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
            path: s("path"),
        };
        let key = format!(
            "{} {}{}{} {}",
            a.verb,
            if a.group.is_empty() {
                String::new()
            } else {
                format!("{}/", a.group)
            },
            if a.resource.is_empty() {
                a.path.clone()
            } else {
                a.resource.clone()
            },
            if a.subresource.is_empty() {
                String::new()
            } else {
                format!("/{}", a.subresource)
            },
            a.namespace
        );
        if rec["code"] == 403 {
            denied.push(key.clone());
        }
        if !rbac.allows(&a) {
            not_granted.push(key.clone());
        }
        used.insert(key);
    }
    ensure!(denied.is_empty(), "the daemon was refused: {denied:?}");
    ensure!(
        not_granted.is_empty(),
        "not granted by examples/deploy/10-rbac.yaml: {not_granted:?}"
    );
    // The check is not vacuous: the daemon did its core work as this identity.
    for needed in [
        "create nodes ",
        "update nodes/status ",
        "create coordination.k8s.io/leases kube-node-lease",
        "create coordination.k8s.io/leases vnode-system",
        "watch pods ",
        "watch configmaps default",
        "create authentication.k8s.io/tokenreviews ",
        "create authorization.k8s.io/subjectaccessreviews ",
    ] {
        ensure!(
            used.iter().any(|u| u.starts_with(needed)),
            "the daemon never did {needed:?}; it did: {used:#?}"
        );
    }
    Ok(())
}
