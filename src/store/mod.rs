//! The log: the single source of truth, behind a narrow trait.
//!
//! A store keeps log entries by seq and nothing else; every index is derived
//! from it (see `index`). Two engines share one contract and one test suite:
//! `SledStore` on disk and `MemoryStore` for tests.

mod derived;
mod encoding;
mod memory;
mod sled_store;

pub use encoding::{checked_payload, decode_entry, encode_entry, seq_key, timestamp};
pub use memory::MemoryStore;
pub use sled_store::{SledStore, DERIVED_BUFFER_BYTES};

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

/// The derived trees. Each is a function of the log alone and can be
/// dropped and rebuilt from it (`Database::rebuild_indexes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// event id → seq
    Ids,
    /// entity ++ 0 ++ part ++ relation or attribute ++ earliest ++ seq ++
    /// effect → one change touching the entity (`index::keys::change`)
    Changes,
    /// entity ++ 0 ++ earliest ++ seq → an event naming the entity
    Mentions,
    /// earliest ++ seq → every event in valid-time order
    Timeline,
    /// entity ++ 0 ++ seq ++ effect → a declaration
    Declarations,
    /// corrected seq → the correction's seq
    Superseded,
    /// bookkeeping: the last seq indexed
    Meta,
    /// `p` ++ a ++ 0 ++ b ++ 0 ++ earliest ++ seq → an event naming both
    /// (a dyad); `c` ++ entity ++ 0 ++ earliest ++ seq → an event naming
    /// too many entities for a key per pair
    Dyads,
}

impl Tree {
    pub const ALL: [Tree; 8] = [
        Tree::Ids,
        Tree::Changes,
        Tree::Mentions,
        Tree::Timeline,
        Tree::Declarations,
        Tree::Superseded,
        Tree::Meta,
        Tree::Dyads,
    ];

    /// The tree's name: its fjall keyspace on disk. Never rename one.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Ids => "ids",
            Tree::Changes => "changes",
            Tree::Mentions => "mentions",
            Tree::Timeline => "timeline",
            Tree::Declarations => "declarations",
            Tree::Superseded => "superseded",
            Tree::Meta => "meta",
            Tree::Dyads => "dyads",
        }
    }
}

/// Checks that entries read from seq `from` on are consecutive.
pub(crate) fn consecutive(from: u64, entries: Vec<StoredEntry>) -> Result<Vec<StoredEntry>> {
    for (expected, entry) in (from.max(1)..).zip(&entries) {
        if entry.seq != expected {
            return Err(crate::error::Error::DataLoss(format!(
                "log entry {expected} is missing (the log jumps to {})",
                entry.seq
            )));
        }
    }
    Ok(entries)
}

/// What a scan of a derived tree calls with each (key, value), until it
/// returns `false`.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// One write to a derived tree: (tree, key, value).
pub type Write = (Tree, Vec<u8>, Vec<u8>);

