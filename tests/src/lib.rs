//! Shared helpers for the end-to-end tests in `tests/tests/`: find the built `vnode`
//! binary, start its subcommands as real child processes on loopback, and clean up.
//!
//! Convention every long-running `vnode` subcommand follows (and these helpers rely on):
//! once it accepts connections it prints one line to stdout of the form
//! `<service> listening on <url>`, where `<url>` is the bound address. Tests pass
//! `--listen 127.0.0.1:0` so the kernel picks a free port: no races between parallel tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Path of the `vnode` binary built in this workspace's target directory.
///
/// `cargo xtask test` builds it before running the tests. Test binaries live in
/// `target/<profile>/deps/`, so the binary is two levels up.
pub fn vnode_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VNODE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("vnode");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p vnode`; `cargo xtask test` does this)",
        bin.display()
    );
    bin
}

/// A running `vnode` child process. Killed (and reaped) when dropped, so a failing
/// test never leaves a stray server behind.
pub struct VnodeProcess {
    child: Child,
    /// The URL the process announced in its `listening on` line.
    pub url: String,
    /// Lines of stdout after the ready line, for tests that need later output.
    pub stdout: mpsc::Receiver<String>,
}

impl VnodeProcess {
    /// Starts `vnode ARGS…` and waits (up to `timeout`) for its `listening on` line.
    pub fn start(args: &[&str], timeout: Duration) -> Result<Self> {
        Self::start_with_env(args, &[], timeout)
    }

    /// Like [`VnodeProcess::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Result<Self> {
        Self::start_logged(args, env, None, timeout)
    }

    /// Like [`VnodeProcess::start_with_env`], with stderr written to `stderr_file` (created
    /// or truncated) instead of the test's stderr when given.
    pub fn start_logged(
        args: &[&str],
        env: &[(&str, &str)],
        stderr_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self> {
        let stderr = match stderr_file {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => Stdio::inherit(),
        };
        let mut cmd = Command::new(vnode_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning vnode {args:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, url)) = line.rsplit_once(" listening on ") {
                        let url = url.trim().to_string();
                        return Ok(Self {
                            child,
                            url,
                            stdout: rx,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    bail!(
                        "vnode {args:?} did not report `listening on` within {timeout:?} (exit: {status:?})"
                    );
                }
            }
        }
    }

    /// The OS process id, for tests that signal the process (e.g. `kill -9`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("vnode did not exit within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VnodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vnode ARGS…` to completion and returns (exit code, stdout, stderr).
pub fn run_vnode(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(vnode_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running vnode {args:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs the real `kubectl` with the given kubeconfig; returns (exit code, stdout, stderr).
///
/// `kubectl exec` is run again (at most twice more) when kubectl itself dropped a message:
/// client-go's WebSocket executor starts reading before it has registered its streams, and
/// discards a message for a stream it has not registered yet ("Unknown stream id N,
/// discarding message"). A command that ends at once (`exit 3`) can lose its status that way
/// when kubectl is starved of CPU, as on CI's 2 cores. A server that used wrong stream ids
/// fails every attempt, so the retry hides nothing of ours.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<(i32, String, String)> {
    let run = || -> Result<(i32, String, String)> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running kubectl (is it installed?)")?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let exec = args.contains(&"exec");
    let mut attempt = 1;
    loop {
        let answer = run()?;
        if !(exec && attempt < 3 && answer.2.contains("discarding message")) {
            return Ok(answer);
        }
        attempt += 1;
    }
}

/// The repository root (for reading `examples/` and fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// A built plugin component from `target/plugins` (built by `vnode-plugin-host`'s build
/// script), e.g. `plugin_wasm("zone_spread")`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    repo_root()
        .join("target/plugins/wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

/// Polls `f` every 250 ms until it returns `Some` (then returns it) or `timeout` passes
/// (then fails naming `what` and the last error `f` returned).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last_err = None;
    while std::time::Instant::now() < deadline {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("timed out waiting for {what} (last error: {last_err:?})")
}

/// `kubectl ARGS… -o json`, parsed; fails with kubectl's stderr when it exits non-zero.
pub fn get_json(kubeconfig: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = kubectl(kubeconfig, &all)?;
    if code != 0 {
        bail!("kubectl {args:?} failed: {err}");
    }
    Ok(serde_json::from_str(&out)?)
}

/// Writes `yaml` to `dir/name` and `kubectl apply`s it.
pub fn apply_yaml(kubeconfig: &Path, dir: &Path, name: &str, yaml: &str) -> Result<()> {
    let file = dir.join(name);
    std::fs::write(&file, yaml)?;
    let (code, _, err) = kubectl(kubeconfig, &["apply", "-f", &file.to_string_lossy()])?;
    if code != 0 {
        bail!("kubectl apply {name} failed: {err}");
    }
    Ok(())
}

/// Whether a Node object (JSON) has condition `Ready=True`.
pub fn node_is_ready(node: &serde_json::Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Plain-HTTP GET (the daemon's operations port): (status code, body).
pub fn http_get(base: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Status code of a plain-HTTP GET.
pub fn http_status(base: &str, path: &str) -> Result<u16> {
    Ok(http_get(base, path)?.0)
}

/// The sum of the samples of metric `name` (e.g. `vnode_group_listings_total`) whose labels
/// include every `labels` pair, in a Prometheus text exposition; 0 when there is none.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (sample, label_set) = match series.split_once('{') {
                Some((sample, rest)) => (sample, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let has_labels = labels.iter().all(|(k, v)| {
                let pair = format!("{k}=\"{v}\"");
                label_set
                    .match_indices(&pair)
                    .any(|(at, _)| at == 0 || label_set.as_bytes()[at - 1] == b',')
            });
            (sample == name && has_labels).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A TLS listener on a free loopback port that serves a certificate from the API server's
/// CA in `api_dir` and requires a client certificate from that CA, the way the kubelet API
/// trusts the API server: for fake kubelets. Use [`peer_presented_cert`] on each accepted
/// stream to see whether a client certificate was presented.
pub async fn fake_kubelet_listener(
    api_dir: &Path,
) -> Result<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)> {
    use std::sync::Arc;
    let pki = vnode_apiserver::Pki::load_or_create(api_dir)?;
    let cert = pki.issue_server_cert("fake-kubelet", &["127.0.0.1".into()])?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der().clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok((listener, tokio_rustls::TlsAcceptor::from(Arc::new(tls))))
}

/// Whether the client of an accepted TLS stream presented a certificate.
pub fn peer_presented_cert<S>(stream: &tokio_rustls::server::TlsStream<S>) -> bool {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty())
}

/// The value of tag `key` on a container group.
pub fn group_tag<'a>(g: &'a vnode_eci::model::ContainerGroup, key: &str) -> Option<&'a str> {
    g.tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

/// A pod manifest in namespace `default` that tolerates the virtual node's taint.
/// `metadata_lines` and `spec_lines` are extra YAML lines under `metadata:` and `spec:`
/// (indented by two spaces, each ending in a newline; empty for none), `containers` the items
/// of its `containers:` list (likewise indented).
pub fn pod_yaml(name: &str, metadata_lines: &str, spec_lines: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
{metadata_lines}spec:
{spec_lines}  containers:
{containers}  tolerations:
  - key: virtual-kubelet.io/provider
    operator: Exists
"
    )
}

/// A bare nginx pod in `default` that only the virtual node accepts (its nodeSelector and
/// taint toleration), as the burst tests create them by the hundred.
pub fn nginx_pod_yaml(name: &str) -> String {
    pod_yaml(
        name,
        "",
        "  nodeSelector:\n    type: virtual-kubelet\n",
        "  - image: nginx\n    name: nginx\n",
    )
}

/// The default ServiceAccount without a mounted token, for tests that do not want the
/// daemon to mint one through TokenRequest for every pod.
pub const NO_TOKEN_SA: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: default
automountServiceAccountToken: false
";

/// The seed manifest's environment for `vnode run` (`examples/deploy`): kubeconfig, kubelet
/// port and pod IP, the taint, region, vSwitches `cn-hangzhou-h=vsw-e2e-h,cn-hangzhou-i=vsw-e2e-i`,
/// security group `sg-e2e`, the AccessKey pair and the ECI endpoint. The [`Sandbox`]'s daemons
/// get this plus `ECI_CLUSTER_NAME` and `POD_NAME`.
pub fn seed_env(
    kubeconfig: &Path,
    eci_endpoint: &str,
    (access_key_id, access_key_secret): (&str, &str),
) -> Vec<(String, String)> {
    [
        ("KUBECONFIG", kubeconfig.to_string_lossy().as_ref()),
        ("KUBELET_PORT", "10250"),
        ("VKUBELET_POD_IP", "127.0.0.1"),
        ("VKUBELET_TAINT_KEY", "virtual-kubelet.io/provider"),
        ("VKUBELET_TAINT_VALUE", "alibabacloud"),
        ("VKUBELET_TAINT_EFFECT", "NoSchedule"),
        ("ECI_REGION", "cn-hangzhou"),
        (
            "ECI_VSWITCH",
            "cn-hangzhou-h=vsw-e2e-h,cn-hangzhou-i=vsw-e2e-i",
        ),
        ("ECI_SECURITY_GROUP", "sg-e2e"),
        ("ECI_ACCESS_KEY", access_key_id),
        ("ECI_SECRET_KEY", access_key_secret),
        ("ECI_ENDPOINT", eci_endpoint),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Sets `key` to `value` in `env` (replacing an earlier value).
pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
}

/// Starts `vnode dev --dir DIR` with every listener on a free loopback port, plus `extra`
/// flags and `env`; returns once the API server's `listening on` line is printed.
pub fn start_dev(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<VnodeProcess> {
    let dir = dir.to_str().context("utf-8 sandbox directory")?;
    let mut args = vec![
        "dev",
        "--dir",
        dir,
        "--apiserver-listen",
        "127.0.0.1:0",
        "--eci-listen",
        "127.0.0.1:0",
        "--kubelet-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    VnodeProcess::start_with_env(&args, env, timeout)
}

/// Options for a [`Sandbox`]; start it with [`SandboxBuilder::start`].
///
/// Defaults: `vnode apiserver`, `vnode eci-emulator --no-quotas`, the default
/// ServiceAccount without a token ([`NO_TOKEN_SA`]), and one `vnode run` configured through
/// the seed manifest's environment (taint, two zones `cn-hangzhou-h`/`-i`, the emulator's
/// AccessKey, cluster `e2e`, identity `replica-a`) with fast intervals, leader election off,
/// a kubelet API on a free port trusting the API server's CA; `start` waits for the node to
/// be Ready.
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    cluster: String,
    emulator: bool,
    emulator_profile: Option<String>,
    emulator_args: Vec<String>,
    apiserver_args: Vec<String>,
    audit_log: bool,
    access_key: (String, String),
    config: serde_yaml::Value,
    env: Vec<(String, Option<String>)>,
    daemon_args: Vec<String>,
    no_token_sa: bool,
    kubelet_serving_cert: bool,
    daemon: bool,
    wait_ready: bool,
    capture_daemon_logs: bool,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        let config = serde_yaml::from_str(
            "intervals: {leaseRenew: 1s, nodeStatus: 3s}\n\
             listen: {kubelet: \"127.0.0.1:0\"}\n\
             kubelet: {authorization: alwaysAllow}\n\
             leaderElection: {enabled: false}\n\
             shutdownGrace: 5s\n",
        )
        .expect("the base daemon config is valid YAML");
        Self {
            cluster: "e2e".into(),
            emulator: true,
            emulator_profile: None,
            emulator_args: vec!["--no-quotas".into()],
            apiserver_args: Vec::new(),
            audit_log: false,
            access_key: (
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.into(),
                vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.into(),
            ),
            config,
            env: Vec::new(),
            daemon_args: Vec::new(),
            no_token_sa: true,
            kubelet_serving_cert: false,
            daemon: true,
            wait_ready: true,
            capture_daemon_logs: false,
        }
    }
}

/// Merges `over` into `base`: mappings key by key (recursively), anything else replaced.
fn merge_yaml(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
    match (base, over) {
        (serde_yaml::Value::Mapping(b), serde_yaml::Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge_yaml(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

impl SandboxBuilder {
    /// `ECI_CLUSTER_NAME` (the `vnode.io/cluster` tag [`Sandbox::live_groups`] filters on).
    pub fn cluster(mut self, name: &str) -> Self {
        self.cluster = name.into();
        self
    }

    /// No ECI emulator: `ECI_ENDPOINT` points at a closed loopback port.
    pub fn without_emulator(mut self) -> Self {
        self.emulator = false;
        self
    }

    /// The emulator's behaviour profile (YAML: timing, faults, workloads; see
    /// `host/vnode-eci-emulator/PROFILE.md`).
    pub fn emulator_profile(mut self, yaml: &str) -> Self {
        self.emulator_profile = Some(yaml.into());
        self
    }

    /// Replaces the emulator's extra flags (default `--no-quotas`).
    pub fn emulator_args(mut self, args: &[&str]) -> Self {
        self.emulator_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Extra flags for `vnode apiserver` (e.g. `--audit-log FILE`).
    pub fn apiserver_args(mut self, args: &[&str]) -> Self {
        self.apiserver_args
            .extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The API server writes an audit log ([`Sandbox::audit_log`]).
    pub fn audit_log(mut self) -> Self {
        self.audit_log = true;
        self
    }

    /// The AccessKey pair the emulator accepts and the daemon gets (`ECI_ACCESS_KEY`,
    /// `ECI_SECRET_KEY`).
    pub fn access_key(mut self, id: &str, secret: &str) -> Self {
        self.access_key = (id.into(), secret.into());
        self
    }

    /// Merges `yaml` into the daemon's config file (mappings merged key by key), e.g.
    /// `"concurrency: {podWorkers: 64}"` or a `plugins:` section.
    pub fn config(mut self, yaml: &str) -> Self {
        let over: serde_yaml::Value =
            serde_yaml::from_str(yaml).expect("SandboxBuilder::config takes valid YAML");
        merge_yaml(&mut self.config, over);
        self
    }

    /// Sets (or overrides) one environment variable of the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes one of the default environment variables of the daemon.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Extra flags for `vnode run` (before the sandbox's `--config` and `--listen`).
    pub fn daemon_args(mut self, args: &[&str]) -> Self {
        self.daemon_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Leave the default ServiceAccount alone (its token is minted through TokenRequest).
    pub fn with_service_account_token(mut self) -> Self {
        self.no_token_sa = false;
        self
    }

    /// The kubelet API serves a certificate from the API server's CA (so the API server
    /// verifies it when proxying logs/exec), instead of a self-signed one.
    pub fn kubelet_serving_cert(mut self) -> Self {
        self.kubelet_serving_cert = true;
        self
    }

    /// Start no daemon ([`Sandbox::spawn_daemon`] starts one later).
    pub fn without_daemon(mut self) -> Self {
        self.daemon = false;
        self
    }

    /// `vnode apiserver` alone: no emulator, no daemon, nothing applied (for tests of the API
    /// server itself).
    pub fn apiserver_only(mut self) -> Self {
        self.emulator = false;
        self.daemon = false;
        self.no_token_sa = false;
        self
    }

    /// Do not wait for the node to be Ready after starting the daemon.
    pub fn no_wait_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// Write each daemon's stderr to a file in the sandbox directory instead of the test's
    /// stderr; [`Sandbox::daemon_logs`] reads them.
    pub fn capture_daemon_logs(mut self) -> Self {
        self.capture_daemon_logs = true;
        self
    }

    /// Starts the processes (and waits for the node, unless told not to).
    pub fn start(self) -> Result<Sandbox> {
        let dir = tempfile::tempdir()?;
        let api_dir = dir.path().join("apiserver");
        let api_dir_s = api_dir.to_string_lossy().to_string();
        let audit_log = self.audit_log.then(|| dir.path().join("audit.jsonl"));
        let audit_log_s = audit_log.as_ref().map(|p| p.to_string_lossy().to_string());
        let mut args = vec!["apiserver", "--listen", "127.0.0.1:0", "--dir", &api_dir_s];
        if let Some(a) = &audit_log_s {
            args.extend(["--audit-log", a]);
        }
        args.extend(self.apiserver_args.iter().map(String::as_str));
        let apiserver = VnodeProcess::start(&args, Duration::from_secs(30))?;
        let kubeconfig = api_dir.join("kubeconfig");

        let emulator = if self.emulator {
            let mut args: Vec<String> = vec![
                "eci-emulator".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--access-key-id".into(),
                self.access_key.0.clone(),
                "--access-key-secret".into(),
                self.access_key.1.clone(),
            ];
            args.extend(self.emulator_args.iter().cloned());
            if let Some(profile) = &self.emulator_profile {
                let path = dir.path().join("emulator-profile.yaml");
                std::fs::write(&path, profile)?;
                args.extend(["--profile".into(), path.to_string_lossy().to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(VnodeProcess::start(&args, Duration::from_secs(30))?)
        } else {
            None
        };
        let eci_url = emulator
            .as_ref()
            .map_or_else(|| "http://127.0.0.1:9".to_string(), |e| e.url.clone());

        let mut kubelet = format!("kubelet: {{clientCaFile: {:?}", api_dir.join("ca.crt"));
        if self.kubelet_serving_cert {
            let pki = vnode_apiserver::Pki::load_or_create(&api_dir)?;
            let cert = pki.issue_server_cert("virtual-kubelet", &["127.0.0.1".into()])?;
            pki.write_pair("kubelet.crt", "kubelet.key", &cert)?;
            kubelet.push_str(&format!(
                ", tlsCertFile: {:?}, tlsKeyFile: {:?}",
                api_dir.join("kubelet.crt"),
                api_dir.join("kubelet.key")
            ));
        }
        kubelet.push('}');
        // The test's own settings (`config`) win over the sandbox's kubelet files.
        let mut config: serde_yaml::Value = serde_yaml::from_str(&kubelet)?;
        merge_yaml(&mut config, self.config.clone());
        let config_path = dir.path().join("vnode.yaml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;

        let mut env = seed_env(
            &kubeconfig,
            &eci_url,
            (&self.access_key.0, &self.access_key.1),
        );
        set_env(&mut env, "ECI_CLUSTER_NAME", &self.cluster);
        set_env(&mut env, "POD_NAME", "replica-a");
        for (k, v) in &self.env {
            env.retain(|(ek, _)| ek != k);
            if let Some(v) = v {
                env.push((k.clone(), v.clone()));
            }
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let eci = vnode_eci::EciClient::new(vnode_eci::EciClientConfig {
            endpoint: Some(eci_url.clone()),
            rate_limits: vnode_eci::RateLimits::unlimited(),
            ..vnode_eci::EciClientConfig::new(
                "cn-hangzhou",
                vnode_eci::Credentials::new(&self.access_key.0, &self.access_key.1),
            )
        })?;
        let mut sandbox = Sandbox {
            dir,
            api_dir,
            kubeconfig,
            config_path,
            audit_log,
            env,
            daemon_args: self.daemon_args.clone(),
            cluster: self.cluster.clone(),
            capture_daemon_logs: self.capture_daemon_logs,
            daemons_started: std::cell::Cell::new(0),
            eci_url,
            eci,
            rt,
            daemon: None,
            emulator,
            apiserver,
        };
        if self.no_token_sa {
            sandbox.apply("no-token-sa.yaml", NO_TOKEN_SA)?;
        }
        if self.daemon {
            let identity = sandbox
                .env_value("POD_NAME")
                .unwrap_or("replica-a")
                .to_string();
            sandbox.daemon = Some(sandbox.spawn_daemon(&identity)?);
            if self.wait_ready {
                sandbox.wait_node_ready()?;
            }
        }
        Ok(sandbox)
    }
}

/// `vnode apiserver` + `vnode eci-emulator` + `vnode run` on loopback in a temp directory,
/// with the helpers the end-to-end tests share. Everything is stopped when dropped.
pub struct Sandbox {
    /// The daemon started by [`SandboxBuilder::start`] (or [`Sandbox::restart_daemon`]).
    pub daemon: Option<VnodeProcess>,
    /// The ECI emulator (unless [`SandboxBuilder::without_emulator`]).
    pub emulator: Option<VnodeProcess>,
    /// The API server.
    pub apiserver: VnodeProcess,
    /// The sandbox's temp directory (config, profile, captured logs).
    pub dir: tempfile::TempDir,
    /// The API server's directory (`ca.crt`, `kubeconfig`, `token`, PKI).
    pub api_dir: PathBuf,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The daemon's config file.
    pub config_path: PathBuf,
    /// The API server's audit log (with [`SandboxBuilder::audit_log`]).
    pub audit_log: Option<PathBuf>,
    /// The daemon's environment.
    pub env: Vec<(String, String)>,
    /// `ECI_ENDPOINT`.
    pub eci_url: String,
    /// An ECI client on the emulator (the production client, unlimited pacing).
    pub eci: vnode_eci::EciClient,
    /// A runtime for `eci` calls.
    pub rt: tokio::runtime::Runtime,
    daemon_args: Vec<String>,
    cluster: String,
    capture_daemon_logs: bool,
    daemons_started: std::cell::Cell<usize>,
}

impl Sandbox {
    /// Options; see [`SandboxBuilder`].
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The default sandbox, started.
    pub fn start() -> Result<Self> {
        SandboxBuilder::default().start()
    }

    /// The daemon's value of environment variable `key`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Starts another `vnode run` with this sandbox's config and environment and identity
    /// `identity` (`POD_NAME`); returns once it prints its `listening on` line.
    pub fn spawn_daemon(&self, identity: &str) -> Result<VnodeProcess> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .filter(|(k, _)| k != "POD_NAME")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("POD_NAME", identity));
        let config = self.config_path.to_string_lossy().to_string();
        let mut args = vec!["run", "--provider", "alibabacloud"];
        args.extend(self.daemon_args.iter().map(String::as_str));
        args.extend(["--config", &config, "--listen", "127.0.0.1:0"]);
        let n = self.daemons_started.get();
        self.daemons_started.set(n + 1);
        let stderr = if self.capture_daemon_logs {
            Some(self.dir.path().join(format!("daemon-{n}.log")))
        } else {
            None
        };
        VnodeProcess::start_logged(&args, &env, stderr.as_deref(), Duration::from_secs(60))
    }

    /// The running daemon (fails when there is none).
    pub fn daemon(&self) -> Result<&VnodeProcess> {
        self.daemon
            .as_ref()
            .context("no daemon running in the sandbox")
    }

    /// The running daemon's `/metrics` exposition.
    pub fn daemon_metrics(&self) -> Result<String> {
        let (code, body) = http_get(&self.daemon()?.url, "/metrics")?;
        if code != 200 {
            bail!("the daemon's /metrics answered {code}: {body}");
        }
        Ok(body)
    }

    /// The running daemon's metric `name` summed over the series with `labels` (see
    /// [`metric_sum`]).
    pub fn daemon_metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(metric_sum(&self.daemon_metrics()?, name, labels))
    }

    /// Waits (up to `timeout`) until the running daemon has listed its container groups
    /// *and* finished the reconcile sweep over that listing, with the listing begun after
    /// this call: a positive marker that the daemon has looked at the state as it is now
    /// (for tests that check something does *not* happen).
    ///
    /// `vnode_group_listings_total{result="complete"}` counts a listing when it completes,
    /// before its sweep, and the next listing starts only after that sweep. With the count
    /// at `c` now, listing `c+1` may have begun before this call, listing `c+2` began after
    /// its sweep, and the count reaching `c+3` means the sweep over `c+2` is done. The
    /// daemon needs a short `intervals.reconcile` for this to be quick.
    pub fn wait_for_sweep(&self, timeout: Duration) -> Result<()> {
        let listings =
            || self.daemon_metric("vnode_group_listings_total", &[("result", "complete")]);
        let start = listings()?;
        wait_for(
            "a complete listing and reconcile sweep begun after now",
            timeout,
            || Ok((listings()? >= start + 3.0).then_some(())),
        )
    }

    /// `kill -9` of the daemon (no cleanup of any kind).
    pub fn kill_daemon(&mut self) -> Result<()> {
        let daemon = self.daemon.take().context("no daemon to kill")?;
        let status = Command::new("kill")
            .args(["-KILL", &daemon.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -9 {} failed", daemon.pid());
        }
        drop(daemon);
        Ok(())
    }

    /// Starts the daemon again (after [`Sandbox::kill_daemon`]); does not wait for Ready.
    pub fn restart_daemon(&mut self) -> Result<&VnodeProcess> {
        let identity = self
            .env_value("POD_NAME")
            .unwrap_or("replica-a")
            .to_string();
        let daemon = self.spawn_daemon(&identity)?;
        Ok(self.daemon.insert(daemon))
    }

    /// SIGTERM to the daemon; its exit status.
    pub fn terminate_daemon(&mut self) -> Result<std::process::ExitStatus> {
        self.daemon
            .take()
            .context("no daemon to stop")?
            .terminate(Duration::from_secs(20))
    }

    /// Everything the sandbox's daemons wrote to stderr (with
    /// [`SandboxBuilder::capture_daemon_logs`]).
    pub fn daemon_logs(&self) -> Result<String> {
        let mut all = String::new();
        for n in 0..self.daemons_started.get() {
            let path = self.dir.path().join(format!("daemon-{n}.log"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                all.push_str(&text);
            }
        }
        Ok(all)
    }

    /// `kubectl ARGS…` as admin: (exit code, stdout, stderr). Its discovery cache is the
    /// sandbox's own (`DIR/kubectl-cache`), so an earlier server on the same port (or a test
    /// that adds resources) never leaves kubectl a stale one.
    pub fn kubectl(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let cache = format!(
            "--cache-dir={}",
            self.dir.path().join("kubectl-cache").display()
        );
        let mut all = vec![cache.as_str()];
        all.extend_from_slice(args);
        kubectl(&self.kubeconfig, &all)
    }

    /// `kubectl ARGS…`, failing unless it exits 0; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let (code, out, err) = self.kubectl(args)?;
        if code != 0 {
            bail!("kubectl {args:?} failed ({code}): {out}{err}");
        }
        Ok(out)
    }

    /// `kubectl ARGS… -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl_ok(&all)?)?)
    }

    /// `kubectl apply` of `yaml` (written to `name` in the sandbox directory).
    pub fn apply(&self, name: &str, yaml: &str) -> Result<()> {
        let file = self.dir.path().join(name);
        std::fs::write(&file, yaml)?;
        self.kubectl_ok(&["apply", "-f", &file.to_string_lossy()])
            .with_context(|| format!("kubectl apply {name}"))?;
        Ok(())
    }

    /// Waits (30 s) for node `virtual-kubelet` to be Ready; returns it.
    pub fn wait_node_ready(&self) -> Result<serde_json::Value> {
        wait_for("node Ready", Duration::from_secs(30), || {
            let node = self.get_json(&["get", "node", "virtual-kubelet"])?;
            Ok(node_is_ready(&node).then_some(node))
        })
    }

    /// Pods in namespace `default`.
    pub fn pods(&self) -> Result<Vec<serde_json::Value>> {
        let list = self.get_json(&["-n", "default", "get", "pods"])?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Pod `default/name`.
    pub fn pod(&self, name: &str) -> Result<serde_json::Value> {
        self.get_json(&["-n", "default", "get", "pod", name])
    }

    /// Pod `default/name` once the daemon has recorded its container group (the
    /// `vnode.io/container-group-id` annotation); fails at once if the pod fails instead.
    pub fn wait_for_group(&self, name: &str, timeout: Duration) -> Result<serde_json::Value> {
        wait_for(
            &format!("pod {name} to get its container group"),
            timeout,
            || {
                let pod = self.pod(name)?;
                if pod["status"]["phase"] == "Failed" {
                    bail!("pod {name} failed: {}", pod["status"]);
                }
                Ok(
                    pod["metadata"]["annotations"]["vnode.io/container-group-id"]
                        .is_string()
                        .then_some(pod),
                )
            },
        )
    }

    /// Events in every namespace.
    pub fn events(&self) -> Result<Vec<serde_json::Value>> {
        let list = self.get_json(&["get", "events", "-A"])?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Every container group the emulator lists with this sandbox's `vnode.io/cluster` tag
    /// (any status), through the production ECI client.
    pub fn all_groups(&self) -> Result<Vec<vnode_eci::model::ContainerGroup>> {
        Ok(self.rt.block_on(self.eci.describe_all_container_groups(
            &vnode_eci::model::DescribeContainerGroupsRequest {
                tags: vec![vnode_eci::model::Tag::new(
                    "vnode.io/cluster",
                    &self.cluster,
                )],
                ..Default::default()
            },
        ))?)
    }

    /// [`Sandbox::all_groups`] that are live: not terminal and not `Deleted`.
    pub fn live_groups(&self) -> Result<Vec<vnode_eci::model::ContainerGroup>> {
        Ok(self
            .all_groups()?
            .into_iter()
            .filter(|g| !g.status.is_terminal() && g.status.as_str() != "Deleted")
            .collect())
    }
}
