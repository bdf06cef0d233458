//! End-to-end: status, reconcile and recovery through the real processes — `vnode apiserver`,
//! `vnode eci-emulator` (instant lifecycle) and `vnode run`:
//!
//! * a pod reaches Running with its pod IP, conditions and container statuses from ECI;
//! * a container group carrying this node's tags but a UID no pod has is deleted (orphan);
//! * ECI's events mirrored onto a pod are not published again by a restarted daemon;
//! * chaos: `kill -9` of the daemon in the middle of a 200-pod burst, then a restart: every pod
//!   Running, exactly one group per pod, no orphans — also with the emulator injecting 20 %
//!   errors, throttling and latency, and with the API server dropping every watch after a
//!   random time up to 2 s (pods created and deleted while the watches drop).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use vnode_eci::model::{Container, ContainerGroup, CreateContainerGroupRequest, Tag};
use vnode_tests::{Sandbox, SandboxBuilder, group_tag as tag, nginx_pod_yaml, wait_for};

const CLUSTER: &str = "e2e-recovery";

/// The sandbox with fast status polling and sweeps, 64 pod workers, and the emulator
/// behaving as `emulator_profile` says.
fn world(emulator_profile: &str) -> Result<Sandbox> {
    world_builder(emulator_profile).start()
}

/// [`world`], not started yet.
fn world_builder(emulator_profile: &str) -> SandboxBuilder {
    Sandbox::builder()
        .cluster(CLUSTER)
        .emulator_profile(emulator_profile)
        .config(
            "intervals: {podStatusPoll: 300ms, podStatusResync: 3s, reconcile: 1s, orphanMinAge: 1s}\n\
             concurrency: {podWorkers: 64}\n",
        )
}

/// The reasons ECI reports for a running single-container group, which the daemon mirrors
/// onto the pod.
const ECI_REASONS: [&str; 5] = ["Scheduled", "Pulling", "Pulled", "Created", "Started"];

/// Events on pod `default/name`, counted by (reason, message).
fn pod_events(w: &Sandbox, name: &str) -> Result<BTreeMap<(String, String), usize>> {
    let mut counts = BTreeMap::new();
    for e in w.events()? {
        if e["involvedObject"]["name"] == name && e["involvedObject"]["kind"] == "Pod" {
            let reason = e["reason"].as_str().unwrap_or_default().to_string();
            let message = e["message"].as_str().unwrap_or_default().to_string();
            *counts.entry((reason, message)).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Audit records of Event creates from line `from` on, by answer code.
fn event_creates_since(w: &Sandbox, from: usize) -> Result<BTreeMap<u64, usize>> {
    let audit = w.audit_log.as_ref().context("the sandbox audits")?;
    let mut by_code = BTreeMap::new();
    for line in std::fs::read_to_string(audit)?.lines().skip(from) {
        let rec: serde_json::Value = serde_json::from_str(line)?;
        if rec["verb"] == "create" && rec["resource"] == "events" {
            *by_code
                .entry(rec["code"].as_u64().unwrap_or_default())
                .or_default() += 1;
        }
    }
    Ok(by_code)
}

/// Groups of this test's cluster that are not terminal (a `Deleted` one still counts: a
/// duplicate that was created and deleted again existed).
fn live_groups(w: &Sandbox) -> Result<Vec<ContainerGroup>> {
    Ok(w.all_groups()?
        .into_iter()
        .filter(|g| !g.status.is_terminal())
        .collect())
}

#[test]
fn a_pod_reaches_running_from_eci_and_an_orphan_group_is_deleted() -> Result<()> {
    let mut w = world_builder("timing: {instant: true}\n")
        .audit_log()
        .start()?;
    w.apply("web.yaml", &nginx_pod_yaml("web"))?;
    let pod = wait_for("web Running", Duration::from_secs(40), || {
        let p = w.pod("web")?;
        Ok((p["status"]["phase"] == "Running").then_some(p))
    })?;
    let status = &pod["status"];
    assert!(
        status["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
        "{status}"
    );
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
            .unwrap_or_default();
        assert_eq!(c["status"], "True", "{kind}: {status}");
    }
    let cs = &status["containerStatuses"][0];
    assert_eq!(cs["name"], "nginx", "{status}");
    assert_eq!(cs["ready"], true, "{status}");
    assert!(cs["state"]["running"].is_object(), "{status}");
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("eci://")),
        "{status}"
    );

    // An orphan: this node's tags, a UID no pod has.
    let orphan =
        w.rt.block_on(w.eci.create_container_group(&CreateContainerGroupRequest {
            container_group_name: "orphan-1".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "nginx".into(),
                ..Default::default()
            }],
            tags: vec![
                Tag::new("vnode.io/cluster", CLUSTER),
                Tag::new("vnode.io/node", "virtual-kubelet"),
                Tag::new("vnode.io/namespace", "default"),
                Tag::new("vnode.io/pod-name", "nobody"),
                Tag::new("vnode.io/pod-uid", "00000000-0000-4000-8000-000000000000"),
            ],
            ..Default::default()
        }))?
        .container_group_id;
    wait_for("the orphan to be deleted", Duration::from_secs(20), || {
        Ok((!live_groups(&w)?
            .iter()
            .any(|g| g.container_group_id == orphan))
        .then_some(()))
    })?;
    // The live pod's group is untouched.
    let live = live_groups(&w)?;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(tag(&live[0], "vnode.io/pod-name"), Some("web"));

    // ECI's events are on the pod once each, and `kubectl describe` lists them.
    let before = wait_for("ECI's events on web", Duration::from_secs(30), || {
        let events = pod_events(&w, "web")?;
        Ok(ECI_REASONS
            .iter()
            .all(|r| events.keys().any(|(reason, _)| reason == r))
            .then_some(events))
    })?;
    assert!(before.values().all(|n| *n == 1), "{before:#?}");
    let describe = w.kubectl_ok(&["-n", "default", "describe", "pod", "web"])?;
    let events = describe
        .split_once("\nEvents:")
        .map(|(_, e)| e)
        .with_context(|| format!("no Events in:\n{describe}"))?;
    for reason in ECI_REASONS {
        assert!(events.contains(reason), "{reason} not described:\n{events}");
    }
    // A restarted daemon (empty memory) observes the same events again: it writes each once
    // more under the same name, the API server answers 409 AlreadyExists, and the pod still
    // has each event once.
    let audit_lines = std::fs::read_to_string(w.audit_log.as_ref().context("audit")?)?
        .lines()
        .count();
    w.kill_daemon()?;
    w.restart_daemon()?;
    w.wait_node_ready()?;
    let creates = wait_for(
        "the restarted daemon to mirror ECI's events again",
        Duration::from_secs(30),
        || {
            let by_code = event_creates_since(&w, audit_lines)?;
            Ok((by_code.get(&409).copied().unwrap_or(0) >= ECI_REASONS.len()).then_some(by_code))
        },
    )?;
    let after = pod_events(&w, "web")?;
    assert_eq!(
        after, before,
        "events after the restart (event creates since: {creates:?})"
    );
    w.terminate_daemon()?;
    Ok(())
}

