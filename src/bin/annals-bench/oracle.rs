//! A naive in-memory replay of the workload: the answers Q1–Q4 must have,
//! computed straight from the generated events with none of the server's
//! machinery. The benchmark refuses to time a server (or a SQL schema) that
//! disagrees with it.
//!
//! Semantics (WORKLOAD.md, "The questions"): a change applies at day T when
//! its day is <= T; among the changes to one relation or attribute, the
//! latest by (day, seq, effect) decides; a start's `valid_to` is an `end`
//! change of the same event (effect 1) at that day.

use crate::workload::{Op, WorkloadEvent, ENTITIES};
use std::collections::BTreeMap;

/// One begin/end of a relation, seen from one of its two entities.
#[derive(Clone, Copy, Debug)]
struct RelationChange {
    day: u32,
    /// Workload seq.
    seq: u64,
    effect: u8,
    other: u16,
    kind: u8,
    begin: bool,
}

#[derive(Clone, Copy, Debug)]
struct AttributeChange {
    day: u32,
    seq: u64,
    key: u8,
    value: u16,
}

/// One event naming an entity: its valid span in days and its workload seq.
#[derive(Clone, Copy, Debug)]
struct Mention {
    earliest: u32,
    latest: u32,
    seq: u64,
}

/// An active relation of X.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActiveRelation {
    pub other: u16,
    /// Index into `REL_KINDS`.
    pub kind: u8,
    /// Day of the begin that decides it.
    pub since: u32,
    /// Workload seq of the event that began it.
    pub seq: u64,
}

/// An attribute value in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttributeValue {
    /// Index into `ATTR_KEYS`.
    pub key: u8,
    pub value: u16,
    pub since: u32,
    pub seq: u64,
}

pub struct Oracle {
    events: Vec<WorkloadEvent>,
    /// Indexed by entity id (0 unused); each sorted by (day, seq, effect).
    relations: Vec<Vec<RelationChange>>,
    attributes: Vec<Vec<AttributeChange>>,
    /// Sorted by (earliest, seq).
    mentions: Vec<Vec<Mention>>,
}

impl Oracle {
    pub fn new(events: Vec<WorkloadEvent>) -> Oracle {
        let slots = ENTITIES as usize + 1;
        let mut relations = vec![Vec::new(); slots];
        let mut attributes = vec![Vec::new(); slots];
        let mut mentions = vec![Vec::new(); slots];
        for event in &events {
            let (subject, object) = (event.subject, event.object);
            let latest = match event.op {
                Op::Occur => event.valid_to.unwrap_or(event.valid_from),
                _ => event.valid_from,
            };
            let mention = Mention {
                earliest: event.valid_from,
                latest,
                seq: event.seq,
            };
            mentions[subject as usize].push(mention);
            if object != 0 {
                mentions[object as usize].push(mention);
            }
            let mut relation = |day: u32, effect: u8, begin: bool| {
                for (this, other) in [(subject, object), (object, subject)] {
                    relations[this as usize].push(RelationChange {
                        day,
                        seq: event.seq,
                        effect,
                        other,
                        kind: event.detail,
                        begin,
                    });
                }
            };
            match event.op {
                Op::Start => {
                    relation(event.valid_from, 0, true);
                    if let Some(valid_to) = event.valid_to {
                        relation(valid_to, 1, false);
                    }
                }
                Op::End => relation(event.valid_from, 0, false),
                Op::Set => attributes[subject as usize].push(AttributeChange {
                    day: event.valid_from,
                    seq: event.seq,
                    key: event.detail,
                    value: event.attr_number,
                }),
                Op::Occur => {}
            }
        }
        for changes in &mut relations {
            changes.sort_by_key(|change| (change.day, change.seq, change.effect));
        }
        for changes in &mut attributes {
            changes.sort_by_key(|change| (change.day, change.seq));
        }
        for list in &mut mentions {
            list.sort_by_key(|mention| (mention.earliest, mention.seq));
        }
        Oracle {
            events,
            relations,
            attributes,
            mentions,
        }
    }

    pub fn events(&self) -> &[WorkloadEvent] {
        &self.events
    }

    pub fn len(&self) -> u64 {
        self.events.len() as u64
    }

    /// By workload seq (1-based).
    pub fn event(&self, seq: u64) -> &WorkloadEvent {
        &self.events[(seq - 1) as usize]
    }

    /// Q1/Q3: relations of `entity` active at day `at`, counting only events
    /// with workload seq <= `max_seq`; by (other, kind).
    pub fn relations(&self, entity: u16, at: u32, max_seq: u64) -> Vec<ActiveRelation> {
        let changes = &self.relations[entity as usize];
        let applicable = changes.partition_point(|change| change.day <= at);
        let mut latest: BTreeMap<(u16, u8), &RelationChange> = BTreeMap::new();
        for change in changes[..applicable]
            .iter()
            .filter(|change| change.seq <= max_seq)
        {
            // Sorted by (day, seq, effect): a later one always wins.
            latest.insert((change.other, change.kind), change);
        }
        latest
            .into_values()
            .filter(|change| change.begin)
            .map(|change| ActiveRelation {
                other: change.other,
                kind: change.kind,
                since: change.day,
                seq: change.seq,
            })
            .collect()
    }

    /// Q2: attribute values of `entity` in force at day `at`, by key index.
    pub fn attributes(&self, entity: u16, at: u32) -> Vec<AttributeValue> {
        let changes = &self.attributes[entity as usize];
        let applicable = changes.partition_point(|change| change.day <= at);
        let mut latest: BTreeMap<u8, &AttributeChange> = BTreeMap::new();
        for change in &changes[..applicable] {
            latest.insert(change.key, change);
        }
        latest
            .into_values()
            .map(|change| AttributeValue {
                key: change.key,
                value: change.value,
                since: change.day,
                seq: change.seq,
            })
            .collect()
    }

    /// Q4: the first `limit` events naming `entity` whose valid span
    /// overlaps days [from, to], by (valid_from, seq); workload seqs.
    /// `with_declaration`: annals also lists the declaration (seq 1, dated
    /// 1900-01-01) among the events naming every entity; returned as seq 0.
    pub fn events_in_window(
        &self,
        entity: u16,
        from: u32,
        to: u32,
        limit: usize,
        with_declaration: bool,
    ) -> Vec<u64> {
        let list = &self.mentions[entity as usize];
        let starts = list.partition_point(|mention| mention.earliest <= to);
        let declaration = (with_declaration && from == 0).then_some(0);
        declaration
            .into_iter()
            .chain(
                list[..starts]
                    .iter()
                    .filter(|mention| mention.latest >= from)
                    .map(|mention| mention.seq),
            )
            .take(limit)
            .collect()
    }
}
