//! How log entries are laid out as bytes. The only module that knows it.
//!
//! Key: the seq as 8 big-endian bytes, so that byte order is seq order and a
//! range scan reads the log in append order. Value: a CRC-32 (big-endian) of
//! the payload, then the payload, a protobuf `LogEntry` (without
//! `superseded_by`, which is derived). A checksum or seq mismatch is reported
//! as data loss rather than decoded into a wrong answer.
//!
//! A round of the log's tail (fjall's `log_tail`) is its entries' values,
//! each prefixed by its length as a varint.

use super::StoredEntry;
use crate::error::{Error, Result};
use crate::proto;
use prost::Message;

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn encode_entry(entry: &StoredEntry) -> Vec<u8> {
    let wire = proto::LogEntry {
        seq: entry.seq,
        recorded_at: Some(timestamp(entry.recorded_at)),
        event: Some(entry.event.clone()),
        superseded_by: String::new(),
    };
    let payload = wire.encode_to_vec();
    let mut value = Vec::with_capacity(4 + payload.len());
    value.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    value.extend_from_slice(&payload);
    value
}

pub fn decode_entry(key: &[u8], value: &[u8]) -> Result<StoredEntry> {
    let (seq, payload) = checked_payload(key, value)?;
    let damaged = |why: &str| Error::DataLoss(format!("log entry {seq} is damaged: {why}"));
    let wire = proto::LogEntry::decode(payload).map_err(|_| damaged("undecodable"))?;
    if wire.seq != seq {
        return Err(damaged("stored under another seq"));
    }
    let recorded_at = wire
        .recorded_at
        .map(|time| time.seconds * 1_000_000 + i64::from(time.nanos / 1_000))
        .ok_or_else(|| damaged("no recorded_at"))?;
    Ok(StoredEntry {
        seq,
        recorded_at,
        event: wire.event.ok_or_else(|| damaged("no event"))?,
    })
}

/// The seq of a stored entry and its payload (a `LogEntry` without
/// `superseded_by`), undecoded: its checksum checked, and its first field
/// (prost writes fields in tag order; `seq` is 1 and never 0) the key's seq.
pub fn checked_payload<'a>(key: &[u8], value: &'a [u8]) -> Result<(u64, &'a [u8])> {
    let seq = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::DataLoss(format!("log key of {} bytes, not 8", key.len())))?;
    let damaged = |why: &str| Error::DataLoss(format!("log entry {seq} is damaged: {why}"));
    if value.len() < 4 {
        return Err(damaged("too short"));
    }
    let (checksum, payload) = value.split_at(4);
    if crc32fast::hash(payload).to_be_bytes() != checksum {
        return Err(damaged("checksum mismatch"));
    }
    let mut fields = payload;
    let first = prost::encoding::decode_key(&mut fields)
        .ok()
        .filter(|&(tag, wire_type)| tag == 1 && wire_type == prost::encoding::WireType::Varint)
        .and_then(|_| prost::encoding::decode_varint(&mut fields).ok());
    if first != Some(seq) {
        return Err(damaged("stored under another seq"));
    }
    Ok((seq, payload))
}

/// A protobuf timestamp from microseconds since the epoch.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A round's entries as the tail keeps them: each one length-prefixed.
pub fn encode_round(values: &[Vec<u8>]) -> Vec<u8> {
    let mut round = Vec::with_capacity(values.iter().map(|value| value.len() + 3).sum());
    for value in values {
        prost::encoding::encode_varint(value.len() as u64, &mut round);
        round.extend_from_slice(value);
    }
    round
}

/// The entries of a round of the tail.
pub fn decode_round(mut round: &[u8]) -> Result<Vec<&[u8]>> {
    let damaged = || Error::DataLoss("a round of the log tail is damaged".into());
    let mut values = Vec::new();
    while !round.is_empty() {
        let len = prost::encoding::decode_varint(&mut round).map_err(|_| damaged())?;
        let len = usize::try_from(len).map_err(|_| damaged())?;
        if round.len() < len {
            return Err(damaged());
        }
        let (value, rest) = round.split_at(len);
        values.push(value);
        round = rest;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::entry;

    #[test]
    fn round_trips_and_detects_damage() {
        let original = entry(7, "x");
        let mut value = encode_entry(&original);
        assert_eq!(decode_entry(&seq_key(7), &value).unwrap(), original);
        assert!(matches!(
            decode_entry(&seq_key(8), &value),
            Err(Error::DataLoss(_))
        ));
        let last = value.len() - 1;
        value[last] ^= 0x40;
        assert!(matches!(
            decode_entry(&seq_key(7), &value),
            Err(Error::DataLoss(_))
        ));
    }

    #[test]
    fn payload_is_the_entry_undecoded_and_checked() {
        let original = entry(7, "x");
        let value = encode_entry(&original);
        let (seq, payload) = checked_payload(&seq_key(7), &value).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(
            proto::LogEntry::decode(payload).unwrap().event.unwrap(),
            original.event
        );
        assert!(matches!(
            checked_payload(&seq_key(8), &value),
            Err(Error::DataLoss(_))
        ));
        let mut damaged = value.clone();
        damaged[5] ^= 0x01;
        assert!(matches!(
            checked_payload(&seq_key(7), &damaged),
            Err(Error::DataLoss(_))
        ));
    }

    #[test]
    fn keys_sort_in_seq_order() {
        assert!(seq_key(255) < seq_key(256));
        assert!(seq_key(1) < seq_key(u64::MAX));
    }
}
