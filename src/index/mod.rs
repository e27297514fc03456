//! The derived index: everything a query needs, folded from the log.
//!
//! Two parts. The *resident* part (`Index`) is small and loaded whole at
//! open: entity declarations and their names, which events corrections
//! withdrew, the longest event span (overall and per entity). Everything
//! else lives in the derived trees (`records`, keyed by `keys`): an entity's
//! changes grouped by relation or attribute and sorted by (earliest instant,
//! seq, effect), so that "latest change at or before Q as known at seq S" is
//! one ordered walk of the entity's changes (`timeline`), with a bounded
//! cache of compact copies in front of it, and no replay of the log.
//!
//! Every derived tree is a pure function of the log. The writer folds each
//! entry in before it is durable; readers never see it early because every
//! query runs against a `Snapshot` whose `as_of` is at most the durable seq.

pub mod keys;
pub mod records;
pub mod runs;
mod timeline;

pub use keys::Part;
pub use runs::EventRuns;
pub use timeline::{Change, History, Name, TimelineCache};

use crate::error::{Error, Result};
use crate::model::{Change as Effect, Declaration, Event};
use crate::proto;
use crate::store::{LogStore, StoredEntry, Tree, Write};
use crate::time::Instant;
use prost::Message;
use records::{
    span_key, DeclarationRecord, LAYOUT, META_INDEXED_SEQ, META_LAYOUT, META_SPAN_PREFIX,
};
use std::collections::{BTreeMap, HashMap};

const META_MAX_SPAN: &[u8] = b"max_span";

/// A declaration as the index keeps it.
#[derive(Clone, Debug)]
pub struct Declared {
    pub seq: u64,
    pub event_id: String,
    pub declaration: Declaration,
}

/// The resident part of the index.
#[derive(Default)]
pub struct Index {
    last_seq: u64,
    /// Entity id → its declarations in seq order.
    pub(crate) declarations: BTreeMap<String, Vec<Declared>>,
    /// Lowercased name or alias → (seq, entity id) of each declaration using it.
    pub(crate) lookup: HashMap<String, Vec<(u64, String)>>,
    /// Corrected seq → the seq of the correction that withdrew it.
    pub(crate) superseded: HashMap<u64, u64>,
    /// The longest valid-time span of any event, so that a window scan
    /// knows how far before the window an overlapping event can start.
    pub(crate) max_span: Instant,
    /// The same for the events naming each entity.
    pub(crate) spans: HashMap<String, Instant>,
}

impl Index {
    /// Loads the resident part from the derived trees, first bringing them
    /// up to date with the log (after a crash they may lag it).
    pub fn open(store: &dyn LogStore) -> Result<Index> {
        let last_seq = store.last_seq()?;
        let indexed = store
            .get_derived(Tree::Meta, META_INDEXED_SEQ)?
            .map(|value| keys::decode_seq(&value))
            .unwrap_or(0);
        if indexed > last_seq {
            tracing::warn!(
                indexed,
                last_seq,
                "the index is ahead of the log; rebuilding it"
            );
            return Index::rebuild(store);
        }
        let layout = store.get_derived(Tree::Meta, META_LAYOUT)?;
        if indexed > 0 && layout.as_deref() != Some(LAYOUT) {
            tracing::info!(
                indexed,
                "the derived trees have an older layout; rebuilding them from the log"
            );
            return Index::rebuild(store);
        }
        let mut index = Index::load(store, indexed)?;
        index.catch_up(store)?;
        Ok(index)
    }

    /// Drops every derived tree and builds them again from the log.
    pub fn rebuild(store: &dyn LogStore) -> Result<Index> {
        store.clear_derived()?;
        let mut index = Index::default();
        index.catch_up(store)?;
        Ok(index)
    }

    fn load(store: &dyn LogStore, indexed: u64) -> Result<Index> {
        let mut index = Index {
            last_seq: indexed,
            ..Index::default()
        };
        for (key, value) in store.scan_derived(Tree::Declarations, &[], &[0xff])? {
            let split = key.iter().position(|byte| *byte == 0).unwrap_or(key.len());
            let id = String::from_utf8_lossy(&key[..split]).into_owned();
            let seq = keys::decode_seq(&key[split + 1..]);
            let record = DeclarationRecord::decode(value.as_slice())
                .map_err(|_| Error::DataLoss(format!("declaration of {id:?} is damaged")))?;
            let declaration = Declaration {
                id,
                name: record.name,
                entity_type: proto::EntityType::try_from(record.entity_type).unwrap_or_default(),
                aliases: record.aliases,
            };
            index.declare(seq, record.event_id, declaration);
        }
        for (key, value) in store.scan_derived(Tree::Superseded, &[], &[0xff])? {
            index
                .superseded
                .insert(keys::decode_seq(&key), keys::decode_seq(&value));
        }
        if let Some(value) = store.get_derived(Tree::Meta, META_MAX_SPAN)? {
            index.max_span = keys::decode_instant(&value);
        }
        let spans_end = keys::prefix_end(META_SPAN_PREFIX);
        for (key, value) in store.scan_derived(Tree::Meta, META_SPAN_PREFIX, &spans_end)? {
            if value.len() < 8 {
                return Err(Error::DataLoss(
                    "an entity's span in the index is damaged".into(),
                ));
            }
            let entity = String::from_utf8_lossy(&key[META_SPAN_PREFIX.len()..]).into_owned();
            index.spans.insert(entity, keys::decode_instant(&value));
        }
        Ok(index)
    }

