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

/// Labels of coded event data kept beside an event in `mentions` and
/// `dyads`, so that counts and listings filter and sum on them without
/// reading the log (as a covering index includes columns). Any other
/// label is read from the log entry.
pub const FACT_LABELS: [&str; 7] = [
    "dataset",
    "cameo_root",
    "cameo_code",
    "quad_class",
    "goldstein",
    "avg_tone",
    "num_mentions",
];

/// Where a label is in `FACT_LABELS`, if it is a fact.
pub fn fact_position(key: &str) -> Option<usize> {
    FACT_LABELS.iter().position(|label| *label == key)
}

/// The longest label value kept as a fact; a longer one is marked, and
/// read from the log.
const MAX_FACT_BYTES: usize = 64;
/// The length byte of a fact too long to keep.
const TOO_LONG: u8 = 0xff;

/// The value of a `mentions`, `timeline` or `dyads` key: when the event
/// ends, its kind, and (not in `timeline`) its facts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventValue<'a> {
    pub latest: Instant,
    pub kind: &'a str,
    /// Encoded facts: (label position, length, value) each.
    facts: &'a [u8],
    /// The same facts looked up already (an event run's copy): one cell
    /// per label of `FACT_LABELS`, and the values they point to.
    cells: Option<(&'a [Cell], &'a [FactValue])>,
}

/// One fact of an event as a run keeps it: absent, in the log (too long
/// to keep), or the position + 1 of its value in the run's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell(pub u32);

impl Cell {
    pub const ABSENT: Cell = Cell(0);
    pub const IN_THE_LOG: Cell = Cell(u32::MAX);
}

/// A fact's value, with the number it reads as (if it does).
#[derive(Clone, Debug, PartialEq)]
pub struct FactValue {
    pub text: String,
    pub number: Option<f64>,
}

/// A label's text as a number to sum: finite, surrounding spaces ignored.
pub fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// What the facts say of one label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact<'a> {
    /// The event has no such label.
    Absent,
    Value(&'a str),
    /// The label is not a fact, or its value was too long to keep: the
    /// log entry has it.
    InTheLog,
}

impl<'a> EventValue<'a> {
    /// An event's value, with the facts of its labels when `labels` is given.
    pub fn encode(
        latest: Instant,
        kind: &str,
        labels: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(9 + kind.len());
        bytes.extend_from_slice(&keys::instant(latest));
        bytes.push(kind.len() as u8);
        bytes.extend_from_slice(kind.as_bytes());
        for (position, label) in FACT_LABELS.iter().enumerate() {
            let Some(value) = labels.and_then(|labels| labels.get(*label)) else {
                continue;
            };
            bytes.push(position as u8);
            if value.len() > MAX_FACT_BYTES {
                bytes.push(TOO_LONG);
            } else {
                bytes.push(value.len() as u8);
                bytes.extend_from_slice(value.as_bytes());
            }
        }
        bytes
    }

