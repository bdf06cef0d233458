//! One module per subcommand. Each owns its clap `Args` and an async `run`.

pub mod apiserver;
pub mod bench;
pub mod dev;
pub mod eci_emulator;
pub mod plugin;
pub mod run;

/// Resolves when the process receives Ctrl-C or SIGTERM.
#[allow(dead_code)]
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
