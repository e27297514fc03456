//! The derived index: everything a query needs, folded from the log.
//!
//! The index holds no fact the log does not: `Index::apply` is called for
//! each entry in seq order, at start-up (rebuild) and after each append. It
//! keeps, per relation and per (entity, attribute), the list of changes
//! sorted by (earliest instant, seq, effect), so that "the latest change at
//! or before Q as known at seq S" is a binary search followed by a short
//! backwards walk that skips entries past S or withdrawn by a correction.
//!
//! The writer applies an entry here before it is durable; readers never see
//! it early because every query runs against a `Snapshot` whose `as_of` is at
//! most the durable seq.

use crate::model::{Change as EffectChange, Declaration, Event, RelationKey};
use crate::store::StoredEntry;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the index remembers of one log entry.
#[derive(Clone, Debug)]
pub struct EventMeta {
    pub id: String,
    pub kind: String,
    pub earliest: Instant,
    pub latest: Instant,
    pub entities: Vec<String>,
}

/// One change to a relation or an attribute.
#[derive(Clone, Debug)]
pub struct Change {
    pub earliest: Instant,
    pub latest: Instant,
    pub seq: u64,
    pub effect: u32,
    /// The valid time as the event wrote it, for `since`/`from`/`to`.
    pub time: String,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Begin,
    End,
    /// An attribute value; empty unsets.
    Set(String),
}

impl Change {
    /// Competing changes are ordered by (earliest instant, seq, effect).
    pub fn order(&self) -> (Instant, u64, u32) {
        (self.earliest, self.seq, self.effect)
    }
}

#[derive(Clone, Debug)]
pub struct DeclarationRecord {
    pub seq: u64,
    pub declaration: Declaration,
}

#[derive(Default)]
pub struct Index {
    pub(crate) last_seq: u64,
    /// `events[seq - 1]`.
    pub(crate) events: Vec<EventMeta>,
    pub(crate) ids: HashMap<String, u64>,
    /// Corrected seq → the seq of the correction that withdrew it.
    pub(crate) superseded: HashMap<u64, u64>,
    /// Entity id → its declarations in seq order.
    pub(crate) declarations: BTreeMap<String, Vec<DeclarationRecord>>,
    /// Lowercased name or alias → (seq, entity id) of each declaration using it.
    pub(crate) lookup: HashMap<String, Vec<(u64, String)>>,
    pub(crate) relations: BTreeMap<RelationKey, Vec<Change>>,
    pub(crate) relations_of: HashMap<String, BTreeSet<RelationKey>>,
    pub(crate) attributes: HashMap<String, BTreeMap<String, Vec<Change>>>,
    /// Every seq, by (earliest, seq).
    pub(crate) timeline: Vec<u64>,
    /// Entity id → the seqs of events naming it, by (earliest, seq).
    pub(crate) timeline_of: HashMap<String, Vec<u64>>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    pub fn meta(&self, seq: u64) -> Option<&EventMeta> {
        seq.checked_sub(1)
            .and_then(|offset| self.events.get(offset as usize))
    }

    /// Folds one entry in. Entries must come in seq order, each validated
    /// against the log before it (the writer guarantees both).
    pub fn apply(&mut self, entry: &StoredEntry, event: &Event) {
        debug_assert_eq!(entry.seq, self.last_seq + 1, "entries apply in seq order");
        let seq = entry.seq;
        self.last_seq = seq;
        let entities: Vec<String> = event.entities().into_iter().map(String::from).collect();
        self.events.push(EventMeta {
            id: entry.event.id.clone(),
            kind: event.kind.clone(),
            earliest: event.earliest(),
            latest: event.latest(),
            entities: entities.clone(),
        });
        self.ids.insert(entry.event.id.clone(), seq);
        if let Some(target) = event.corrects.as_ref().and_then(|id| self.seq_of(id)) {
            self.superseded.insert(target, seq);
        }

        let order = (event.earliest(), seq);
        insert_sorted(&mut self.timeline, seq, order, &self.events);
        for entity in &entities {
            let seqs = self.timeline_of.entry(entity.clone()).or_default();
            insert_sorted(seqs, seq, order, &self.events);
        }

        for (position, effect) in event.effects.iter().enumerate() {
            let change = |op| Change {
                earliest: effect.time.earliest(),
                latest: effect.time.latest(),
                seq,
                effect: position as u32,
                time: effect.time.text().to_string(),
                op,
            };
            match &effect.change {
                EffectChange::Declare(declaration) => {
                    for name in declaration.lookup_names() {
                        self.lookup
                            .entry(name)
                            .or_default()
                            .push((seq, declaration.id.clone()));
                    }
                    self.declarations
                        .entry(declaration.id.clone())
                        .or_default()
                        .push(DeclarationRecord {
                            seq,
                            declaration: declaration.clone(),
                        });
                }
                EffectChange::Set { entity, key, value } => {
                    let changes = self
                        .attributes
                        .entry(entity.clone())
                        .or_default()
                        .entry(key.clone())
                        .or_default();
                    insert_change(changes, change(Op::Set(value.clone())));
                }
                EffectChange::Begin(key) | EffectChange::End(key) => {
                    let op = if matches!(effect.change, EffectChange::Begin(_)) {
                        Op::Begin
                    } else {
                        Op::End
                    };
                    for entity in [&key.a, &key.b] {
                        self.relations_of
                            .entry(entity.clone())
                            .or_default()
                            .insert(key.clone());
                    }
                    insert_change(self.relations.entry(key.clone()).or_default(), change(op));
                }
            }
        }
    }
}

fn insert_change(changes: &mut Vec<Change>, change: Change) {
    let position = changes.partition_point(|existing| existing.order() < change.order());
    changes.insert(position, change);
}

fn insert_sorted(seqs: &mut Vec<u64>, seq: u64, order: (Instant, u64), events: &[EventMeta]) {
    let position =
        seqs.partition_point(|other| (events[(*other - 1) as usize].earliest, *other) < order);
    seqs.insert(position, seq);
}
