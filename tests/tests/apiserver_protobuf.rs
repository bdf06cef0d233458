//! kubectl 1.32's typed `create` commands send protobuf bodies
//! (`application/vnd.kubernetes.protobuf`); the embedded API server decodes them and the
//! objects come back complete as JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
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
        let kubeconfig = dir.path().join("kubeconfig");
        Ok(Self {
            _proc: proc,
            dir,
            kubeconfig,
        })
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let cache = self.dir.path().join("kubectl-cache");
        let cache_arg = format!("--cache-dir={}", cache.display());
        let mut all = vec![cache_arg.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = kubectl(&self.kubeconfig, &all)?;
        ensure!(code == 0, "kubectl {args:?} failed ({code}):\n{out}\n{err}");
        Ok(out)
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        Ok(serde_json::from_str(&self.ok(&all)?)?)
    }
}

#[test]
fn kubectl_create_commands_that_send_protobuf_work() -> Result<()> {
    let c = Cluster::start()?;
    c.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ])?;
    let role = c.json(&["get", "role", "pod-reader"])?;
    ensure!(
        role["rules"][0]["verbs"] == serde_json::json!(["get", "list"])
            && role["rules"][0]["resources"] == serde_json::json!(["pods"]),
        "{role}"
    );
    c.ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
    ])?;
    c.ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "--role=pod-reader",
        "--user=bob",
        "--serviceaccount=default:default",
    ])?;
    let rb = c.json(&["get", "rolebinding", "read-pods"])?;
    ensure!(
        rb["roleRef"]["name"] == "pod-reader" && rb["subjects"].as_array().map(Vec::len) == Some(2),
        "{rb}"
    );
    c.ok(&[
        "create",
        "clusterrolebinding",
        "read-nodes",
        "--clusterrole=node-reader",
        "--group=readers",
    ])?;
    let crb = c.json(&["get", "clusterrolebinding", "read-nodes"])?;
    ensure!(
        crb["subjects"][0]["kind"] == "Group" && crb["subjects"][0]["name"] == "readers",
        "{crb}"
    );

    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--port=80",
        "--replicas=2",
    ])?;
    let d = c.json(&["get", "deployment", "web"])?;
    ensure!(d["spec"]["replicas"] == 2, "{d}");
    ensure!(d["spec"]["selector"]["matchLabels"]["app"] == "web", "{d}");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    // kubectl names the container after the image.
    ensure!(
        container["name"] == "nginx"
            && container["image"] == "nginx:1.27"
            && container["ports"][0]["containerPort"] == 80,
        "{d}"
    );
    // Commands that patch what protobuf created.
    c.ok(&["label", "deployment", "web", "tier=frontend"])?;
    c.ok(&["annotate", "deployment", "web", "owner=team-a"])?;
    c.ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"])?;
    let d = c.json(&["get", "deployment", "web"])?;
    ensure!(
        d["metadata"]["labels"]["tier"] == "frontend"
            && d["metadata"]["annotations"]["owner"] == "team-a"
            && d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28",
        "{d}"
    );

    c.ok(&[
        "create",
        "job",
        "once",
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ])?;
    let j = c.json(&["get", "job", "once"])?;
    let spec = &j["spec"]["template"]["spec"];
    ensure!(
        spec["restartPolicy"] == "Never"
            && spec["containers"][0]["command"] == serde_json::json!(["echo", "hi"]),
        "{j}"
    );
    c.ok(&["create", "priorityclass", "high", "--value=1000"])?;
    ensure!(c.json(&["get", "priorityclass", "high"])?["value"] == 1000);
    c.ok(&["create", "quota", "small", "--hard=pods=2,cpu=1"])?;
    let q = c.json(&["get", "quota", "small"])?;
    ensure!(
        q["spec"]["hard"]["pods"] == "2" && q["spec"]["hard"]["cpu"] == "1",
        "{q}"
    );
    c.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"])?;
    let s = c.json(&["get", "service", "web"])?;
    ensure!(
        s["spec"]["ports"][0]["port"] == 80 && s["spec"]["ports"][0]["targetPort"] == 8080,
        "{s}"
    );
    c.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ])?;
    let p = c.json(&["get", "pdb", "web"])?;
    ensure!(p["spec"]["minAvailable"] == 1, "{p}");
    Ok(())
}
