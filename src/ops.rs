//! Offline operations on a data directory (the server must not be running:
//! sled takes an exclusive lock): verify, rebuild the derived trees, and
//! restore a backup.

use crate::cluster::{LogConfig, Stream};
use crate::engine::{Database, Limits};
use crate::error::{Error, Result};
use crate::index::records::META_INDEXED_SEQ;
use crate::index::{keys, Index};
use crate::json::from_json;
use crate::model::Event;
use crate::proto;
use crate::store::{LogStore, MemoryStore, SledStore, StoredEntry, Tree};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Past every key of every derived tree.
const END_OF_KEYS: &[u8] = &[0xff; 32];
/// How many faults a report lists before it only counts them.
const LISTED_FAULTS: usize = 20;
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries that opening the store gave back to sled from the log tail
    /// (a crash had taken them from sled after they were acknowledged).
    pub recovered: u64,
    pub entries: u64,
    pub indexed_seq: u64,
    pub faults: Vec<String>,
    pub fault_count: usize,
}

impl Report {
    fn fault(&mut self, fault: String) {
        self.fault_count += 1;
        if self.faults.len() < LISTED_FAULTS {
            self.faults.push(fault);
        }
    }

    pub fn is_clean(&self) -> bool {
        self.fault_count == 0
    }
}

fn open(dir: &Path) -> Result<SledStore> {
    if !dir.join("db").exists() {
        return Err(Error::NotFound(format!(
            "{} holds no annals store",
            dir.display()
        )));
    }
    SledStore::open(dir, CACHE_BYTES)
}

/// Checks a whole store: every log entry's checksum, that it still
/// validates, that seqs run 1, 2, 3… without a gap, and that every derived
/// tree holds exactly what a rebuild from the log would (allowing an index
/// that lags the log after a crash, as the next open catches it up).
pub fn verify(dir: &Path) -> Result<Report> {
    let store = open(dir)?;
    let mut report = Report {
        recovered: store.recovered(),
        ..Report::default()
    };
    if let Some(damage) = store.index_damage() {
        report.fault(format!(
            "the derived index was damaged and could not be opened ({damage}); it was dropped, \
             and the next start (or rebuild-indexes) rebuilds it from the log"
        ));
    }
    let last = store.last_seq()?;
    let mut good: Vec<StoredEntry> = Vec::new();
    let mut log_sound = true;
    for seq in 1..=last {
        match store.get(seq) {
            Ok(Some(entry)) => {
                if let Err(error) = Event::from_proto(&entry.event) {
                    report.fault(format!("log entry {seq} does not validate: {error}"));
                    log_sound = false;
                }
                good.push(entry);
            }
            Ok(None) => {
                report.fault(format!("log entry {seq} is missing (a gap in the seqs)"));
                log_sound = false;
            }
            Err(error) => {
                report.fault(format!("log entry {seq}: {error}"));
                log_sound = false;
            }
        }
    }
    report.entries = good.len() as u64;
    report.indexed_seq = match store.get_derived(Tree::Meta, META_INDEXED_SEQ) {
        Ok(value) => value.map(|value| keys::decode_seq(&value)).unwrap_or(0),
        Err(error) => {
            report.fault(format!("meta: {error}"));
            0
        }
    };
    if report.indexed_seq > last {
        report.fault(format!(
            "the index claims seq {} but the log ends at {last}",
            report.indexed_seq
        ));
    }
    if !log_sound {
        report.fault("the derived trees were not compared: the log itself is damaged".into());
        return Ok(report);
    }

    let indexed: Vec<StoredEntry> = good
        .iter()
        .take(report.indexed_seq as usize)
        .cloned()
        .collect();
    let through_index = rebuilt(&indexed)?;
    let through_log = if report.indexed_seq == last {
        None
    } else {
        Some(rebuilt(&good)?)
    };
    let through_log = through_log.as_ref().unwrap_or(&through_index);
    // Every key the index must hold (rebuilt up to its indexed seq) is
    // there, and every key it holds is one a rebuild would write (up to the
    // end of the log: entries past the indexed seq may be half-indexed).
    for tree in Tree::ALL {
        let actual = match store.scan_derived(tree, &[], END_OF_KEYS) {
            Ok(pairs) => as_map(pairs),
            Err(error) => {
                report.fault(format!("{}: {error}", tree.name()));
                continue;
            }
        };
        let required = as_map(through_index.scan_derived(tree, &[], END_OF_KEYS)?);
        let allowed = as_map(through_log.scan_derived(tree, &[], END_OF_KEYS)?);
        let acceptable = |key: &Vec<u8>, value: &Vec<u8>| {
            required.get(key) == Some(value) || allowed.get(key) == Some(value)
        };
        for key in required.keys() {
            let bookkeeping = tree == Tree::Meta && key.as_slice() == META_INDEXED_SEQ;
            if !bookkeeping && !actual.get(key).is_some_and(|value| acceptable(key, value)) {
                report.fault(format!(
                    "{}: key {} is missing or wrong",
                    tree.name(),
                    printable(key)
                ));
            }
        }
        for (key, value) in &actual {
            let bookkeeping = tree == Tree::Meta && key.as_slice() == META_INDEXED_SEQ;
            if !bookkeeping && !acceptable(key, value) {
                report.fault(format!(
                    "{}: key {} is not what the log implies",
                    tree.name(),
                    printable(key)
                ));
            }
        }
    }
    Ok(report)
}

