//! The create phase as a time series: fixed windows (100 ms, wider for long phases so the
//! report stays bounded), each with the pods bound in it and their overhead (bound →
//! CreateContainerGroup issued), what else the API server handled in it (the daemon's status
//! writes, event writes and other requests, from the audit log) and what every process on
//! the machine's cores did in it (CPU time and run-queue wait, from the scheduler's
//! per-thread `/proc/<pid>/task/<tid>/schedstat`: nanoseconds, unlike the 10 ms ticks of
//! `/proc/<pid>/stat`).
//!
//! So a slow pod can be put next to what ran while it waited: a burst of status writes, a
//! process that took the cores, or threads queued behind others (run delay).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// The narrowest window; a phase longer than `MAX_WINDOWS` × this gets wider windows.
pub(super) const MIN_WINDOW_US: i64 = 100_000;
/// At most this many windows in a report.
pub(super) const MAX_WINDOWS: i64 = 600;

/// Window width for a phase of `span_us`: 100 ms, or a multiple of it that keeps the
/// number of windows ≤ [`MAX_WINDOWS`].
pub(super) fn window_width_us(span_us: i64) -> i64 {
    let needed = (span_us.max(1) + MAX_WINDOWS - 1) / MAX_WINDOWS;
    ((needed + MIN_WINDOW_US - 1) / MIN_WINDOW_US).max(1) * MIN_WINDOW_US
}

/// Busy time of the whole machine (all cores) in clock ticks, from `/proc/stat`'s `cpu` line:
/// user + nice + system + irq + softirq + steal (idle and iowait are not busy).
fn parse_machine_busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7).unwrap_or(&0))
}

fn read_machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(parse_machine_busy_ticks)
        .unwrap_or(0)
}

/// Every thread's `(run_ns, wait_ns)` of process `pid`; empty once it is gone.
fn read_threads(pid: u32) -> HashMap<u32, (u64, u64)> {
    let mut threads = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(v) = std::fs::read_to_string(entry.path().join("schedstat"))
            .ok()
            .as_deref()
            .and_then(super::super::SchedStat::parse)
        {
            threads.insert(tid, (v.run_ns, v.wait_ns));
        }
    }
    threads
}

/// CPU and run-queue time one process used between two samples, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct SchedDelta {
    pub run_ns: u64,
    pub wait_ns: u64,
}

/// What every watched process did between the previous sample (`from_us`) and `t_us`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SchedSample {
    /// Wall-clock microseconds of the previous sample (of the sampler's start, for the first).
    pub from_us: i64,
    /// Wall-clock microseconds of this sample.
    pub t_us: i64,
    /// One per process, in the sampler's order.
    pub procs: Vec<SchedDelta>,
    /// Busy time of the whole machine (every process, all cores), milliseconds; clock-tick
    /// resolution (10 ms per core), so only sums over a few samples are meaningful.
    pub machine_busy_ms: f64,
}

/// Differences of per-thread counters: a thread that appears counts from zero, one that
/// exited between samples loses only its last partial interval (never a negative delta).
fn delta(prev: &HashMap<u32, (u64, u64)>, now: &HashMap<u32, (u64, u64)>) -> SchedDelta {
    let mut d = SchedDelta::default();
    for (tid, (run, wait)) in now {
        let (prun, pwait) = prev.get(tid).copied().unwrap_or((0, 0));
        d.run_ns += run.saturating_sub(prun);
        d.wait_ns += wait.saturating_sub(pwait);
    }
    d
}

/// Samples the scheduler counters of a fixed set of processes.
pub(super) struct SchedSampler {
    pids: Vec<u32>,
    prev: Vec<HashMap<u32, (u64, u64)>>,
    prev_machine_ticks: u64,
    prev_us: i64,
    ms_per_tick: f64,
    pub samples: Vec<SchedSample>,
}

