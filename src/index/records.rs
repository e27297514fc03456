//! What the derived trees hold, and how one log entry becomes writes to
//! them. Everything here is a pure function of the log: rebuilding the
//! trees from the log gives the same bytes (that is what `verify` checks).

use super::keys;
use crate::model::{Change, Event};
use crate::proto;
use crate::store::{StoredEntry, Tree, Write};
use prost::Message;

/// An event as one entity's log sees it (`entity_log` tree, key
/// `entity ++ 0 ++ seq`): when it happened, and its changes to relations
/// and attributes touching that entity. One record per (entity, event)
/// keeps the writes per event few.
#[derive(Clone, PartialEq, Message)]
pub struct EntityRecord {
    #[prost(sint64, tag = "1")]
    pub earliest: i64,
    #[prost(sint64, tag = "2")]
    pub latest: i64,
    #[prost(string, tag = "3")]
    pub kind: String,
    #[prost(string, tag = "4")]
    pub event_id: String,
    #[prost(message, repeated, tag = "5")]
    pub changes: Vec<ChangeRecord>,
}

/// One change to a relation or an attribute.
#[derive(Clone, PartialEq, Message)]
pub struct ChangeRecord {
    #[prost(uint32, tag = "1")]
    pub effect: u32,
    #[prost(sint64, tag = "2")]
    pub earliest: i64,
    #[prost(sint64, tag = "3")]
    pub latest: i64,
    /// The valid time as the event wrote it.
    #[prost(string, tag = "4")]
    pub time: String,
    #[prost(enumeration = "Op", tag = "5")]
    pub op: i32,
    /// The relation kind, or the attribute key.
    #[prost(string, tag = "6")]
    pub kind: String,
    #[prost(string, tag = "7")]
    pub a: String,
    #[prost(string, tag = "8")]
    pub b: String,
    #[prost(bool, tag = "9")]
    pub directed: bool,
    /// The attribute value (empty unsets).
    #[prost(string, tag = "10")]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Op {
    Unspecified = 0,
    Begin = 1,
    End = 2,
    Set = 3,
}

/// An event in valid-time order (`timeline` tree; the key holds earliest
/// and seq).
#[derive(Clone, PartialEq, Message)]
pub struct EventRecord {
    #[prost(sint64, tag = "1")]
    pub latest: i64,
    #[prost(string, tag = "2")]
    pub kind: String,
}

/// A declaration (`declarations` tree, key `entity ++ 0 ++ seq ++ effect`).
#[derive(Clone, PartialEq, Message)]
pub struct DeclarationRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(enumeration = "proto::EntityType", tag = "2")]
    pub entity_type: i32,
    #[prost(string, repeated, tag = "3")]
    pub aliases: Vec<String>,
    #[prost(string, tag = "4")]
    pub event_id: String,
}

/// Keys of the `meta` tree.
pub const META_INDEXED_SEQ: &[u8] = b"indexed_seq";

/// The derived writes for one log entry. `corrected_seq` is the seq of the
/// event it corrects, if any.
pub fn writes_for(entry: &StoredEntry, event: &Event, corrected_seq: Option<u64>) -> Vec<Write> {
    let seq = entry.seq;
    let event_id = entry.event.id.as_str();
    let mut writes = Vec::with_capacity(8);
    writes.push((
        Tree::Ids,
        event_id.as_bytes().to_vec(),
        keys::seq(seq).to_vec(),
    ));
    let timeline = EventRecord {
        latest: event.latest(),
        kind: event.kind.clone(),
    };
    writes.push((
        Tree::Timeline,
        keys::timeline_event(event.earliest(), seq),
        timeline.encode_to_vec(),
    ));

    // Each entity's view of the event: the event, plus its changes there.
    let mut per_entity: Vec<(&str, EntityRecord)> = event
        .entities()
        .into_iter()
        .map(|entity| {
            let record = EntityRecord {
                earliest: event.earliest(),
                latest: event.latest(),
                kind: event.kind.clone(),
                event_id: event_id.to_string(),
                changes: Vec::new(),
            };
            (entity, record)
        })
        .collect();
    let mut add = |entity: &str, change: ChangeRecord| {
        if let Some((_, record)) = per_entity.iter_mut().find(|(name, _)| *name == entity) {
            record.changes.push(change);
        }
    };
    for (position, effect) in event.effects.iter().enumerate() {
        let position = position as u32;
        let mut change = ChangeRecord {
            effect: position,
            earliest: effect.time.earliest(),
            latest: effect.time.latest(),
            time: effect.time.text().to_string(),
            ..Default::default()
        };
        match &effect.change {
            Change::Declare(declaration) => {
                let value = DeclarationRecord {
                    name: declaration.name.clone(),
                    entity_type: declaration.entity_type as i32,
                    aliases: declaration.aliases.clone(),
                    event_id: event_id.to_string(),
                };
                writes.push((
                    Tree::Declarations,
                    keys::entity_effect(&declaration.id, seq, position),
                    value.encode_to_vec(),
                ));
            }
            Change::Set { entity, key, value } => {
                change.op = Op::Set as i32;
                change.kind = key.clone();
                change.value = value.clone();
                add(entity, change);
            }
            Change::Begin(key) | Change::End(key) => {
                change.op = if matches!(effect.change, Change::Begin(_)) {
                    Op::Begin as i32
                } else {
                    Op::End as i32
                };
                change.kind = key.kind.clone();
                change.a = key.a.clone();
                change.b = key.b.clone();
                change.directed = key.directed;
                add(&key.a, change.clone());
                add(&key.b, change);
            }
        }
    }
    for (entity, record) in per_entity {
        writes.push((
            Tree::EntityLog,
            keys::entity_seq(entity, seq),
            record.encode_to_vec(),
        ));
    }
    if let Some(target) = corrected_seq {
        writes.push((
            Tree::Superseded,
            keys::seq(target).to_vec(),
            keys::seq(seq).to_vec(),
        ));
    }
    writes.push((
        Tree::Meta,
        META_INDEXED_SEQ.to_vec(),
        keys::seq(seq).to_vec(),
    ));
    writes
}
