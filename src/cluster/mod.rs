//! Cluster mode: the log on a replicated NATS JetStream stream, any number
//! of annals nodes serving it.
//!
//! The stream is the only source of truth; each node's `--data-dir` holds
//! its *view*, a `SledStore` copy of a prefix of the log with its derived
//! index, kept live by `follow`. Appends are ordered by the stream
//! (`Stream` is the engine's `Sequencer`); reads come from the view.

mod follow;
mod message;
mod stream;

pub use follow::follow;
pub use stream::Stream;

use crate::error::{Error, Result};

/// Where the log lives in cluster mode (`--log`, `--stream`, `--replicas`).
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `host:port` of each JetStream server.
    pub servers: Vec<String>,
    /// The stream's name (created when absent).
    pub stream: String,
    /// How many servers hold the stream (a quorum of them acknowledges).
    pub replicas: usize,
}

impl LogConfig {
    /// Reads `--log nats://HOST:PORT[,HOST:PORT…]` (each address may carry
    /// its own `nats://`).
    pub fn parse(log: &str, stream: &str, replicas: usize) -> Result<LogConfig> {
        let rest = log.strip_prefix("nats://").ok_or_else(|| {
            Error::invalid(
                "log",
                format!("{log:?} is not a nats:// address (e.g. nats://127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224)"),
            )
        })?;
        let servers: Vec<String> = rest
            .split(',')
            .map(|server| server.trim().trim_start_matches("nats://").to_string())
            .collect();
        if let Some(bad) = servers.iter().find(|server| {
            server
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(Error::invalid("log", format!("{bad:?} is not HOST:PORT")));
        }
        let valid_name = !stream.is_empty()
            && stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(Error::invalid(
                "stream",
                format!("{stream:?} is not a stream name (letters, digits, - and _)"),
            ));
        }
        if !(1..=5).contains(&replicas) {
            return Err(Error::invalid(
                "replicas",
                format!("{replicas}: a stream has 1 to 5 replicas"),
            ));
        }
        Ok(LogConfig {
            servers: servers
                .iter()
                .map(|server| format!("nats://{server}"))
                .collect(),
            stream: stream.to_string(),
            replicas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_address_lists_its_servers() {
        let config =
            LogConfig::parse("nats://127.0.0.1:4222,nats://127.0.0.1:4223", "ANNALS", 3).unwrap();
        assert_eq!(
            config.servers,
            vec!["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
        );
        for bad in ["127.0.0.1:4222", "nats://", "nats://host", "nats://a:1,b"] {
            assert!(LogConfig::parse(bad, "ANNALS", 3).is_err(), "{bad}");
        }
        assert!(LogConfig::parse("nats://a:1", "a.b", 3).is_err());
        assert!(LogConfig::parse("nats://a:1", "ANNALS", 0).is_err());
        assert!(LogConfig::parse("nats://a:1", "ANNALS", 6).is_err());
    }
}