/// `n` pods named `burst-NNN`, applied in one `kubectl apply`.
fn apply_burst(w: &Sandbox, n: usize) -> Result<()> {
    let yaml: Vec<String> = (0..n)
        .map(|i| nginx_pod_yaml(&format!("burst-{i:03}")))
        .collect();
    w.apply("burst.yaml", &yaml.join("---\n"))
}

/// Waits for all `n` pods to be Running and for the final state (exactly one group per pod,
/// each named by its pod's annotation, no orphans); then waits for a listing and reconcile
/// sweep begun after that and checks the state again (a duplicate created late would
/// show: `live_groups` counts `Deleted` groups too).
fn every_pod_running_with_one_group_and_no_orphans(w: &Sandbox, n: usize) -> Result<()> {
    wait_for("every pod Running", Duration::from_secs(120), || {
        let pods = w.pods()?;
        let running = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        Ok((pods.len() == n && running == n).then_some(()))
    })?;
    // Orphans (groups of deleted pods, or created by the killed daemon for a pod that is
    // gone) are removed by the sweep, which runs every second here.
    wait_for(
        "one group per pod and no orphans",
        Duration::from_secs(60),
        || Ok(one_group_per_pod(w, n)?.is_none().then_some(())),
    )?;
    w.wait_for_sweep(Duration::from_secs(60))?;
    if let Some(problem) = one_group_per_pod(w, n)? {
        anyhow::bail!("after a further sweep: {problem}");
    }
    Ok(())
}

