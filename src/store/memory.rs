//! An in-memory log for tests: the same contract and byte encoding as the
//! disk engine, without a disk.

use super::{decode_entry, encode_entry, seq_key, LogStore, StoredEntry};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct MemoryStore {
    log: RwLock<BTreeMap<u64, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl LogStore for MemoryStore {
    fn append(&self, entries: &[StoredEntry]) -> Result<()> {
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
        Ok(())
    }

    fn last_seq(&self) -> Result<u64> {
        let log = self.log.read().expect("log lock poisoned");
        Ok(log.keys().next_back().copied().unwrap_or(0))
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let log = self.log.read().expect("log lock poisoned");
        log.range(from..)
            .take(limit)
            .map(|(seq, value)| decode_entry(&seq_key(*seq), value))
            .collect()
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
    }
}
