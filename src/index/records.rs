//! What the derived trees hold, and how one log entry becomes writes to
//! them. Everything here is a pure function of the log: rebuilding the
//! trees from the log gives the same bytes (that is what `verify` checks).

use super::keys;
use crate::model::{Change, Event};
use crate::proto;
use crate::store::{StoredEntry, Tree, Write};
use prost::Message;

/// One change to a relation or an attribute, stored under each entity it
/// touches (`changes` tree, key `entity ++ 0 ++ seq ++ effect`).
#[derive(Clone, PartialEq, Message)]
pub struct ChangeRecord {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(uint32, tag = "2")]
    pub effect: u32,
    #[prost(sint64, tag = "3")]
    pub earliest: i64,
    #[prost(sint64, tag = "4")]
    pub latest: i64,
    /// The valid time as the event wrote it.
    #[prost(string, tag = "5")]
    pub time: String,
    #[prost(string, tag = "6")]
    pub event_id: String,
    #[prost(enumeration = "Op", tag = "7")]
    pub op: i32,
    /// The relation kind, or the attribute key.
    #[prost(string, tag = "8")]
    pub kind: String,
    #[prost(string, tag = "9")]
    pub a: String,
    #[prost(string, tag = "10")]
    pub b: String,
    #[prost(bool, tag = "11")]
    pub directed: bool,
    /// The attribute value (empty unsets).
    #[prost(string, tag = "12")]
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

/// An event in valid-time order (`timeline` and `entity_events` trees; the
/// key holds earliest and seq).
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
    let mut writes = Vec::new();
    writes.push((
        Tree::Ids,
        event_id.as_bytes().to_vec(),
        keys::seq(seq).to_vec(),
    ));
    let event_record = EventRecord {
        latest: event.latest(),
        kind: event.kind.clone(),
    }
    .encode_to_vec();
    writes.push((
        Tree::Timeline,
        keys::timeline_event(event.earliest(), seq),
        event_record.clone(),
    ));
    for entity in event.entities() {
        writes.push((
            Tree::EntityEvents,
            keys::entity_event(entity, event.earliest(), seq),
            event_record.clone(),
        ));
    }
    for (position, effect) in event.effects.iter().enumerate() {
        let position = position as u32;
        let mut record = ChangeRecord {
            seq,
            effect: position,
            earliest: effect.time.earliest(),
            latest: effect.time.latest(),
            time: effect.time.text().to_string(),
            event_id: event_id.to_string(),
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
                record.op = Op::Set as i32;
                record.kind = key.clone();
                record.value = value.clone();
                writes.push((
                    Tree::Changes,
                    keys::entity_effect(entity, seq, position),
                    record.encode_to_vec(),
                ));
            }
            Change::Begin(key) | Change::End(key) => {
                record.op = if matches!(effect.change, Change::Begin(_)) {
                    Op::Begin as i32
                } else {
                    Op::End as i32
                };
                record.kind = key.kind.clone();
                record.a = key.a.clone();
                record.b = key.b.clone();
                record.directed = key.directed;
                let value = record.encode_to_vec();
                for entity in [&key.a, &key.b] {
                    writes.push((
                        Tree::Changes,
                        keys::entity_effect(entity, seq, position),
                        value.clone(),
                    ));
                }
            }
        }
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
