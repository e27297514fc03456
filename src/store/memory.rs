//! An in-memory store for tests: the same contract and byte encoding as the
//! disk engine, without a disk.

use super::{
    checked_payload, decode_entry, encode_entry, seq_key, LogStore, Pair, StoredEntry, Tree, Visit,
    Write,
};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

/// A derived tree: key → value, in key order.
type Ordered = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
pub struct MemoryStore {
    log: RwLock<BTreeMap<u64, Vec<u8>>>,
    derived: RwLock<HashMap<Tree, Ordered>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl LogStore for MemoryStore {
    fn append(&self, entries: &[StoredEntry], derived: Vec<Write>) -> Result<()> {
        {
            let mut log = self.log.write().expect("log lock poisoned");
            let last = log.keys().next_back().copied().unwrap_or(0);
            for (expected, entry) in (last + 1..).zip(entries) {
                if entry.seq != expected {
                    return Err(Error::Storage(format!(
                        "append of seq {} would leave a gap after {last}",
                        entry.seq
                    )));
                }
            }
            for entry in entries {
                log.insert(entry.seq, encode_entry(entry));
            }
        }
        self.write_derived(derived)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn last_seq(&self) -> Result<u64> {
        let log = self.log.read().expect("log lock poisoned");
        Ok(log.keys().next_back().copied().unwrap_or(0))
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let log = self.log.read().expect("log lock poisoned");
        let entries = log
            .range(from..)
            .take(limit)
            .map(|(seq, value)| decode_entry(&seq_key(*seq), value))
            .collect::<Result<Vec<_>>>()?;
        super::consecutive(from, entries)
    }

    fn get(&self, seq: u64) -> Result<Option<StoredEntry>> {
        let log = self.log.read().expect("log lock poisoned");
        log.get(&seq)
            .map(|value| decode_entry(&seq_key(seq), value))
            .transpose()
    }

    fn get_payload(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        let log = self.log.read().expect("log lock poisoned");
        log.get(&seq)
            .map(|value| Ok(checked_payload(&seq_key(seq), value)?.1.to_vec()))
            .transpose()
    }

    fn get_derived(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let derived = self.derived.read().expect("index lock poisoned");
        Ok(derived.get(&tree).and_then(|tree| tree.get(key)).cloned())
    }

    fn visit_derived(&self, tree: Tree, from: &[u8], to: &[u8], visit: &mut Visit) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        // A copy of the range, so that `visit` runs without the lock held.
        let pairs: Vec<Pair> = {
            let derived = self.derived.read().expect("index lock poisoned");
            derived
                .get(&tree)
                .map(|tree| {
                    tree.range(from.to_vec()..to.to_vec())
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (key, value) in &pairs {
            if !visit(key, value)? {
                break;
            }
        }
        Ok(())
    }

    fn write_derived(&self, derived: Vec<Write>) -> Result<()> {
        let mut trees = self.derived.write().expect("index lock poisoned");
        for (tree, key, value) in derived {
            trees.entry(tree).or_default().insert(key, value);
        }
        Ok(())
    }

    fn clear_derived(&self) -> Result<()> {
        self.derived.write().expect("index lock poisoned").clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[test]
    fn keeps_the_store_contract() {
        contract::appends_and_reads_back(&MemoryStore::new());
        contract::refuses_a_gap(&MemoryStore::new());
        contract::keeps_derived_trees(&MemoryStore::new());
        let entries = (1..=3)
            .map(|seq| contract::entry(seq, &format!("e{seq}")))
            .collect();
        contract::reads_consecutive_entries_or_data_loss(entries);
    }
}
