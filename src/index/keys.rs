//! Order-preserving key encoding for the derived trees. The only module that
//! lays out index keys.
//!
//! Integers are big-endian; signed instants have their sign bit flipped so
//! that byte order is numeric order (a reverse range scan from a key is
//! "latest at or before"). Entity ids are lowercase kebab-case and never
//! contain 0x00, so `entity ++ 0x00` is a prefix no other entity shares.

use crate::time::Instant;

/// An instant as 8 bytes whose byte order is the instants' order.
pub fn instant(instant: Instant) -> [u8; 8] {
    ((instant as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_instant(bytes: &[u8]) -> Instant {
    let raw = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    (raw ^ (1 << 63)) as Instant
}

pub fn seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn decode_seq(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// The prefix of everything stored under an entity.
pub fn entity(entity: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(entity.len() + 1);
    key.extend_from_slice(entity.as_bytes());
    key.push(0);
    key
}

/// The first key after every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; 9]
}

/// `entity ++ 0x00 ++ seq ++ effect`: a declaration of an entity.
pub fn entity_effect(entity_id: &str, seq_number: u64, effect: u32) -> Vec<u8> {
    let mut key = entity(entity_id);
    key.extend_from_slice(&seq(seq_number));
    key.extend_from_slice(&effect.to_be_bytes());
    key
}

/// Which part of an entity's changes a key belongs to: its relations or its
/// attributes. The byte follows the entity's prefix in `changes` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Relations,
    Attributes,
}

impl Part {
    fn byte(self) -> u8 {
        match self {
            Part::Relations => b'r',
            Part::Attributes => b'a',
        }
    }
}

/// The prefix of every change to one part of an entity's state.
pub fn part(entity_id: &str, part: Part) -> Vec<u8> {
    let mut key = entity(entity_id);
    key.push(part.byte());
    key
}

/// A relation as `changes` keys name it: `kind 0 a 0 b 0 directed`, so that
/// byte order is the order of (kind, a, b, directed).
pub fn relation_group(kind: &str, a: &str, b: &str, directed: bool) -> Vec<u8> {
    let mut group = Vec::with_capacity(kind.len() + a.len() + b.len() + 4);
    for text in [kind, a, b] {
        group.extend_from_slice(text.as_bytes());
        group.push(0);
    }
    group.push(u8::from(directed));
    group
}

/// An attribute as `changes` keys name it: `key 0`.
pub fn attribute_group(attribute: &str) -> Vec<u8> {
    let mut group = Vec::with_capacity(attribute.len() + 1);
    group.extend_from_slice(attribute.as_bytes());
    group.push(0);
    group
}

/// `entity 0x00 part group earliest seq effect`: one change to one
/// relation or attribute touching the entity. An entity's changes to one
/// relation (or attribute) sit side by side in (earliest, seq, effect)
/// order, and its relations in (kind, a, b, directed) order.
pub fn change(
    entity_id: &str,
    which: Part,
    group: &[u8],
    earliest: Instant,
    seq_number: u64,
    effect: u32,
) -> Vec<u8> {
    let mut key = part(entity_id, which);
    key.reserve(group.len() + 20);
    key.extend_from_slice(group);
    key.extend_from_slice(&instant(earliest));
    key.extend_from_slice(&seq(seq_number));
    key.extend_from_slice(&effect.to_be_bytes());
    key
}

/// The bytes at the end of a `changes` key after its group.
pub const CHANGE_SUFFIX: usize = 20;

/// A `changes` key taken apart. Everything borrows the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeKey<'a> {
    pub entity: &'a str,
    pub part: Part,
    /// The group's bytes (`relation_group` or `attribute_group`).
    pub group: &'a [u8],
    pub earliest: Instant,
    pub seq: u64,
    pub effect: u32,
}

/// The strings of a relation group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelationName<'a> {
    pub kind: &'a str,
    pub a: &'a str,
    pub b: &'a str,
    pub directed: bool,
}

/// Reads a `changes` key; `None` when it is not one.
pub fn parse_change(key: &[u8]) -> Option<ChangeKey<'_>> {
    let split = key.iter().position(|byte| *byte == 0)?;
    let entity = std::str::from_utf8(&key[..split]).ok()?;
    let part = match key.get(split + 1)? {
        b'r' => Part::Relations,
        b'a' => Part::Attributes,
        _ => return None,
    };
    let rest = &key[split + 2..];
    if rest.len() < CHANGE_SUFFIX {
        return None;
    }
    let (group, suffix) = rest.split_at(rest.len() - CHANGE_SUFFIX);
    Some(ChangeKey {
        entity,
        part,
        group,
        earliest: decode_instant(&suffix[..8]),
        seq: decode_seq(&suffix[8..16]),
        effect: u32::from_be_bytes(suffix[16..20].try_into().ok()?),
    })
}

/// Reads a relation group; `None` when it is not one.
pub fn parse_relation_group(group: &[u8]) -> Option<RelationName<'_>> {
    let mut fields = group.splitn(4, |byte| *byte == 0);
    fn text(bytes: Option<&[u8]>) -> Option<&str> {
        std::str::from_utf8(bytes?).ok()
    }
    let kind = text(fields.next())?;
    let a = text(fields.next())?;
    let b = text(fields.next())?;
    let directed = match fields.next()? {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    Some(RelationName {
        kind,
        a,
        b,
        directed,
    })
}

