//! The real `kubectl` (1.32) against `vnode apiserver`: apply, get (table, JSON, YAML),
//! describe with events, label, annotate, patch (strategic, merge, JSON), wait, delete
//! (graceful and forced), scheduling and `FailedScheduling`, and bad requests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use vnode_tests::{VnodeProcess, kubectl};

struct Cluster {
    _proc: VnodeProcess,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_str().context("utf-8 temp dir")?;
        let proc = VnodeProcess::start(
            &["apiserver", "--listen", "127.0.0.1:0", "--dir", d],
            Duration::from_secs(30),
        )?;
        ensure!(
            proc.url.starts_with("https://127.0.0.1:"),
            "ready line URL: {}",
            proc.url
        );
        let kubeconfig = dir.path().join("kubeconfig");
        Ok(Self {
            _proc: proc,
            dir,
            kubeconfig,
        })
    }

    /// kubectl with a per-test discovery cache.
    fn kubectl(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let cache = self.dir.path().join("kubectl-cache");
        let cache_arg = format!("--cache-dir={}", cache.display());
        let mut all = vec![cache_arg.as_str()];
        all.extend_from_slice(args);
        kubectl(&self.kubeconfig, &all)
    }

    /// kubectl that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let (code, out, err) = self.kubectl(args)?;
        ensure!(code == 0, "kubectl {args:?} failed ({code}):\n{out}\n{err}");
        Ok(out)
    }

    fn write(&self, name: &str, text: &str) -> Result<String> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.to_string_lossy().into_owned())
    }

    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if f()? {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A Ready node shaped like vnode's virtual node (labels and taint from the seed).
    fn add_virtual_node(&self) -> Result<()> {
        let f = self.write("node.yaml", VIRTUAL_NODE)?;
        self.ok(&["apply", "-f", &f])?;
        Ok(())
    }
}

const VIRTUAL_NODE: &str = r#"apiVersion: v1
kind: Node
metadata:
  name: virtual-kubelet
  labels:
    type: virtual-kubelet
    kubernetes.io/role: agent
    beta.kubernetes.io/os: linux
    kubernetes.io/os: linux
spec:
  taints:
  - key: virtual-kubelet.io/provider
    value: alibabacloud
    effect: NoSchedule
status:
  conditions:
  - type: Ready
    status: "True"
    reason: KubeletReady
    message: ok
  addresses:
  - type: InternalIP
    address: 127.0.0.1
  nodeInfo:
    kubeletVersion: v1.33.0-vnode
"#;

/// The seed's nginx pod, verbatim.
const SEED_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - image: nginx
    imagePullPolicy: Always
    name: nginx
  nodeSelector:
    kubernetes.io/role: agent
    beta.kubernetes.io/os: linux
    type: virtual-kubelet
  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
"#;

