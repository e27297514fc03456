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

/// `entity ++ 0x00 ++ seq ++ effect`: a change or declaration by an entity.
pub fn entity_effect(entity_id: &str, seq_number: u64, effect: u32) -> Vec<u8> {
    let mut key = entity(entity_id);
    key.extend_from_slice(&seq(seq_number));
    key.extend_from_slice(&effect.to_be_bytes());
    key
}

/// `entity ++ 0x00 ++ seq`: an event naming an entity, in log order.
pub fn entity_seq(entity_id: &str, seq_number: u64) -> Vec<u8> {
    let mut key = entity(entity_id);
    key.extend_from_slice(&seq(seq_number));
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
    fn entity_prefixes_do_not_overlap() {
        let korea = entity_seq("korea", 1);
        let north_korea = entity_seq("korea-north", 1);
        assert!(!north_korea.starts_with(&entity("korea")));
        assert!(korea.starts_with(&entity("korea")));
        assert!(prefix_end(&entity("korea")) > korea);
    }
}