    /// A value from its parts (as an in-memory run keeps them).
    pub fn from_parts(latest: Instant, kind: &'a str, facts: &'a [u8]) -> EventValue<'a> {
        EventValue {
            latest,
            kind,
            facts,
            cells: None,
        }
    }

    /// The same, with the facts looked up already.
    pub fn with_cells(self, cells: &'a [Cell], values: &'a [FactValue]) -> EventValue<'a> {
        EventValue {
            cells: Some((cells, values)),
            ..self
        }
    }

    /// The number the label at `position` reads as: `Some(None)` when it
    /// is absent or not a number, `None` when only the log has it.
    pub fn number_at(&self, position: Option<usize>) -> Result<Option<Option<f64>>> {
        if let (Some((cells, values)), Some(position)) = (self.cells, position) {
            return Ok(match cells[position] {
                Cell::ABSENT => Some(None),
                Cell::IN_THE_LOG => None,
                Cell(at) => Some(values[at as usize - 1].number),
            });
        }
        Ok(match self.fact_at(position)? {
            Fact::Value(text) => Some(number(text)),
            Fact::Absent => Some(None),
            Fact::InTheLog => None,
        })
    }

    /// The encoded facts.
    pub fn facts(&self) -> &'a [u8] {
        self.facts
    }

    pub fn decode(bytes: &'a [u8]) -> Result<EventValue<'a>> {
        let damaged = || Error::DataLoss("an event record of the index is damaged".into());
        if bytes.len() < 9 {
            return Err(damaged());
        }
        let kind_end = 9 + bytes[8] as usize;
        let kind = bytes.get(9..kind_end).ok_or_else(damaged)?;
        Ok(EventValue {
            latest: keys::decode_instant(&bytes[..8]),
            kind: std::str::from_utf8(kind).map_err(|_| damaged())?,
            facts: &bytes[kind_end..],
            cells: None,
        })
    }

    /// What the index knows of label `key`.
    pub fn fact(&self, key: &str) -> Result<Fact<'a>> {
        self.fact_at(fact_position(key))
    }

    /// What the index knows of the label at `position` of `FACT_LABELS`
    /// (`None`: a label that is not a fact).
    pub fn fact_at(&self, position: Option<usize>) -> Result<Fact<'a>> {
        let Some(wanted) = position else {
            return Ok(Fact::InTheLog);
        };
        if let Some((cells, values)) = self.cells {
            return Ok(match cells[wanted] {
                Cell::ABSENT => Fact::Absent,
                Cell::IN_THE_LOG => Fact::InTheLog,
                Cell(at) => Fact::Value(&values[at as usize - 1].text),
            });
        }
        let damaged = || Error::DataLoss("the facts of an event record are damaged".into());
        let mut rest = self.facts;
        while let [position, length, tail @ ..] = rest {
            let (value, after) = if *length == TOO_LONG {
                (None, tail)
            } else {
                let length = *length as usize;
                if tail.len() < length {
                    return Err(damaged());
                }
                (Some(&tail[..length]), &tail[length..])
            };
            if *position as usize == wanted {
                return Ok(match value {
                    Some(value) => Fact::Value(std::str::from_utf8(value).map_err(|_| damaged())?),
                    None => Fact::InTheLog,
                });
            }
            rest = after;
        }
        if !rest.is_empty() {
            return Err(damaged());
        }
        Ok(Fact::Absent)
    }
}

/// Events naming more entities than this are indexed under each entity as
/// `crowded` rather than under every pair (which grows as the square).
pub const MAX_PAIRED: usize = 16;

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
/// The layout of the derived trees, written with the first entry: a store
/// whose trees have another (or none) rebuilds them from the log.
pub const META_LAYOUT: &[u8] = b"layout";
/// Layout 2: event records carry facts; `dyads` exists.
pub const LAYOUT: &[u8] = b"2";
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
    let (earliest, latest) = (event.earliest(), event.latest());
    writes.push((
        Tree::Timeline,
        keys::timeline_event(earliest, seq),
        EventValue::encode(latest, &event.kind, None),
    ));
    let value = EventValue::encode(latest, &event.kind, Some(&entry.event.labels));
    for entity in &entities {
        writes.push((
            Tree::Mentions,
            keys::mention(entity, earliest, seq),
            value.clone(),
        ));
    }
    if entities.len() > MAX_PAIRED {
        for entity in &entities {
            writes.push((
                Tree::Dyads,
                keys::crowded(entity, earliest, seq),
                value.clone(),
            ));
        }
    } else {
        for (position, first) in entities.iter().enumerate() {
            for second in &entities[position + 1..] {
                writes.push((
                    Tree::Dyads,
                    keys::pair(first, second, earliest, seq),
                    value.clone(),
                ));
            }
        }
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
        let labels: std::collections::BTreeMap<String, String> = [
            ("goldstein", "-2.5"),
            ("cameo_code", "x".repeat(65).as_str()),
            ("publisher", "Yonhap"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        let bytes = EventValue::encode(42, "summit", Some(&labels));
        let event = EventValue::decode(&bytes).unwrap();
        assert_eq!((event.latest, event.kind), (42, "summit"));
        assert_eq!(event.fact("goldstein").unwrap(), Fact::Value("-2.5"));
        assert_eq!(
            event.fact("cameo_code").unwrap(),
            Fact::InTheLog,
            "too long"
        );
        assert_eq!(
            event.fact("publisher").unwrap(),
            Fact::InTheLog,
            "not a fact"
        );
        assert_eq!(event.fact("cameo_root").unwrap(), Fact::Absent);
        let bare = EventValue::encode(42, "summit", None);
        assert_eq!(
            EventValue::decode(&bare)
                .unwrap()
                .fact("goldstein")
                .unwrap(),
            Fact::Absent
        );
        assert!(EventValue::decode(&bytes[..bytes.len() - 1])
            .unwrap()
            .fact("goldstein")
            .is_err());
        assert!(matches!(
            ChangeValue::decode(&[9, 1, 2]),
            Err(Error::DataLoss(_))
        ));
    }
}