    /// Indexes the log entries past `last_seq`.
    fn catch_up(&mut self, store: &dyn LogStore) -> Result<()> {
        let mut pending_ids = HashMap::new();
        loop {
            let entries = store.read(self.last_seq + 1, 1024)?;
            if entries.is_empty() {
                return Ok(());
            }
            let mut writes = Vec::new();
            for entry in &entries {
                if entry.seq != self.last_seq + 1 {
                    return Err(Error::DataLoss(format!(
                        "the log jumps from seq {} to {}",
                        self.last_seq, entry.seq
                    )));
                }
                let event = Event::from_proto(&entry.event).map_err(|error| {
                    Error::DataLoss(format!(
                        "log entry {} no longer validates: {error}",
                        entry.seq
                    ))
                })?;
                let corrected = match &event.corrects {
                    Some(id) => match pending_ids.get(id) {
                        Some(seq) => Some(*seq),
                        None => seq_of(store, id)?,
                    },
                    None => None,
                };
                pending_ids.insert(entry.event.id.clone(), entry.seq);
                writes.extend(self.apply(entry, &event, corrected));
            }
            store.write_derived(writes)?;
            // Lets the store write its derived trees out, now that the
            // entries they derive from are durable.
            store.sync()?;
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The longest span of an event naming `entity`.
    pub fn span_of(&self, entity: &str) -> Instant {
        self.spans.get(entity).copied().unwrap_or(0)
    }

    /// Folds one entry into the resident part and returns the derived
    /// writes it implies. Entries come in seq order, each validated
    /// against the log before it.
    pub fn apply(
        &mut self,
        entry: &StoredEntry,
        event: &Event,
        corrected: Option<u64>,
    ) -> Vec<Write> {
        debug_assert_eq!(entry.seq, self.last_seq + 1, "entries apply in seq order");
        self.last_seq = entry.seq;
        for effect in &event.effects {
            if let Effect::Declare(declaration) = &effect.change {
                self.declare(entry.seq, entry.event.id.clone(), declaration.clone());
            }
        }
        if let Some(target) = corrected {
            self.superseded.insert(target, entry.seq);
        }
        let mut writes = records::writes_for(entry, event, corrected);
        let span = event.latest().saturating_sub(event.earliest());
        if span > self.max_span {
            self.max_span = span;
            writes.push((
                Tree::Meta,
                META_MAX_SPAN.to_vec(),
                keys::instant(span).to_vec(),
            ));
        }
        if span > 0 {
            for entity in event.entities() {
                let longest = self.spans.entry(entity.to_string()).or_insert(0);
                if span > *longest {
                    *longest = span;
                    writes.push((Tree::Meta, span_key(entity), keys::instant(span).to_vec()));
                }
            }
        }
        if entry.seq == 1 {
            writes.push((Tree::Meta, META_LAYOUT.to_vec(), LAYOUT.to_vec()));
        }
        writes.push((
            Tree::Meta,
            META_INDEXED_SEQ.to_vec(),
            keys::seq(entry.seq).to_vec(),
        ));
        writes
    }

    fn declare(&mut self, seq: u64, event_id: String, declaration: Declaration) {
        for name in declaration.lookup_names() {
            self.lookup
                .entry(name)
                .or_default()
                .push((seq, declaration.id.clone()));
        }
        self.declarations
            .entry(declaration.id.clone())
            .or_default()
            .push(Declared {
                seq,
                event_id,
                declaration,
            });
    }
}

/// The seq of an event id, from the `ids` tree.
pub fn seq_of(store: &dyn LogStore, id: &str) -> Result<Option<u64>> {
    Ok(store
        .get_derived(Tree::Ids, id.as_bytes())?
        .map(|value| keys::decode_seq(&value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::entry;
    use crate::store::MemoryStore;

    #[test]
    fn trees_of_another_layout_are_rebuilt_from_the_log() {
        let store = MemoryStore::new();
        store
            .append(&[entry(1, "a"), entry(2, "b")], Vec::new())
            .unwrap();
        Index::open(&store).unwrap();
        assert_eq!(
            store
                .get_derived(Tree::Meta, META_LAYOUT)
                .unwrap()
                .as_deref(),
            Some(LAYOUT)
        );
        // As an older version left them: another layout, and a record of
        // its shape.
        let stale = keys::timeline_event(0, 9);
        store
            .write_derived(vec![
                (Tree::Meta, META_LAYOUT.to_vec(), b"1".to_vec()),
                (Tree::Timeline, stale.clone(), b"old".to_vec()),
            ])
            .unwrap();
        let index = Index::open(&store).unwrap();
        assert_eq!(index.last_seq(), 2);
        assert_eq!(
            store
                .get_derived(Tree::Meta, META_LAYOUT)
                .unwrap()
                .as_deref(),
            Some(LAYOUT)
        );
        assert_eq!(store.get_derived(Tree::Timeline, &stale).unwrap(), None);
        assert!(seq_of(&store, "b").unwrap() == Some(2));
    }
}
