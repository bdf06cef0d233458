//! A Kubernetes `Pod` → the placement plugin's `pod-view` (a typed, trimmed view: metadata,
//! per-container resources, node selector, tolerations, priority). Quantities are parsed here,
//! once, so every plugin agrees with the host about sizes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Pod, ResourceRequirements as K8sResources, Toleration as K8sToleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vnode_plugin_host::contract::{
    ContainerView, KeyValue, LabelSelectorRequirement, PodMeta, PodView, ResourceList,
    ResourceRequirements, Toleration, TopologySpreadConstraint,
};

use crate::quantity::{self, QuantityError};

/// A pod field that cannot be converted (so far only bad quantities).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {source}")]
pub struct InputError {
    /// The field path, e.g. `spec.containers[0].resources.requests.cpu`.
    pub field: String,
    /// What is wrong with it.
    #[source]
    pub source: QuantityError,
}

/// Converts a pod for placement.
pub fn pod_view(pod: &Pod) -> Result<PodView, InputError> {
    let spec = pod.spec.as_ref();
    let containers =
        |list: Option<&Vec<Container>>, path: &str| -> Result<Vec<ContainerView>, InputError> {
            list.into_iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| {
                    Ok(ContainerView {
                        name: c.name.clone(),
                        image: c.image.clone().unwrap_or_default(),
                        resources: resource_requirements(
                            c.resources.as_ref(),
                            &format!("spec.{path}[{i}].resources"),
                        )?,
                    })
                })
                .collect()
        };
    Ok(PodView {
        meta: pod_meta(pod),
        containers: containers(spec.map(|s| &s.containers), "containers")?,
        init_containers: containers(
            spec.and_then(|s| s.init_containers.as_ref()),
            "initContainers",
        )?,
        node_selector: key_values(spec.and_then(|s| s.node_selector.as_ref())),
        tolerations: spec
            .and_then(|s| s.tolerations.as_ref())
            .into_iter()
            .flatten()
            .map(toleration)
            .collect(),
        priority_class: spec.and_then(|s| s.priority_class_name.clone()),
        priority: spec.and_then(|s| s.priority),
        restart_policy: spec
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into()),
        topology_spread: spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .map(topology_spread)
            .collect(),
    })
}

/// One `topologySpreadConstraints` entry (contract 0.2.0).
fn topology_spread(
    c: &k8s_openapi::api::core::v1::TopologySpreadConstraint,
) -> TopologySpreadConstraint {
    let selector = c.label_selector.as_ref();
    TopologySpreadConstraint {
        topology_key: c.topology_key.clone(),
        max_skew: c.max_skew,
        when_unsatisfiable: c.when_unsatisfiable.clone(),
        match_labels: key_values(selector.and_then(|s| s.match_labels.as_ref())),
        match_expressions: selector
            .and_then(|s| s.match_expressions.as_ref())
            .into_iter()
            .flatten()
            .map(|e| LabelSelectorRequirement {
                key: e.key.clone(),
                operator: e.operator.clone(),
                values: e.values.clone().unwrap_or_default(),
            })
            .collect(),
        min_domains: c.min_domains,
    }
}

/// The pod's identity and metadata, shared by both worlds' inputs.
pub fn pod_meta(pod: &Pod) -> PodMeta {
    let m = &pod.metadata;
    let owners = m.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or(owners.first());
    PodMeta {
        namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        labels: key_values(m.labels.as_ref()),
        annotations: key_values(m.annotations.as_ref()),
        owner_kind: owner.map(|o| o.kind.clone()),
        owner_name: owner.map(|o| o.name.clone()),
        creation_timestamp: m
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
    }
}

/// String map → ordered key/value list.
pub fn key_values(map: Option<&BTreeMap<String, String>>) -> Vec<KeyValue> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn toleration(t: &K8sToleration) -> Toleration {
    Toleration {
        key: t.key.clone(),
        operator: t.operator.clone(),
        value: t.value.clone(),
        effect: t.effect.clone(),
        toleration_seconds: t.toleration_seconds,
    }
}

/// A container's `resources`, parsed. `path` names the field in errors.
pub fn resource_requirements(
    r: Option<&K8sResources>,
    path: &str,
) -> Result<ResourceRequirements, InputError> {
    Ok(ResourceRequirements {
        requests: resource_list(
            r.and_then(|r| r.requests.as_ref()),
            &format!("{path}.requests"),
        )?,
        limits: resource_list(r.and_then(|r| r.limits.as_ref()), &format!("{path}.limits"))?,
    })
}

