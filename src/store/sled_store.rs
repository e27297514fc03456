//! The disk engine: the log in sled 0.34.7, one tree `log` keyed by
//! big-endian seq; the derived trees in fjall beside it (`derived`,
//! directory `derived/`), since a B-tree insert per derived key cost more
//! than everything else an append does.
//!
//! Durability: sled's `flush` ends in `sync_file_range`, which writes pages
//! out but does not flush the device's write cache, so an acknowledged
//! append could still be lost on power failure. After every flush we also
//! `fdatasync` sled's data file (and any blob files sled wrote beside it).
//! That happens once per `append` call; the engine's single writer batches
//! concurrent appends into one call (group commit), so they share it.

use super::derived::DerivedTrees;
use super::{decode_entry, encode_entry, seq_key, LogStore, Pair, StoredEntry, Tree, Write};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Derived writes kept in memory per tree before they are flushed to disk.
pub const DERIVED_BUFFER_BYTES: usize = 64 << 20;

/// The block cache the derived trees share.
const DERIVED_CACHE_BYTES: u64 = 128 << 20;

pub struct SledStore {
    db: sled::Db,
    log: sled::Tree,
    /// The derived trees.
    derived: DerivedTrees,
    dir: PathBuf,
    /// sled's data file, kept open to fdatasync it.
    data_file: File,
    /// Blob files already synced (sled writes values too big for a segment
    /// to files of their own, and never syncs them itself).
    synced_blobs: Mutex<HashSet<PathBuf>>,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with sled's page cache bounded
    /// by `cache_bytes` and the derived writes not yet in a run by
    /// `DERIVED_BUFFER_BYTES`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        SledStore::open_with(dir, cache_bytes, DERIVED_BUFFER_BYTES)
    }

    /// `open`, with derived writes written out as a run once they pass
    /// `buffer_bytes`.
    pub fn open_with(dir: &Path, cache_bytes: u64, buffer_bytes: usize) -> Result<SledStore> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let log = db.open_tree("log")?;
        // Stores written before the runs kept the derived trees in sled:
        // drop them (the empty runs make the index catch up from the log).
        let names = db.tree_names();
        for tree in Tree::ALL {
            if names
                .iter()
                .any(|name| name.as_ref() == tree.name().as_bytes())
            {
                tracing::info!(
                    tree = tree.name(),
                    "dropping a derived tree kept in sled by an older version"
                );
                db.drop_tree(tree.name())?;
            }
        }
        // Stores written before fjall kept the derived trees in run files
        // of their own in `index/`: drop them too.
        let runs = dir.join("index");
        if runs.exists() {
            tracing::info!("dropping the derived index runs of an older version");
            std::fs::remove_dir_all(&runs)?;
        }
        let derived = DerivedTrees::open(
            &dir.join("derived"),
            buffer_bytes as u64,
            DERIVED_CACHE_BYTES,
        )?;
        let data_file = File::open(dir.join("db"))?;
        Ok(SledStore {
            db,
            log,
            derived,
            dir: dir.to_path_buf(),
            data_file,
            synced_blobs: Mutex::new(HashSet::new()),
        })
    }

    /// Makes everything written so far durable: sled's flush, then an
    /// fdatasync of its files.
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
}

impl LogStore for SledStore {
    fn append(&self, entries: &[StoredEntry], derived: Vec<Write>) -> Result<()> {
        if let Some(first) = entries.first() {
            let last = self.last_seq()?;
            for (expected, entry) in (last + 1..).zip(entries) {
                if entry.seq != expected {
                    return Err(Error::Storage(format!(
                        "append of seq {} would leave a gap after {last}",
                        first.seq
                    )));
                }
            }
            let mut batch = sled::Batch::default();
            for entry in entries {
                batch.insert(&seq_key(entry.seq), encode_entry(entry));
            }
            self.log.apply_batch(batch)?;
        }
        self.write_derived(derived)
    }

    fn sync(&self) -> Result<()> {
        self.sync_files()
    }

    /// A point lookup: much cheaper in sled than a one-entry range scan.
    fn get(&self, seq: u64) -> Result<Option<StoredEntry>> {
        let key = seq_key(seq);
        match self.log.get(key)? {
            Some(value) => decode_entry(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn last_seq(&self) -> Result<u64> {
        match self.log.last()? {
            Some((key, _)) => <[u8; 8]>::try_from(key.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::DataLoss("log key is not 8 bytes".into())),
            None => Ok(0),
        }
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let entries = self
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
        self.derived.get(tree, key)
    }

    fn scan_derived(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>> {
        self.derived.scan(tree, from, to)
    }

    fn write_derived(&self, derived: Vec<Write>) -> Result<()> {
        self.derived.write(derived)
    }

    fn clear_derived(&self) -> Result<()> {
        self.derived.clear()
    }

    fn checkpoint(&self) -> Result<()> {
        self.sync_files()?;
        self.derived.checkpoint()
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Err(error) = self.sync_files() {
            tracing::error!(%error, "final flush of the log failed");
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