/// Reads an attribute group; `None` when it is not one.
pub fn parse_attribute_group(group: &[u8]) -> Option<&str> {
    let (last, key) = group.split_last()?;
    if *last != 0 {
        return None;
    }
    std::str::from_utf8(key).ok()
}

/// `entity 0x00 earliest seq`: an event naming the entity, in valid-time
/// order.
pub fn mention(entity_id: &str, earliest: Instant, seq_number: u64) -> Vec<u8> {
    let mut key = entity(entity_id);
    key.extend_from_slice(&instant(earliest));
    key.extend_from_slice(&seq(seq_number));
    key
}

/// `p ++ a ++ 0x00 ++ b ++ 0x00 ++ earliest ++ seq` with `a < b`: an event
/// naming both entities (a dyad), in valid-time order.
pub fn pair(first: &str, second: &str, earliest: Instant, seq_number: u64) -> Vec<u8> {
    let mut key = pair_prefix(first, second);
    key.extend_from_slice(&instant(earliest));
    key.extend_from_slice(&seq(seq_number));
    key
}

/// The prefix of a dyad's keys, whichever way round it is named.
pub fn pair_prefix(first: &str, second: &str) -> Vec<u8> {
    let (a, b) = if first <= second {
        (first, second)
    } else {
        (second, first)
    };
    let mut key = Vec::with_capacity(a.len() + b.len() + 3);
    key.push(b'p');
    key.extend_from_slice(&entity(a));
    key.extend_from_slice(&entity(b));
    key
}

/// `c ++ entity ++ 0x00 ++ earliest ++ seq`: an event naming the entity
/// among too many others for a key per pair (`records::MAX_PAIRED`).
pub fn crowded(entity_id: &str, earliest: Instant, seq_number: u64) -> Vec<u8> {
    let mut key = crowded_prefix(entity_id);
    key.extend_from_slice(&instant(earliest));
    key.extend_from_slice(&seq(seq_number));
    key
}

pub fn crowded_prefix(entity_id: &str) -> Vec<u8> {
    let mut key = vec![b'c'];
    key.extend_from_slice(&entity(entity_id));
    key
}

/// `earliest ++ seq`: every event in valid-time order.
pub fn timeline_event(earliest: Instant, seq_number: u64) -> Vec<u8> {
    let mut key = instant(earliest).to_vec();
    key.extend_from_slice(&seq(seq_number));
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn instant_keys_sort_like_instants(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), instant(a).cmp(&instant(b)));
            prop_assert_eq!(decode_instant(&instant(a)), a);
        }

        #[test]
        fn timeline_keys_sort_by_time_then_seq(t1 in any::<i64>(), s1 in any::<u64>(), t2 in any::<i64>(), s2 in any::<u64>()) {
            prop_assert_eq!((t1, s1).cmp(&(t2, s2)), timeline_event(t1, s1).cmp(&timeline_event(t2, s2)));
        }
    }

    #[test]
    fn a_pair_is_one_key_whichever_way_round() {
        assert_eq!(
            pair("china", "north-korea", 5, 9),
            pair("north-korea", "china", 5, 9)
        );
        let prefix = pair_prefix("a", "ab");
        assert!(pair("a", "ab", -3, 1).starts_with(&prefix));
        assert!(!pair("a", "abc", -3, 1).starts_with(&prefix));
        assert!(!crowded("a", 0, 1).starts_with(&prefix));
    }

    #[test]
    fn entity_prefixes_do_not_overlap() {
        let korea = mention("korea", 0, 1);
        let north_korea = mention("korea-north", 0, 1);
        assert!(!north_korea.starts_with(&entity("korea")));
        assert!(korea.starts_with(&entity("korea")));
        assert!(prefix_end(&entity("korea")) > korea);
    }

    #[test]
    fn change_keys_read_back_and_sort_by_relation_then_time() {
        let group = relation_group("ally", "china", "north-korea", false);
        let key = change("china", Part::Relations, &group, -5, 7, 2);
        let parsed = parse_change(&key).unwrap();
        assert_eq!(
            (
                parsed.entity,
                parsed.part,
                parsed.earliest,
                parsed.seq,
                parsed.effect
            ),
            ("china", Part::Relations, -5, 7, 2)
        );
        let name = parse_relation_group(parsed.group).unwrap();
        assert_eq!(
            (name.kind, name.a, name.b, name.directed),
            ("ally", "china", "north-korea", false)
        );
        let later = change("china", Part::Relations, &group, 9, 1, 0);
        let other = change(
            "china",
            Part::Relations,
            &relation_group("ally", "china", "russia", false),
            -99,
            1,
            0,
        );
        assert!(key < later && later < other, "by relation, then by time");
        let attribute = change(
            "china",
            Part::Attributes,
            &attribute_group("leader"),
            0,
            1,
            0,
        );
        assert_eq!(
            parse_attribute_group(parse_change(&attribute).unwrap().group),
            Some("leader")
        );
        assert!(attribute.starts_with(&part("china", Part::Attributes)));
        assert!(!key.starts_with(&part("china", Part::Attributes)));
    }
}
