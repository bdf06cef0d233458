//! `vnode bench …`: benchmarks that print a report. Speed and memory targets are checked
//! here, not in timed unit tests. One module per area.

pub mod apiserver;
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
