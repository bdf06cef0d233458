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
//!   user, groups, verb, API group, resource, subresource, namespace, name, response code,
//!   and when the request was received and answered (upstream's `requestReceivedTimestamp`
//!   and `stageTimestamp`), so the server's own handling time of each request is known.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde_json::Value;

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

/// How long the audit writer gathers records before writing them: one `write` per batch
/// instead of one per request (each was an ext4 append, ~6 % of the server's CPU in
/// `bench pods`). A reader sees a record at most about this long after its response.
const AUDIT_BATCH_WINDOW: Duration = Duration::from_millis(5);

/// The audit record writer (one JSON object per line).
///
/// Requests append their record to a buffer (no system call on the request path); a
/// writer thread writes what has gathered, [`AUDIT_BATCH_WINDOW`] after the first record
/// of a batch, in one `write`. [`AuditLog::flush`] writes everything recorded so far (the
/// server calls it on shutdown), and dropping the log flushes and stops the thread, so
/// every record reaches the file. The file only ever receives whole lines.
pub struct AuditLog {
    shared: Arc<AuditShared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct AuditShared {
    /// Records not yet written, and whether the log is closing.
    pending: Mutex<(Vec<u8>, bool)>,
    /// Wakes the writer thread when a batch starts or the log closes.
    wake: parking_lot::Condvar,
    /// Held while writing, so batches reach the file in the order they were taken.
    file: Mutex<std::fs::File>,
}

impl AuditShared {
    /// Writes every pending record (in order with any batch being written).
    fn write_pending(&self) {
        let mut file = self.file.lock();
        let batch = std::mem::take(&mut self.pending.lock().0);
        if batch.is_empty() {
            return;
        }
        if let Err(e) = file.write_all(&batch) {
            tracing::warn!(error = %e, bytes = batch.len(), "writing the audit log failed");
        }
    }

    fn run_writer(&self) {
        loop {
            {
                let mut pending = self.pending.lock();
                while pending.0.is_empty() && !pending.1 {
                    self.wake.wait(&mut pending);
                }
                if pending.1 {
                    drop(pending);
                    self.write_pending();
                    return;
                }
            }
            // Let the batch gather, then write it in one go.
            std::thread::sleep(AUDIT_BATCH_WINDOW);
            self.write_pending();
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// One audit line as written (borrowed from the request; keys as upstream's audit
/// policy-less minimum plus the path).
#[derive(serde::Serialize)]
struct AuditRecord<'a> {
    /// When the record was taken, after the response was built (the line order's key).
    ts: &'a str,
    /// When the request reached the handler (upstream's name), before its body was read.
    #[serde(rename = "requestReceivedTimestamp")]
    received: &'a str,
    /// When the response was built (upstream's name; for a watch, when its stream
    /// started): the same moment as `ts`.
    #[serde(rename = "stageTimestamp")]
    stage: &'a str,
    user: Option<&'a str>,
    groups: Option<&'a [String]>,
    verb: &'a str,
    #[serde(rename = "apiGroup")]
    api_group: &'a str,
    resource: &'a str,
    subresource: &'a str,
    namespace: &'a str,
    name: &'a str,
    path: &'a str,
    code: u16,
}

impl AuditLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let shared = Arc::new(AuditShared {
            pending: Mutex::new((Vec::new(), false)),
            wake: parking_lot::Condvar::new(),
            file: Mutex::new(file),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("audit-writer".into())
                .spawn(move || shared.run_writer())?
        };
        Ok(Self {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues one record; the writer thread writes it within [`AUDIT_BATCH_WINDOW`].
    ///
    /// The timestamp is taken while the queue is locked, so the file's lines are in
    /// timestamp order: once a reader sees a record, every record with an earlier timestamp
    /// is in the file too (a flush barrier: `vnode bench pods` counts requests up to a
    /// point in time exactly by waiting for a request of its own made after that point).
    /// `received` is when the request reached the server's handler.
    pub fn record(
        &self,
        user: Option<&User>,
        attrs: &Attributes,
        code: u16,
        received: jiff::Timestamp,
    ) {
        let received = crate::store::micro_time(received);
        let mut pending = self.shared.pending.lock();
        let ts = crate::store::now_micro();
        let record = AuditRecord {
            ts: &ts,
            received: &received,
            stage: &ts,
            user: user.map(|u| u.name.as_str()),
            groups: user.map(|u| u.groups.as_slice()),
            verb: &attrs.verb,
            api_group: &attrs.group,
            resource: &attrs.resource,
            subresource: &attrs.subresource,
            namespace: &attrs.namespace,
            name: &attrs.name,
            path: &attrs.path,
            code,
        };
        let was_empty = pending.0.is_empty();
        let before = pending.0.len();
        // Serialising borrowed strings into a Vec cannot fail; if it ever did, the
        // partial record is cut off so the file keeps whole lines.
        if serde_json::to_writer(&mut pending.0, &record).is_err() {
            pending.0.truncate(before);
            tracing::warn!("serialising an audit record failed");
            return;
        }
        pending.0.push(b'\n');
        if was_empty {
            self.shared.wake.notify_one();
        }
    }

    /// Writes every record queued so far before returning.
    pub fn flush(&self) {
        self.shared.write_pending();
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shared.pending.lock().1 = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().take()
            && writer.join().is_err()
        {
            tracing::warn!("the audit writer thread panicked");
        }
        // Whatever the thread did not get to (it writes before it exits, but be sure).
        self.shared.write_pending();
    }
}

/// Shared handle to the optional audit log.
pub type SharedAudit = Option<Arc<AuditLog>>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn audit_records_reach_the_file_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let read = |p: &Path| -> Vec<Value> {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str(l).expect("a whole JSON line"))
                .collect()
        };
        let log = AuditLog::open(&path).expect("open");
        let user = User::admin();
        for i in 0..500 {
            let mut a = attrs("create", "", "pods", "", "ns");
            a.name = format!("p{i}");
            log.record(Some(&user), &a, 201, jiff::Timestamp::now());
        }
        log.flush();
        let lines = read(&path);
        assert_eq!(lines.len(), 500);
        for (i, rec) in lines.iter().enumerate() {
            assert_eq!(rec["name"], format!("p{i}"));
            assert_eq!(rec["user"], ADMIN_USER);
            assert_eq!(rec["groups"][0], MASTERS_GROUP);
            assert_eq!(rec["apiGroup"], "");
            assert_eq!(rec["code"], 201);
            assert_eq!(rec["ts"].as_str().map(str::len), Some(27), "{rec}");
            assert_eq!(rec["stageTimestamp"], rec["ts"]);
            let received = rec["requestReceivedTimestamp"].as_str().expect("received");
            assert_eq!(received.len(), 27, "{rec}");
            assert!(received <= rec["ts"].as_str().expect("ts"), "{rec}");
        }
        // Records queued after the last flush are written when the log is dropped.
        log.record(
            None,
            &attrs("get", "", "nodes", "", ""),
            401,
            jiff::Timestamp::now(),
        );
        drop(log);
        let lines = read(&path);
        assert_eq!(lines.len(), 501);
        assert_eq!(lines[500]["code"], 401);
        assert_eq!(lines[500]["user"], Value::Null);
        // Reopening appends.
        let log = AuditLog::open(&path).expect("reopen");
        log.record(
            None,
            &attrs("list", "", "pods", "", ""),
            200,
            jiff::Timestamp::now(),
        );
        drop(log);
        assert_eq!(read(&path).len(), 502);
    }
}
