//! The disk engine: the log in sled 0.34.7, one tree `log` keyed by
//! big-endian seq; the derived trees in fjall beside it (`derived`,
//! directory `derived/`), since a B-tree insert per derived key cost more
//! than everything else an append does.
//!
//! Durability. An append writes its entries to sled (not flushed) and, in the
//! same fjall batch as their derived writes, to the log's tail (`derived`); `sync`
//! makes the round durable with one fdatasync of fjall's journal, the only
//! sync on the way to an acknowledgement. sled is made durable behind it by
//! a checkpointer thread: sled's `flush` (which ends in `sync_file_range`,
//! leaving the data in the device's write cache) and then an fdatasync of
//! sled's data file and blobs; only after that does the tail drop those
//! entries. Opening a store re-applies to sled any tail entry it lacks, so a
//! crash, even a power cut, loses no acknowledged entry.
//!
//! A clean stop drains the tail and leaves a `clean-stop` mark, removed as
//! soon as the store takes a new append: with the mark, a derived store
//! that cannot be opened holds nothing of the log and is rebuilt from it;
//! without it, the open fails rather than risk the tail.

use super::derived::DerivedTrees;
use super::encoding::{decode_round, encode_round};
use super::{
    checked_payload, decode_entry, encode_entry, seq_key, LogStore, StoredEntry, Tree, Visit, Write,
};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Derived writes kept in memory per tree before they are flushed to disk.
pub const DERIVED_BUFFER_BYTES: usize = 64 << 20;

/// The block cache the derived trees share.
const DERIVED_CACHE_BYTES: u64 = 128 << 20;

/// How often the checkpointer makes sled durable while appends come in.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Entries the tail may hold before the checkpointer is woken early.
const TAIL_ENTRIES: u64 = 100_000;

/// The mark of a clean stop (see the module comment).
const CLEAN_STOP: &str = "clean-stop";

pub struct SledStore {
    /// Taken only by `drop`.
    inner: Option<Arc<Inner>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    db: sled::Db,
    log: sled::Tree,
    derived: DerivedTrees,
    dir: PathBuf,
    /// sled's data file, kept open to fdatasync it.
    data_file: File,
    /// Blob files already synced (sled writes values too big for a segment
    /// to files of their own, and never syncs them itself).
    synced_blobs: Mutex<HashSet<PathBuf>>,
    progress: Mutex<Progress>,
    /// Held while sled is made durable and the tail trimmed.
    checkpointing: Mutex<()>,
    /// Wakes the checkpointer.
    wake: Condvar,
    stop: AtomicBool,
    /// The clean-stop mark is on disk.
    marked: AtomicBool,
    /// Entries the open gave back to sled from the tail.
    recovered: std::sync::atomic::AtomicU64,
}

/// How far the log has got: appended (in sled and the tail), durable (the
/// journal synced), and durable in sled itself (the tail dropped).
#[derive(Default)]
struct Progress {
    appended: u64,
    durable: u64,
    checkpointed: u64,
    /// (first, last) seq of each round still in the tail.
    rounds: std::collections::VecDeque<(u64, u64)>,
}

