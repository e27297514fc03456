//! The commands that run without a server to talk to: `serve` itself, and
//! the offline checks of a stopped server's store.

use super::Outcome;
use crate::server::{Config, Server};

/// A file's text, or stdin's for "-".
pub fn read_input(file: &std::path::Path) -> Result<String, String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|error| error.to_string())
    } else {
        std::fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))
    }
}

pub fn verify(data_dir: &std::path::Path) -> Outcome {
    let report = crate::ops::verify(data_dir).map_err(|error| error.to_string())?;
    out!(
        "{}: {} log entries, indexed through seq {}",
        data_dir.display(),
        report.entries,
        report.indexed_seq
    );
    if report.recovered > 0 {
        out!(
            "recovered: {} acknowledged log entries sled had lost were given back from the log tail",
            report.recovered
        );
    }
    if report.is_clean() {
        out!("ok: checksums, seqs and derived trees agree with the log");
        return Ok(());
    }
    for fault in &report.faults {
        out!("FAULT {fault}");
    }
    if report.fault_count > report.faults.len() {
        out!("… and {} more", report.fault_count - report.faults.len());
    }
    Err(format!("{} faults found", report.fault_count))
}

/// `annals restore FILE`: an export into an empty data directory, or with
/// `--log` into an empty stream (the data directory its first view).
pub async fn restore(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    log: &super::cluster::LogArgs,
) -> Outcome {
    let text = read_input(file)?;
    let log = log.config().map_err(|error| error.to_string())?;
    let last = crate::ops::import(data_dir, &text, log.as_ref())
        .await
        .map_err(|error| error.to_string())?;
    match &log {
        None => out!("restored {last} log entries into {}", data_dir.display()),
        Some(log) => out!(
            "restored {last} log entries into the stream {} (a view of it in {})",
            log.stream,
            data_dir.display()
        ),
    }
    Ok(())
}

pub async fn serve(config: Config) -> Outcome {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ANNALS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let server = Server::start(&config)
        .await
        .map_err(|error| error.to_string())?;
    out!("annals listening on {}", server.local_addr());
    server
        .run_until(shutdown_signal())
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("interrupted; draining"),
        _ = terminate => tracing::info!("terminated; draining"),
    }
}
