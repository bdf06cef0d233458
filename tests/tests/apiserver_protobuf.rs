//! kubectl 1.32's typed `create` commands send protobuf bodies
//! (`application/vnd.kubernetes.protobuf`); the embedded API server decodes them and the
//! objects come back complete as JSON.

use anyhow::{Result, ensure};
use vnode_tests::Sandbox;

/// `vnode apiserver` alone.
fn cluster() -> Result<Sandbox> {
    Sandbox::builder().apiserver_only().start()
}

#[test]
fn kubectl_create_commands_that_send_protobuf_work() -> Result<()> {
    let c = cluster()?;
    c.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ])?;
    let role = c.get_json(&["get", "role", "pod-reader"])?;
    ensure!(
        role["rules"][0]["verbs"] == serde_json::json!(["get", "list"])
            && role["rules"][0]["resources"] == serde_json::json!(["pods"]),
        "{role}"
    );
    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
    ])?;
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "--role=pod-reader",
        "--user=bob",
        "--serviceaccount=default:default",
    ])?;
    let rb = c.get_json(&["get", "rolebinding", "read-pods"])?;
    ensure!(
        rb["roleRef"]["name"] == "pod-reader" && rb["subjects"].as_array().map(Vec::len) == Some(2),
        "{rb}"
    );
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "read-nodes",
        "--clusterrole=node-reader",
        "--group=readers",
    ])?;
    let crb = c.get_json(&["get", "clusterrolebinding", "read-nodes"])?;
    ensure!(
        crb["subjects"][0]["kind"] == "Group" && crb["subjects"][0]["name"] == "readers",
        "{crb}"
    );

    c.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--port=80",
        "--replicas=2",
    ])?;
    let d = c.get_json(&["get", "deployment", "web"])?;
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
    c.kubectl_ok(&["label", "deployment", "web", "tier=frontend"])?;
    c.kubectl_ok(&["annotate", "deployment", "web", "owner=team-a"])?;
    c.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"])?;
    let d = c.get_json(&["get", "deployment", "web"])?;
    ensure!(
        d["metadata"]["labels"]["tier"] == "frontend"
            && d["metadata"]["annotations"]["owner"] == "team-a"
            && d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28",
        "{d}"
    );

    c.kubectl_ok(&[
        "create",
        "job",
        "once",
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ])?;
    let j = c.get_json(&["get", "job", "once"])?;
    let spec = &j["spec"]["template"]["spec"];
    ensure!(
        spec["restartPolicy"] == "Never"
            && spec["containers"][0]["command"] == serde_json::json!(["echo", "hi"]),
        "{j}"
    );
    c.kubectl_ok(&["create", "priorityclass", "high", "--value=1000"])?;
    ensure!(c.get_json(&["get", "priorityclass", "high"])?["value"] == 1000);
    c.kubectl_ok(&["create", "quota", "small", "--hard=pods=2,cpu=1"])?;
    let q = c.get_json(&["get", "quota", "small"])?;
    ensure!(
        q["spec"]["hard"]["pods"] == "2" && q["spec"]["hard"]["cpu"] == "1",
        "{q}"
    );
    c.kubectl_ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"])?;
    let s = c.get_json(&["get", "service", "web"])?;
    ensure!(
        s["spec"]["ports"][0]["port"] == 80 && s["spec"]["ports"][0]["targetPort"] == 8080,
        "{s}"
    );
    c.kubectl_ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ])?;
    let p = c.get_json(&["get", "pdb", "web"])?;
    ensure!(p["spec"]["minAvailable"] == 1, "{p}");
    Ok(())
}
