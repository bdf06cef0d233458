//! `vnode bench …`: benchmarks that print a report. Speed and memory targets are checked
//! here, not in timed unit tests. One module per area.

pub mod apiserver;
pub mod audit;
pub mod eci;
pub mod plugins;
pub mod pods;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Plugin decision latency, instantiation cost and hot-reload latency.
    Plugins(plugins::Args),
    /// The ECI client against the ECI emulator on loopback.
    Eci(eci::Args),
    /// The embedded API server alone: creates/s, watch fan-out, memory.
    Apiserver(apiserver::Args),
    /// The whole pod path at scale: apiserver, ECI emulator and daemon as separate
    /// processes; N pods created, Running, deleted; report with the issue #7 targets.
    Pods(pods::Args),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Plugins(a) => plugins::run(a).await,
        BenchCommand::Eci(a) => eci::run(a).await,
        BenchCommand::Apiserver(a) => apiserver::run(a).await,
        BenchCommand::Pods(a) => pods::run(a).await,
    }
}

/// The nearest-rank `q` quantile (0 < q ≤ 1) of `sorted` (ascending, not empty): the
/// smallest sample with at least a fraction `q` of the samples at or below it.
pub(crate) fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// What the benchmarks read of a `/proc/<pid>/stat` (or a thread's) line.
pub(crate) struct ProcStat<'a> {
    /// The command (thread) name.
    pub name: &'a str,
    /// Minor page faults.
    pub minor_faults: u64,
    /// User + system CPU time, in clock ticks (USER_HZ).
    pub cpu_ticks: u64,
}

impl ProcStat<'_> {
    /// Parses `pid (comm) state ppid …`. The command name may hold spaces and parentheses,
    /// so fields are counted after its last `)`: minflt is field 10, utime and stime 14 and 15.
    pub(crate) fn parse(stat: &str) -> Option<ProcStat<'_>> {
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some(ProcStat {
            name,
            minor_faults: field(7)?,
            cpu_ticks: field(11)? + field(12)?,
        })
    }
}

/// What the benchmarks read of a thread's `schedstat` line (`/proc/<pid>/task/<tid>/schedstat`,
/// `/proc/thread-self/schedstat`): `run_ns wait_ns timeslices`.
pub(crate) struct SchedStat {
    /// Time spent running, ns.
    pub run_ns: u64,
    /// Time spent runnable, waiting on a run queue, ns.
    pub wait_ns: u64,
    /// Timeslices run (absent from a truncated line).
    pub timeslices: Option<u64>,
}

impl SchedStat {
    pub(crate) fn parse(text: &str) -> Option<SchedStat> {
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some(SchedStat {
            run_ns: it.next()??,
            wait_ns: it.next()??,
            timeslices: it.next().flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{ProcStat, SchedStat};

    #[test]
    fn proc_stat_counts_fields_after_the_last_parenthesis() {
        let line = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 917 0 3 0 150 25 0 0 20 0 9 0";
        let stat = ProcStat::parse(line).expect("parses");
        assert_eq!(stat.name, "tokio (rt) x");
        assert_eq!(stat.minor_faults, 917);
        assert_eq!(stat.cpu_ticks, 175);
        assert!(ProcStat::parse("4242 (short) S 1").is_none());
        assert!(ProcStat::parse("no parenthesis").is_none());
    }

    #[test]
    fn sched_stat_reads_run_wait_and_timeslices() {
        let s = SchedStat::parse("2936749834 6649717972 24299\n").expect("parses");
        assert_eq!(
            (s.run_ns, s.wait_ns, s.timeslices),
            (2936749834, 6649717972, Some(24299))
        );
        assert!(SchedStat::parse("12").is_none());
    }
}