const DEPLOY_MANIFEST: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: vnode
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: vnode:node
rules:
- apiGroups: [""]
  resources: ["pods", "pods/status"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vnode:node
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: vnode:node
subjects:
- kind: ServiceAccount
  name: vnode
  namespace: kube-system
---
apiVersion: v1
kind: Secret
metadata:
  name: eci-credentials
  namespace: kube-system
type: Opaque
stringData:
  accessKeyId: LTAIexample
  accessKeySecret: secret
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: vnode-config
  namespace: kube-system
data:
  region: cn-hangzhou
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vnode
  namespace: kube-system
spec:
  replicas: 1
  selector:
    matchLabels:
      app: vnode
  template:
    metadata:
      labels:
        app: vnode
    spec:
      serviceAccountName: vnode
      containers:
      - name: vnode
        image: vnode:dev
        args: ["run"]
        resources:
          requests:
            cpu: 1
            memory: 256Mi
"#;

fn json(out: &str) -> Result<serde_json::Value> {
    serde_json::from_str(out).with_context(|| format!("not JSON: {out}"))
}

#[test]
fn apply_a_deployment_manifest_and_reapply_it() -> Result<()> {
    let c = Cluster::start()?;
    let f = c.write("deploy.yaml", DEPLOY_MANIFEST)?;
    let out = c.ok(&["apply", "-f", &f])?;
    for line in [
        "serviceaccount/vnode created",
        "clusterrole.rbac.authorization.k8s.io/vnode:node created",
        "clusterrolebinding.rbac.authorization.k8s.io/vnode:node created",
        "secret/eci-credentials created",
        "configmap/vnode-config created",
        "deployment.apps/vnode created",
    ] {
        ensure!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Unchanged manifest: nothing to do. Changed data: configured, and the change lands.
    let out = c.ok(&["apply", "-f", &f])?;
    ensure!(out.contains("configmap/vnode-config unchanged"), "{out}");
    let changed = DEPLOY_MANIFEST.replace("region: cn-hangzhou", "region: cn-beijing");
    let f2 = c.write("deploy2.yaml", &changed)?;
    let out = c.ok(&["apply", "-f", &f2])?;
    ensure!(out.contains("configmap/vnode-config configured"), "{out}");
    let region = c.ok(&[
        "-n",
        "kube-system",
        "get",
        "configmap",
        "vnode-config",
        "-o",
        "jsonpath={.data.region}",
    ])?;
    ensure!(region == "cn-beijing", "region {region}");
    // stringData became base64 data; the numeric cpu quantity is stored as a string.
    let secret = json(&c.ok(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "eci-credentials",
        "-o",
        "json",
    ])?)?;
    ensure!(
        secret["data"]["accessKeyId"] == "TFRBSWV4YW1wbGU=",
        "{secret}"
    );
    let deploy = json(&c.ok(&["-n", "kube-system", "get", "deploy", "vnode", "-o", "json"])?)?;
    ensure!(
        deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1",
        "{deploy}"
    );
    let table = c.ok(&["-n", "kube-system", "get", "deployments"])?;
    ensure!(
        table.contains("NAME") && table.contains("READY") && table.contains("vnode"),
        "{table}"
    );
    // Default namespaces and their service accounts exist.
    let ns = c.ok(&["get", "ns"])?;
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure!(ns.contains(n), "namespace {n} missing:\n{ns}");
    }
    c.ok(&["-n", "kube-system", "get", "serviceaccount", "default"])?;
    Ok(())
}