/// A key-value pair read from a derived tree.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The contract every storage engine keeps.
pub trait LogStore: Send + Sync + 'static {
    /// Appends `entries`, whose seqs continue the log without a gap, and
    /// applies `derived`, the index writes they imply.
    ///
    /// The log is atomic: after a crash it holds all of `entries` or none.
    /// The derived trees need not be durable at all: after a crash they
    /// hold the derived writes of some prefix of the log (the `meta` tree's
    /// indexed seq says which), and opening the index catches up the rest.
    /// Not durable by itself: see `sync`.
    fn append(&self, entries: &[StoredEntry], derived: Vec<Write>) -> Result<()>;

    /// Makes every log write so far durable: once this returns `Ok`, they
    /// survive a crash or a power cut. Callers acknowledge an append to a
    /// client only after this returns. The store may also write derived
    /// trees out here, once the entries they derive from are durable.
    fn sync(&self) -> Result<()>;

    /// The highest seq stored, 0 for an empty log.
    fn last_seq(&self) -> Result<u64>;

    /// Up to `limit` entries from seq `from` on, consecutive; a damaged
    /// entry, or a seq missing before the last one, is `Error::DataLoss`,
    /// never a wrong answer. Empty when `from` is past the end.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<StoredEntry>>;

    /// One entry by seq (`None` when there is none); a damaged entry is
    /// `Error::DataLoss`.
    fn get(&self, seq: u64) -> Result<Option<StoredEntry>>;

    /// One entry as stored, by seq: a `LogEntry` message without
    /// `superseded_by`, checked as `get` checks it but not decoded, for an
    /// answer that only passes it on.
    fn get_payload(&self, seq: u64) -> Result<Option<Vec<u8>>>;

    /// One value of a derived tree.
    fn get_derived(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Calls `visit` with each pair of a derived tree with `from <= key <
    /// to`, ascending, until it returns `false`. Nothing is collected: a
    /// query reads as far as it needs and no further.
    fn visit_derived(&self, tree: Tree, from: &[u8], to: &[u8], visit: &mut Visit) -> Result<()>;

    /// The pairs of a derived tree with `from <= key < to`, ascending.
    fn scan_derived(&self, tree: Tree, from: &[u8], to: &[u8]) -> Result<Vec<Pair>> {
        let mut pairs = Vec::new();
        self.visit_derived(tree, from, to, &mut |key, value| {
            pairs.push((key.to_vec(), value.to_vec()));
            Ok(true)
        })?;
        Ok(pairs)
    }

    /// Applies derived writes on their own (rebuilding, catching up).
    fn write_derived(&self, derived: Vec<Write>) -> Result<()>;

    /// Empties every derived tree.
    fn clear_derived(&self) -> Result<()>;

    /// Makes the derived trees durable as they stand, so that the next open
    /// has nothing to catch up (on a clean close, and after a rebuild).
    fn checkpoint(&self) -> Result<()> {
        Ok(())
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
        store
            .append(&[entry(1, "a"), entry(2, "b")], Vec::new())
            .unwrap();
        store.append(&[entry(3, "c")], Vec::new()).unwrap();
        store.sync().unwrap();
        assert_eq!(store.last_seq().unwrap(), 3);
        let all = store.read(1, 10).unwrap();
        assert_eq!(all, vec![entry(1, "a"), entry(2, "b"), entry(3, "c")]);
        assert_eq!(store.read(2, 1).unwrap(), vec![entry(2, "b")]);
        assert_eq!(store.get(3).unwrap(), Some(entry(3, "c")));
        assert_eq!(store.get(4).unwrap(), None);
        assert_eq!(
            store.get_payload(3).unwrap().as_deref(),
            Some(&encode_entry(&entry(3, "c"))[4..])
        );
        assert_eq!(store.get_payload(4).unwrap(), None);
        assert!(store.read(4, 10).unwrap().is_empty());
    }

    pub fn refuses_a_gap(store: &dyn LogStore) {
        store.append(&[entry(1, "a")], Vec::new()).unwrap();
        assert!(store.append(&[entry(3, "c")], Vec::new()).is_err());
        assert!(store
            .append(&[entry(2, "b"), entry(4, "d")], Vec::new())
            .is_err());
        assert_eq!(
            store.last_seq().unwrap(),
            1,
            "a refused append stores nothing"
        );
    }

    pub fn reads_consecutive_entries_or_data_loss(entries: Vec<StoredEntry>) {
        assert!(consecutive(1, entries.clone()).is_ok());
        let mut gapped = entries;
        gapped.remove(1);
        assert!(matches!(
            consecutive(1, gapped),
            Err(crate::error::Error::DataLoss(_))
        ));
    }

    pub fn keeps_derived_trees(store: &dyn LogStore) {
        let derived = vec![
            (Tree::Ids, b"b".to_vec(), vec![2]),
            (Tree::Ids, b"a".to_vec(), vec![1]),
            (Tree::Meta, b"a".to_vec(), vec![9]),
        ];
        store.append(&[entry(1, "a")], derived.clone()).unwrap();
        assert_eq!(store.get_derived(Tree::Ids, b"a").unwrap(), Some(vec![1]));
        assert_eq!(store.get_derived(Tree::Changes, b"a").unwrap(), None);
        let all = store.scan_derived(Tree::Ids, b"", b"z").unwrap();
        assert_eq!(
            all,
            vec![(b"a".to_vec(), vec![1]), (b"b".to_vec(), vec![2])]
        );
        assert_eq!(store.scan_derived(Tree::Ids, b"b", b"z").unwrap().len(), 1);
        let mut first = Vec::new();
        store
            .visit_derived(Tree::Ids, b"", b"z", &mut |key, _| {
                first.push(key.to_vec());
                Ok(false)
            })
            .unwrap();
        assert_eq!(first, vec![b"a".to_vec()], "a visit stops when told");
        store.clear_derived().unwrap();
        assert!(store.scan_derived(Tree::Ids, b"", b"z").unwrap().is_empty());
        assert_eq!(
            store.last_seq().unwrap(),
            1,
            "clearing indexes keeps the log"
        );
        store.write_derived(derived).unwrap();
        assert_eq!(store.get_derived(Tree::Meta, b"a").unwrap(), Some(vec![9]));
    }
}