impl SchedSampler {
    /// Takes the first reading (the baseline of the first sample).
    pub(super) fn new(pids: Vec<u32>, ticks_per_second: f64, now_us: i64) -> Self {
        let prev = pids.iter().map(|p| read_threads(*p)).collect();
        Self {
            pids,
            prev,
            prev_machine_ticks: read_machine_busy_ticks(),
            prev_us: now_us,
            ms_per_tick: 1000.0 / ticks_per_second,
            samples: Vec::new(),
        }
    }

    pub(super) fn sample(&mut self, t_us: i64) {
        let mut procs = Vec::with_capacity(self.pids.len());
        for (pid, prev) in self.pids.iter().zip(self.prev.iter_mut()) {
            let now = read_threads(*pid);
            procs.push(delta(prev, &now));
            *prev = now;
        }
        let machine = read_machine_busy_ticks();
        let machine_busy_ms =
            machine.saturating_sub(self.prev_machine_ticks) as f64 * self.ms_per_tick;
        self.prev_machine_ticks = machine;
        self.samples.push(SchedSample {
            from_us: std::mem::replace(&mut self.prev_us, t_us),
            t_us,
            procs,
            machine_busy_ms,
        });
    }
}

/// What a Kubernetes request counts as in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestKind {
    /// The daemon's `patch pods/status` (the observer's status writes).
    DaemonStatusWrite,
    /// The daemon's `create events`.
    DaemonEventWrite,
    /// Any other request of the daemon's.
    DaemonOther,
    /// This tool's own requests (its pod creates).
    Bench,
}

/// One pod's bound moment and overhead.
#[derive(Debug, Clone, Copy)]
pub(super) struct PodPoint {
    pub bound_us: i64,
    pub overhead_ms: f64,
}

/// One window of the create phase.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(super) struct Window {
    /// Start of the window, milliseconds after the create phase started.
    pub start_ms: f64,
    pub pods_bound: u32,
    /// Of the pods bound in this window: median and largest overhead (None: no pod).
    pub overhead_p50_ms: Option<f64>,
    pub overhead_max_ms: Option<f64>,
    /// Pods bound in this window whose overhead was above 20 ms (the target).
    pub pods_over_20ms: u32,
    pub daemon_status_writes: u32,
    pub daemon_event_writes: u32,
    pub daemon_other_requests: u32,
    pub bench_requests: u32,
    /// CPU milliseconds per process (a sample interval is shared among the windows it
    /// overlaps, in proportion to the overlap).
    pub cpu_ms: BTreeMap<String, f64>,
    /// Milliseconds that process's threads waited on a run queue (ready, not running).
    pub run_delay_ms: BTreeMap<String, f64>,
    /// CPU milliseconds of everything else on the machine (its busy time minus the
    /// processes above; clock-tick resolution, so ± ~20 ms per window).
    pub other_cpu_ms: f64,
}

