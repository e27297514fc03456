//! What the derived trees hold, and how one log entry becomes writes to
//! them. Everything here is a pure function of the log: rebuilding the
//! trees from the log gives the same bytes (that is what `verify` checks).
//!
//! The values a query reads in bulk (`changes`, `mentions`, `timeline`) are
//! laid out by hand, a few length-prefixed fields each, so that a scan reads
//! them in place without decoding into owned strings; declarations, read
//! once at open, are protobuf.

use super::keys::{self, Part};
use crate::error::{Error, Result};
use crate::model::{Change, Event};
use crate::proto;
use crate::store::{StoredEntry, Tree, Write};
use crate::time::Instant;
use prost::encoding::{decode_varint, encode_varint};
use prost::Message;

/// What a change does to its relation or attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    Begin = 1,
    End = 2,
    Set = 3,
}

impl Op {
    fn from_byte(byte: u8) -> Option<Op> {
        match byte {
            1 => Some(Op::Begin),
            2 => Some(Op::End),
            3 => Some(Op::Set),
            _ => None,
        }
    }
}

/// The value of a `changes` key: `op, latest, time, event id, value`.
/// Every field borrows the stored bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeValue<'a> {
    pub op: Op,
    pub latest: Instant,
    /// The valid time as the event wrote it.
    pub time: &'a str,
    pub event_id: &'a str,
    /// The attribute's value (empty unsets; always empty for relations).
    pub value: &'a str,
}

impl ChangeValue<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(12 + self.time.len() + self.event_id.len() + self.value.len());
        bytes.push(self.op as u8);
        bytes.extend_from_slice(&keys::instant(self.latest));
        for text in [self.time, self.event_id] {
            encode_varint(text.len() as u64, &mut bytes);
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.extend_from_slice(self.value.as_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<ChangeValue<'_>> {
        let damaged = || Error::DataLoss("a change record of the index is damaged".into());
        let (&op, mut rest) = bytes.split_first().ok_or_else(damaged)?;
        let op = Op::from_byte(op).ok_or_else(damaged)?;
        if rest.len() < 8 {
            return Err(damaged());
        }
        let latest = keys::decode_instant(&rest[..8]);
        rest = &rest[8..];
        let time = take_text(&mut rest).ok_or_else(damaged)?;
        let event_id = take_text(&mut rest).ok_or_else(damaged)?;
        let value = std::str::from_utf8(rest).map_err(|_| damaged())?;
        Ok(ChangeValue {
            op,
            latest,
            time,
            event_id,
            value,
        })
    }
}

/// Takes one varint-length-prefixed text off the front of `bytes`.
fn take_text<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let mut cursor = *bytes;
    let len = usize::try_from(decode_varint(&mut cursor).ok()?).ok()?;
    if cursor.len() < len {
        return None;
    }
    let (text, rest) = cursor.split_at(len);
    *bytes = rest;
    std::str::from_utf8(text).ok()
}

/// The value of a `mentions` or `timeline` key: when the event ends, and
/// its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventValue<'a> {
    pub latest: Instant,
    pub kind: &'a str,
}

impl EventValue<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + self.kind.len());
        bytes.extend_from_slice(&keys::instant(self.latest));
        bytes.extend_from_slice(self.kind.as_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<EventValue<'_>> {
        let damaged = || Error::DataLoss("an event record of the index is damaged".into());
        if bytes.len() < 8 {
            return Err(damaged());
        }
        Ok(EventValue {
            latest: keys::decode_instant(&bytes[..8]),
            kind: std::str::from_utf8(&bytes[8..]).map_err(|_| damaged())?,
        })
    }
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
/// `span:` ++ entity → the longest span of an event naming the entity.
pub const META_SPAN_PREFIX: &[u8] = b"span:";

/// The `meta` key of an entity's longest event span.
pub fn span_key(entity: &str) -> Vec<u8> {
    let mut key = META_SPAN_PREFIX.to_vec();
    key.extend_from_slice(entity.as_bytes());
    key
}

/// The derived writes for one log entry. `corrected_seq` is the seq of the
/// event it corrects, if any. (The indexed seq and the longest spans are
/// the caller's: they depend on what came before.)
pub fn writes_for(entry: &StoredEntry, event: &Event, corrected_seq: Option<u64>) -> Vec<Write> {
    let seq = entry.seq;
    let event_id = entry.event.id.as_str();
    let entities = event.entities();
    let mut writes = Vec::with_capacity(4 + entities.len() + 2 * event.effects.len());
    writes.push((
        Tree::Ids,
        event_id.as_bytes().to_vec(),
        keys::seq(seq).to_vec(),
    ));
    let span = EventValue {
        latest: event.latest(),
        kind: &event.kind,
    }
    .encode();
    writes.push((
        Tree::Timeline,
        keys::timeline_event(event.earliest(), seq),
        span.clone(),
    ));
    for entity in entities {
        writes.push((
            Tree::Mentions,
            keys::mention(entity, event.earliest(), seq),
            span.clone(),
        ));
    }

    for (position, effect) in event.effects.iter().enumerate() {
        let position = position as u32;
        let time = &effect.time;
        let mut change = |entity: &str, part: Part, group: &[u8], op: Op, value: &str| {
            let record = ChangeValue {
                op,
                latest: time.latest(),
                time: time.text(),
                event_id,
                value,
            };
            writes.push((
                Tree::Changes,
                keys::change(entity, part, group, time.earliest(), seq, position),
                record.encode(),
            ));
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
                let group = keys::attribute_group(key);
                change(entity, Part::Attributes, &group, Op::Set, value);
            }
            Change::Begin(key) | Change::End(key) => {
                let op = if matches!(effect.change, Change::Begin(_)) {
                    Op::Begin
                } else {
                    Op::End
                };
                let group = keys::relation_group(&key.kind, &key.a, &key.b, key.directed);
                change(&key.a, Part::Relations, &group, op, "");
                change(&key.b, Part::Relations, &group, op, "");
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
    writes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_what_was_written() {
        let change = ChangeValue {
            op: Op::Set,
            latest: -3,
            time: "1950-06",
            event_id: "article-009",
            value: "kim-il-sung",
        };
        assert_eq!(ChangeValue::decode(&change.encode()).unwrap(), change);
        let event = EventValue {
            latest: 42,
            kind: "summit",
        };
        assert_eq!(EventValue::decode(&event.encode()).unwrap(), event);
        assert!(matches!(
            ChangeValue::decode(&[9, 1, 2]),
            Err(Error::DataLoss(_))
        ));
    }
}
