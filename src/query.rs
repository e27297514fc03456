//! Point-in-time queries: the state at a valid-time instant Q, as known at
//! log seq S. Pure functions of the index; no I/O, no tonic.
//!
//! A change applies at Q when its earliest instant is <= Q, and is `certain`
//! when its latest instant is <= Q too. Among the changes to one relation or
//! attribute that apply, the latest by (earliest instant, seq) decides.
//! Entries past S are invisible, and so are entries withdrawn by a
//! correction recorded at or before S.
//!
//! Results are expressed in the wire's view types (`proto::Relation`, …):
//! they are plain data, and a second copy of each would add nothing.

use crate::index::{Change, DeclarationRecord, Index, Op};
use crate::model::RelationKey;
use crate::proto;
use crate::time::Instant;

/// The index as known at seq `as_of`.
pub struct Snapshot<'a> {
    index: &'a Index,
    as_of: u64,
}

/// Which events a listing wants.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub entity: Option<String>,
    pub kind: Option<String>,
    /// First instant of the window (inclusive).
    pub from: Instant,
    /// Last instant of the window (inclusive).
    pub to: Instant,
}

impl<'a> Snapshot<'a> {
    pub fn new(index: &'a Index, as_of: u64) -> Snapshot<'a> {
        Snapshot {
            index,
            as_of: as_of.min(index.last_seq()),
        }
    }

    pub fn as_of(&self) -> u64 {
        self.as_of
    }

    /// Is the entry with this seq part of what was known at S, and not
    /// withdrawn by then?
    fn in_force(&self, seq: u64) -> bool {
        seq <= self.as_of && !self.withdrawn(seq)
    }

    fn withdrawn(&self, seq: u64) -> bool {
        self.index
            .superseded
            .get(&seq)
            .is_some_and(|correction| *correction <= self.as_of)
    }

    /// The id of the correction that withdrew `seq`, if known at S.
    pub fn superseded_by(&self, seq: u64) -> Option<&'a str> {
        let correction = *self.index.superseded.get(&seq)?;
        (correction <= self.as_of).then(|| self.event_id(correction))
    }

