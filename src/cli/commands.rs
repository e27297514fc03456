//! The command line's grammar: every subcommand with its own options, a
//! client command's (`ClientArgs`) only where it talks to a server.

use super::cluster::LogArgs;
use super::trust::TrustArgs;
use super::{import, parse_label, picture, trend, watch};
use crate::client::DEFAULT_SERVER;
use crate::server::Http;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "annals",
    version,
    about = "An event-sourced timeline database: what held at any time, as known at any point of the log."
)]
pub struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

/// How a client command reaches the server, and how it prints.
#[derive(Args, Debug, Clone)]
pub(super) struct ClientArgs {
    /// Server to query.
    #[arg(long, env = "ANNALS_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print proto3 JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Bearer token for a server that asks for one.
    #[arg(long, env = "ANNALS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM of the CA that signed the server's certificate (https:// servers).
    #[arg(long, env = "ANNALS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// gzip requests and replies (for a slow link to the server).
    #[arg(long, env = "ANNALS_GZIP")]
    pub gzip: bool,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Serve the gRPC API (seeding the article's events into an empty log).
    Serve {
        /// Address to serve gRPC on (and the console, unless --http says
        /// otherwise).
        #[arg(long, env = "ANNALS_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Where to serve the console (web page, JSON gateway, /metrics,
        /// /healthz): an address of its own, or "off"; default: on the
        /// gRPC address.
        #[arg(long, env = "ANNALS_HTTP", value_parser = parse_http)]
        http: Option<Http>,
        /// Directory of the log and its indexes (created when missing; in
        /// cluster mode, this node's view).
        #[arg(long, env = "ANNALS_DATA_DIR", default_value = "./annals-data")]
        data_dir: PathBuf,
        /// Do not append the built-in data set to an empty log.
        #[arg(long, env = "ANNALS_NO_SEED")]
        no_seed: bool,
        /// sled page cache, in MiB (log entries read recently).
        #[arg(long, env = "ANNALS_CACHE_MB", default_value_t = 256)]
        cache_mb: u64,
        /// Entity timelines kept in memory by the index, in MiB.
        #[arg(long, env = "ANNALS_TIMELINE_CACHE_MB", default_value_t = 1024)]
        timeline_cache_mb: usize,
        /// Event runs (an entity's or a dyad's events, for counts) kept in
        /// memory, in MiB.
        #[arg(long, env = "ANNALS_EVENT_CACHE_MB", default_value_t = 256)]
        event_cache_mb: usize,
        /// Each derived tree's memtable (fjall) before it is flushed to a
        /// table, in KiB.
        #[arg(long, env = "ANNALS_INDEX_BUFFER_KIB", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
        index_buffer_kib: u64,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// An entity with its attributes and relations at a time.
    Entity {
        /// Entity id or alias (e.g. DPRK).
        id: String,
        /// Valid time (1950, 2023-09, 2024-04-13, RFC 3339); default: now.
        #[arg(long, default_value = "")]
        at: String,
        /// Only what the log knew at this seq (0: everything).
        #[arg(long, default_value_t = 0)]
        as_of: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Entities by type and name prefix.
    Entities {
        /// COUNTRY, PERSON, ORGANIZATION, PLACE or OTHER.
        #[arg(long = "type", default_value = "")]
        entity_type: String,
        /// Only those whose id, name or an alias starts with this.
        #[arg(long, default_value = "")]
        query: String,
        /// Only what the log knew at this seq (0: everything).
        #[arg(long, default_value_t = 0)]
        as_of: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Relations active at a time (of an entity, or the whole graph).
    Relations {
        /// Entity id or alias (none: every relation).
        entity: Option<String>,
        /// Only relations with this counterpart.
        #[arg(long = "with", default_value = "")]
        counterpart: String,
        /// Only relations of this kind (e.g. alliance).
        #[arg(long, default_value = "")]
        kind: String,
        /// Valid time (1950, 2023-09, 2024-04-13, RFC 3339); default: now.
        #[arg(long, default_value = "")]
        at: String,
        /// Only what the log knew at this seq (0: everything).
        #[arg(long, default_value_t = 0)]
        as_of: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every interval of the relations between two entities.
    History {
        /// One entity (id or alias).
        a: String,
        /// The other (none: any counterpart).
        b: Option<String>,
        /// Only relations of this kind.
        #[arg(long, default_value = "")]
        kind: String,
        /// Only what the log knew at this seq (0: everything).
        #[arg(long, default_value_t = 0)]
        as_of: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Events overlapping a valid-time window, in valid-time order.
    Events {
        /// Only events naming this entity.
        #[arg(long, default_value = "")]
        entity: String,
        /// Only events naming this entity too (the dyad; needs --entity).
        #[arg(long, alias = "with", default_value = "")]
        counterpart: String,
        /// Only events of this kind (e.g. treaty).
        #[arg(long, default_value = "")]
        kind: String,
        /// Only events with this label (KEY=VALUE; repeat for more).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Start of the valid-time window (default: the beginning).
        #[arg(long, default_value = "")]
        from: String,
        /// End of the valid-time window (default: now).
        #[arg(long, default_value = "")]
        to: String,
        /// Only what the log knew at this seq (0: everything).
        #[arg(long, default_value_t = 0)]
        as_of: u64,
        /// Latest first.
        #[arg(long)]
        newest_first: bool,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One event by id.
    Event {
        /// The event's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What changed between two times.
    Diff {
        /// The earlier valid time.
        #[arg(long, default_value = "")]
        from: String,
        /// The later valid time (default: now).
        #[arg(long, default_value = "")]
        to: String,
        /// Only this entity's changes (default: every entity's).
        #[arg(long, default_value = "")]
        entity: String,
        /// Only what the log knew at this seq (0: everything).
        #[arg(long, default_value_t = 0)]
        as_of: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The raw log in seq order.
    Log {
        /// First seq (0: the first; with --reverse, the last).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Newest first.
        #[arg(long)]
        reverse: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow the log: what is recorded from --from, then live.
    Tail {
        /// First seq (0: only what comes next).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only events naming this entity.
        #[arg(long, default_value = "")]
        entity: String,
        /// Only events of this kind.
        #[arg(long, default_value = "")]
        kind: String,
        /// Stop after this many entries (0: never).
        #[arg(long, default_value_t = 0)]
        count: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a stopped server's store: log checksums, seq continuity, indexes vs log.
    Verify {
        /// The stopped server's data directory.
        #[arg(long, env = "ANNALS_DATA_DIR", default_value = "./annals-data")]
        data_dir: PathBuf,
    },
    /// Rebuild a stopped server's derived trees from its log.
    RebuildIndexes {
        /// The stopped server's data directory.
        #[arg(long, env = "ANNALS_DATA_DIR", default_value = "./annals-data")]
        data_dir: PathBuf,
    },
    /// Write the whole log as proto3 JSON lines of LogEntry: a restorable backup.
    Export {
        /// File to write ("-" for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore an export into an empty data directory (server stopped), or
    /// with --log into an empty stream, the data directory its first view.
    Restore {
        /// The export (proto3 JSON lines of LogEntry).
        file: PathBuf,
        /// The empty data directory to restore into.
        #[arg(long, env = "ANNALS_DATA_DIR", default_value = "./annals-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Import coded event data (GDELT 2.0, ICEWS) or proto3 JSON lines of
    /// events, through Append: plain, .zip or .gz files, streamed.
    Import {
        #[command(flatten)]
        args: import::ImportArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Events of an entity (or a dyad) counted per day, month or year.
    Trend {
        #[command(flatten)]
        args: trend::TrendArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An entity's relations and attributes as intervals on a time axis,
    /// drawn as an SVG file (the console's timeline).
    Timeline {
        #[command(flatten)]
        args: picture::TimelineArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The relation graph at an instant, drawn as an SVG file (the
    /// console's graph).
    Graph {
        #[command(flatten)]
        args: picture::GraphArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A standing query: an entity's answer at a time, then each change to it
    /// (back-dated events and corrections included), until Ctrl-C.
    Watch {
        #[command(flatten)]
        args: watch::WatchArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Append events from a file of proto3 JSON lines ("-" for stdin).
    Append {
        /// The file of events ("-" for stdin).
        file: PathBuf,
        /// Events per Append call; each call is atomic.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Refuse unless the log ends at this seq (first batch only).
        #[arg(long)]
        expected_last_seq: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `--http`: "off", or the console's own address.
fn parse_http(text: &str) -> Result<Http, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Http::Off);
    }
    text.parse()
        .map(Http::Own)
        .map_err(|_| format!("{text:?} is neither \"off\" nor an address such as 127.0.0.1:8080"))
}

impl Command {
    /// How a client command reaches the server; `None` for the commands
    /// that work on a data directory themselves.
    pub(super) fn client(&self) -> Option<&ClientArgs> {
        match self {
            Command::Serve { .. }
            | Command::Verify { .. }
            | Command::RebuildIndexes { .. }
            | Command::Restore { .. } => None,
            Command::Entity { client, .. }
            | Command::Entities { client, .. }
            | Command::Relations { client, .. }
            | Command::History { client, .. }
            | Command::Events { client, .. }
            | Command::Event { client, .. }
            | Command::Diff { client, .. }
            | Command::Log { client, .. }
            | Command::Tail { client, .. }
            | Command::Export { client, .. }
            | Command::Import { client, .. }
            | Command::Trend { client, .. }
            | Command::Timeline { client, .. }
            | Command::Graph { client, .. }
            | Command::Watch { client, .. }
            | Command::Append { client, .. } => Some(client),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_shows_its_own_options_each_with_a_sentence() {
        let cli = Cli::command();
        let local = ["serve", "verify", "rebuild-indexes", "restore"];
        let unexplained: Vec<String> = cli
            .get_subcommands()
            .flat_map(|command| {
                command
                    .get_arguments()
                    .filter(|arg| {
                        arg.get_help()
                            .is_none_or(|help| help.to_string().trim().is_empty())
                    })
                    .map(move |arg| format!("annals {} {}", command.get_name(), arg.get_id()))
            })
            .collect();
        assert!(
            unexplained.is_empty(),
            "options without help: {unexplained:?}"
        );
        for command in cli.get_subcommands() {
            let name = command.get_name();
            let has = |id: &str| command.get_arguments().any(|arg| arg.get_id() == id);
            let client = ["server", "json", "token", "ca_cert", "gzip"];
            if local.contains(&name) {
                assert!(
                    client.iter().all(|id| !has(id)),
                    "annals {name} shows client options"
                );
            } else {
                assert!(
                    client.iter().all(|id| has(id)),
                    "annals {name} lacks the client options"
                );
            }
        }
    }
}
