//! `vnode`: the virtual node daemon and its tools. This file is wiring only: parse the
//! command line, set up logging, hand over to one `cmd::*` module per subcommand.

mod cmd;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "vnode",
    version,
    about = "A virtual Kubernetes node that runs pods as Alibaba Cloud ECI container groups"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VNODE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check, simulate and benchmark Wasm plugins (placement and translator).
    #[command(subcommand)]
    Plugin(cmd::plugin::PluginCommand),
    /// Run the ECI OpenAPI emulator.
    EciEmulator(cmd::eci_emulator::Args),
    /// Run the embedded Kubernetes API server.
    Apiserver(cmd::apiserver::Args),
    /// Run the virtual node daemon (the Virtual Kubelet replacement).
    // Boxed: the daemon's flags make this variant several times larger than the others.
    Run(Box<cmd::run::Args>),
    /// The offline sandbox: the API server and the ECI emulator in one process (the daemon is not wired in yet).
    Dev(cmd::dev::Args),
    /// Benchmarks that print a report.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // One TLS crypto provider for the whole process (kube, reqwest and our servers all
    // use rustls); installing it explicitly avoids "no process-level provider" panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Plugin(c) => cmd::plugin::run(c).await,
            Command::EciEmulator(a) => cmd::eci_emulator::run(a).await,
            Command::Apiserver(a) => cmd::apiserver::run(a).await,
            Command::Run(a) => cmd::run::run(*a).await,
            Command::Dev(a) => cmd::dev::run(a).await,
            Command::Bench(c) => cmd::bench::run(c).await,
        }
    })
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VNODE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