    pub fn event_id(&self, seq: u64) -> &'a str {
        self.index.meta(seq).map_or("", |meta| meta.id.as_str())
    }

    /// The seq of an event id, if recorded by S.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.index.seq_of(id).filter(|seq| *seq <= self.as_of)
    }

    /// The change that decides a relation or attribute at Q.
    fn deciding(&self, changes: &'a [Change], at: Instant) -> Option<&'a Change> {
        let applicable = changes.partition_point(|change| change.earliest <= at);
        changes[..applicable]
            .iter()
            .rev()
            .find(|change| self.in_force(change.seq))
    }

    fn declaration(&self, id: &str) -> Option<&'a DeclarationRecord> {
        self.index
            .declarations
            .get(id)?
            .iter()
            .rev()
            .find(|record| self.in_force(record.seq))
    }

    /// Resolves an entity id or any declared name or alias, case-insensitively.
    pub fn resolve(&self, name: &str) -> Option<&'a str> {
        let lower = name.trim().to_lowercase();
        if let Some(record) = self.declaration(&lower) {
            return Some(record.declaration.id.as_str());
        }
        self.index
            .lookup
            .get(&lower)?
            .iter()
            .rev()
            .filter(|(seq, _)| self.in_force(*seq))
            .find_map(|(_, id)| {
                let record = self.declaration(id)?;
                record
                    .declaration
                    .lookup_names()
                    .contains(&lower)
                    .then_some(record.declaration.id.as_str())
            })
    }

    pub fn entity(&self, id: &str) -> Option<proto::Entity> {
        let record = self.declaration(id)?;
        let declaration = &record.declaration;
        Some(proto::Entity {
            id: declaration.id.clone(),
            name: declaration.name.clone(),
            r#type: declaration.entity_type as i32,
            aliases: declaration.aliases.clone(),
            declared_by: self.event_id(record.seq).to_string(),
        })
    }

    /// Entities of a type (any when `None`) whose id, name or an alias starts
    /// with `prefix` (case-insensitive), by id.
    pub fn entities(
        &self,
        entity_type: Option<proto::EntityType>,
        prefix: &str,
    ) -> Vec<proto::Entity> {
        let prefix = prefix.to_lowercase();
        self.index
            .declarations
            .keys()
            .filter_map(|id| self.declaration(id))
            .filter(|record| {
                let declaration = &record.declaration;
                entity_type.is_none_or(|wanted| declaration.entity_type == wanted)
                    && (declaration.id.starts_with(&prefix)
                        || declaration
                            .lookup_names()
                            .iter()
                            .any(|name| name.starts_with(&prefix)))
            })
            .filter_map(|record| self.entity(&record.declaration.id))
            .collect()
    }

    fn relation_view(&self, key: &RelationKey, change: &Change, at: Instant) -> proto::Relation {
        proto::Relation {
            a: key.a.clone(),
            b: key.b.clone(),
            kind: key.kind.clone(),
            directed: key.directed,
            since: change.time.clone(),
            certain: change.latest <= at,
            event_id: self.event_id(change.seq).to_string(),
        }
    }

    /// Relations active at Q: of `entity` (every relation when `None`),
    /// optionally only with `counterpart` and of `kind`.
    pub fn relations(
        &self,
        entity: Option<&str>,
        counterpart: Option<&str>,
        kind: Option<&str>,
        at: Instant,
    ) -> Vec<proto::Relation> {
        let wanted = |key: &RelationKey| {
            kind.is_none_or(|kind| key.kind == kind)
                && counterpart.is_none_or(|other| match entity {
                    Some(entity) => key.involves(entity) && key.counterpart(entity) == other,
                    None => key.involves(other),
                })
        };
        let active = |key: &RelationKey| {
            let change = self.deciding(self.index.relations.get(key)?, at)?;
            (change.op == Op::Begin).then(|| self.relation_view(key, change, at))
        };
        match entity {
            Some(entity) => self
                .index
                .relations_of
                .get(entity)
                .into_iter()
                .flatten()
                .filter(|key| wanted(key))
                .filter_map(active)
                .collect(),
            None => self
                .index
                .relations
                .keys()
                .filter(|key| wanted(key))
                .filter_map(active)
                .collect(),
        }
    }

    /// Attribute values in force at Q, by key.
    pub fn attributes(&self, entity: &str, at: Instant) -> Vec<proto::Attribute> {
        let Some(keys) = self.index.attributes.get(entity) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|(key, changes)| {
                let change = self.deciding(changes, at)?;
                match &change.op {
                    Op::Set(value) if !value.is_empty() => Some(proto::Attribute {
                        key: key.clone(),
                        value: value.clone(),
                        since: change.time.clone(),
                        certain: change.latest <= at,
                        event_id: self.event_id(change.seq).to_string(),
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// Every interval during which a relation between `a` and `b` (any
    /// counterpart of `a` when `b` is `None`) held, by (from, kind).
    pub fn relation_history(
        &self,
        a: &str,
        b: Option<&str>,
        kind: Option<&str>,
    ) -> Vec<proto::RelationInterval> {
        let mut intervals = Vec::new();
        let keys = self
            .index
            .relations_of
            .get(a)
            .into_iter()
            .flatten()
            .filter(|key| {
                kind.is_none_or(|kind| key.kind == kind)
                    && b.is_none_or(|b| key.counterpart(a) == b)
            });
        for key in keys {
            let mut open: Option<((Instant, u64, u32), proto::RelationInterval)> = None;
            let changes = &self.index.relations[key];
            for change in changes.iter().filter(|change| self.in_force(change.seq)) {
                match (&change.op, open.take()) {
                    (Op::Begin, None) => {
                        let interval = proto::RelationInterval {
                            kind: key.kind.clone(),
                            from: change.time.clone(),
                            to: String::new(),
                            begun_by: self.event_id(change.seq).to_string(),
                            ended_by: String::new(),
                            a: key.a.clone(),
                            b: key.b.clone(),
                            directed: key.directed,
                        };
                        open = Some((change.order(), interval));
                    }
                    (Op::End, Some((order, mut interval))) => {
                        interval.to = change.time.clone();
                        interval.ended_by = self.event_id(change.seq).to_string();
                        intervals.push((order, interval));
                    }
                    (_, still_open) => open = still_open,
                }
            }
            intervals.extend(open);
        }
        intervals.sort_by_key(|(order, _)| *order);
        intervals
            .into_iter()
            .map(|(_, interval)| interval)
            .collect()
    }

    /// Seqs of events whose valid time overlaps the window, by (earliest, seq).
    pub fn events(&self, filter: &EventFilter) -> Vec<u64> {
        let seqs: &[u64] = match &filter.entity {
            Some(entity) => self
                .index
                .timeline_of
                .get(entity)
                .map_or(&[], Vec::as_slice),
            None => &self.index.timeline,
        };
        let starts_in_time = seqs
            .partition_point(|seq| self.index.events[(*seq - 1) as usize].earliest <= filter.to);
        seqs[..starts_in_time]
            .iter()
            .copied()
            .filter(|seq| {
                let meta = &self.index.events[(*seq - 1) as usize];
                *seq <= self.as_of
                    && meta.latest >= filter.from
                    && filter.kind.as_ref().is_none_or(|kind| &meta.kind == kind)
            })
            .collect()
    }

    /// What differs between the state at `from` and at `to`: relations begun
    /// and ended, attributes set and unset, each with the event that made the
    /// difference, by (valid time, seq).
    pub fn diff(
        &self,
        from: Instant,
        to: Instant,
        entity: Option<&str>,
    ) -> Vec<proto::StateChange> {
        use proto::ChangeKind;
        let mut changes: Vec<((Instant, u64, u32), proto::StateChange)> = Vec::new();
        let keys: Box<dyn Iterator<Item = &RelationKey>> = match entity {
            Some(entity) => Box::new(self.index.relations_of.get(entity).into_iter().flatten()),
            None => Box::new(self.index.relations.keys()),
        };
        for key in keys {
            let history = &self.index.relations[key];
            let before = self.deciding(history, from);
            let after = self.deciding(history, to);
            let was_active = before.is_some_and(|change| change.op == Op::Begin);
            let is_active = after.is_some_and(|change| change.op == Op::Begin);
            let (Some(change), true) = (after, was_active != is_active) else {
                continue;
            };
            let kind = if is_active {
                ChangeKind::RelationBegun
            } else {
                ChangeKind::RelationEnded
            };
            changes.push((
                change.order(),
                proto::StateChange {
                    kind: kind as i32,
                    relation: Some(self.relation_view(key, change, to)),
                    at: change.time.clone(),
                    certain: change.latest <= to,
                    event_id: self.event_id(change.seq).to_string(),
                    ..Default::default()
                },
            ));
        }
        let entities: Box<dyn Iterator<Item = (&String, _)>> = match entity {
            Some(entity) => Box::new(self.index.attributes.get_key_value(entity).into_iter()),
            None => Box::new(self.index.attributes.iter()),
        };
        for (entity, keys) in entities {
            for (key, history) in keys {
                let value = |change: Option<&Change>| match change.map(|change| &change.op) {
                    Some(Op::Set(value)) => value.clone(),
                    _ => String::new(),
                };
                let after = self.deciding(history, to);
                let (previous, current) = (value(self.deciding(history, from)), value(after));
                let (Some(change), true) = (after, previous != current) else {
                    continue;
                };
                let kind = if current.is_empty() {
                    ChangeKind::AttributeUnset
                } else {
                    ChangeKind::AttributeSet
                };
                changes.push((
                    change.order(),
                    proto::StateChange {
                        kind: kind as i32,
                        entity: entity.clone(),
                        key: key.clone(),
                        value: current,
                        previous_value: previous,
                        at: change.time.clone(),
                        certain: change.latest <= to,
                        event_id: self.event_id(change.seq).to_string(),
                        ..Default::default()
                    },
                ));
            }
        }
        changes.sort_by_key(|(order, _)| *order);
        changes.into_iter().map(|(_, change)| change).collect()
    }
}
