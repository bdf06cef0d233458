//! Who is asking and may they: authentication, RBAC authorisation, service-account tokens
//! and the audit record.
//!
//! * **Authentication**: the admin bearer token (`vnode-admin`, group `system:masters`), a
//!   client certificate signed by the CA (user = CN, groups = O), or a service-account token
//!   this server issued through `serviceaccounts/{name}/token` (TokenRequest; what
//!   `kubectl create token` and pods' projected token volumes use). A service-account token
//!   stops working when its ServiceAccount is deleted (bound to its UID) or it expires.
//! * **Authorisation**: `system:masters` may do anything, as upstream. Everyone else is
//!   checked against the stored RBAC objects (ClusterRoles, Roles and their bindings) with
//!   upstream's rule semantics (`*`, `resource/subresource`, `*/subresource`, resourceNames,
//!   nonResourceURLs), plus upstream's default grants to `system:authenticated`: discovery
//!   and version (`system:discovery`, `system:public-info-viewer`) and self reviews
//!   (`system:basic-user`). No aggregation rules, no escalation checks on RBAC writes.
//! * **Audit**: with [`crate::ApiServerConfig::audit_log`], one JSON line per request:
//!   user, groups, verb, API group, resource, subresource, namespace, name, response code.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::resources;
use crate::store::Store;

/// Group of the admin token and of certificates that may do anything.
pub const MASTERS_GROUP: &str = "system:masters";
/// Group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// User name of the admin bearer token.
pub const ADMIN_USER: &str = "vnode-admin";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name (`system:serviceaccount:kube-system:vnode` for a service account).
    pub name: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
    /// UID (service accounts: the ServiceAccount's UID).
    pub uid: String,
}

impl User {
    /// The admin token's identity.
    pub fn admin() -> Self {
        Self {
            name: ADMIN_USER.into(),
            groups: vec![MASTERS_GROUP.into(), AUTHENTICATED_GROUP.into()],
            uid: String::new(),
        }
    }

    /// Identity of a client certificate (already verified against the CA): CN and O values.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())?
            .to_string();
        let mut groups: Vec<String> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        groups.push(AUTHENTICATED_GROUP.into());
        Some(Self {
            name,
            groups,
            uid: String::new(),
        })
    }

    fn service_account(ns: &str, name: &str, uid: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                AUTHENTICATED_GROUP.into(),
            ],
            uid: uid.into(),
        }
    }

    fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS_GROUP)
    }
}

/// What one request asks to do, in RBAC terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// Resource requests: API group (`""` for core).
    pub group: String,
    /// Resource requests: plural resource; empty for non-resource requests.
    pub resource: String,
    /// Subresource (`status`, `log`, …), or empty.
    pub subresource: String,
    /// Namespace, or empty for cluster-scoped and all-namespace requests.
    pub namespace: String,
    /// Object name, or empty.
    pub name: String,
    /// Non-resource requests: the path (`/version`, `/apis`).
    pub path: String,
}

impl Attributes {
    fn is_resource(&self) -> bool {
        !self.resource.is_empty()
    }
}

/// One issued service-account token.
#[derive(Debug, Clone)]
struct IssuedToken {
    namespace: String,
    service_account: String,
    sa_uid: String,
    audiences: Vec<String>,
    expires: SystemTime,
}

/// Service-account tokens issued by this server (kept in memory, like the cluster state).
#[derive(Debug, Default)]
pub struct TokenIssuer {
    tokens: Mutex<HashMap<String, IssuedToken>>,
}

/// Audience a token gets when the request names none (upstream's API audience).
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

impl TokenIssuer {
    /// Issues a token for a ServiceAccount (whose UID binds it) valid for `ttl`.
    pub fn issue(
        &self,
        ns: &str,
        service_account: &str,
        sa_uid: &str,
        audiences: Vec<String>,
        ttl: Duration,
    ) -> (String, SystemTime) {
        use base64::Engine as _;
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        let token = format!(
            "vnode-sa.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let expires = SystemTime::now() + ttl;
        let mut tokens = self.tokens.lock();
        let now = SystemTime::now();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.clone(),
            IssuedToken {
                namespace: ns.into(),
                service_account: service_account.into(),
                sa_uid: sa_uid.into(),
                audiences,
                expires,
            },
        );
        (token, expires)
    }

    /// The identity and audiences of a token, if it is one of ours, unexpired, and its
    /// ServiceAccount still exists with the same UID.
    pub fn authenticate(&self, token: &str, store: &Store) -> Option<(User, Vec<String>)> {
        let t = self.tokens.lock().get(token).cloned()?;
        if t.expires <= SystemTime::now() {
            return None;
        }
        let sa = store.get(
            resources::ids::SERVICEACCOUNTS,
            &t.namespace,
            &t.service_account,
        )?;
        if sa["metadata"]["uid"].as_str() != Some(t.sa_uid.as_str()) {
            return None;
        }
        Some((
            User::service_account(&t.namespace, &t.service_account, &t.sa_uid),
            t.audiences,
        ))
    }
}