/// What is wrong with the groups of the `n` pods (an orphan, a pod without its group, a
/// pod with two), or `None`.
fn one_group_per_pod(w: &Sandbox, n: usize) -> Result<Option<String>> {
    let pods = w.pods()?;
    let uids: HashMap<String, String> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                p["metadata"]["annotations"]["vnode.io/container-group-id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let live = live_groups(w)?;
    let mut per_uid: HashMap<&str, usize> = HashMap::new();
    for g in &live {
        let uid = tag(g, "vnode.io/pod-uid").unwrap_or("");
        let Some(annotated) = uids.get(uid) else {
            return Ok(Some(format!(
                "orphan group {} (uid {uid})",
                g.container_group_id
            )));
        };
        if *annotated != g.container_group_id {
            return Ok(Some(format!(
                "pod {uid} is annotated with {annotated:?}, not its group {}",
                g.container_group_id
            )));
        }
        *per_uid.entry(uid).or_default() += 1;
    }
    if per_uid.len() != n || pods.len() != n {
        return Ok(Some(format!(
            "{} of {} pods have a group (expected {n})",
            per_uid.len(),
            pods.len()
        )));
    }
    if let Some((uid, count)) = per_uid.iter().find(|(_, c)| **c != 1) {
        return Ok(Some(format!("pod {uid} has {count} groups")));
    }
    Ok(None)
}

/// Creates `n` pods in one `kubectl apply`, kills the daemon with SIGKILL once some groups
/// exist, restarts it, and checks the outcome.
fn burst_with_kill_9(mut w: Sandbox, n: usize) -> Result<()> {
    apply_burst(&w, n)?;
    wait_for("the burst to be under way", Duration::from_secs(30), || {
        Ok((live_groups(&w)?.len() >= n / 4).then_some(()))
    })?;
    w.kill_daemon()?;
    w.restart_daemon()?;
    every_pod_running_with_one_group_and_no_orphans(&w, n)?;
    w.terminate_daemon()?;
    Ok(())
}

#[test]
fn kill_9_in_a_200_pod_burst_leaves_every_pod_running_with_one_group_and_no_orphans() -> Result<()>
{
    let w = world("timing: {instant: true}\n")?;
    burst_with_kill_9(w, 200)
}

#[test]
fn kill_9_in_a_burst_with_eci_errors_throttling_and_latency() -> Result<()> {
    // 20 % of all calls fail: half 500s, half throttled (with x-acs-retry-after); 10 % of
    // calls are 100 ms slower.
    let w = world(
        "timing: {instant: true}\n\
         faults:\n\
         - {kind: error, rate: 0.1, code: InternalError, status: 500}\n\
         - {kind: error, rate: 0.1, code: Throttling.User, status: 400}\n\
         - {kind: latency, rate: 0.1, delay_ms: 100}\n",
    )?;
    burst_with_kill_9(w, 200)
}

/// Watch requests on pods across all namespaces in the audit log: only the daemon's pod
/// watcher makes them (kubectl here only lists, gets and deletes without waiting).
fn pod_watches(w: &Sandbox) -> Result<usize> {
    let audit = w.audit_log.as_ref().context("the sandbox audits")?;
    let text = std::fs::read_to_string(audit)?;
    let mut n = 0;
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line)?;
        if rec["verb"] == "watch" && rec["resource"] == "pods" && rec["namespace"] == "" {
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn a_200_pod_burst_while_the_apiserver_drops_watches() -> Result<()> {
    // Every watch ends after a random time up to 2 s: cleanly, with a stream reset, or with
    // the TCP connection reset. The daemon's pod watcher must resume (or relist) each time
    // without losing a pod: new pods get a group, deleted pods lose theirs.
    let mut w = Sandbox::builder()
        .cluster(CLUSTER)
        .emulator_profile("timing: {instant: true}\n")
        .apiserver_args(&["--drop-watches-every", "2s"])
        .audit_log()
        .config(
            "intervals: {podStatusPoll: 300ms, podStatusResync: 3s, reconcile: 1s, orphanMinAge: 1s}\n\
             concurrency: {podWorkers: 64}\n",
        )
        .start()?;
    let n = 200;
    // Half the burst; a `kill -9` of the daemon once it is under way and a restart (as in
    // the tests above); then the other half and ten deletions, all while watches drop.
    let first: Vec<String> = (0..n / 2)
        .map(|i| nginx_pod_yaml(&format!("burst-{i:03}")))
        .collect();
    w.apply("burst-1.yaml", &first.join("---\n"))?;
    wait_for("the burst to be under way", Duration::from_secs(30), || {
        Ok((live_groups(&w)?.len() >= n / 8).then_some(()))
    })?;
    w.kill_daemon()?;
    w.restart_daemon()?;
    let second: Vec<String> = (n / 2..n)
        .map(|i| nginx_pod_yaml(&format!("burst-{i:03}")))
        .collect();
    w.apply("burst-2.yaml", &second.join("---\n"))?;
    // The deletions below land while the second half is being created.
    wait_for(
        "the second half to be under way",
        Duration::from_secs(60),
        || Ok((live_groups(&w)?.len() > n / 2).then_some(())),
    )?;
    let victims: Vec<String> = (0..10).map(|i| format!("burst-{:03}", i * 7)).collect();
    let mut args = vec!["-n", "default", "delete", "pod", "--wait=false"];
    args.extend(victims.iter().map(String::as_str));
    w.kubectl_ok(&args)?;
    every_pod_running_with_one_group_and_no_orphans(&w, n - victims.len())?;
    let pods = w.pods()?;
    for v in &victims {
        assert!(
            !pods.iter().any(|p| p["metadata"]["name"] == v.as_str()),
            "{v} was deleted and its deletion finished"
        );
    }
    // The watches really were dropped, and re-established every time.
    let watches = pod_watches(&w)?;
    assert!(
        watches >= 5,
        "the daemon's pod watch was established {watches} times; with drops every ≤ 2 s over the test it must have been re-established several times"
    );
    // The daemon is still watching: a pod created now is placed promptly.
    w.apply("late.yaml", &nginx_pod_yaml("late"))?;
    wait_for(
        "a pod created after the drops to run",
        Duration::from_secs(30),
        || Ok((w.pod("late")?["status"]["phase"] == "Running").then_some(())),
    )?;
    w.terminate_daemon()?;
    Ok(())
}
