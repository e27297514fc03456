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

use crate::error::{Error, Result};
use crate::index::records::EventRecord;
use crate::index::{
    keys, AttributeChange, Declared, EntityTimeline, Index, RelationChange, TimelineCache,
};
use crate::proto;
use crate::store::{LogStore, Tree};
use crate::time::Instant;
use prost::Message;
use std::collections::BTreeMap;

/// The index as known at seq `as_of`.
pub struct Snapshot<'a> {
    index: &'a Index,
    timelines: &'a TimelineCache,
    store: &'a dyn LogStore,
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
        }
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

    fn timeline<R>(&self, entity: &str, read: impl FnOnce(&EntityTimeline) -> R) -> Result<R> {
        let timeline = self.timelines.get(self.store, entity)?;
        let poisoned = || Error::Storage("a timeline lock was poisoned".into());
        if !timeline.read().map_err(|_| poisoned())?.is_settled() {
            timeline.write().map_err(|_| poisoned())?.settle();
        }
        let timeline = timeline.read().map_err(|_| poisoned())?;
        Ok(read(&timeline))
    }

    /// The change that decides one relation or attribute at Q: the last of
    /// `history` (sorted by earliest, seq, effect) that applies and is in force.
    fn deciding<'t, T>(
        &self,
        history: &'t [T],
        at: Instant,
        earliest: impl Fn(&T) -> Instant,
        seq: impl Fn(&T) -> u64,
    ) -> Option<&'t T> {
        let applicable = history.partition_point(|change| earliest(change) <= at);
        history[..applicable]
            .iter()
            .rev()
            .find(|change| self.in_force(seq(change)))
    }

    fn deciding_relation<'t>(
        &self,
        history: &'t [RelationChange],
        at: Instant,
    ) -> Option<&'t RelationChange> {
        self.deciding(history, at, |change| change.earliest, |change| change.seq)
    }

    fn deciding_attribute<'t>(
        &self,
        history: &'t [AttributeChange],
        at: Instant,
    ) -> Option<&'t AttributeChange> {
        self.deciding(history, at, |change| change.earliest, |change| change.seq)
    }

    fn relation_view(
        timeline: &EntityTimeline,
        change: &RelationChange,
        at: Instant,
    ) -> proto::Relation {
        proto::Relation {
            a: String::from(&*change.a),
            b: String::from(&*change.b),
            kind: String::from(&*change.kind),
            directed: change.directed,
            since: timeline.text(change.time).to_owned(),
            certain: change.latest <= at,
            event_id: timeline.text(change.event_id).to_owned(),
        }
    }

    /// Relations of one entity active at Q, by (kind, a, b).
    fn relations_of(
        &self,
        entity: &str,
        counterpart: Option<&str>,
        kind: Option<&str>,
        at: Instant,
    ) -> Result<Vec<proto::Relation>> {
        self.timeline(entity, |timeline| {
            timeline
                .relations
                .chunk_by(RelationChange::same_relation)
                .filter(|history| {
                    let first = &history[0];
                    kind.is_none_or(|kind| &*first.kind == kind)
                        && counterpart.is_none_or(|other| {
                            let theirs = if &*first.a == entity {
                                &first.b
                            } else {
                                &first.a
                            };
                            &**theirs == other
                        })
                })
                .filter_map(|history| self.deciding_relation(history, at))
                .filter(|change| change.begins)
                .map(|change| Snapshot::relation_view(timeline, change, at))
                .collect()
        })
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
        match (entity, counterpart) {
            (Some(entity), _) => self.relations_of(entity, counterpart, kind, at),
            (None, Some(other)) => self.relations_of(other, None, kind, at),
            (None, None) => {
                // Every relation once: from the side of its `a`.
                let mut all = Vec::new();
                for entity in self.index.declarations.keys() {
                    all.extend(
                        self.relations_of(entity, None, kind, at)?
                            .into_iter()
                            .filter(|relation| &relation.a == entity),
                    );
                }
                all.sort_by(|x, y| {
                    (&x.kind, &x.a, &x.b, x.directed).cmp(&(&y.kind, &y.a, &y.b, y.directed))
                });
                Ok(all)
            }
        }
    }

    /// Attribute values in force at Q, by key.
    pub fn attributes(&self, entity: &str, at: Instant) -> Result<Vec<proto::Attribute>> {
        self.timeline(entity, |timeline| {
            timeline
                .attributes
                .chunk_by(|x, y| x.key == y.key)
                .filter_map(|history| self.deciding_attribute(history, at))
                .filter(|change| !timeline.text(change.value).is_empty())
                .map(|change| proto::Attribute {
                    key: String::from(&*change.key),
                    value: timeline.text(change.value).to_owned(),
                    since: timeline.text(change.time).to_owned(),
                    certain: change.latest <= at,
                    event_id: timeline.text(change.event_id).to_owned(),
                })
                .collect()
        })
    }

    /// Every interval during which a relation between `a` and `b` (any
    /// counterpart of `a` when `b` is `None`) held, by (from, seq).
    pub fn relation_history(
        &self,
        a: &str,
        b: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Vec<proto::RelationInterval>> {
        self.timeline(a, |timeline| {
            let mut intervals = Vec::new();
            let wanted = |change: &RelationChange| {
                let theirs = if &*change.a == a {
                    &change.b
                } else {
                    &change.a
                };
                kind.is_none_or(|kind| &*change.kind == kind) && b.is_none_or(|b| &**theirs == b)
            };
            for history in timeline.relations.chunk_by(RelationChange::same_relation) {
                if !wanted(&history[0]) {
                    continue;
                }
                let mut open: Option<((Instant, u64, u32), proto::RelationInterval)> = None;
                for change in history.iter().filter(|change| self.in_force(change.seq)) {
                    match (change.begins, open.take()) {
                        (true, None) => {
                            let interval = proto::RelationInterval {
                                kind: change.kind.to_string(),
                                from: timeline.text(change.time).to_owned(),
                                to: String::new(),
                                begun_by: timeline.text(change.event_id).to_owned(),
                                ended_by: String::new(),
                                a: change.a.to_string(),
                                b: change.b.to_string(),
                                directed: change.directed,
                            };
                            open = Some(((change.earliest, change.seq, change.effect), interval));
                        }
                        (false, Some((order, mut interval))) => {
                            interval.to = timeline.text(change.time).to_owned();
                            interval.ended_by = timeline.text(change.event_id).to_owned();
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
        })
    }

    /// Seqs of events whose valid time overlaps the window, by (earliest, seq).
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<u64>> {
        let wanted = |seq: u64, latest: Instant, kind: &str| {
            seq <= self.as_of
                && latest >= filter.from
                && filter.kind.as_deref().is_none_or(|wanted| wanted == kind)
        };
        match &filter.entity {
            Some(entity) => self.timeline(entity, |timeline| {
                let first = filter.from.saturating_sub(timeline.max_span);
                let start = timeline
                    .events
                    .partition_point(|event| event.earliest < first);
                timeline.events[start..]
                    .iter()
                    .take_while(|event| event.earliest <= filter.to)
                    .filter(|event| wanted(event.seq, event.latest, &event.kind))
                    .map(|event| event.seq)
                    .collect()
            }),
            None => {
                let first = filter.from.saturating_sub(self.index.max_span);
                let from = keys::instant(first);
                let to = keys::prefix_end(&keys::instant(filter.to));
                let mut seqs = Vec::new();
                for (key, value) in self.store.scan_derived(Tree::Timeline, &from, &to)? {
                    let record = EventRecord::decode(value.as_slice())
                        .map_err(|_| Error::DataLoss("a timeline record is damaged".into()))?;
                    let seq = keys::decode_seq(&key[8..]);
                    if wanted(seq, record.latest, &record.kind) {
                        seqs.push(seq);
                    }
                }
                Ok(seqs)
            }
        }
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
        let entities: Vec<&str> = match entity {
            Some(entity) => vec![entity],
            None => self.index.declarations.keys().map(String::as_str).collect(),
        };
        let mut changes: BTreeMap<(Instant, u64, u32, String), proto::StateChange> =
            BTreeMap::new();
        for entity in entities {
            self.timeline(entity, |timeline| {
                self.diff_timeline(timeline, entity, from, to, &mut changes);
            })?;
        }
        Ok(changes.into_values().collect())
    }

    fn diff_timeline(
        &self,
        timeline: &EntityTimeline,
        entity: &str,
        from: Instant,
        to: Instant,
        changes: &mut BTreeMap<(Instant, u64, u32, String), proto::StateChange>,
    ) {
        use proto::ChangeKind;
        for history in timeline.relations.chunk_by(RelationChange::same_relation) {
            let was_active = self
                .deciding_relation(history, from)
                .is_some_and(|change| change.begins);
            let after = self.deciding_relation(history, to);
            let is_active = after.is_some_and(|change| change.begins);
            let (Some(change), true) = (after, was_active != is_active) else {
                continue;
            };
            let kind = if is_active {
                ChangeKind::RelationBegun
            } else {
                ChangeKind::RelationEnded
            };
            let name = format!(
                "{}\0{}\0{}\0{}",
                change.kind, change.a, change.b, change.directed
            );
            changes.insert(
                (change.earliest, change.seq, change.effect, name),
                proto::StateChange {
                    kind: kind as i32,
                    relation: Some(Snapshot::relation_view(timeline, change, to)),
                    at: timeline.text(change.time).to_owned(),
                    certain: change.latest <= to,
                    event_id: timeline.text(change.event_id).to_owned(),
                    ..Default::default()
                },
            );
        }
        for history in timeline.attributes.chunk_by(|x, y| x.key == y.key) {
            let value = |change: Option<&AttributeChange>| {
                change
                    .map(|change| timeline.text(change.value).to_owned())
                    .unwrap_or_default()
            };
            let after = self.deciding_attribute(history, to);
            let (previous, current) = (value(self.deciding_attribute(history, from)), value(after));
            let (Some(change), true) = (after, previous != current) else {
                continue;
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
                    change.effect,
                    format!("{entity}\0{}", change.key),
                ),
                proto::StateChange {
                    kind: kind as i32,
                    entity: entity.to_string(),
                    key: change.key.to_string(),
                    value: current,
                    previous_value: previous,
                    at: timeline.text(change.time).to_owned(),
                    certain: change.latest <= to,
                    event_id: timeline.text(change.event_id).to_owned(),
                    ..Default::default()
                },
            );
        }
    }
}
