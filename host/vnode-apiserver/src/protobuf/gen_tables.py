#!/usr/bin/env python3
"""Generates `tables.rs` (the protobuf field tables of every stable Kubernetes kind) from the
protobuf descriptors that kubectl itself carries.

Kubernetes' Go packages register each `generated.proto` as a gzipped FileDescriptorProto; a
kubectl binary therefore holds the exact wire schema of the client we must understand. This
script finds those descriptors in the binary, and writes one table per message reachable from a
top-level kind (a message whose field 1 is `metadata`) in a stable version (v1, v2).

Usage: python3 gen_tables.py [path/to/kubectl] > tables.rs

Three facts are not in the descriptors and are listed below by hand:
- INLINE: fields Go embeds with `json:",inline"` (their members appear in the parent object);
- KEEP_ZERO: pointer fields whose zero value means something (`replicas: 0`, `runAsUser: 0`,
  `optional: false`). Go writes every non-pointer field, zero or not, so any other zero
  scalar on the wire is a field the client never set;
- JSON_NAME: the few proto fields whose name is capitalised although their JSON name is
  not (the table's name is the JSON name; `DaemonEndpoint.Port` really is `Port` in JSON).
"""
import re
import shutil
import sys
import zlib

INLINE = {
    "handler", "localObjectReference", "ingressRuleValue", "persistentVolumeSource",
    "rule", "ruleWithOperations", "volumeSource", "ephemeralContainerCommon",
    "deviceConfiguration",
}

JSON_NAME = {
    ("admissionregistration.v1.ValidatingWebhookConfiguration", "Webhooks"): "webhooks",
    ("admissionregistration.v1.MutatingWebhookConfiguration", "Webhooks"): "webhooks",
    ("admissionregistration.v1.Validation", "Expression"): "expression",
    ("admissionregistration.v1.Variable", "Name"): "name",
    ("admissionregistration.v1.Variable", "Expression"): "expression",
}

KEEP_ZERO = {
    "core.v1.PodSpec": ["terminationGracePeriodSeconds", "activeDeadlineSeconds",
                        "automountServiceAccountToken", "shareProcessNamespace", "priority",
                        "enableServiceLinks", "setHostnameAsFQDN", "hostUsers"],
    "core.v1.PodSecurityContext": ["runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"],
    "core.v1.SecurityContext": ["privileged", "runAsUser", "runAsGroup", "runAsNonRoot",
                                "readOnlyRootFilesystem", "allowPrivilegeEscalation"],
    "core.v1.Probe": ["terminationGracePeriodSeconds"],
    "core.v1.SecretVolumeSource": ["defaultMode", "optional"],
    "core.v1.ConfigMapVolumeSource": ["defaultMode", "optional"],
    "core.v1.ProjectedVolumeSource": ["defaultMode"],
    "core.v1.DownwardAPIVolumeSource": ["defaultMode"],
    "core.v1.DownwardAPIVolumeFile": ["mode"],
    "core.v1.KeyToPath": ["mode"],
    "core.v1.ConfigMapKeySelector": ["optional"],
    "core.v1.SecretKeySelector": ["optional"],
    "core.v1.ConfigMapEnvSource": ["optional"],
    "core.v1.SecretEnvSource": ["optional"],
    "core.v1.ConfigMapProjection": ["optional"],
    "core.v1.SecretProjection": ["optional"],
    "core.v1.ServiceAccountTokenProjection": ["expirationSeconds"],
    "core.v1.CSIVolumeSource": ["readOnly"],
    "core.v1.ServiceAccount": ["automountServiceAccountToken"],
    "core.v1.ConfigMap": ["immutable"],
    "core.v1.Secret": ["immutable"],
    "core.v1.ServiceSpec": ["allocateLoadBalancerNodePorts"],
    "core.v1.Toleration": ["tolerationSeconds"],
    "core.v1.TopologySpreadConstraint": ["minDomains"],
    "core.v1.ReplicationControllerSpec": ["replicas"],
    "apps.v1.DeploymentSpec": ["replicas", "revisionHistoryLimit", "progressDeadlineSeconds"],
    "apps.v1.StatefulSetSpec": ["replicas", "revisionHistoryLimit"],
    "apps.v1.DaemonSetSpec": ["revisionHistoryLimit"],
    "apps.v1.ReplicaSetSpec": ["replicas"],
    "apps.v1.RollingUpdateStatefulSetStrategy": ["partition", "maxUnavailable"],
    "apps.v1.RollingUpdateDeployment": ["maxUnavailable", "maxSurge"],
    "apps.v1.RollingUpdateDaemonSet": ["maxUnavailable", "maxSurge"],
    "batch.v1.JobSpec": ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                         "backoffLimitPerIndex", "maxFailedIndexes", "ttlSecondsAfterFinished",
                         "suspend", "manualSelector"],
    "batch.v1.CronJobSpec": ["startingDeadlineSeconds", "suspend", "successfulJobsHistoryLimit",
                             "failedJobsHistoryLimit"],
    "autoscaling.v1.HorizontalPodAutoscalerSpec": ["minReplicas",
                                                   "targetCPUUtilizationPercentage"],
    "autoscaling.v2.HorizontalPodAutoscalerSpec": ["minReplicas"],
    "autoscaling.v2.HPAScalingRules": ["stabilizationWindowSeconds"],
    "autoscaling.v2.MetricTarget": ["averageUtilization"],
    "scheduling.v1.PriorityClass": ["value"],
    "coordination.v1.LeaseSpec": ["leaseDurationSeconds", "leaseTransitions"],
    "policy.v1.PodDisruptionBudgetSpec": ["minAvailable", "maxUnavailable"],
    "authentication.v1.TokenRequestSpec": ["expirationSeconds"],
}

