//! How one Append travels in the stream: one message holding its entries.
//!
//! Payload: each entry as a length-delimited protobuf `LogEntry` (without
//! `superseded_by`, which is derived), in seq order. Header `Annals-Seqs`:
//! `first-last`, so that finding where a view resumes reads no payload.

use crate::engine::LogMessage;
use crate::error::{Error, Result};
use crate::proto;
use crate::store::{timestamp, StoredEntry};
use prost::Message;

/// The header naming the seqs a message holds.
pub const SEQS_HEADER: &str = "Annals-Seqs";

pub fn encode(entries: &[StoredEntry]) -> Vec<u8> {
    let mut payload = Vec::new();
    for entry in entries {
        let wire = proto::LogEntry {
            seq: entry.seq,
            recorded_at: Some(timestamp(entry.recorded_at)),
            event: Some(entry.event.clone()),
            superseded_by: String::new(),
        };
        wire.encode_length_delimited(&mut payload)
            .expect("a Vec grows as needed");
    }
    payload
}

/// The `Annals-Seqs` value of a message holding `entries`.
pub fn seqs_header(entries: &[StoredEntry]) -> String {
    let first = entries.first().map_or(0, |entry| entry.seq);
    let last = entries.last().map_or(0, |entry| entry.seq);
    format!("{first}-{last}")
}

/// The (first, last) seqs of an `Annals-Seqs` value.
pub fn parse_seqs(value: &str) -> Option<(u64, u64)> {
    let (first, last) = value.split_once('-')?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first >= 1 && first <= last).then_some((first, last))
}

/// The message at `position`: its entries, consecutive, or `DataLoss`.
pub fn decode(position: u64, mut payload: &[u8]) -> Result<LogMessage> {
    let damaged = |why: String| Error::DataLoss(format!("message {position} of the stream: {why}"));
    let mut entries: Vec<StoredEntry> = Vec::new();
    while !payload.is_empty() {
        let wire = proto::LogEntry::decode_length_delimited(&mut payload)
            .map_err(|error| damaged(format!("undecodable ({error})")))?;
        if let Some(previous) = entries.last() {
            if wire.seq != previous.seq + 1 {
                return Err(damaged(format!(
                    "seq {} follows seq {}",
                    wire.seq, previous.seq
                )));
            }
        }
        let recorded_at = wire
            .recorded_at
            .map(|time| time.seconds * 1_000_000 + i64::from(time.nanos / 1_000))
            .ok_or_else(|| damaged(format!("entry {} has no recorded_at", wire.seq)))?;
        let event = wire
            .event
            .ok_or_else(|| damaged(format!("entry {} has no event", wire.seq)))?;
        entries.push(StoredEntry {
            seq: wire.seq,
            recorded_at,
            event,
        });
    }
    if entries.is_empty() {
        return Err(damaged("no entries".into()));
    }
    Ok(LogMessage { position, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::entry;

    #[test]
    fn a_message_round_trips_and_names_its_seqs() {
        let entries = vec![entry(7, "a"), entry(8, "b")];
        let message = decode(3, &encode(&entries)).unwrap();
        assert_eq!(message.position, 3);
        assert_eq!(message.entries, entries);
        assert_eq!(parse_seqs(&seqs_header(&entries)), Some((7, 8)));
        assert_eq!(parse_seqs("8-7"), None);
        assert_eq!(parse_seqs("x-1"), None);
    }

    #[test]
    fn a_damaged_or_gapped_message_is_data_loss() {
        let gapped = encode(&[entry(1, "a"), entry(3, "c")]);
        assert!(matches!(decode(1, &gapped), Err(Error::DataLoss(_))));
        let mut cut = encode(&[entry(1, "a")]);
        cut.truncate(cut.len() - 3);
        assert!(matches!(decode(1, &cut), Err(Error::DataLoss(_))));
        assert!(matches!(decode(1, &[]), Err(Error::DataLoss(_))));
    }
}
