//! Every `kubectl run`/`create`/`expose` variant a newcomer uses sends
//! protobuf; against `vnode apiserver` each creates the object a JSON client would have,
//! including PodSpec fields that only `--overrides` reaches (volumes, probes, security
//! contexts, `envFrom`).

use anyhow::{Result, ensure};
use serde_json::json;
use vnode_tests::Sandbox;

fn apiserver() -> Result<Sandbox> {
    Sandbox::builder()
        .without_daemon()
        .without_emulator()
        .start()
}

#[test]
fn kubectl_run_creates_the_pod_with_every_podspec_field() -> Result<()> {
    let s = apiserver()?;
    s.kubectl_ok(&["run", "nginx", "--image=nginx"])?;
    let pod = s.pod("nginx")?;
    ensure!(
        pod["metadata"]["labels"]["run"] == "nginx"
            && pod["spec"]["containers"][0]["image"] == "nginx"
            && pod["spec"]["containers"][0]["name"] == "nginx"
            && pod["spec"]["restartPolicy"] == "Always",
        "{pod}"
    );

    let overrides = json!({
        "spec": {
            "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "fsGroup": 2000},
            "volumes": [
                {"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}},
                {"name": "cfg", "configMap": {"name": "app-config", "defaultMode": 420, "optional": true}}
            ],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"type": "virtual-kubelet"},
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "name": "http"}],
                "envFrom": [{"configMapRef": {"name": "app-config"}}, {"secretRef": {"name": "app-secret", "optional": false}}],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "cfg", "mountPath": "/etc/app", "readOnly": true}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80}, "initialDelaySeconds": 3, "periodSeconds": 10},
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
                "startupProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 30},
                "lifecycle": {"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}},
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}}
            }]
        }
    });
    s.kubectl_ok(&[
        "run",
        "web",
        "--image=nginx:1.27",
        "--labels=app=web,tier=frontend",
        "--restart=Never",
        &format!("--overrides={overrides}"),
    ])?;
    let pod = s.pod("web")?;
    let spec = &pod["spec"];
    let c = &spec["containers"][0];
    ensure!(
        pod["metadata"]["labels"] == json!({"app": "web", "tier": "frontend"}),
        "{pod}"
    );
    ensure!(spec["restartPolicy"] == "Never", "{spec}");
    // A pointer field set to zero/false survives (runAsUser: 0 is root, not "unset").
    ensure!(
        spec["securityContext"] == json!({"runAsUser": 0, "runAsNonRoot": false, "fsGroup": 2000}),
        "{spec}"
    );
    ensure!(
        spec["volumes"][0]["emptyDir"]["sizeLimit"] == "64Mi"
            && spec["volumes"][1]["configMap"]
                == json!({"name": "app-config", "defaultMode": 420, "optional": true}),
        "{spec}"
    );
    ensure!(
        spec["tolerations"][0]["operator"] == "Exists"
            && spec["nodeSelector"]["type"] == "virtual-kubelet",
        "{spec}"
    );
    ensure!(
        c["envFrom"]
            == json!([{"configMapRef": {"name": "app-config"}},
                      {"secretRef": {"name": "app-secret", "optional": false}}]),
        "{c}"
    );
    ensure!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP",
        "{c}"
    );
    ensure!(
        c["volumeMounts"][1] == json!({"name": "cfg", "mountPath": "/etc/app", "readOnly": true}),
        "{c}"
    );
    ensure!(
        c["livenessProbe"]["httpGet"]["port"] == 80
            && c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            && c["livenessProbe"]["initialDelaySeconds"] == 3
            && c["readinessProbe"]["exec"]["command"] == json!(["cat", "/tmp/ready"])
            && c["startupProbe"]["tcpSocket"]["port"] == "http"
            && c["startupProbe"]["failureThreshold"] == 30,
        "{c}"
    );
    ensure!(
        c["lifecycle"]["preStop"]["exec"]["command"] == json!(["nginx", "-s", "quit"]),
        "{c}"
    );
    ensure!(
        c["resources"]["requests"] == json!({"cpu": "250m", "memory": "64Mi"})
            && c["resources"]["limits"]["memory"] == "128Mi",
        "{c}"
    );
    ensure!(
        c["securityContext"]
            == json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                      "capabilities": {"drop": ["ALL"]}}),
        "{c}"
    );

    // `--command`, env and port flags.
    s.kubectl_ok(&[
        "run",
        "sleeper",
        "--image=busybox",
        "--env=MODE=demo",
        "--port=8080",
        "--command",
        "--",
        "sleep",
        "3600",
    ])?;
    let c = &s.pod("sleeper")?["spec"]["containers"][0];
    ensure!(
        c["command"] == json!(["sleep", "3600"])
            && c["env"] == json!([{"name": "MODE", "value": "demo"}])
            && c["ports"][0]["containerPort"] == 8080,
        "{c}"
    );
    Ok(())
}

