//! Point-in-time queries: the state at a valid-time instant Q, as known at
//! log seq S. No tonic here; reads go through the index and its timelines.
//!
//! A change applies at Q when its earliest instant is <= Q, and is `certain`
//! when its latest instant is <= Q too. Among the changes to one relation or
//! attribute that apply, the latest by (earliest instant, seq) decides.
//! Entries past S are invisible, and so are entries withdrawn by a
//! correction recorded at or before S.
//!
//! Results are expressed in the wire's view types (`proto::Relation`, …):
//! they are plain data, and a second copy of each would add nothing.

use crate::error::Result;
use crate::index::{keys, Change, Declared, EventRuns, History, Index, Name, Part, TimelineCache};
use crate::proto;
use crate::store::LogStore;
use crate::time::Instant;
use crate::wire::{RelationFields, RelationWriter};
use std::collections::BTreeMap;
use std::ops::Bound;

mod events;
mod history;
pub use events::{Counted, EventFilter, Window};

/// The index as known at seq `as_of`.
pub struct Snapshot<'a> {
    index: &'a Index,
    timelines: &'a TimelineCache,
    store: &'a dyn LogStore,
    as_of: u64,
    /// The event runs, and the durable seq the store holds every derived
    /// write up to (a reader's snapshot; none for the writer's own).
    runs: Option<(&'a EventRuns, u64)>,
}

