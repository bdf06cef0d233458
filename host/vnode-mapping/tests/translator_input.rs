//! Kubernetes pod + fetched objects → the translator's resolved pod.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use vnode_mapping::translator_input::{
    MissingKind, Referenced, ResolveError, expand, references, resolve,
};
use vnode_plugin_host::contract::{EnvValue, IntOrString, VolumeSource};

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).expect("test pod parses")
}

fn cm(name: &str, data: &[(&str, &str)], binary: &[(&str, &[u8])]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        binary_data: (!binary.is_empty()).then(|| {
            binary
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect()
        }),
        ..Default::default()
    }
}

fn secret(name: &str, t: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(t.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

const ENV_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: api-1
  namespace: shop
  uid: uid-1
  labels: {app: api}
  annotations: {team: core}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: api-rs, uid: o-1, controller: true}
spec:
  serviceAccountName: api
  containers:
  - name: api
    image: api:1
    command: ["/api", "--host=$(HOST)"]
    args: ["$(POD_IP)", "$$(KEEP)", "$(UNDEFINED)"]
    envFrom:
    - configMapRef: {name: env-cm}
      prefix: CM_
    - secretRef: {name: env-secret, optional: true}
    env:
    - {name: HOST, value: example.com}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: NS
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: TEAM
      valueFrom: {fieldRef: {fieldPath: "metadata.annotations['team']"}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    - name: OPT
      valueFrom: {configMapKeyRef: {name: env-cm, key: missing, optional: true}}
    - name: CPU_M
      valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}
    - {name: URL, value: "https://$(HOST)/x"}
    - {name: CM_MODE, value: overridden}
    resources:
      limits: {cpu: 1500m, memory: 1Gi, nvidia.com/gpu: "1", example.com/widget: "3"}
      requests: {cpu: 500m, memory: 512Mi, ephemeral-storage: 2Gi}
    readinessProbe:
      httpGet: {path: /r, port: http, httpHeaders: [{name: X, value: "1"}]}
    lifecycle:
      preStop: {sleep: {seconds: 5}}
"#;

fn env_refs() -> Referenced {
    let mut r = Referenced::default();
    r.config_maps.insert(
        "env-cm".into(),
        cm("env-cm", &[("MODE", "fast"), ("bad.key", "x")], &[]),
    );
    r.secrets.insert(
        "creds".into(),
        secret("creds", "Opaque", &[("password", b"s3cret")]),
    );
    r
}

#[test]
fn env_is_resolved_like_the_kubelet() {
    let p = pod(ENV_POD);
    let refs_needed = references(&p);
    assert!(refs_needed.config_maps.contains("env-cm"));
    assert!(refs_needed.secrets.contains("creds") && refs_needed.secrets.contains("env-secret"));

    let r = resolve(&p, &env_refs(), "vnode-1").expect("resolves");
    let c = &r.pod.containers[0];
    let env: BTreeMap<&str, &EnvValue> =
        c.env.iter().map(|e| (e.name.as_str(), &e.value)).collect();
    let lit = |k: &str| match env.get(k) {
        Some(EnvValue::Literal(v)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(lit("CM_MODE"), "overridden", "env wins over envFrom");
    assert_eq!(lit("NS"), "shop");
    assert_eq!(lit("TEAM"), "core");
    assert_eq!(lit("PASSWORD"), "s3cret");
    assert_eq!(lit("CPU_M"), "1500");
    assert_eq!(lit("URL"), "https://example.com/x");
    assert!(matches!(env.get("POD_IP"), Some(EnvValue::FieldRef(p)) if p == "status.podIP"));
    assert!(!env.contains_key("OPT"), "optional missing key: skipped");
    assert_eq!(c.command, vec!["/api", "--host=example.com"]);
    assert_eq!(
        c.args,
        vec!["$(POD_IP)", "$(KEEP)", "$(UNDEFINED)"],
        "run-time refs and escapes stay"
    );
    assert_eq!(
        r.skipped_env_keys,
        vec!["spec.containers[0].envFrom[0]: CM_bad.key"]
    );
    let reasons: Vec<&str> = r
        .missing_optional
        .iter()
        .map(|m| m.event_reason())
        .collect();
    assert_eq!(
        reasons,
        vec!["OptionalSecretNotFound", "OptionalConfigMapKeyNotFound"]
    );

    assert_eq!(c.resources.limits.cpu_millis, Some(1500));
    assert_eq!(c.resources.limits.memory_bytes, Some(1 << 30));
    assert_eq!(c.resources.limits.gpu, Some(1));
    assert_eq!(c.resources.limits.other[0].key, "example.com/widget");
    assert_eq!(c.resources.requests.ephemeral_storage_bytes, Some(2 << 30));
    let probe = c.readiness_probe.as_ref().expect("probe");
    match &probe.handler {
        vnode_plugin_host::contract::Handler::HttpGet(h) => {
            assert_eq!(h.port, IntOrString::Str("http".into()));
            assert_eq!(h.headers[0].name, "X");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()),
        Some(vnode_plugin_host::contract::Handler::Sleep(5))
    ));
    assert_eq!(r.pod.meta.owner_kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(r.pod.service_account_name.as_deref(), Some("api"));
}

#[test]
fn mandatory_missing_references_are_typed_errors() {
    let p = pod(ENV_POD);
    let mut refs = env_refs();
    refs.secrets.clear();
    match resolve(&p, &refs, "vnode-1") {
        Err(ResolveError::Missing(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].kind, MissingKind::Secret);
            assert_eq!(m[0].event_reason(), "MandatorySecretNotFound");
            assert_eq!(m[0].field, "spec.containers[0].env[4]");
            assert!(m[0].message().contains("\"creds\""));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn volumes_are_materialised() {
    let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: v, namespace: ns1, uid: u, labels: {b: "2", a: "1"}}
spec:
  containers: [{name: c, image: i, resources: {limits: {memory: 64Mi}}}]
  volumes:
  - name: cfg
    configMap: {name: cfg, defaultMode: 420}
  - name: picked
    configMap: {name: cfg, items: [{key: b.bin, path: sub/b.bin, mode: 256}]}
  - name: opt
    configMap: {name: nope, optional: true}
  - name: sec
    secret: {secretName: s, items: [{key: k, path: k.txt}]}
  - name: proj
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken: {path: token, audience: vault}
      - configMap: {name: cfg, items: [{key: a.txt, path: a.txt}]}
      - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
  - name: dapi
    downwardAPI:
      items:
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
  - name: tmp
    emptyDir: {medium: Memory, sizeLimit: 1Gi}
  - name: pvc
    persistentVolumeClaim: {claimName: data}
  - name: hp
    hostPath: {path: /var/log, type: Directory}
  - name: csi
    csi: {driver: x}
"#);
    let mut refs = Referenced::default();
    refs.config_maps.insert(
        "cfg".into(),
        cm("cfg", &[("a.txt", "A")], &[("b.bin", &[0, 1, 2])]),
    );
    refs.secrets
        .insert("s".into(), secret("s", "Opaque", &[("k", b"v")]));
    refs.service_account_tokens
        .insert("vault".into(), "tok".into());
    assert_eq!(
        references(&p)
            .token_audiences
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["vault"]
    );
    let r = resolve(&p, &refs, "n").expect("resolves");
    let v = &r.pod.volumes;
    let files = |i: usize| match &v[i].source {
        VolumeSource::ConfigMap(f)
        | VolumeSource::Secret(f)
        | VolumeSource::Projected(f)
        | VolumeSource::DownwardApi(f) => f.clone(),
        other => panic!("{other:?}"),
    };
    let cfg = files(0);
    assert_eq!(
        cfg.files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        vec!["a.txt", "b.bin"],
        "data + binaryData"
    );
    assert_eq!(cfg.default_mode, Some(420));
    let picked = files(1);
    assert_eq!(
        (
            picked.files[0].path.as_str(),
            picked.files[0].content.as_slice(),
            picked.files[0].mode
        ),
        ("sub/b.bin", &[0u8, 1, 2][..], Some(256))
    );
    assert!(files(2).optional_missing && files(2).files.is_empty());
    assert_eq!(files(3).files[0].content, b"v");
    let proj = files(4);
    let contents: Vec<(&str, String)> = proj
        .files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                String::from_utf8_lossy(&f.content).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        contents,
        vec![
            ("token", "tok".into()),
            ("a.txt", "A".into()),
            ("labels", "a=\"1\"\nb=\"2\"".into())
        ]
    );
    assert_eq!(files(5).files[0].content, b"64");
    match &v[6].source {
        VolumeSource::EmptyDir(e) => {
            assert_eq!(e.medium.as_deref(), Some("Memory"));
            assert_eq!(
                (e.size_limit.as_deref(), e.size_limit_bytes),
                (Some("1Gi"), Some(1 << 30))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&v[7].source, VolumeSource::PersistentVolumeClaim(c) if c.claim_name == "data")
    );
    assert!(matches!(&v[8].source, VolumeSource::HostPath(h) if h.path == "/var/log"));
    assert!(matches!(&v[9].source, VolumeSource::Other(k) if k == "csi"));
    assert_eq!(
        r.missing_optional[0].event_reason(),
        "OptionalConfigMapNotFound"
    );
}

#[test]
fn missing_token_and_item_key_are_mandatory() {
    let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: v, namespace: ns1, uid: u}
spec:
  containers: [{name: c, image: i}]
  volumes:
  - name: proj
    projected: {sources: [{serviceAccountToken: {path: token}}]}
  - name: cfg
    configMap: {name: cfg, items: [{key: absent, path: x}]}
"#);
    let mut refs = Referenced::default();
    refs.config_maps
        .insert("cfg".into(), cm("cfg", &[("a", "b")], &[]));
    let Err(ResolveError::Missing(m)) = resolve(&p, &refs, "n") else {
        panic!("must fail")
    };
    let kinds: Vec<MissingKind> = m.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![MissingKind::ServiceAccountToken, MissingKind::ConfigMapKey]
    );
}

#[test]
fn pull_secrets_carry_type_and_data_and_missing_ones_are_reported() {
    let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: v, namespace: ns1, uid: u}
spec:
  imagePullSecrets: [{name: reg}, {name: gone}]
  containers: [{name: c, image: i}]
"#);
    let mut refs = Referenced::default();
    refs.secrets.insert(
        "reg".into(),
        secret(
            "reg",
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", b"{}")],
        ),
    );
    let r = resolve(&p, &refs, "n").expect("resolves");
    assert_eq!(
        r.pod.image_pull_secrets[0].type_,
        "kubernetes.io/dockerconfigjson"
    );
    assert_eq!(r.pod.image_pull_secrets[0].data[0].0, ".dockerconfigjson");
    assert_eq!(
        r.missing_optional[0].event_reason(),
        "FailedToRetrieveImagePullSecret"
    );
}

#[test]
fn bad_quantities_name_the_field() {
    let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: v, namespace: ns1, uid: u}
spec:
  containers: [{name: c, image: i, resources: {requests: {cpu: lots}}}]
"#);
    match resolve(&p, &Referenced::default(), "n") {
        Err(ResolveError::Invalid { field, .. }) => {
            assert_eq!(field, "spec.containers[0].resources.requests[cpu]")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dollar_expansion_rules() {
    let vars = vec![
        ("A".to_string(), EnvValue::Literal("1".into())),
        ("P".to_string(), EnvValue::FieldRef("status.podIP".into())),
    ];
    assert_eq!(expand("$(A)-$(A)", &vars), "1-1");
    assert_eq!(expand("$$(A)", &vars), "$(A)");
    assert_eq!(expand("$(P)", &vars), "$(P)");
    assert_eq!(expand("$(B) $ $(A", &vars), "$(B) $ $(A");
    assert_eq!(expand("prix 5€ $(A)", &vars), "prix 5€ 1");
}