/// Whether `user` may do `attrs` (see the module documentation), with the reason.
pub fn authorize(store: &Store, user: &User, attrs: &Attributes) -> (bool, String) {
    if user.is_master() {
        return (true, format!("{MASTERS_GROUP} may do anything"));
    }
    if user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) && default_grant(attrs) {
        return (
            true,
            "granted to system:authenticated by default (discovery, version, self reviews)".into(),
        );
    }
    let rbac = |plural: &str| resources::find("rbac.authorization.k8s.io", "v1", plural);
    let (Some(crb), Some(cr), Some(rb), Some(role)) = (
        rbac("clusterrolebindings"),
        rbac("clusterroles"),
        rbac("rolebindings"),
        rbac("roles"),
    ) else {
        return (false, "RBAC resources are not served".into());
    };
    let allowed_by = |binding: &Value, binding_ns: Option<&str>| -> Option<String> {
        if !binding["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| subject_matches(s, user)))
        {
            return None;
        }
        let role_ref = &binding["roleRef"];
        let role_name = role_ref["name"].as_str().unwrap_or("");
        let role_obj = match (role_ref["kind"].as_str(), binding_ns) {
            (Some("ClusterRole"), _) => store.get(cr, "", role_name),
            (Some("Role"), Some(ns)) => store.get(role, ns, role_name),
            _ => None,
        }?;
        role_obj["rules"]
            .as_array()?
            .iter()
            .any(|r| rule_allows(r, attrs))
            .then(|| {
                format!(
                    "{} {:?} via {} {role_name:?}",
                    binding["kind"].as_str().unwrap_or("binding"),
                    binding["metadata"]["name"].as_str().unwrap_or(""),
                    role_ref["kind"].as_str().unwrap_or("")
                )
            })
    };
    let (bindings, _) = store.list(crb, None, |_| true);
    if let Some(why) = bindings.iter().find_map(|b| allowed_by(b, None)) {
        return (true, why);
    }
    if !attrs.namespace.is_empty() {
        let (bindings, _) = store.list(rb, Some(&attrs.namespace), |_| true);
        if let Some(why) = bindings
            .iter()
            .find_map(|b| allowed_by(b, Some(&attrs.namespace)))
        {
            return (true, why);
        }
    }
    (false, String::new())
}

/// Upstream's bootstrap grants to every authenticated user.
fn default_grant(attrs: &Attributes) -> bool {
    if !attrs.is_resource() {
        let p = attrs.path.as_str();
        return attrs.verb == "get"
            && (p == "/api"
                || p == "/apis"
                || p.starts_with("/api/")
                || p.starts_with("/apis/")
                || p.starts_with("/openapi")
                || p == "/version"
                || p.starts_with("/healthz")
                || p.starts_with("/livez")
                || p.starts_with("/readyz"));
    }
    attrs.verb == "create"
        && attrs.group == "authorization.k8s.io"
        && matches!(
            attrs.resource.as_str(),
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        )
}

fn subject_matches(s: &Value, user: &User) -> bool {
    let name = s["name"].as_str().unwrap_or("");
    match s["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = s["namespace"].as_str().unwrap_or("");
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn contains(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
}

/// One PolicyRule against the request (upstream `RuleAllows`).
pub fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    if !contains(&rule["verbs"], &attrs.verb) {
        return false;
    }
    if !attrs.is_resource() {
        return rule["nonResourceURLs"].as_array().is_some_and(|urls| {
            urls.iter().filter_map(Value::as_str).any(|u| {
                u == "*"
                    || u == attrs.path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| attrs.path.starts_with(prefix))
            })
        });
    }
    if !contains(&rule["apiGroups"], &attrs.group) {
        return false;
    }
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let resource_ok = rule["resources"].as_array().is_some_and(|rs| {
        rs.iter().filter_map(Value::as_str).any(|r| {
            r == "*"
                || r == combined
                || (!attrs.subresource.is_empty()
                    && (r == format!("*/{}", attrs.subresource)
                        || r == format!("{}/*", attrs.resource)))
        })
    });
    if !resource_ok {
        return false;
    }
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|n| n == attrs.name.as_str()),
        _ => true,
    }
}

/// The audit record writer (one JSON object per line).
pub struct AuditLog {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    /// Writes one record and flushes it (so a reader sees complete lines).
    pub fn record(&self, user: Option<&User>, attrs: &Attributes, code: u16) {
        let line = json!({
            "ts": crate::store::now_micro(),
            "user": user.map(|u| u.name.as_str()),
            "groups": user.map(|u| u.groups.clone()),
            "verb": attrs.verb,
            "apiGroup": attrs.group,
            "resource": attrs.resource,
            "subresource": attrs.subresource,
            "namespace": attrs.namespace,
            "name": attrs.name,
            "path": attrs.path,
            "code": code,
        });
        let mut f = self.file.lock();
        let written = serde_json::to_writer(&mut *f, &line)
            .map_err(std::io::Error::other)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.flush());
        if let Err(e) = written {
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    }
}