#[test]
fn seed_pod_is_scheduled_and_kubectl_verbs_work_on_it() -> Result<()> {
    let c = Cluster::start()?;
    c.add_virtual_node()?;
    let nodes = c.ok(&["get", "node"])?;
    ensure!(
        nodes.lines().any(|l| l.starts_with("virtual-kubelet")
            && l.contains("Ready")
            && l.contains("agent")),
        "node table:\n{nodes}"
    );
    let f = c.write("pod.yaml", SEED_POD)?;
    let out = c.ok(&["apply", "-f", &f])?;
    ensure!(out.contains("pod/nginx created"), "{out}");
    c.ok(&[
        "wait",
        "--for=condition=PodScheduled",
        "pod/nginx",
        "--timeout=20s",
    ])?;
    let node = c.ok(&["get", "pod", "nginx", "-o", "jsonpath={.spec.nodeName}"])?;
    ensure!(node == "virtual-kubelet", "bound to {node:?}");

    // Table, JSON and YAML views, with the defaults a real server adds.
    let table = c.ok(&["get", "pods"])?;
    ensure!(
        table.contains("READY")
            && table
                .lines()
                .any(|l| l.starts_with("nginx") && l.contains("0/1") && l.contains("Pending")),
        "{table}"
    );
    let wide = c.ok(&["get", "pods", "-o", "wide"])?;
    ensure!(wide.contains("virtual-kubelet"), "{wide}");
    let pod = json(&c.ok(&["get", "pod", "nginx", "-o", "json"])?)?;
    ensure!(pod["spec"]["schedulerName"] == "default-scheduler", "{pod}");
    ensure!(pod["spec"]["serviceAccountName"] == "default", "{pod}");
    ensure!(pod["status"]["qosClass"] == "BestEffort", "{pod}");
    ensure!(
        pod["spec"]["volumes"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-")),
        "{pod}"
    );
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&c.ok(&["get", "pod", "nginx", "-o", "yaml"])?)?;
    ensure!(
        yaml["metadata"]["name"].as_str() == Some("nginx"),
        "{yaml:?}"
    );

    let described = c.ok(&["describe", "pod", "nginx"])?;
    ensure!(
        described.contains("Successfully assigned default/nginx to virtual-kubelet"),
        "{described}"
    );
    ensure!(described.contains("default-scheduler"), "{described}");

    // label / annotate (merge patches), strategic, merge and JSON patches.
    c.ok(&["label", "pod", "nginx", "env=test"])?;
    c.ok(&["annotate", "pod", "nginx", "note=hello"])?;
    let labels = c.ok(&["get", "pods", "-l", "env=test", "-o", "name"])?;
    ensure!(labels.trim() == "pod/nginx", "{labels}");
    // kubectl checks label syntax itself; a raw patch reaches the server's validation.
    let (code, _, err) = c.kubectl(&[
        "patch",
        "pod",
        "nginx",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"bad":"not ok!"}}}"#,
    ])?;
    ensure!(
        code != 0 && err.contains("metadata.labels: Invalid value: \"not ok!\""),
        "bad label accepted: {err}"
    );
    c.ok(&[
        "patch",
        "pod",
        "nginx",
        "-p",
        r#"{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}"#,
    ])?;
    c.ok(&[
        "patch",
        "pod",
        "nginx",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"web"}}}"#,
    ])?;
    c.ok(&[
        "patch",
        "pod",
        "nginx",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/annotations/j","value":"p"}]"#,
    ])?;
    let pod = json(&c.ok(&["get", "pod", "nginx", "-o", "json"])?)?;
    ensure!(
        pod["spec"]["containers"][0]["image"] == "nginx:1.27",
        "{pod}"
    );
    ensure!(
        pod["spec"]["containers"].as_array().map(Vec::len) == Some(1),
        "{pod}"
    );
    ensure!(
        pod["metadata"]["labels"]["tier"] == "web" && pod["metadata"]["labels"]["env"] == "test",
        "{pod}"
    );
    ensure!(
        pod["metadata"]["annotations"]["note"] == "hello"
            && pod["metadata"]["annotations"]["j"] == "p",
        "{pod}"
    );
    // Forbidden spec change on a pod: 422 like upstream.
    let (code, _, err) = c.kubectl(&[
        "patch",
        "pod",
        "nginx",
        "-p",
        r#"{"spec":{"restartPolicy":"Never"}}"#,
    ])?;
    ensure!(
        code != 0 && err.contains("Forbidden: pod updates may not change fields"),
        "{err}"
    );

    // Graceful deletion: the pod is bound to a live node, so it stays Terminating until
    // "the kubelet" deletes it with grace 0. `kubectl delete` (which waits) returns then.
    let kubeconfig = c.kubeconfig.clone();
    let cache = format!(
        "--cache-dir={}",
        c.dir.path().join("kubectl-cache2").display()
    );
    let waiting = std::thread::spawn(move || {
        kubectl(
            &kubeconfig,
            &[&cache, "delete", "pod", "nginx", "--timeout=30s"],
        )
    });
    c.wait_for("terminating pod", Duration::from_secs(10), || {
        let out = c.ok(&["get", "pod", "nginx", "-o", "json"])?;
        Ok(json(&out)?["metadata"]["deletionTimestamp"].is_string())
    })?;
    let pod = json(&c.ok(&["get", "pod", "nginx", "-o", "json"])?)?;
    ensure!(pod["metadata"]["deletionGracePeriodSeconds"] == 30, "{pod}");
    let table = c.ok(&["get", "pod", "nginx"])?;
    ensure!(table.contains("Terminating"), "{table}");
    ensure!(
        !waiting.is_finished(),
        "kubectl delete returned while the pod still existed"
    );
    c.ok(&["delete", "pod", "nginx", "--grace-period=0", "--force"])?;
    let (code, out, err) = waiting
        .join()
        .map_err(|_| anyhow::anyhow!("delete thread panicked"))??;
    ensure!(
        code == 0 && out.contains("pod \"nginx\" deleted"),
        "waiting delete: {code}\n{out}\n{err}"
    );
    let (code, _, err) = c.kubectl(&["get", "pod", "nginx"])?;
    ensure!(
        code != 0 && err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    Ok(())
}

