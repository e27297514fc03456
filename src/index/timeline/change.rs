//! One change, its texts, and the views a walk hands out.

use crate::index::keys::{self, Part};
use crate::index::records::{ChangeValue, Op};
use crate::time::Instant;
use std::borrow::Cow;

/// One change to a relation or attribute, as a walk sees it. Its texts are
/// in the `History` it came with. 32 bytes: a cached copy holds millions.
#[derive(Clone, Copy, Debug)]
pub struct Change {
    pub earliest: Instant,
    pub seq: u64,
    /// Where its texts start in their buffer.
    pub(super) start: u32,
    pub(super) effect: u16,
    /// The span in whole days (`latest` = earliest + days − 1 µs); 0 for an
    /// instant (`latest` = earliest). Every valid time is one or the other.
    pub(super) span_days: u16,
    pub(super) value_len: u16,
    pub(super) time_len: u16,
    pub(super) id_len: u8,
    pub(super) compact: u8,
    pub op: Op,
}

pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Change {
    /// The change a `changes` entry holds (its key and value), with its
    /// texts laid out already; `None` when damaged.
    pub(super) fn stored(
        key: &keys::ChangeKey,
        record: &ChangeValue,
        texts: Texts,
    ) -> Option<Change> {
        Change::new(
            key.earliest,
            record.latest,
            key.seq,
            key.effect,
            record.op,
            texts,
        )
    }

    /// A change; `None` when its numbers are no valid time's or no event's
    /// (a damaged record).
    pub(super) fn new(
        earliest: Instant,
        latest: Instant,
        seq: u64,
        effect: u32,
        op: Op,
        texts: Texts,
    ) -> Option<Change> {
        let span = latest.checked_sub(earliest)?;
        let span_days = if span == 0 {
            0
        } else if (span + 1) % MICROS_PER_DAY == 0 {
            u16::try_from((span + 1) / MICROS_PER_DAY).ok()?
        } else {
            return None;
        };
        let mut change = Change {
            earliest,
            seq,
            start: 0,
            effect: u16::try_from(effect).ok()?,
            span_days,
            value_len: 0,
            time_len: 0,
            id_len: 0,
            compact: 0,
            op,
        };
        change.set_texts(texts);
        Some(change)
    }

    pub fn begins(&self) -> bool {
        self.op == Op::Begin
    }

    /// The last instant of its valid time.
    pub fn latest(&self) -> Instant {
        match self.span_days {
            0 => self.earliest,
            days => self.earliest + i64::from(days) * MICROS_PER_DAY - 1,
        }
    }

    /// Its position among its event's effects.
    pub fn effect(&self) -> u32 {
        u32::from(self.effect)
    }

    /// The order of changes within a group.
    pub(super) fn order(&self) -> (Instant, u64, u16) {
        (self.earliest, self.seq, self.effect)
    }

    pub(super) fn texts(&self) -> Texts {
        Texts {
            start: self.start,
            time: self.time_len,
            event_id: self.id_len,
            value: self.value_len,
            compact: self.compact,
        }
    }

    pub(super) fn set_texts(&mut self, texts: Texts) {
        self.start = texts.start;
        self.time_len = texts.time;
        self.id_len = texts.event_id;
        self.value_len = texts.value;
        self.compact = texts.compact;
    }
}

/// Where a change's texts sit in their buffer: the valid time as written,
/// the event id and the attribute value, one after the other. A cached copy
/// keeps the two commonest shapes shorter (`COMPACT_*`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Texts {
    pub(super) start: u32,
    pub(super) time: u16,
    pub(super) event_id: u8,
    pub(super) value: u16,
    pub(super) compact: u8,
}

/// The valid time is the day that starts at the change's earliest instant,
/// written `YYYY-MM-DD`: nothing is stored.
pub(super) const COMPACT_DAY: u8 = 1;
/// The event id is a lowercase hyphenated UUID: its 16 bytes are stored.
pub(super) const COMPACT_UUID: u8 = 2;

impl Texts {
    pub(super) fn len(&self) -> usize {
        usize::from(self.time) + usize::from(self.event_id) + usize::from(self.value)
    }
}

/// Appends a change's texts to `buffer` as they are.
pub(super) fn put(buffer: &mut Vec<u8>, time: &str, event_id: &str, value: &str) -> Texts {
    put_parts(
        buffer,
        time.as_bytes(),
        event_id.as_bytes(),
        value.as_bytes(),
        0,
    )
}

/// Appends a change's texts to `buffer`, the time and id compacted when
/// they have a common shape.
pub(super) fn put_compact(
    buffer: &mut Vec<u8>,
    earliest: Instant,
    time: &str,
    event_id: &str,
    value: &str,
) -> Texts {
    let mut compact = 0;
    let mut time_bytes = time.as_bytes();
    if crate::time::is_day_text(earliest, time) {
        compact |= COMPACT_DAY;
        time_bytes = &[];
    }
    let uuid = uuid::Uuid::try_parse(event_id)
        .ok()
        .filter(|uuid| uuid.hyphenated().encode_lower(&mut [0; 36]) == event_id);
    let uuid_bytes;
    let mut id_bytes = event_id.as_bytes();
    if let Some(uuid) = uuid {
        compact |= COMPACT_UUID;
        uuid_bytes = *uuid.as_bytes();
        id_bytes = &uuid_bytes;
    }
    put_parts(buffer, time_bytes, id_bytes, value.as_bytes(), compact)
}