/// Shared handle to the optional audit log.
pub type SharedAudit = Option<Arc<AuditLog>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_follow_upstream_matching() {
        let rule = json!({"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["get", "patch"]});
        assert!(rule_allows(&rule, &attrs("get", "", "pods", "", "a")));
        assert!(rule_allows(
            &rule,
            &attrs("patch", "", "pods", "status", "a")
        ));
        assert!(!rule_allows(&rule, &attrs("delete", "", "pods", "", "a")));
        assert!(!rule_allows(&rule, &attrs("get", "", "pods", "log", "a")));
        assert!(!rule_allows(&rule, &attrs("get", "apps", "pods", "", "a")));
        let star = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(
            &star,
            &attrs("update", "", "nodes", "status", "")
        ));
        assert!(!rule_allows(&star, &attrs("update", "", "nodes", "", "")));
        let named = json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["x"], "verbs": ["get"]});
        let mut a = attrs("get", "coordination.k8s.io", "leases", "", "kube-system");
        assert!(!rule_allows(&named, &a));
        a.name = "x".into();
        assert!(rule_allows(&named, &a));
        let urls = json!({"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]});
        let mut nr = Attributes {
            verb: "get".into(),
            path: "/logs/x".into(),
            ..Attributes::default()
        };
        assert!(rule_allows(&urls, &nr));
        nr.path = "/other".into();
        assert!(!rule_allows(&urls, &nr));
    }

    #[test]
    fn bindings_grant_to_service_accounts_groups_and_namespaces() {
        let store = Store::new(100);
        let rbac = |p: &str| resources::find("rbac.authorization.k8s.io", "v1", p).expect("rbac");
        store
            .create(
                rbac("clusterroles"),
                json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}),
                false,
            )
            .expect("role");
        store
            .create(
                rbac("clusterrolebindings"),
                json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "ServiceAccount", "name": "vnode", "namespace": "kube-system"}]}),
                false,
            )
            .expect("binding");
        store
            .create(
                rbac("roles"),
                json!({"metadata": {"name": "lease", "namespace": "kube-node-lease"}, "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["update"]}]}),
                false,
            )
            .expect("role");
        store
            .create(
                rbac("rolebindings"),
                json!({"metadata": {"name": "lb", "namespace": "kube-node-lease"}, "roleRef": {"kind": "Role", "name": "lease"}, "subjects": [{"kind": "Group", "name": "system:serviceaccounts:kube-system"}]}),
                false,
            )
            .expect("binding");
        let sa = User::service_account("kube-system", "vnode", "u1");
        let other = User::service_account("default", "vnode", "u2");
        assert!(authorize(&store, &sa, &attrs("list", "", "pods", "", "")).0);
        assert!(!authorize(&store, &other, &attrs("list", "", "pods", "", "")).0);
        assert!(!authorize(&store, &sa, &attrs("delete", "", "pods", "", "x")).0);
        let lease = attrs(
            "update",
            "coordination.k8s.io",
            "leases",
            "",
            "kube-node-lease",
        );
        assert!(authorize(&store, &sa, &lease).0);
        let elsewhere = attrs("update", "coordination.k8s.io", "leases", "", "default");
        assert!(!authorize(&store, &sa, &elsewhere).0);
        assert!(authorize(&store, &User::admin(), &elsewhere).0);
        // Discovery is open to every authenticated user.
        let disco = Attributes {
            verb: "get".into(),
            path: "/apis".into(),
            ..Attributes::default()
        };
        assert!(authorize(&store, &other, &disco).0);
    }

    #[test]
    fn tokens_die_with_their_service_account() {
        let store = Store::new(100);
        let sa = store
            .create(
                resources::ids::SERVICEACCOUNTS,
                json!({"metadata": {"name": "vnode", "namespace": "kube-system"}}),
                false,
            )
            .expect("sa");
        let uid = sa["metadata"]["uid"].as_str().expect("uid").to_string();
        let issuer = TokenIssuer::default();
        let (tok, _) = issuer.issue(
            "kube-system",
            "vnode",
            &uid,
            vec![DEFAULT_AUDIENCE.into()],
            Duration::from_secs(60),
        );
        let (user, aud) = issuer.authenticate(&tok, &store).expect("valid");
        assert_eq!(user.name, "system:serviceaccount:kube-system:vnode");
        assert_eq!(aud, vec![DEFAULT_AUDIENCE.to_string()]);
        assert!(issuer.authenticate("vnode-sa.forged", &store).is_none());
        store
            .mutate(
                resources::ids::SERVICEACCOUNTS,
                "kube-system",
                "vnode",
                false,
                |_, _| Ok(crate::store::Change::Delete),
            )
            .expect("delete");
        assert!(issuer.authenticate(&tok, &store).is_none());
    }
}