/// The windows `[start_us, end_us)` of width `width_us` with everything that fell in each.
pub(super) fn build_windows(
    start_us: i64,
    end_us: i64,
    width_us: i64,
    pods: &[PodPoint],
    requests: &[(i64, RequestKind)],
    process_names: &[&str],
    sched: &[SchedSample],
) -> Vec<Window> {
    let width_us = width_us.max(1);
    let count =
        usize::try_from(((end_us - start_us).max(0) + width_us - 1) / width_us).unwrap_or(0);
    let index = |t_us: i64| -> Option<usize> {
        if t_us < start_us || t_us >= end_us {
            return None;
        }
        usize::try_from((t_us - start_us) / width_us).ok()
    };
    let mut windows: Vec<Window> = (0..count)
        .map(|i| Window {
            start_ms: (i as i64 * width_us) as f64 / 1000.0,
            cpu_ms: process_names
                .iter()
                .map(|n| ((*n).to_string(), 0.0))
                .collect(),
            run_delay_ms: process_names
                .iter()
                .map(|n| ((*n).to_string(), 0.0))
                .collect(),
            ..Window::default()
        })
        .collect();
    let mut overheads: Vec<Vec<f64>> = vec![Vec::new(); count];
    for p in pods {
        if let Some(i) = index(p.bound_us) {
            overheads[i].push(p.overhead_ms);
        }
    }
    for (t, kind) in requests {
        let Some(w) = index(*t).map(|i| &mut windows[i]) else {
            continue;
        };
        match kind {
            RequestKind::DaemonStatusWrite => w.daemon_status_writes += 1,
            RequestKind::DaemonEventWrite => w.daemon_event_writes += 1,
            RequestKind::DaemonOther => w.daemon_other_requests += 1,
            RequestKind::Bench => w.bench_requests += 1,
        }
    }
    for s in sched {
        let span = (s.t_us - s.from_us).max(1);
        let first = s.from_us.max(start_us);
        let last = s.t_us.min(end_us);
        let mut t = first;
        while t < last {
            let Some(i) = index(t) else {
                break;
            };
            let window_end = start_us + (i as i64 + 1) * width_us;
            let piece_end = window_end.min(last);
            let share = (piece_end - t) as f64 / span as f64;
            let w = &mut windows[i];
            let mut ours_ms = 0.0;
            for (name, d) in process_names.iter().zip(&s.procs) {
                let run_ms = d.run_ns as f64 / 1e6 * share;
                *w.cpu_ms.entry((*name).to_string()).or_default() += run_ms;
                *w.run_delay_ms.entry((*name).to_string()).or_default() +=
                    d.wait_ns as f64 / 1e6 * share;
                ours_ms += run_ms;
            }
            w.other_cpu_ms += s.machine_busy_ms * share - ours_ms;
            t = piece_end;
        }
    }
    for (w, mut v) in windows.iter_mut().zip(overheads) {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        w.pods_bound = u32::try_from(v.len()).unwrap_or(u32::MAX);
        w.pods_over_20ms = u32::try_from(v.iter().filter(|o| **o > 20.0).count()).unwrap_or(0);
        w.overhead_p50_ms = Some(v[(v.len() - 1) / 2]);
        w.overhead_max_ms = v.last().copied();
    }
    for w in &mut windows {
        for v in w.cpu_ms.values_mut().chain(w.run_delay_ms.values_mut()) {
            *v = (*v * 10.0).round() / 10.0;
        }
        w.other_cpu_ms = w.other_cpu_ms.max(0.0).round();
    }
    windows
}

/// The `k` windows with the largest overhead, slowest first.
pub(super) fn slowest(windows: &[Window], k: usize) -> Vec<&Window> {
    let mut v: Vec<&Window> = windows
        .iter()
        .filter(|w| w.overhead_max_ms.is_some())
        .collect();
    v.sort_by(|a, b| {
        b.overhead_max_ms
            .unwrap_or(0.0)
            .total_cmp(&a.overhead_max_ms.unwrap_or(0.0))
    });
    v.truncate(k);
    v
}

/// A window whose every field is the median of that field over `windows` that bound a pod
/// (the typical window, for contrast with the slowest).
pub(super) fn median_window(windows: &[Window]) -> Option<Window> {
    let with_pods: Vec<&Window> = windows.iter().filter(|w| w.pods_bound > 0).collect();
    if with_pods.is_empty() {
        return None;
    }
    fn med<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[(v.len() - 1) / 2]
    }
    let field = |f: &dyn Fn(&Window) -> u32| med(with_pods.iter().map(|w| f(w)).collect());
    let float = |f: &dyn Fn(&Window) -> f64| med(with_pods.iter().map(|w| f(w)).collect());
    let names: Vec<&String> = with_pods[0].cpu_ms.keys().collect();
    Some(Window {
        start_ms: f64::NAN,
        pods_bound: field(&|w| w.pods_bound),
        overhead_p50_ms: Some(float(&|w| w.overhead_p50_ms.unwrap_or(0.0))),
        overhead_max_ms: Some(float(&|w| w.overhead_max_ms.unwrap_or(0.0))),
        pods_over_20ms: field(&|w| w.pods_over_20ms),
        daemon_status_writes: field(&|w| w.daemon_status_writes),
        daemon_event_writes: field(&|w| w.daemon_event_writes),
        daemon_other_requests: field(&|w| w.daemon_other_requests),
        bench_requests: field(&|w| w.bench_requests),
        cpu_ms: names
            .iter()
            .map(|n| ((*n).clone(), float(&|w| w.cpu_ms[*n])))
            .collect(),
        run_delay_ms: names
            .iter()
            .map(|n| ((*n).clone(), float(&|w| w.run_delay_ms[*n])))
            .collect(),
        other_cpu_ms: float(&|w| w.other_cpu_ms),
    })
}

