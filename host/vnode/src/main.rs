//! `vnode`: the virtual node daemon and its tools. This file is wiring only: parse the
//! command line, set up logging, hand over to one `cmd::*` module per subcommand.

mod cmd;

use clap::{Parser, Subcommand, ValueEnum};

/// jemalloc instead of glibc malloc: the daemon allocates and frees in bursts on many tokio
/// threads; jemalloc hands freed pages back to the OS on a timer (glibc kept them) and costs
/// less CPU per pod (`vnode bench pods`, issue #7's 200 MiB peak RSS at 10,000 pods).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (`malloc_conf`, read once when jemalloc initialises; the environment
/// variable `_RJEM_MALLOC_CONF` is applied after it, for experiments): a background thread
/// purges freed ("dirty") pages after 1 s instead of on allocation calls 10 s later, so a
/// burst's garbage does not stay resident into the next burst; and one arena instead of
/// jemalloc's default of four per CPU, so memory one thread freed is reused by the next
/// thread's allocation instead of staying resident in another arena until it decays
/// (`vnode bench pods` at 10,000 pods: peak RSS 143–146 MiB whatever the run's speed, against
/// 148–176 with the default, and no more CPU per pod; `vnode bench apiserver`: the same CPU
/// per create). The thread caches still serve most
/// allocations without the arena's lock.
// `export_name` is an unsafe attribute: the symbol must match what jemalloc reads. It does:
// tikv-jemalloc-sys prefixes jemalloc's symbols with `_rjem_`, and jemalloc reads
// `const char *malloc_conf` (a weak symbol this overrides). A `&u8` has the layout of a C
// `const char *`, and it points at a NUL-terminated `'static` byte string.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &u8 =
    &b"background_thread:true,narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

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