/// The derived trees a rebuild from `entries` gives, in memory.
fn rebuilt(entries: &[StoredEntry]) -> Result<MemoryStore> {
    let memory = MemoryStore::new();
    memory.append(entries, Vec::new())?;
    Index::rebuild(&memory)?;
    Ok(memory)
}

fn as_map(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    pairs.into_iter().collect()
}

fn printable(key: &[u8]) -> String {
    key.iter()
        .map(|byte| {
            if byte.is_ascii_graphic() {
                (*byte as char).to_string()
            } else {
                format!("\\x{byte:02x}")
            }
        })
        .collect()
}

/// Drops every derived tree and builds them again from the log. Returns
/// the number of log entries indexed.
pub fn rebuild_indexes(dir: &Path) -> Result<u64> {
    let store = open(dir)?;
    let index = Index::rebuild(&store)?;
    store.checkpoint()?;
    Ok(index.last_seq())
}

/// Restores a backup (`annals export`: `LogEntry` proto3 JSON lines) into
/// an empty store, keeping seqs and `recorded_at`, through the same
/// validation as any append. Returns the last seq.
///
/// With `log` (cluster mode) the entries go into an empty stream instead,
/// one message per 1,000 entries, and `dir` becomes a view of it: the way a
/// single-node store moves into a cluster.
pub async fn import(dir: &Path, text: &str, log: Option<&LogConfig>) -> Result<u64> {
    let entries = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            from_json::<proto::LogEntry>(line)
                .map_err(|error| Error::invalid(format!("line {}", number + 1), error))
        })
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(dir)?;
    let store = SledStore::open(dir, CACHE_BYTES)?;
    if store.last_seq()? != 0 {
        return Err(Error::FailedPrecondition(format!(
            "{} already holds a log; import restores into an empty store",
            dir.display()
        )));
    }
    let store: Arc<dyn LogStore> = Arc::new(store);
    let db = match log {
        None => Database::open(store, Limits::default())?,
        Some(log) => {
            let stream = Stream::connect(log).await?;
            let held = stream.last_position().await?;
            if held != 0 {
                return Err(Error::FailedPrecondition(format!(
                    "the stream {:?} already holds {held} messages; a restore moves a log into an empty stream",
                    stream.name()
                )));
            }
            tokio::task::spawn_blocking(move || {
                Database::open_replicated(store, Limits::default(), Arc::new(stream))
            })
            .await
            .map_err(|error| Error::Storage(format!("opening: {error}")))??
        }
    };
    let restored = db.restore(entries).await;
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .map_err(|error| Error::Storage(format!("closing: {error}")))?;
    restored
}
