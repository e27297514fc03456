//! The derived trees on disk: one fjall keyspace per tree, in `derived/`
//! beside the sled log.
//!
//! fjall is a log-structured merge tree: writes go to its journal and a
//! memtable, memtables are flushed to sorted, block-compressed tables with
//! Bloom filters and block checksums, and tables are compacted in the
//! background. A write batch is atomic across keyspaces, and after a crash
//! fjall recovers a prefix of the batches it took, so the derived trees
//! always hold the writes of a prefix of the log, with the `meta` tree's
//! indexed seq (written in the same batch) saying which.
//!
//! The same database holds the log's *tail* (`log_tail`): the entries of
//! the last rounds, one value per round (keyed by its first seq), written in
//! the batch that carries their derived writes.
//! Syncing fjall's journal (`persist`) makes a round durable with one
//! fdatasync of one file; sled, which holds the log, is flushed later in the
//! background (`SledStore`), after which the tail is dropped. On open, the
//! tail re-applies to sled whatever a crash took from it.
//!
//! The trees are a function of the log and are caught up from it on open. A
//! block that fails its checksum reads as `Error::DataLoss`; a store fjall
//! cannot open is dropped (`DerivedTrees::damage` says so) and rebuilt from
//! the log, unless its tail may hold entries sled lacks: then the open fails
//! rather than lose them.