impl<'a> Snapshot<'a> {
    pub fn new(
        index: &'a Index,
        timelines: &'a TimelineCache,
        store: &'a dyn LogStore,
        as_of: u64,
    ) -> Snapshot<'a> {
        Snapshot {
            index,
            timelines,
            store,
            as_of: as_of.min(index.last_seq()),
            runs: None,
        }
    }

    /// Lets the event walks use (and build) runs: `durable` is a seq
    /// every derived write up to which is in the store.
    pub fn with_runs(mut self, runs: &'a EventRuns, durable: u64) -> Snapshot<'a> {
        self.runs = Some((runs, durable));
        self
    }

    /// The seq S this snapshot is as of.
    pub fn as_of(&self) -> u64 {
        self.as_of
    }

    /// Is the entry with this seq part of what was known at S, and not
    /// withdrawn by then?
    fn in_force(&self, seq: u64) -> bool {
        seq <= self.as_of
            && (self.index.superseded.is_empty()
                || self
                    .index
                    .superseded
                    .get(&seq)
                    .is_none_or(|correction| *correction > self.as_of))
    }

    /// The seq of the correction that withdrew `seq`, if known at S.
    pub fn superseded_by(&self, seq: u64) -> Option<u64> {
        if self.index.superseded.is_empty() {
            return None;
        }
        let correction = *self.index.superseded.get(&seq)?;
        (correction <= self.as_of).then_some(correction)
    }

    /// The seq of an event id, if recorded by S.
    pub fn seq_of(&self, id: &str) -> Result<Option<u64>> {
        Ok(crate::index::seq_of(self.store, id)?.filter(|seq| *seq <= self.as_of))
    }

    fn declaration(&self, id: &str) -> Option<&'a Declared> {
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
            declared_by: record.event_id.clone(),
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

    /// Walks `entity`'s relations (or attributes) group by group.
    fn walk(
        &self,
        entity: &str,
        part: Part,
        visit: &mut dyn FnMut(Name, History) -> Result<bool>,
    ) -> Result<()> {
        self.timelines
            .walk(self.store, entity, part, Bound::Unbounded, visit)
    }

    /// The change that decides one relation or attribute at Q: the last of
    /// `history` (sorted by earliest, seq, effect) that applies and is in force.
    fn deciding<'t>(&self, history: &'t [Change], at: Instant) -> Option<&'t Change> {
        let applicable = history.partition_point(|change| change.earliest <= at);
        history[..applicable]
            .iter()
            .rev()
            .find(|change| self.in_force(change.seq))
    }

    fn relation_view(
        name: Name,
        history: History,
        change: &Change,
        at: Instant,
    ) -> proto::Relation {
        proto::Relation {
            a: name.a.to_owned(),
            b: name.b.to_owned(),
            kind: name.kind.to_owned(),
            directed: name.directed,
            since: history.time(change).into_owned(),
            certain: change.latest() <= at,
            event_id: history.event_id(change).into_owned(),
        }
    }

    /// Relations of one entity active at Q, by (kind, a, b, directed).
    fn relations_of(
        &self,
        entity: &str,
        counterpart: Option<&str>,
        kind: Option<&str>,
        at: Instant,
        relations: &mut Vec<proto::Relation>,
    ) -> Result<()> {
        self.active_relations(
            entity,
            counterpart,
            kind,
            at,
            None,
            &mut |name, history, change| {
                relations.push(Snapshot::relation_view(*name, *history, change, at));
                Ok(true)
            },
        )
    }

    /// Calls `visit` with each relation of `entity` active at `at` (only
    /// with `counterpart` and of `kind`, when given) and the change that
    /// began it, by group key, after the group `after`, until it returns
    /// `false`.
    #[allow(clippy::too_many_arguments)]
    fn active_relations(
        &self,
        entity: &str,
        counterpart: Option<&str>,
        kind: Option<&str>,
        at: Instant,
        after: Option<&[u8]>,
        visit: &mut dyn FnMut(&Name, &History, &Change) -> Result<bool>,
    ) -> Result<()> {
        if let (Some(other), Some(kind), None) = (counterpart, kind, after) {
            return self.active_between(entity, other, kind, at, visit);
        }
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.timelines.walk(
            self.store,
            entity,
            Part::Relations,
            from,
            &mut |name, history| {
                let theirs = if name.a == entity { name.b } else { name.a };
                let wanted = kind.is_none_or(|kind| name.kind == kind)
                    && counterpart.is_none_or(|other| theirs == other);
                if !wanted {
                    return Ok(true);
                }
                match self.deciding(history.changes, at) {
                    Some(change) if change.begins() => visit(&name, &history, change),
                    _ => Ok(true),
                }
            },
        )
    }

    /// `active_relations` of one kind between two entities: only their
    /// groups are read, (kind, a, b) and (kind, b, a), each from its
    /// first change.
    fn active_between(
        &self,
        entity: &str,
        other: &str,
        kind: &str,
        at: Instant,
        visit: &mut dyn FnMut(&Name, &History, &Change) -> Result<bool>,
    ) -> Result<()> {
        let mut pairs = [(entity, other), (other, entity)];
        pairs.sort();
        let pairs = if entity == other {
            &pairs[..1]
        } else {
            &pairs[..]
        };
        for (a, b) in pairs {
            let first = keys::relation_group(kind, a, b, false);
            let mut going = true;
            self.timelines.walk(
                self.store,
                entity,
                Part::Relations,
                Bound::Included(&first),
                &mut |name, history| {
                    if name.kind != kind || name.a != *a || name.b != *b {
                        return Ok(false);
                    }
                    match self.deciding(history.changes, at) {
                        Some(change) if change.begins() => {
                            going = visit(&name, &history, change)?;
                            Ok(going)
                        }
                        _ => Ok(true),
                    }
                },
            )?;
            if !going {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` relations of one entity active at Q, after the
    /// relation whose group key (`keys::relation_group`) is `after`,
    /// encoded straight into `out` (see `wire`): no
    /// `proto::Relation` is built. Returns the group key of the last one
    /// written when more follow it (the next page's `after`).
    #[allow(clippy::too_many_arguments)]
    pub fn relations_page_encoded(
        &self,
        entity: &str,
        counterpart: Option<&str>,
        kind: Option<&str>,
        at: Instant,
        after: Option<&[u8]>,
        limit: usize,
        out: &mut RelationWriter,
    ) -> Result<Option<Vec<u8>>> {
        let mut last: Option<Vec<u8>> = None;
        let mut more = false;
        let mut found = 0;
        let (mut time, mut id) = ([0; 36], [0; 36]);
        self.active_relations(
            entity,
            counterpart,
            kind,
            at,
            after,
            &mut |name, history, change| {
                if found == limit {
                    more = true;
                    return Ok(false);
                }
                out.push(&RelationFields {
                    a: name.a,
                    b: name.b,
                    kind: name.kind,
                    directed: name.directed,
                    since: history.time_bytes(change, &mut time),
                    certain: change.latest() <= at,
                    event_id: history.event_id_bytes(change, &mut id),
                });
                found += 1;
                if found == limit {
                    last = Some(keys::relation_group(
                        name.kind,
                        name.a,
                        name.b,
                        name.directed,
                    ));
                }
                Ok(true)
            },
        )?;
        Ok(last.filter(|_| more))
    }

    /// Relations active at Q: of `entity` (every relation when `None`),
    /// optionally only with `counterpart` and of `kind`, by (kind, a, b).
    pub fn relations(
        &self,
        entity: Option<&str>,
        counterpart: Option<&str>,
        kind: Option<&str>,
        at: Instant,
    ) -> Result<Vec<proto::Relation>> {
        let mut relations = Vec::new();
        match (entity, counterpart) {
            (Some(entity), _) => {
                self.relations_of(entity, counterpart, kind, at, &mut relations)?
            }
            (None, Some(other)) => self.relations_of(other, None, kind, at, &mut relations)?,
            (None, None) => {
                // Every relation once: from the side of its `a`.
                let mut of_entity = Vec::new();
                for entity in self.index.declarations.keys() {
                    self.relations_of(entity, None, kind, at, &mut of_entity)?;
                    relations.extend(of_entity.drain(..).filter(|relation| &relation.a == entity));
                }
                relations.sort_by(|x, y| {
                    (&x.kind, &x.a, &x.b, x.directed).cmp(&(&y.kind, &y.a, &y.b, y.directed))
                });
            }
        }
        Ok(relations)
    }

    /// Attribute values in force at Q, by key.
    pub fn attributes(&self, entity: &str, at: Instant) -> Result<Vec<proto::Attribute>> {
        self.attributes_keyed(entity, None, at)
    }

    /// The value of one attribute in force at Q, if any.
    pub fn attribute(
        &self,
        entity: &str,
        key: &str,
        at: Instant,
    ) -> Result<Option<proto::Attribute>> {
        Ok(self.attributes_keyed(entity, Some(key), at)?.pop())
    }

    /// Attribute values in force at Q (only `key`'s, when given, read from
    /// its group alone), by key.
    fn attributes_keyed(
        &self,
        entity: &str,
        key: Option<&str>,
        at: Instant,
    ) -> Result<Vec<proto::Attribute>> {
        let mut attributes = Vec::new();
        // One key: read from its group on, to its end.
        let group = key.map(keys::attribute_group);
        let from = group.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let visit = &mut |name: Name, history: History| {
            if key.is_some_and(|key| key != name.kind) {
                return Ok(false);
            }
            if let Some(change) = self.deciding(history.changes, at) {
                let value = history.value(change);
                if !value.is_empty() {
                    attributes.push(proto::Attribute {
                        key: name.kind.to_owned(),
                        value: value.to_owned(),
                        since: history.time(change).into_owned(),
                        certain: change.latest() <= at,
                        event_id: history.event_id(change).into_owned(),
                    });
                }
            }
            Ok(true)
        };
        self.timelines
            .walk(self.store, entity, Part::Attributes, from, visit)?;
        Ok(attributes)
    }

    /// What differs between the state at `from` and at `to`: relations begun
    /// and ended, attributes set and unset, each with the event that made the
    /// difference, by (valid time, seq).
    pub fn diff(
        &self,
        from: Instant,
        to: Instant,
        entity: Option<&str>,
    ) -> Result<Vec<proto::StateChange>> {
        use proto::ChangeKind;
        let entities: Vec<&str> = match entity {
            Some(entity) => vec![entity],
            None => self.index.declarations.keys().map(String::as_str).collect(),
        };
        let mut changes: BTreeMap<(Instant, u64, u32, String), proto::StateChange> =
            BTreeMap::new();
        for entity in entities {
            self.walk(entity, Part::Relations, &mut |name, history| {
                let was_active = self
                    .deciding(history.changes, from)
                    .is_some_and(Change::begins);
                let after = self.deciding(history.changes, to);
                let is_active = after.is_some_and(Change::begins);
                let (Some(change), true) = (after, was_active != is_active) else {
                    return Ok(true);
                };
                let kind = if is_active {
                    ChangeKind::RelationBegun
                } else {
                    ChangeKind::RelationEnded
                };
                let key = format!("{}\0{}\0{}\0{}", name.kind, name.a, name.b, name.directed);
                changes.insert(
                    (change.earliest, change.seq, change.effect(), key),
                    proto::StateChange {
                        kind: kind as i32,
                        relation: Some(Snapshot::relation_view(name, history, change, to)),
                        at: history.time(change).into_owned(),
                        certain: change.latest() <= to,
                        event_id: history.event_id(change).into_owned(),
                        ..Default::default()
                    },
                );
                Ok(true)
            })?;
            self.walk(entity, Part::Attributes, &mut |name, history| {
                let value = |change: Option<&Change>| {
                    change
                        .map(|change| history.value(change).to_owned())
                        .unwrap_or_default()
                };
                let after = self.deciding(history.changes, to);
                let (previous, current) =
                    (value(self.deciding(history.changes, from)), value(after));
                let (Some(change), true) = (after, previous != current) else {
                    return Ok(true);
                };
                let kind = if current.is_empty() {
                    ChangeKind::AttributeUnset
                } else {
                    ChangeKind::AttributeSet
                };
                changes.insert(
                    (
                        change.earliest,
                        change.seq,
                        change.effect(),
                        format!("{entity}\0{}", name.kind),
                    ),
                    proto::StateChange {
                        kind: kind as i32,
                        entity: entity.to_string(),
                        key: name.kind.to_owned(),
                        value: current,
                        previous_value: previous,
                        at: history.time(change).into_owned(),
                        certain: change.latest() <= to,
                        event_id: history.event_id(change).into_owned(),
                        ..Default::default()
                    },
                );
                Ok(true)
            })?;
        }
        Ok(changes.into_values().collect())
    }
}