pub(super) fn put_parts(
    buffer: &mut Vec<u8>,
    time: &[u8],
    event_id: &[u8],
    value: &[u8],
    compact: u8,
) -> Texts {
    let start = u32::try_from(buffer.len()).expect("a timeline's texts stay under 4 GiB");
    u32::try_from(buffer.len() + time.len() + event_id.len() + value.len())
        .expect("a timeline's texts stay under 4 GiB");
    let length = |text: &[u8]| u16::try_from(text.len()).expect("texts are validated short");
    let texts = Texts {
        start,
        time: length(time),
        event_id: u8::try_from(event_id.len()).expect("event ids are validated short"),
        value: length(value),
        compact,
    };
    buffer.extend_from_slice(time);
    buffer.extend_from_slice(event_id);
    buffer.extend_from_slice(value);
    texts
}

/// Copies a change's stored texts from one buffer to another, as stored.
pub(super) fn copy_texts(from: &[u8], texts: Texts, to: &mut Vec<u8>) -> Texts {
    let start = texts.start as usize;
    let bytes = &from[start..start + texts.len()];
    let moved = Texts {
        start: u32::try_from(to.len()).expect("a timeline's texts stay under 4 GiB"),
        ..texts
    };
    to.extend_from_slice(bytes);
    moved
}

/// The changes of one relation or attribute, in (earliest, seq, effect)
/// order, with their texts.
#[derive(Clone, Copy)]
pub struct History<'a> {
    pub changes: &'a [Change],
    pub(super) texts: &'a [u8],
}

impl<'a> History<'a> {
    pub(super) fn bytes(&self, change: &Change, skip: usize, len: usize) -> &'a [u8] {
        let start = change.start as usize + skip;
        &self.texts[start..start + len]
    }

    pub(super) fn text(&self, change: &Change, skip: usize, len: usize) -> &'a str {
        std::str::from_utf8(self.bytes(change, skip, len)).expect("texts are stored as UTF-8")
    }

    /// The valid time as the event wrote it.
    pub fn time(&self, change: &Change) -> Cow<'a, str> {
        if change.compact & COMPACT_DAY != 0 {
            if let Some(day) = crate::time::day_text(change.earliest) {
                return Cow::Owned(day);
            }
        }
        Cow::Borrowed(self.text(change, 0, usize::from(change.time_len)))
    }

    pub fn event_id(&self, change: &Change) -> Cow<'a, str> {
        let skip = usize::from(change.time_len);
        let len = usize::from(change.id_len);
        if change.compact & COMPACT_UUID != 0 {
            if let Ok(bytes) = <[u8; 16]>::try_from(self.bytes(change, skip, len)) {
                let mut text = [0; 36];
                let uuid = uuid::Uuid::from_bytes(bytes);
                return Cow::Owned(uuid.hyphenated().encode_lower(&mut text).to_owned());
            }
        }
        Cow::Borrowed(self.text(change, skip, len))
    }

    /// `time` as bytes, rendered into `scratch` when compacted.
    pub fn time_bytes<'b>(&'b self, change: &Change, scratch: &'b mut [u8; 36]) -> &'b [u8] {
        if change.compact & COMPACT_DAY != 0 {
            let day: &mut [u8; 10] = (&mut scratch[..10]).try_into().expect("10 bytes");
            if crate::time::write_day(change.earliest, day).is_some() {
                return &scratch[..10];
            }
        }
        self.bytes(change, 0, usize::from(change.time_len))
    }

    /// `event_id` as bytes, rendered into `scratch` when compacted.
    pub fn event_id_bytes<'b>(&'b self, change: &Change, scratch: &'b mut [u8; 36]) -> &'b [u8] {
        let skip = usize::from(change.time_len);
        let len = usize::from(change.id_len);
        if change.compact & COMPACT_UUID != 0 {
            if let Ok(bytes) = <[u8; 16]>::try_from(self.bytes(change, skip, len)) {
                let uuid = uuid::Uuid::from_bytes(bytes);
                uuid.hyphenated().encode_lower(scratch);
                return &scratch[..];
            }
        }
        self.bytes(change, skip, len)
    }

    /// The attribute value (empty unsets).
    pub fn value(&self, change: &Change) -> &'a str {
        let skip = usize::from(change.time_len) + usize::from(change.id_len);
        self.text(change, skip, usize::from(change.value_len))
    }
}

/// What a group is about: a relation (kind, a, b, directed), or an attribute
/// (its key in `kind`, `a` and `b` empty). Groups come in the order of these
/// fields, which is the byte order of their keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name<'a> {
    pub kind: &'a str,
    pub a: &'a str,
    pub b: &'a str,
    pub directed: bool,
}

impl<'a> Name<'a> {
    /// Reads a group of a `changes` key.
    pub(super) fn parse(part: Part, group: &'a [u8]) -> Option<Name<'a>> {
        match part {
            Part::Relations => {
                let relation = keys::parse_relation_group(group)?;
                Some(Name {
                    kind: relation.kind,
                    a: relation.a,
                    b: relation.b,
                    directed: relation.directed,
                })
            }
            Part::Attributes => Some(Name {
                kind: keys::parse_attribute_group(group)?,
                a: "",
                b: "",
                directed: false,
            }),
        }
    }
}
