//! `vnode run`: the virtual node daemon (replaces Virtual Kubelet + the ECI provider).
//!
//! Configuration is one typed `vnode_daemon::config::Config` from these flags, their
//! environment fallbacks (the Virtual Kubelet manifest's variables work unchanged) and an
//! optional YAML file (`--config`). A bad or missing setting stops start-up with one line
//! naming it. Once the metrics server and the kubelet API are serving, prints
//! `vnode listening on http://<metrics address>`.

/// Flags of `vnode run`; see `vnode run --help` and host/vnode-daemon/README.md.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub flags: vnode_daemon::config::Flags,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = match vnode_daemon::config::Config::load(&args.flags) {
        Ok(c) => c,
        Err(e) => {
            // One line, no "Error:" chain: the setting and what is wrong with it.
            eprintln!("vnode run: {e}");
            std::process::exit(2);
        }
    };
    tracing::info!(
        node = %config.node.name,
        region = %config.eci.region,
        vswitches = ?config.eci.vswitches,
        endpoint = %config.eci.endpoint,
        leader_election = config.leader_election.enabled,
        "starting vnode daemon"
    );
    let outcome =
        vnode_daemon::daemon::run(config, super::shutdown_signal(), |listening, _handles| {
            println!("vnode listening on http://{}", listening.metrics);
        })
        .await;
    if let Err(e) = outcome {
        // Every daemon error is one actionable line (preflight, bind, TLS, lost leadership).
        eprintln!("vnode run: {e}");
        std::process::exit(1);
    }
    Ok(())
}