/// One `requests`/`limits` map, parsed: CPU in millicores, memory and ephemeral storage in
/// bytes, `*/gpu` as a count; anything else verbatim.
pub fn resource_list(
    map: Option<&BTreeMap<String, Quantity>>,
    path: &str,
) -> Result<ResourceList, InputError> {
    let mut list = ResourceList {
        cpu_millis: None,
        memory_bytes: None,
        gpu: None,
        ephemeral_storage_bytes: None,
        other: Vec::new(),
    };
    let err = |name: &str| {
        let field = format!("{path}.{name}");
        move |source| InputError { field, source }
    };
    for (name, q) in map.into_iter().flatten() {
        match name.as_str() {
            "cpu" => list.cpu_millis = Some(quantity::cpu_millis(&q.0).map_err(err(name))?),
            "memory" => list.memory_bytes = Some(quantity::bytes(&q.0).map_err(err(name))?),
            "ephemeral-storage" => {
                list.ephemeral_storage_bytes = Some(quantity::bytes(&q.0).map_err(err(name))?)
            }
            gpu if gpu.ends_with("/gpu") => {
                let n = quantity::count(&q.0).map_err(err(name))?;
                let n = u32::try_from(n).map_err(|_| InputError {
                    field: format!("{path}.{name}"),
                    source: QuantityError {
                        input: q.0.clone(),
                        reason: "too large",
                    },
                })?;
                list.gpu = Some(list.gpu.unwrap_or(0).saturating_add(n));
            }
            _ => list.other.push(KeyValue {
                key: name.clone(),
                value: q.0.clone(),
            }),
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("test pod parses")
    }

    #[test]
    fn converts_a_realistic_pod() {
        let p = pod(r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  uid: "1234"
  labels: {app: web}
  annotations: {k8s.aliyun.com/eci-use-specs: "2-4Gi"}
  creationTimestamp: "2026-01-02T03:04:05Z"
  ownerReferences:
  - {apiVersion: apps/v1, kind: StatefulSet, name: web, uid: u1, controller: true}
spec:
  priorityClassName: high
  priority: 1000
  restartPolicy: OnFailure
  nodeSelector: {type: virtual-kubelet}
  tolerations:
  - {key: virtual-kubelet.io/provider, operator: Exists, effect: NoSchedule}
  initContainers:
  - {name: init, image: busybox}
  containers:
  - name: app
    image: nginx:1.27
    resources:
      requests: {cpu: 250m, memory: 512Mi, nvidia.com/gpu: "1", example.com/foo: "3"}
      limits: {cpu: "1", memory: 1Gi, ephemeral-storage: 2Gi}
"#);
        let v = pod_view(&p).expect("converts");
        assert_eq!(v.meta.namespace, "shop");
        assert_eq!(v.meta.owner_kind.as_deref(), Some("StatefulSet"));
        assert_eq!(v.meta.creation_timestamp, "2026-01-02T03:04:05Z");
        assert_eq!(v.meta.annotations[0].key, "k8s.aliyun.com/eci-use-specs");
        assert_eq!(v.restart_policy, "OnFailure");
        assert_eq!(v.priority, Some(1000));
        assert_eq!(v.priority_class.as_deref(), Some("high"));
        assert_eq!(v.init_containers[0].name, "init");
        let r = &v.containers[0].resources;
        assert_eq!(r.requests.cpu_millis, Some(250));
        assert_eq!(r.requests.memory_bytes, Some(512 << 20));
        assert_eq!(r.requests.gpu, Some(1));
        assert_eq!(
            r.requests.other,
            [KeyValue {
                key: "example.com/foo".into(),
                value: "3".into()
            }]
        );
        assert_eq!(r.limits.cpu_millis, Some(1000));
        assert_eq!(r.limits.ephemeral_storage_bytes, Some(2 << 30));
        assert_eq!(v.tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(v.node_selector[0].value, "virtual-kubelet");
    }

    #[test]
    fn defaults_for_a_minimal_pod() {
        let v = pod_view(&pod("metadata: {name: x}\nspec: {containers: [{name: c}]}"))
            .expect("converts");
        assert_eq!(v.meta.namespace, "default");
        assert_eq!(v.restart_policy, "Always");
        assert_eq!(v.containers[0].resources.requests.cpu_millis, None);
    }

    #[test]
    fn bad_quantity_names_the_field() {
        let p = pod(
            "metadata: {name: x}\nspec: {containers: [{name: c, resources: {requests: {cpu: lots}}}]}",
        );
        let e = pod_view(&p).expect_err("bad cpu");
        assert_eq!(e.field, "spec.containers[0].resources.requests.cpu");
        assert!(e.to_string().contains("lots"), "{e}");
    }
}