use super::{Tree, Visit, Write};
use crate::error::{Error, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

pub struct DerivedTrees {
    db: Database,
    /// One keyspace per tree, in `Tree::ALL` order.
    trees: Vec<Keyspace>,
    /// A round's first seq → its log entries (which sled may not have made
    /// durable yet).
    tail: Keyspace,
    /// Why the store on disk could not be opened and was dropped, if it was.
    damage: Option<String>,
}

/// The longest key fjall takes. Derived keys are built from validated ids,
/// kinds and names, far shorter; a lookup of a longer one finds nothing.
const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// The name of the keyspace that holds the log's tail.
const TAIL: &str = "log_tail";

impl From<fjall::Error> for Error {
    fn from(error: fjall::Error) -> Error {
        let damaged = matches!(
            error,
            fjall::Error::Decompress(_)
                | fjall::Error::InvalidTrailer
                | fjall::Error::InvalidTag(_)
                | fjall::Error::Storage(
                    fjall::LsmError::ChecksumMismatch { .. }
                        | fjall::LsmError::Decompress(_)
                        | fjall::LsmError::InvalidTrailer
                        | fjall::LsmError::InvalidTag(_)
                        | fjall::LsmError::InvalidHeader(_)
                        | fjall::LsmError::Utf8(_)
                )
        );
        if damaged {
            Error::DataLoss(format!("the derived index is damaged: {error:?}"))
        } else {
            Error::Storage(format!("derived index: {error:?}"))
        }
    }
}

impl DerivedTrees {
    /// Opens (or creates) the trees in `dir`. `memtable_bytes` bounds each
    /// tree's in-memory table before it is flushed; `cache_bytes` is the
    /// block cache they share. A store fjall cannot open (damaged tables or
    /// manifest) is removed and recreated empty: the index then catches up
    /// from the log.
    ///
    /// `tail_is_empty` says the last stop drained the tail (so that dropping
    /// the store loses nothing of the log); without it an unopenable store
    /// is an error.
    pub fn open(
        dir: &Path,
        memtable_bytes: u64,
        cache_bytes: u64,
        tail_is_empty: bool,
    ) -> Result<DerivedTrees> {
        match DerivedTrees::open_existing(dir, memtable_bytes, cache_bytes) {
            Ok(trees) => Ok(trees),
            // Held by a store of this process still closing (the wait is
            // over): not damage, so nothing is dropped.
            Err(error @ Error::Unavailable(_)) => Err(error),
            Err(error) if !tail_is_empty => Err(Error::DataLoss(format!(
                "the derived index in {} cannot be opened, and it may hold acknowledged log entries \
                 that sled has not made durable (the server did not stop cleanly): {error}",
                dir.display()
            ))),
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "the derived index cannot be opened; rebuilding it from the log");
                std::fs::remove_dir_all(dir)?;
                let mut trees = DerivedTrees::open_existing(dir, memtable_bytes, cache_bytes)?;
                trees.damage = Some(error.to_string());
                Ok(trees)
            }
        }
    }

    /// Why the store on disk could not be opened (it was dropped and the
    /// trees start empty), if that happened.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    fn open_existing(dir: &Path, memtable_bytes: u64, cache_bytes: u64) -> Result<DerivedTrees> {
        // Like sled's lock, fjall's is let go by its threads a moment after
        // a store closes: wait for it, boundedly.
        let deadline = std::time::Instant::now() + super::sled_store::LOCK_WAIT;
        let db = loop {
            match Database::builder(dir)
                .cache_size(cache_bytes)
                .worker_threads(2)
                .open()
            {
                Err(fjall::Error::Locked) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fjall::Error::Locked) => {
                    return Err(Error::Unavailable(format!(
                        "the derived index in {} is in use by another store",
                        dir.display()
                    )))
                }
                opened => break opened?,
            }
        };
        let trees = Tree::ALL
            .iter()
            .map(|tree| {
                db.keyspace(tree.name(), || {
                    KeyspaceCreateOptions::default()
                        .max_memtable_size(memtable_bytes)
                        .data_block_compression_policy(fjall::config::CompressionPolicy::all(
                            fjall::CompressionType::Lz4,
                        ))
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let tail = db.keyspace(TAIL, || {
            KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes)
        })?;
        Ok(DerivedTrees {
            db,
            trees,
            tail,
            damage: None,
        })
    }

    fn tree(&self, tree: Tree) -> &Keyspace {
        &self.trees[Tree::ALL
            .iter()
            .position(|each| *each == tree)
            .expect("every tree has a keyspace")]
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key.len() > MAX_KEY_BYTES {
            // No such key was ever written (fjall takes none this long).
            return Ok(None);
        }
        Ok(self.tree(tree).get(key)?.map(|value| value.to_vec()))
    }

    /// Calls `visit` with the pairs with `from <= key < to`, ascending,
    /// until it returns `false`.
    pub fn visit(&self, tree: Tree, from: &[u8], to: &[u8], visit: &mut Visit) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        if from.len() > MAX_KEY_BYTES || to.len() > MAX_KEY_BYTES {
            return Err(Error::Storage(
                "a range of the derived index is bounded by keys too long for it".into(),
            ));
        }
        for item in self.tree(tree).range(from..to) {
            let (key, value) = item.into_inner()?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }

    /// Applies `writes` as one atomic batch, with `round`: the first seq
    /// and the encoded entries of a round of the log. Not synced: see
    /// `persist`.
    pub fn write(&self, round: Option<(u64, Vec<u8>)>, writes: Vec<Write>) -> Result<()> {
        if writes.is_empty() && round.is_none() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        if let Some((first, entries)) = round {
            batch.insert(&self.tail, first.to_be_bytes(), entries);
        }
        // In key order: each memtable insert then walks much the same path
        // through fjall's skiplist as the one before, in cache, instead of a
        // fresh one per write.
        let mut writes = dedup_meta(writes);
        writes.sort_unstable_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
        for (tree, key, value) in writes {
            batch.insert(self.tree(tree), key, value);
        }
        batch.commit()?;
        Ok(())
    }

    /// Makes every batch so far durable: one fdatasync of fjall's journal.
    pub fn persist(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// The rounds of the tail, by first seq.
    pub fn tail(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        self.tail
            .iter()
            .map(|item| {
                let (key, value) = item.into_inner()?;
                let first = <[u8; 8]>::try_from(key.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::DataLoss("a key of the log tail is damaged".into()))?;
                Ok((first, value.to_vec()))
            })
            .collect()
    }

    /// Drops rounds (by first seq) from the tail: sled has made them
    /// durable.
    pub fn drop_tail(&self, rounds: impl IntoIterator<Item = u64>) -> Result<()> {
        let mut batch = self.db.batch();
        for first in rounds {
            batch.remove(&self.tail, first.to_be_bytes());
        }
        batch.commit()?;
        Ok(())
    }

    /// Empties every tree.
    pub fn clear(&self) -> Result<()> {
        for tree in &self.trees {
            tree.clear()?;
        }
        Ok(())
    }

    /// Writes the memtables out as tables and syncs the journal, so that
    /// the next open replays nothing.
    pub fn checkpoint(&self) -> Result<()> {
        for tree in self.trees.iter().chain([&self.tail]) {
            tree.rotate_memtable_and_wait()?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// Keeps only the last of several writes to one `meta` key in a batch (every
/// entry of a round updates the indexed seq); the other trees never write a
/// key twice in one batch.
fn dedup_meta(writes: Vec<Write>) -> Vec<Write> {
    let mut kept: Vec<Write> = Vec::with_capacity(writes.len());
    let mut meta: Vec<Write> = Vec::new();
    for write in writes {
        if write.0 == Tree::Meta {
            meta.retain(|(_, key, _)| *key != write.1);
            meta.push(write);
        } else {
            kept.push(write);
        }
    }
    kept.extend(meta);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose lock is held (another store has it open) is not
    /// damage: opening it fails, and nothing of it is dropped, even when the
    /// last stop was clean.
    #[test]
    fn a_store_in_use_is_refused_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("derived");
        let first = DerivedTrees::open(&path, 1 << 20, 1 << 20, true).unwrap();
        let write = (Tree::Ids, b"event-1".to_vec(), 1u64.to_be_bytes().to_vec());
        first.write(None, vec![write]).unwrap();
        first.persist().unwrap();

        let second = DerivedTrees::open(&path, 1 << 20, 1 << 20, true);
        assert!(
            matches!(&second, Err(Error::Unavailable(message)) if message.contains("in use")),
            "{:?}",
            second.err()
        );
        assert_eq!(
            first.get(Tree::Ids, b"event-1").unwrap(),
            Some(1u64.to_be_bytes().to_vec())
        );
        drop(first);
        let reopened = DerivedTrees::open(&path, 1 << 20, 1 << 20, true).unwrap();
        assert!(reopened.damage().is_none());
        assert_eq!(
            reopened.get(Tree::Ids, b"event-1").unwrap(),
            Some(1u64.to_be_bytes().to_vec())
        );
    }
}