# proto package segment -> API group
GROUPS = {
    "core": "", "apps": "apps", "batch": "batch", "autoscaling": "autoscaling",
    "policy": "policy", "networking": "networking.k8s.io", "rbac": "rbac.authorization.k8s.io",
    "scheduling": "scheduling.k8s.io", "storage": "storage.k8s.io",
    "coordination": "coordination.k8s.io", "events": "events.k8s.io",
    "discovery": "discovery.k8s.io", "certificates": "certificates.k8s.io",
    "node": "node.k8s.io", "admissionregistration": "admissionregistration.k8s.io",
    "flowcontrol": "flowcontrol.apiserver.k8s.io", "authorization": "authorization.k8s.io",
    "authentication": "authentication.k8s.io",
}

# Well-known messages decoded by hand in protobuf.rs.
SPECIAL = {
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrStr",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.api.authentication.v1.ExtraValue": "StrList",
    "k8s.io.api.authorization.v1.ExtraValue": "StrList",
    "k8s.io.api.certificates.v1.ExtraValue": "StrList",
}


def varint(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def fields(b):
    i, out = 0, []
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(w)
        out.append((f, v))
    return out


def descriptors(path):
    data = open(path, "rb").read()
    files = {}
    for m in re.finditer(b"\x1f\x8b\x08\x00\x00\x00\x00\x00", data):
        try:
            d = zlib.decompressobj(31).decompress(data[m.start():m.start() + 4_000_000])
            fs = fields(d)
        except Exception:
            continue
        names = [v for f, v in fs if f == 1]
        if names and names[0].startswith(b"k8s.io/") and names[0].endswith(b".proto"):
            files[names[0].decode()] = fs
    return files


def collect(files):
    """Full message name -> (list of (num, name, label, type, type_name), is_map_entry)."""
    msgs = {}

    def walk(prefix, desc):
        fs = fields(desc)
        name = [v for f, v in fs if f == 1][0].decode()
        full = f"{prefix}.{name}"
        flds = []
        map_entry = False
        for f, v in fs:
            if f == 2:
                ff = dict()
                for g, x in fields(v):
                    ff[g] = x
                flds.append((ff[3], ff[1].decode(), ff.get(4, 1), ff[5],
                             ff.get(6, b"").decode().lstrip(".")))
            elif f == 3:
                walk(full, v)
            elif f == 7:
                map_entry = any(g == 7 and x == 1 for g, x in fields(v))
        msgs[full] = (flds, map_entry)

    for fs in files.values():
        pkg = [v for f, v in fs if f == 2][0].decode()
        for f, v in fs:
            if f == 4:
                walk(pkg, v)
    return msgs


SCALARS = {1: "Double", 2: "Double", 3: "Int", 4: "Int", 5: "Int", 13: "Int", 17: "Int",
           18: "Int", 8: "Bool", 9: "Str", 12: "Bytes", 14: "Int"}


def main():
    kubectl = sys.argv[1] if len(sys.argv) > 1 else shutil.which("kubectl")
    msgs = collect(descriptors(kubectl))
    top = []
    for full, (flds, _) in sorted(msgs.items()):
        m = re.fullmatch(r"k8s\.io\.api\.(\w+)\.(v\d+)\.(\w+)", full)
        if not m or m.group(1) not in GROUPS or m.group(3).endswith("List"):
            continue
        if flds and flds[0][0] == 1 and flds[0][1] == "metadata":
            group = GROUPS[m.group(1)]
            api_version = f"{group}/{m.group(2)}" if group else m.group(2)
            top.append((api_version, m.group(3), full))
    order, index = [], {}

    def visit(full):
        if full in index or full in SPECIAL:
            return
        index[full] = len(order)
        order.append(full)
        for _, _, _, ty, tn in msgs[full][0]:
            if ty == 11:
                if msgs[tn][1]:
                    for _, _, _, vty, vtn in msgs[tn][0]:
                        if vty == 11:
                            visit(vtn)
                else:
                    visit(tn)

    for _, _, full in top:
        visit(full)

    def ty_of(ty, tn):
        if ty == 11:
            if tn in SPECIAL:
                return f"Ty::{SPECIAL[tn]}"
            if msgs[tn][1]:
                value = [f for f in msgs[tn][0] if f[0] == 2][0]
                return f"Ty::Map(&{ty_of(value[3], value[4])})"
            return f"Ty::Msg({index[tn]})"
        return f"Ty::{SCALARS[ty]}"

    out = [
        "// @generated by gen_tables.py from the protobuf descriptors kubectl v1.32 carries.",
        "// Do not edit: re-run `python3 gen_tables.py > tables.rs` (see its docstring).",
        "",
        "use super::{Field, Message, Ty};",
        "",
        "/// Every message reachable from a stable top-level kind, by index.",
        "pub(super) static MESSAGES: &[Message] = &[",
    ]
    for full in order:
        short = full.removeprefix("k8s.io.api.").removeprefix("k8s.io.apimachinery.pkg.apis.")
        keep = set(KEEP_ZERO.get(short, []))
        out.append(f"    Message {{ name: {short.split('.')[-1]!r}, fields: &[".replace("'", '"'))
        for num, name, label, ty, tn in msgs[full][0]:
            flags = []
            if label == 3 and not (ty == 11 and msgs.get(tn, ([], False))[1]):
                flags.append("repeated: true")
            if name in INLINE and ty == 11:
                flags.append("inline: true")
            if name in keep:
                flags.append("keep_zero: true")
            rest = ", ".join(flags + ["..Field::DEFAULT"])
            json_name = JSON_NAME.get((short, name), name)
            out.append(f'        Field {{ num: {num}, name: "{json_name}", ty: {ty_of(ty, tn)}, {rest} }},')
        out.append("    ] },")
    out.append("];")
    out.append("")
    out.append("/// (apiVersion, kind) of every stable top-level kind → its message in [`MESSAGES`].")
    out.append("pub(super) static KINDS: &[(&str, &str, u16)] = &[")
    for api_version, kind, full in top:
        out.append(f'    ("{api_version}", "{kind}", {index[full]}),')
    out.append("];")
    missing = [f"{m}.{f}" for m, fs in KEEP_ZERO.items() for f in fs
               if not any(x[1] == f for x in msgs.get(f"k8s.io.api.{m}", ([], 0))[0])]
    if missing:
        sys.exit(f"KEEP_ZERO names fields that do not exist: {missing}")
    missing = [f"{m}.{f}" for m, f in JSON_NAME
               if not any(x[1] == f for x in msgs.get(f"k8s.io.api.{m}", ([], 0))[0])]
    if missing:
        sys.exit(f"JSON_NAME names fields that do not exist: {missing}")
    print("\n".join(out))


main()
