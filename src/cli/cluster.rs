//! `serve`'s cluster-mode flags: where the log lives when it is not
//! `--data-dir` alone.

/// Cluster mode: where the log lives when it is not `--data-dir` alone.
#[derive(clap::Args, Debug)]
pub(super) struct LogArgs {
    /// Keep the log on a NATS JetStream stream (cluster mode):
    /// nats://HOST:PORT,HOST:PORT,… ; `--data-dir` then holds this node's
    /// view of it.
    #[arg(long, env = "ANNALS_CLUSTER_LOG")]
    log: Option<String>,
    /// The stream's name (created when absent).
    #[arg(long, env = "ANNALS_STREAM", default_value = "ANNALS")]
    stream: String,
    /// How many JetStream servers hold the stream, when this node creates it.
    #[arg(long, env = "ANNALS_REPLICAS", default_value_t = 3)]
    replicas: usize,
}

impl LogArgs {
    pub(super) fn config(&self) -> crate::Result<Option<crate::cluster::LogConfig>> {
        self.log
            .as_deref()
            .map(|log| crate::cluster::LogConfig::parse(log, &self.stream, self.replicas))
            .transpose()
    }
}