/// One line of the human summary for window `w` (`label` in front).
pub(super) fn describe(label: &str, w: &Window) -> String {
    let per_proc = |m: &BTreeMap<String, f64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{label:<10} pods {:>3} (>20 ms: {:>3}), overhead p50/max {:>5.1}/{:>6.1} ms; daemon status writes {:>4}, event writes {:>4}, other {:>3}; CPU ms: {}, other processes {:.0}; run-queue wait ms: {}",
        w.pods_bound,
        w.pods_over_20ms,
        w.overhead_p50_ms.unwrap_or(0.0),
        w.overhead_max_ms.unwrap_or(0.0),
        w.daemon_status_writes,
        w.daemon_event_writes,
        w.daemon_other_requests,
        per_proc(&w.cpu_ms),
        w.other_cpu_ms,
        per_proc(&w.run_delay_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_is_100ms_until_the_window_count_would_pass_the_cap() {
        assert_eq!(window_width_us(10_000_000), 100_000);
        assert_eq!(window_width_us(MAX_WINDOWS * 100_000), 100_000);
        assert_eq!(window_width_us(MAX_WINDOWS * 100_000 + 1), 200_000);
        assert_eq!(window_width_us(0), 100_000);
        // A 10-minute phase: ≤ 600 windows.
        let w = window_width_us(600_000_000);
        assert!(600_000_000 / w <= MAX_WINDOWS, "{w}");
    }

    #[test]
    fn schedstat_line_parses_and_thread_deltas_never_go_negative() {
        let schedstat =
            |text: &str| super::super::super::SchedStat::parse(text).map(|s| (s.run_ns, s.wait_ns));
        assert_eq!(
            schedstat("2936749834 6649717972 24299\n"),
            Some((2936749834, 6649717972))
        );
        assert_eq!(schedstat("12"), None);
        let prev = HashMap::from([(1, (100, 10)), (2, (50, 5))]);
        // Thread 2 exited, thread 3 is new, thread 1 ran 20 ns and waited 5 ns more.
        let now = HashMap::from([(1, (120, 15)), (3, (7, 1))]);
        assert_eq!(
            delta(&prev, &now),
            SchedDelta {
                run_ns: 27,
                wait_ns: 6
            }
        );
        let stat = "cpu  100 5 30 900 7 1 2 3 0 0\ncpu0 50 2 15 450 3 0 1 1 0 0\n";
        assert_eq!(
            parse_machine_busy_ticks(stat),
            Some(100 + 5 + 30 + 1 + 2 + 3)
        );
        assert_eq!(parse_machine_busy_ticks("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn own_process_threads_are_read() {
        let threads = read_threads(std::process::id());
        assert!(!threads.is_empty());
    }

    #[test]
    fn pods_requests_and_cpu_land_in_their_windows() {
        let start = 1_000_000;
        let pods = [
            PodPoint {
                bound_us: start,
                overhead_ms: 1.0,
            },
            PodPoint {
                bound_us: start + 99_999,
                overhead_ms: 30.0,
            },
            PodPoint {
                bound_us: start + 99_999,
                overhead_ms: 2.0,
            },
            PodPoint {
                bound_us: start + 100_000,
                overhead_ms: 5.0,
            },
            // Outside the phase: ignored.
            PodPoint {
                bound_us: start - 1,
                overhead_ms: 500.0,
            },
            PodPoint {
                bound_us: start + 300_000,
                overhead_ms: 500.0,
            },
        ];
        let requests = [
            (start + 10, RequestKind::DaemonStatusWrite),
            (start + 20, RequestKind::DaemonStatusWrite),
            (start + 150_000, RequestKind::DaemonEventWrite),
            (start + 250_000, RequestKind::DaemonOther),
            (start + 250_001, RequestKind::Bench),
            (start + 400_000, RequestKind::DaemonStatusWrite),
        ];
        let sched = [
            SchedSample {
                from_us: start,
                t_us: start + 50_000,
                procs: vec![
                    SchedDelta {
                        run_ns: 3_000_000,
                        wait_ns: 1_000_000,
                    },
                    SchedDelta {
                        run_ns: 500_000,
                        wait_ns: 0,
                    },
                ],
                machine_busy_ms: 10.0,
            },
            SchedSample {
                from_us: start + 50_000,
                t_us: start + 90_000,
                procs: vec![
                    SchedDelta {
                        run_ns: 1_000_000,
                        wait_ns: 0,
                    },
                    SchedDelta::default(),
                ],
                machine_busy_ms: 0.0,
            },
            // Spans windows 1 and 2: credited 40 % / 60 %.
            SchedSample {
                from_us: start + 160_000,
                t_us: start + 260_000,
                procs: vec![
                    SchedDelta::default(),
                    SchedDelta {
                        run_ns: 2_000_000,
                        wait_ns: 4_000_000,
                    },
                ],
                machine_busy_ms: 20.0,
            },
        ];
        let w = build_windows(
            start,
            start + 300_000,
            100_000,
            &pods,
            &requests,
            &["daemon", "apiserver"],
            &sched,
        );
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].start_ms, 0.0);
        assert_eq!(w[1].start_ms, 100.0);
        assert_eq!(w[0].pods_bound, 3);
        assert_eq!(w[0].overhead_p50_ms, Some(2.0));
        assert_eq!(w[0].overhead_max_ms, Some(30.0));
        assert_eq!(w[0].pods_over_20ms, 1);
        assert_eq!(w[1].pods_bound, 1);
        assert_eq!(w[1].overhead_max_ms, Some(5.0));
        assert_eq!(w[2].pods_bound, 0);
        assert_eq!(w[2].overhead_max_ms, None);
        assert_eq!(w[0].daemon_status_writes, 2);
        assert_eq!(w[1].daemon_event_writes, 1);
        assert_eq!((w[2].daemon_other_requests, w[2].bench_requests), (1, 1));
        assert_eq!(w[0].cpu_ms["daemon"], 4.0);
        assert_eq!(w[0].run_delay_ms["daemon"], 1.0);
        assert_eq!(w[0].cpu_ms["apiserver"], 0.5);
        assert_eq!(w[1].cpu_ms["apiserver"], 0.8);
        assert_eq!(w[2].cpu_ms["apiserver"], 1.2);
        assert_eq!(w[1].run_delay_ms["apiserver"], 1.6);
        assert_eq!(w[2].run_delay_ms["apiserver"], 2.4);
        // Machine busy 10 ms against 4.5 ms of ours.
        assert_eq!(w[0].other_cpu_ms, 6.0);
        assert_eq!(w[1].other_cpu_ms, 7.0);
        assert_eq!(w[2].other_cpu_ms, 11.0);

        let slow = slowest(&w, 5);
        assert_eq!(slow.len(), 2, "windows without pods are not ranked");
        assert_eq!(slow[0].start_ms, 0.0);
        let typical = median_window(&w).expect("some window bound pods");
        assert_eq!(
            typical.pods_bound, 1,
            "median of 3 and 1 is the lower middle"
        );
        assert!(describe("slowest", slow[0]).contains("30.0"));
    }
}