#[test]
fn unmatched_selector_stays_pending_with_failed_scheduling_event() -> Result<()> {
    let c = Cluster::start()?;
    c.add_virtual_node()?;
    let pod = SEED_POD
        .replace("name: nginx\nspec", "name: lost\nspec")
        .replace("type: virtual-kubelet", "type: nowhere");
    let f = c.write("lost.yaml", &pod)?;
    c.ok(&["apply", "-f", &f])?;
    let want = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.";
    c.wait_for("FailedScheduling event", Duration::from_secs(10), || {
        let d = c.ok(&["describe", "pod", "lost"])?;
        Ok(d.contains("FailedScheduling") && d.contains(want))
    })?;
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=lost,reason=FailedScheduling",
    ])?;
    ensure!(
        events.contains("FailedScheduling") && events.contains("pod/lost"),
        "{events}"
    );
    let pod = json(&c.ok(&["get", "pod", "lost", "-o", "json"])?)?;
    ensure!(
        pod["status"]["phase"] == "Pending" && pod["spec"]["nodeName"].is_null(),
        "{pod}"
    );
    ensure!(
        pod["status"]["conditions"][0]["reason"] == "Unschedulable",
        "{pod}"
    );
    // A pod without a toleration for the node's taint gets the taint message.
    let untolerated = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: plain\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let f = c.write("plain.yaml", untolerated)?;
    c.ok(&["apply", "-f", &f])?;
    c.wait_for("taint message", Duration::from_secs(10), || {
        let d = c.ok(&["describe", "pod", "plain"])?;
        Ok(d.contains("untolerated taint {virtual-kubelet.io/provider: alibabacloud}"))
    })?;
    // A new matching node makes the pending pod schedulable.
    let node2 = VIRTUAL_NODE
        .replace("name: virtual-kubelet\n", "name: vk-2\n")
        .replace("type: virtual-kubelet", "type: nowhere");
    let f = c.write("node2.yaml", &node2)?;
    c.ok(&["apply", "-f", &f])?;
    c.ok(&[
        "wait",
        "--for=condition=PodScheduled",
        "pod/lost",
        "--timeout=20s",
    ])?;
    // Deleting an unbound pod is immediate (no kubelet owns it).
    c.ok(&["delete", "pod", "plain", "--timeout=10s"])?;
    let (code, _, _) = c.kubectl(&["get", "pod", "plain"])?;
    ensure!(code != 0, "unbound pod still present after delete");
    Ok(())
}