/// How long opening waits for a lock that a store closed a moment ago in
/// this process may still hold (see `open_sled`).
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens sled. sled lets go of its file lock only when its background
/// threads have dropped their handles, a moment after the last `Db` is
/// dropped, so a store just closed in this process may still hold it:
/// opening waits for it, boundedly. (Another process's lock outlasts the
/// wait and is reported.)
fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with sled's page cache bounded
    /// by `cache_bytes` and each derived tree's memtable by
    /// `DERIVED_BUFFER_BYTES`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        SledStore::open_with(dir, cache_bytes, DERIVED_BUFFER_BYTES)
    }

    /// `open`, with each derived tree flushed to disk once its memtable
    /// passes `buffer_bytes`.
    pub fn open_with(dir: &Path, cache_bytes: u64, buffer_bytes: usize) -> Result<SledStore> {
        std::fs::create_dir_all(dir)?;
        let db = open_sled(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::HighThroughput),
        )?;
        let log = db.open_tree("log")?;
        // Stores written before the derived trees left sled kept them as
        // sled trees: drop them (the empty trees make the index catch up).
        let names = db.tree_names();
        for name in [
            "ids",
            "entity_log",
            "timeline",
            "declarations",
            "superseded",
            "meta",
        ] {
            if names.iter().any(|tree| tree.as_ref() == name.as_bytes()) {
                tracing::info!(
                    tree = name,
                    "dropping a derived tree kept in sled by an older version"
                );
                db.drop_tree(name)?;
            }
        }
        // Stores written before fjall kept them in run files of their own.
        let runs = dir.join("index");
        if runs.exists() {
            tracing::info!("dropping the derived index runs of an older version");
            std::fs::remove_dir_all(&runs)?;
        }
        let mark = dir.join(CLEAN_STOP);
        let derived_dir = dir.join("derived");
        let tail_is_empty = mark.exists() || !derived_dir.exists();
        let derived = DerivedTrees::open(
            &derived_dir,
            buffer_bytes as u64,
            DERIVED_CACHE_BYTES,
            tail_is_empty,
        )?;
        let data_file = File::open(dir.join("db"))?;
        let inner = Arc::new(Inner {
            db,
            log,
            derived,
            dir: dir.to_path_buf(),
            data_file,
            synced_blobs: Mutex::new(HashSet::new()),
            progress: Mutex::new(Progress::default()),
            checkpointing: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            marked: AtomicBool::new(mark.exists()),
            recovered: std::sync::atomic::AtomicU64::new(0),
        });
        inner.recover()?;
        let last = inner.last_seq()?;
        *inner.progress.lock().expect("progress lock") = Progress {
            appended: last,
            durable: last,
            checkpointed: last,
            rounds: Default::default(),
        };
        let worker = Arc::clone(&inner);
        let checkpointer = std::thread::Builder::new()
            .name("annals-checkpoint".into())
            .spawn(move || worker.checkpoint_in_background())?;
        Ok(SledStore {
            inner: Some(inner),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    fn inner(&self) -> &Inner {
        self.inner
            .as_ref()
            .expect("the store is open until dropped")
    }

    /// How many acknowledged entries opening the store gave back to sled
    /// from the log's tail (a crash had taken them from sled).
    pub fn recovered(&self) -> u64 {
        self.inner().recovered.load(Ordering::SeqCst)
    }

    /// Why the derived trees on disk could not be opened (they were dropped
    /// and are rebuilt from the log), if that happened.
    pub fn index_damage(&self) -> Option<&str> {
        self.inner().derived.damage()
    }

    /// Stops the checkpointer thread (its last round, if any, done).
    fn stop_checkpointer(&self) {
        self.inner().stop.store(true, Ordering::SeqCst);
        self.inner().wake.notify_all();
        if let Some(thread) = self.checkpointer.lock().expect("checkpointer lock").take() {
            if thread.join().is_err() {
                tracing::error!("the checkpointer thread panicked");
            }
        }
    }
}

impl Inner {
    fn last_seq(&self) -> Result<u64> {
        match self.log.last()? {
            Some((key, _)) => <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::DataLoss("log key is not 8 bytes".into())),
            None => Ok(0),
        }
    }

    /// Re-applies to sled the tail entries a crash took from it, makes them
    /// durable there, and empties the tail.
    fn recover(&self) -> Result<()> {
        let tail = self.derived.tail()?;
        if tail.is_empty() {
            return Ok(());
        }
        let mut next = self.last_seq()? + 1;
        let mut batch = sled::Batch::default();
        let mut recovered = 0u64;
        for (first, round) in &tail {
            for (seq, value) in (*first..).zip(decode_round(round)?) {
                if seq < next {
                    continue;
                }
                if seq != next {
                    return Err(Error::DataLoss(format!(
                        "the log ends at seq {} and its tail resumes at {seq}",
                        next - 1
                    )));
                }
                let key = seq_key(seq);
                decode_entry(&key, value)?;
                batch.insert(&key, value);
                next += 1;
                recovered += 1;
            }
        }
        if recovered > 0 {
            tracing::warn!(
                recovered,
                through = next - 1,
                "re-applied acknowledged log entries that sled had lost, from the log tail"
            );
            self.log.apply_batch(batch)?;
            self.recovered.store(recovered, Ordering::SeqCst);
        }
        self.sync_files()?;
        self.derived
            .drop_tail(tail.iter().map(|(first, _)| *first))?;
        self.derived.persist()
    }

    /// Makes sled's log durable: its flush, then an fdatasync of its files.
    fn sync_files(&self) -> Result<()> {
        self.db.flush()?;
        self.data_file.sync_data()?;
        let blobs = self.dir.join("blobs");
        if let Ok(listing) = std::fs::read_dir(&blobs) {
            let mut synced = self.synced_blobs.lock().expect("blob set poisoned");
            let mut any_new = false;
            for item in listing.flatten() {
                let path = item.path();
                if !synced.contains(&path) {
                    File::open(&path)?.sync_data()?;
                    synced.insert(path);
                    any_new = true;
                }
            }
            if any_new {
                File::open(&blobs)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// Makes sled durable through the last durable seq and drops those
    /// entries from the tail.
    fn checkpoint_log(&self) -> Result<()> {
        let _one_at_a_time = self.checkpointing.lock().expect("checkpoint lock");
        let (rounds, through) = {
            let progress = self.progress.lock().expect("progress lock");
            let through = progress.durable;
            let rounds: Vec<u64> = progress
                .rounds
                .iter()
                .take_while(|(_, last)| *last <= through)
                .map(|(first, _)| *first)
                .collect();
            (rounds, through)
        };
        if rounds.is_empty() {
            return Ok(());
        }
        self.sync_files()?;
        self.derived.drop_tail(rounds.iter().copied())?;
        let mut progress = self.progress.lock().expect("progress lock");
        progress.checkpointed = through;
        while progress
            .rounds
            .front()
            .is_some_and(|(_, last)| *last <= through)
        {
            progress.rounds.pop_front();
        }
        Ok(())
    }

    /// The checkpointer: every `CHECKPOINT_EVERY` while appends come in (or
    /// sooner when the tail grows long), until told to stop.
    fn checkpoint_in_background(&self) {
        loop {
            {
                let progress = self.progress.lock().expect("progress lock");
                let (_progress, _) = self
                    .wake
                    .wait_timeout_while(progress, CHECKPOINT_EVERY, |progress| {
                        !self.stop.load(Ordering::SeqCst)
                            && progress.durable - progress.checkpointed < TAIL_ENTRIES
                    })
                    .expect("progress lock");
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if let Err(error) = self.checkpoint_log() {
                tracing::error!(%error, "making the log durable in sled failed; the log tail keeps its entries");
            }
        }
    }

    /// Removes the clean-stop mark before the first append after a stop.
    fn unmark(&self) -> Result<()> {
        if self.marked.swap(false, Ordering::SeqCst) {
            std::fs::remove_file(self.dir.join(CLEAN_STOP))?;
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl LogStore for SledStore {
    fn append(&self, entries: &[StoredEntry], derived: Vec<Write>) -> Result<()> {
        let inner = self.inner();
        let mut round = None;
        if let Some(first) = entries.first() {
            inner.unmark()?;
            let last = inner.last_seq()?;
            for (expected, entry) in (last + 1..).zip(entries) {
                if entry.seq != expected {
                    return Err(Error::Storage(format!(
                        "append of seq {} would leave a gap after {last}",
                        first.seq
                    )));
                }
            }
            let values: Vec<Vec<u8>> = entries.iter().map(encode_entry).collect();
            if let ([entry], [value]) = (entries, values.as_slice()) {
                // One entry is atomic by itself, and a plain insert lets
                // sled buffer it: a batch makes sled write its IO buffer out
                // before and after it (sled 0.34's `pin_log`), every round.
                inner.log.insert(seq_key(entry.seq), value.as_slice())?;
            } else {
                let mut batch = sled::Batch::default();
                for (entry, value) in entries.iter().zip(&values) {
                    batch.insert(&seq_key(entry.seq), value.as_slice());
                }
                inner.log.apply_batch(batch)?;
            }
            round = Some((first.seq, encode_round(&values)));
        }
        inner.derived.write(round, derived)?;
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            let mut progress = inner.progress.lock().expect("progress lock");
            progress.appended = last.seq;
            progress.rounds.push_back((first.seq, last.seq));
        }
        Ok(())
    }

    /// One fdatasync of fjall's journal, which holds the round's entries
    /// (the log's tail) and their derived writes.
    fn sync(&self) -> Result<()> {
        let inner = self.inner();
        inner.derived.persist()?;
        let mut progress = inner.progress.lock().expect("progress lock");
        progress.durable = progress.appended;
        if progress.durable - progress.checkpointed >= TAIL_ENTRIES {
            inner.wake.notify_all();
        }
        Ok(())
    }

    /// A point lookup: much cheaper in sled than a one-entry range scan.
    fn get(&self, seq: u64) -> Result<Option<StoredEntry>> {
        let key = seq_key(seq);
        match self.inner().log.get(key)? {
            Some(value) => decode_entry(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn get_payload(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let key = seq_key(seq);
        match self.inner().log.get(key)? {
            Some(value) => Ok(Some(checked_payload(&key, &value)?.1.to_vec())),
            None => Ok(None),
        }
    }

    fn last_seq(&self) -> Result<u64> {
        self.inner().last_seq()
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let entries = self
            .inner()
            .log
            .range(seq_key(from)..)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                decode_entry(&key, &value)
            })
            .collect::<Result<Vec<_>>>()?;
        super::consecutive(from, entries)
    }

    fn get_derived(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner().derived.get(tree, key)
    }

    fn visit_derived(&self, tree: Tree, from: &[u8], to: &[u8], visit: &mut Visit) -> Result<()> {
        self.inner().derived.visit(tree, from, to, visit)
    }

    fn write_derived(&self, derived: Vec<Write>) -> Result<()> {
        self.inner().derived.write(None, derived)
    }

    fn clear_derived(&self) -> Result<()> {
        self.inner().derived.clear()
    }

    /// Drains the tail into a durable sled, writes the derived trees out,
    /// and leaves the clean-stop mark.
    fn checkpoint(&self) -> Result<()> {
        let inner = self.inner();
        inner.derived.persist()?;
        {
            let mut progress = inner.progress.lock().expect("progress lock");
            progress.durable = progress.appended;
        }
        inner.checkpoint_log()?;
        inner.derived.checkpoint()?;
        let mark = File::create(inner.dir.join(CLEAN_STOP))?;
        mark.sync_all()?;
        File::open(&inner.dir)?.sync_all()?;
        inner.marked.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.stop_checkpointer();
        let Some(inner) = self.inner.take() else {
            return;
        };
        if let Err(error) = inner.derived.persist().and_then(|()| inner.sync_files()) {
            tracing::error!(%error, "the final flush of the log failed; the next open re-applies its tail");
        }
        let (dir, clean) = (inner.dir.clone(), inner.marked.load(Ordering::SeqCst));
        drop(inner);
        // sled 0.34 writes its snapshot only when it opens, replaying all it
        // wrote since the last one (seconds after millions of appends): after
        // a clean stop, open it once more now, so that the next start is quick.
        if clean {
            let reopened = open_sled(&sled::Config::new().path(&dir).cache_capacity(1 << 20));
            if let Err(error) = reopened {
                tracing::warn!(%error, "sled could not write its snapshot at stop; the next start does");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        (dir, store)
    }

    #[test]
    fn keeps_the_store_contract() {
        let (_dir, fresh) = store();
        contract::appends_and_reads_back(&fresh);
        let (_dir, fresh) = store();
        contract::refuses_a_gap(&fresh);
        let (_dir, fresh) = store();
        contract::keeps_derived_trees(&fresh);
    }

    #[test]
    fn a_reopen_gives_sled_the_tail_entries_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path(), 8 << 20).unwrap();
            store
                .append(&[contract::entry(1, "a")], Vec::new())
                .unwrap();
            store.sync().unwrap();
            store.checkpoint().unwrap();
            // Entries 2 and 3 reached the journal but not sled, as when a
            // crash comes between an acknowledgement and sled's flush.
            let values: Vec<Vec<u8>> = (2..=3)
                .map(|seq| encode_entry(&contract::entry(seq, &format!("e{seq}"))))
                .collect();
            let round = Some((2, encode_round(&values)));
            store.inner().derived.write(round, Vec::new()).unwrap();
            store.inner().derived.persist().unwrap();
        }
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.last_seq().unwrap(), 3);
        assert_eq!(store.recovered(), 2);
        assert_eq!(store.get(3).unwrap(), Some(contract::entry(3, "e3")));
        assert!(
            store.inner().derived.tail().unwrap().is_empty(),
            "the tail is drained"
        );
    }

    #[test]
    fn a_tail_that_does_not_continue_the_log_is_data_loss() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path(), 8 << 20).unwrap();
            let round = Some((5, encode_round(&[encode_entry(&contract::entry(5, "e5"))])));
            store.inner().derived.write(round, Vec::new()).unwrap();
            store.inner().derived.persist().unwrap();
        }
        assert!(matches!(
            SledStore::open(dir.path(), 8 << 20),
            Err(Error::DataLoss(_))
        ));
    }

    #[test]
    fn entries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path(), 8 << 20).unwrap();
            store
                .append(
                    &[contract::entry(1, "a"), contract::entry(2, "b")],
                    Vec::new(),
                )
                .unwrap();
            store.sync().unwrap();
        }
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(store.last_seq().unwrap(), 2);
        assert_eq!(store.get(2).unwrap(), Some(contract::entry(2, "b")));
    }
}
