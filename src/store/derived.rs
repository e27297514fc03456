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
//! Nothing here needs to be durable for the log to be: the trees are a
//! function of the log and are caught up from it on open. A block that fails
//! its checksum reads as `Error::DataLoss`; a store fjall cannot open is
//! dropped and rebuilt from the log.

use super::{Pair, Tree, Write};
use crate::error::{Error, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

pub struct DerivedTrees {
    db: Database,
    /// One keyspace per tree, in `Tree::ALL` order.
    trees: Vec<Keyspace>,
}

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
    pub fn open(dir: &Path, memtable_bytes: u64, cache_bytes: u64) -> Result<DerivedTrees> {
        match DerivedTrees::open_existing(dir, memtable_bytes, cache_bytes) {
            Ok(trees) => Ok(trees),
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "the derived index cannot be opened; rebuilding it from the log");
                std::fs::remove_dir_all(dir)?;
                DerivedTrees::open_existing(dir, memtable_bytes, cache_bytes)
            }
        }
    }

    fn open_existing(dir: &Path, memtable_bytes: u64, cache_bytes: u64) -> Result<DerivedTrees> {
        let db = Database::builder(dir)
            .cache_size(cache_bytes)
            .worker_threads(2)
            .open()?;
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
        Ok(DerivedTrees { db, trees })
    }

    fn tree(&self, tree: Tree) -> &Keyspace {
        &self.trees[Tree::ALL
            .iter()
            .position(|each| *each == tree)
            .expect("every tree has a keyspace")]
    }

    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree(tree).get(key)?.map(|value| value.to_vec()))
    }

    /// The pairs with `from <= key < to`, ascending.
    pub fn scan(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>> {
        if from >= to {
            return Ok(Vec::new());
        }
        self.tree(tree)
            .range(from..to)
            .map(|item| {
                let (key, value) = item.into_inner()?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// Applies `writes` as one atomic batch. Not synced: see the module
    /// comment.
    pub fn write(&self, writes: Vec<Write>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch();
        for (tree, key, value) in dedup_meta(writes) {
            batch.insert(self.tree(tree), key, value);
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
        for tree in &self.trees {
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
