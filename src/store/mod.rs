//! The log: the single source of truth, behind a narrow trait.
//!
//! A store keeps log entries by seq and nothing else; every index is derived
//! from it (see `index`). Two engines share one contract and one test suite:
//! `SledStore` on disk and `MemoryStore` for tests.

mod encoding;
mod memory;
mod sled_store;

pub use encoding::{decode_entry, encode_entry, seq_key, timestamp};
pub use memory::MemoryStore;
pub use sled_store::SledStore;

use crate::error::Result;
use crate::proto;

/// One entry of the log: the event as appended, its seq and when the log
/// learned it (`recorded_at`, microseconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEntry {
    pub seq: u64,
    pub recorded_at: i64,
    pub event: proto::Event,
}

/// The contract every log engine keeps.
pub trait LogStore: Send + Sync + 'static {
    /// Appends `entries`, whose seqs continue the log without a gap.
    ///
    /// Atomic: after a crash either all of them are there or none. Durable:
    /// once this returns `Ok`, they survive a crash or a power cut. Callers
    /// acknowledge an append to a client only after this returns.
    fn append(&self, entries: &[StoredEntry]) -> Result<()>;

    /// The highest seq stored, 0 for an empty log.
    fn last_seq(&self) -> Result<u64>;

    /// Up to `limit` entries with seq >= `from`, ascending; a damaged entry
    /// is `Error::DataLoss`, never a wrong answer.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>>;

    /// One entry by seq.
    fn get(&self, seq: u64) -> Result<Option<StoredEntry>> {
        Ok(self
            .read(seq, 1)?
            .into_iter()
            .next()
            .filter(|entry| entry.seq == seq))
    }

    /// Bytes the store occupies on disk (0 in memory).
    fn size_on_disk(&self) -> u64 {
        0
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The tests every `LogStore` must pass.
    use super::*;

    pub fn entry(seq: u64, id: &str) -> StoredEntry {
        StoredEntry {
            seq,
            recorded_at: 1_700_000_000_000_000 + seq as i64,
            event: proto::Event {
                id: id.to_string(),
                kind: "meeting".into(),
                occurred: Some(proto::TimeSpan {
                    start: "2024-04-13".into(),
                    end: String::new(),
                }),
                ..Default::default()
            },
        }
    }

    pub fn appends_and_reads_back(store: &dyn LogStore) {
        assert_eq!(store.last_seq().unwrap(), 0);
        store.append(&[entry(1, "a"), entry(2, "b")]).unwrap();
        store.append(&[entry(3, "c")]).unwrap();
        assert_eq!(store.last_seq().unwrap(), 3);
        let all = store.read(1, 10).unwrap();
        assert_eq!(all, vec![entry(1, "a"), entry(2, "b"), entry(3, "c")]);
        assert_eq!(store.read(2, 1).unwrap(), vec![entry(2, "b")]);
        assert_eq!(store.get(3).unwrap(), Some(entry(3, "c")));
        assert_eq!(store.get(4).unwrap(), None);
        assert!(store.read(4, 10).unwrap().is_empty());
    }

    pub fn refuses_a_gap(store: &dyn LogStore) {
        store.append(&[entry(1, "a")]).unwrap();
        assert!(store.append(&[entry(3, "c")]).is_err());
        assert!(store.append(&[entry(2, "b"), entry(4, "d")]).is_err());
        assert_eq!(
            store.last_seq().unwrap(),
            1,
            "a refused append stores nothing"
        );
    }
}