#[test]
fn bad_requests_get_upstream_codes_and_messages() -> Result<()> {
    let c = Cluster::start()?;
    // Invalid DNS-1123 name → 422 Invalid with upstream's message.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata: {}\n";
    let f = c.write("bad.yaml", bad)?;
    let (code, _, err) = c.kubectl(&["create", "-f", &f])?;
    ensure!(code != 0, "bad name accepted");
    ensure!(
        err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{err}"
    );
    // Unknown field with kubectl's default strict validation → 400 strict decoding error.
    let unknown = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: u\nspec:\n  bogus: 1\n  containers:\n  - name: c\n    image: i\n";
    let f = c.write("unknown.yaml", unknown)?;
    let (code, _, err) = c.kubectl(&["apply", "-f", &f])?;
    ensure!(
        code != 0 && err.contains("strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );
    // With validation off the object is accepted and the unknown field dropped, as upstream.
    let (code, _, err) = c.kubectl(&["apply", "--validate=false", "-f", &f])?;
    ensure!(code == 0, "{err}");
    let pod = json(&c.ok(&["get", "pod", "u", "-o", "json"])?)?;
    ensure!(pod["spec"].get("bogus").is_none(), "{pod}");
    // Malformed JSON and the wrong kind on a typed endpoint → 400.
    let junk = c.write("junk.json", "{\"apiVersion\": \"v1\", \"kind\": ")?;
    let (code, _, err) = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        &junk,
    ])?;
    ensure!(
        code != 0 && err.contains("BadRequest") || err.contains("json parse error"),
        "{err}"
    );
    let wrong = c.write(
        "wrong.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
    )?;
    let (code, _, err) = c.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        &wrong,
    ])?;
    ensure!(
        code != 0 && err.contains("does not match the expected kind (ConfigMap)"),
        "{err}"
    );
    // Missing namespace → 404; duplicate → 409 AlreadyExists.
    let dup = c.write(
        "dup.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n",
    )?;
    let (code, _, err) = c.kubectl(&["-n", "nope", "create", "-f", &dup])?;
    ensure!(
        code != 0 && err.contains("namespaces \"nope\" not found"),
        "{err}"
    );
    c.ok(&["create", "-f", &dup])?;
    let (code, _, err) = c.kubectl(&["create", "-f", &dup])?;
    ensure!(
        code != 0 && err.contains("configmaps \"dup\" already exists"),
        "{err}"
    );
    // No credentials → 401.
    let (code, _, err) = c.kubectl(&["--token=wrong", "get", "pods"])?;
    ensure!(code != 0 && err.contains("Unauthorized"), "{err}");
    Ok(())
}

#[test]
fn namespaces_delete_their_contents() -> Result<()> {
    let c = Cluster::start()?;
    let ns = c.write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: team\ndata:\n  k: v\n")?;
    c.ok(&["apply", "-f", &ns])?;
    c.ok(&["-n", "team", "get", "serviceaccount", "default"])?;
    c.ok(&["delete", "namespace", "team", "--timeout=20s"])?;
    let (code, _, _) = c.kubectl(&["get", "namespace", "team"])?;
    ensure!(code != 0, "namespace still there");
    let (code, _, err) = c.kubectl(&["delete", "namespace", "default"])?;
    ensure!(code != 0 && err.contains("may not be deleted"), "{err}");
    Ok(())
}

#[test]
fn typed_create_commands_send_protobuf_and_work() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&["create", "namespace", "team"])?;
    c.ok(&[
        "-n",
        "team",
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
    ])?;
    c.ok(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=id=xyz",
    ])?;
    c.ok(&["-n", "team", "create", "serviceaccount", "bot"])?;
    let data = c.ok(&[
        "-n",
        "team",
        "get",
        "configmap",
        "cfg",
        "-o",
        "jsonpath={.data.a}",
    ])?;
    ensure!(data == "1", "{data}");
    let secret = c.ok(&[
        "-n",
        "team",
        "get",
        "secret",
        "creds",
        "-o",
        "jsonpath={.data.id}",
    ])?;
    ensure!(secret == "eHl6", "{secret}");
    let ns = json(&c.ok(&["get", "namespace", "team", "-o", "json"])?)?;
    ensure!(
        ns["status"]["phase"] == "Active"
            && ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "team",
        "{ns}"
    );
    c.ok(&["run", "web", "--image=nginx"])?;
    let image = c.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ])?;
    ensure!(image == "nginx", "{image}");
    Ok(())
}