#[test]
fn kubectl_create_cronjob_ingress_and_expose() -> Result<()> {
    let s = apiserver()?;
    s.kubectl_ok(&[
        "create",
        "cronjob",
        "hello",
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--",
        "echo",
        "hello",
    ])?;
    let cj = s.get_json(&["get", "cronjob", "hello"])?;
    let pod_spec = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    ensure!(
        cj["spec"]["schedule"] == "*/5 * * * *"
            && pod_spec["containers"][0]["command"] == json!(["echo", "hello"])
            && pod_spec["restartPolicy"] == "OnFailure",
        "{cj}"
    );
    // A Job from the CronJob carries the owner reference kubectl builds.
    s.kubectl_ok(&["create", "job", "hello-now", "--from=cronjob/hello"])?;
    let job = s.get_json(&["get", "job", "hello-now"])?;
    ensure!(
        job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
            && job["metadata"]["ownerReferences"][0]["name"] == "hello"
            && job["metadata"]["ownerReferences"][0]["controller"] == true
            && job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual",
        "{job}"
    );

    s.kubectl_ok(&[
        "create",
        "ingress",
        "web",
        "--class=nginx",
        "--rule=foo.example.com/bar*=web:8080,tls=web-cert",
        "--annotation=team=a",
    ])?;
    let ing = s.get_json(&["get", "ingress", "web"])?;
    let rule = &ing["spec"]["rules"][0];
    let path = &rule["http"]["paths"][0];
    ensure!(
        ing["spec"]["ingressClassName"] == "nginx"
            && rule["host"] == "foo.example.com"
            && path["path"] == "/bar"
            && path["pathType"] == "Prefix"
            && path["backend"]["service"] == json!({"name": "web", "port": {"number": 8080}})
            && ing["spec"]["tls"][0]
                == json!({"hosts": ["foo.example.com"], "secretName": "web-cert"})
            && ing["metadata"]["annotations"]["team"] == "a",
        "{ing}"
    );

    s.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=0",
    ])?;
    // `--replicas=0` is a pointer set to zero, not "unset" (which would default to 1).
    ensure!(s.get_json(&["get", "deployment", "web"])?["spec"]["replicas"] == 0);
    s.kubectl_ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
        "--type=NodePort",
    ])?;
    let svc = s.get_json(&["get", "service", "web"])?;
    ensure!(
        svc["spec"]["type"] == "NodePort"
            && svc["spec"]["selector"] == json!({"app": "web"})
            && svc["spec"]["ports"][0]["port"] == 80
            && svc["spec"]["ports"][0]["targetPort"] == 8080,
        "{svc}"
    );
    // The scale subresource: `kubectl scale` and `kubectl autoscale`.
    s.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"])?;
    ensure!(s.get_json(&["get", "deployment", "web"])?["spec"]["replicas"] == 3);
    s.kubectl_ok(&[
        "autoscale",
        "deployment",
        "web",
        "--min=2",
        "--max=5",
        "--cpu-percent=80",
    ])?;
    let hpa = s.get_json(&["get", "hpa", "web"])?;
    ensure!(
        hpa["spec"]["maxReplicas"] == 5 && hpa["spec"]["scaleTargetRef"]["name"] == "web",
        "{hpa}"
    );
    s.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server=registry.example.com",
        "--docker-username=u",
        "--docker-password=p",
    ])?;
    let sec = s.get_json(&["get", "secret", "regcred"])?;
    ensure!(
        sec["type"] == "kubernetes.io/dockerconfigjson"
            && sec["data"][".dockerconfigjson"].is_string(),
        "{sec}"
    );
    s.kubectl_ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=example.com",
    ])?;
    ensure!(s.get_json(&["get", "service", "ext"])?["spec"]["externalName"] == "example.com");
    Ok(())
}
