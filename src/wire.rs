//! Messages written by hand rather than generated, with the generated wire
//! shape, where building the generated one costs what matters.
//!
//! `ListRelationsResponse`: a page is
//! up to a thousand relations, and building each as a `proto::Relation`
//! (five owned strings) only to encode and drop it was most of what the
//! server spent on an answer. The server writes relations straight from the
//! index into `encoded` (`RelationWriter`); clients decode into `relations`
//! as with any generated message. On the wire it is the message the
//! `.proto` declares, field for field.
//!
//! `ListEventsResponse`: likewise, a page of log entries is written from
//! the bytes the log stores (`EntryWriter`), never decoded into a
//! `proto::LogEntry` only to be encoded again.

use crate::proto;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    self, encode_key, encode_varint, encoded_len_varint, DecodeContext, WireType,
};
use prost::DecodeError;

/// `annals.v1.ListRelationsResponse`: `repeated Relation relations = 1;
/// string next_page_token = 2;`
#[derive(Clone, Default, PartialEq)]
pub struct ListRelationsResponse {
    pub relations: Vec<proto::Relation>,
    pub next_page_token: String,
    /// Relations already encoded as field 1 entries; sent after
    /// `relations`, never filled by decoding.
    encoded: Vec<u8>,
    /// How many relations `encoded` holds.
    encoded_count: usize,
}

impl std::fmt::Debug for ListRelationsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListRelationsResponse")
            .field("relations", &self.relations)
            .field("encoded_relations", &self.encoded_count)
            .field("next_page_token", &self.next_page_token)
            .finish()
    }
}

impl ListRelationsResponse {
    /// A response of relations as messages.
    pub fn new(relations: Vec<proto::Relation>, next_page_token: String) -> ListRelationsResponse {
        ListRelationsResponse {
            relations,
            next_page_token,
            ..ListRelationsResponse::default()
        }
    }

    /// A response of relations encoded by a `RelationWriter`.
    pub fn encoded(relations: RelationWriter, next_page_token: String) -> ListRelationsResponse {
        ListRelationsResponse {
            relations: Vec::new(),
            next_page_token,
            encoded: relations.bytes,
            encoded_count: relations.count,
        }
    }
}

impl prost::Message for ListRelationsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for relation in &self.relations {
            encoding::message::encode(1, relation, buf);
        }
        buf.put_slice(&self.encoded);
        if !self.next_page_token.is_empty() {
            encoding::string::encode(2, &self.next_page_token, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::message::merge_repeated(wire_type, &mut self.relations, buf, ctx),
            2 => encoding::string::merge(wire_type, &mut self.next_page_token, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(1, &self.relations)
            + self.encoded.len()
            + if self.next_page_token.is_empty() {
                0
            } else {
                encoding::string::encoded_len(2, &self.next_page_token)
            }
    }

    fn clear(&mut self) {
        self.relations.clear();
        self.next_page_token.clear();
        self.encoded.clear();
        self.encoded_count = 0;
    }
}

/// One relation's fields, borrowed, as `proto::Relation` has them.
pub struct RelationFields<'a> {
    pub a: &'a str,
    pub b: &'a str,
    pub kind: &'a str,
    pub directed: bool,
    pub since: &'a [u8],
    pub certain: bool,
    pub event_id: &'a [u8],
}

/// Encodes relations one after the other as field 1 of a
/// `ListRelationsResponse`, without building a `proto::Relation` each.
#[derive(Default)]
pub struct RelationWriter {
    bytes: Vec<u8>,
    count: usize,
}

fn bytes_len(tag: u32, bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        0
    } else {
        encoding::key_len(tag) + encoded_len_varint(bytes.len() as u64) + bytes.len()
    }
}

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    if !bytes.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.extend_from_slice(bytes);
    }
}

fn put_true(tag: u32, value: bool, buf: &mut Vec<u8>) {
    if value {
        encode_key(tag, WireType::Varint, buf);
        buf.push(1);
    }
}

impl RelationWriter {
    pub fn push(&mut self, relation: &RelationFields) {
        let len = bytes_len(1, relation.a.as_bytes())
            + bytes_len(2, relation.b.as_bytes())
            + bytes_len(3, relation.kind.as_bytes())
            + if relation.directed { 2 } else { 0 }
            + bytes_len(5, relation.since)
            + if relation.certain { 2 } else { 0 }
            + bytes_len(7, relation.event_id);
        let buf = &mut self.bytes;
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
        put_bytes(1, relation.a.as_bytes(), buf);
        put_bytes(2, relation.b.as_bytes(), buf);
        put_bytes(3, relation.kind.as_bytes(), buf);
        put_true(4, relation.directed, buf);
        put_bytes(5, relation.since, buf);
        put_true(6, relation.certain, buf);
        put_bytes(7, relation.event_id, buf);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// `annals.v1.ListEventsResponse`: `repeated LogEntry entries = 1; string
/// next_page_token = 2;`
#[derive(Clone, Default, PartialEq)]
pub struct ListEventsResponse {
    pub entries: Vec<proto::LogEntry>,
    pub next_page_token: String,
    /// Entries already encoded as field 1 entries; sent after `entries`,
    /// never filled by decoding.
    encoded: Vec<u8>,
    /// How many entries `encoded` holds.
    encoded_count: usize,
}

impl std::fmt::Debug for ListEventsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListEventsResponse")
            .field("entries", &self.entries)
            .field("encoded_entries", &self.encoded_count)
            .field("next_page_token", &self.next_page_token)
            .finish()
    }
}

impl ListEventsResponse {
    /// A response of entries as messages.
    pub fn new(entries: Vec<proto::LogEntry>, next_page_token: String) -> ListEventsResponse {
        ListEventsResponse {
            entries,
            next_page_token,
            ..ListEventsResponse::default()
        }
    }

    /// A response of entries encoded by an `EntryWriter`.
    pub fn encoded(entries: EntryWriter, next_page_token: String) -> ListEventsResponse {
        ListEventsResponse {
            entries: Vec::new(),
            next_page_token,
            encoded: entries.bytes,
            encoded_count: entries.count,
        }
    }
}

impl prost::Message for ListEventsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for entry in &self.entries {
            encoding::message::encode(1, entry, buf);
        }
        buf.put_slice(&self.encoded);
        if !self.next_page_token.is_empty() {
            encoding::string::encode(2, &self.next_page_token, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::message::merge_repeated(wire_type, &mut self.entries, buf, ctx),
            2 => encoding::string::merge(wire_type, &mut self.next_page_token, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(1, &self.entries)
            + self.encoded.len()
            + if self.next_page_token.is_empty() {
                0
            } else {
                encoding::string::encoded_len(2, &self.next_page_token)
            }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.next_page_token.clear();
        self.encoded.clear();
        self.encoded_count = 0;
    }
}

/// Encodes log entries one after the other as field 1 of a
/// `ListEventsResponse`, from their stored payloads.
#[derive(Default)]
pub struct EntryWriter {
    bytes: Vec<u8>,
    count: usize,
}

impl EntryWriter {
    /// Adds an entry: `payload` as the log stores it (a `LogEntry` without
    /// `superseded_by`, field 4), then field 4 when it is set. A field
    /// after the others decodes as if written in its place.
    pub fn push(&mut self, payload: &[u8], superseded_by: &str) {
        let buf = &mut self.bytes;
        let len = payload.len() + bytes_len(4, superseded_by.as_bytes());
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
        buf.extend_from_slice(payload);
        put_bytes(4, superseded_by.as_bytes(), buf);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// `annals.v1.AppendRequest` with its events encoded already (`repeated
/// Event events = 1;`) and `omit_events = 3` set: a bulk loader encodes
/// each event once, and a batch sent again without a refused event is not
/// encoded again. Only for sending.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedAppend {
    events: Vec<u8>,
}

impl EncodedAppend {
    /// The request for events encoded by `encode_event`, in order.
    pub fn new<'a>(events: impl IntoIterator<Item = &'a [u8]>) -> EncodedAppend {
        let mut bytes = Vec::new();
        for event in events {
            bytes.extend_from_slice(event);
        }
        EncodedAppend { events: bytes }
    }

    /// One event as an `events` entry of the request (field 1).
    pub fn encode_event(event: &proto::Event) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(prost::Message::encoded_len(event) + 4);
        encoding::message::encode(1, event, &mut bytes);
        bytes
    }
}

impl prost::Message for EncodedAppend {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.events);
        encoding::bool::encode(3, &true, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.events.len() + encoding::bool::encoded_len(3, &true)
    }

    fn clear(&mut self) {
        self.events.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn written_relations_decode_as_the_generated_ones_would() {
        let relations = [
            proto::Relation {
                a: "china".into(),
                b: "north-korea".into(),
                kind: "alliance".into(),
                directed: false,
                since: "1961-09-10".into(),
                certain: true,
                event_id: "article-013".into(),
            },
            proto::Relation {
                a: "kim-jong-un".into(),
                b: "north-korea".into(),
                kind: "leads".into(),
                directed: true,
                since: "2011-12".into(),
                certain: false,
                event_id: String::new(),
            },
        ];
        let mut writer = RelationWriter::default();
        for relation in &relations {
            writer.push(&RelationFields {
                a: &relation.a,
                b: &relation.b,
                kind: &relation.kind,
                directed: relation.directed,
                since: relation.since.as_bytes(),
                certain: relation.certain,
                event_id: relation.event_id.as_bytes(),
            });
        }
        assert_eq!(writer.len(), 2);
        let response = ListRelationsResponse::encoded(writer, "next".into());
        let bytes = response.encode_to_vec();
        assert_eq!(bytes.len(), response.encoded_len());
        let decoded = ListRelationsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.relations, relations);
        assert_eq!(decoded.next_page_token, "next");
        // And a message built field by field encodes the same bytes.
        let built = ListRelationsResponse {
            relations: relations.to_vec(),
            next_page_token: "next".into(),
            ..Default::default()
        };
        assert_eq!(built.encode_to_vec(), bytes);
    }

    #[test]
    fn written_entries_decode_as_the_generated_ones_would() {
        let entry = |seq: u64, id: &str, superseded_by: &str| proto::LogEntry {
            seq,
            recorded_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000,
            }),
            event: Some(proto::Event {
                id: id.into(),
                kind: "consult".into(),
                labels: [("cameo_root".to_string(), "04".to_string())].into(),
                ..Default::default()
            }),
            superseded_by: superseded_by.into(),
        };
        let entries = [entry(3, "a", ""), entry(9, "b", "fix-b")];
        let mut writer = EntryWriter::default();
        for stored in &entries {
            // As the log stores it: without `superseded_by`.
            let payload = proto::LogEntry {
                superseded_by: String::new(),
                ..stored.clone()
            }
            .encode_to_vec();
            writer.push(&payload, &stored.superseded_by);
        }
        assert_eq!(writer.len(), 2);
        let response = ListEventsResponse::encoded(writer, "next".into());
        let bytes = response.encode_to_vec();
        assert_eq!(bytes.len(), response.encoded_len());
        let decoded = ListEventsResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.entries, entries);
        assert_eq!(decoded.next_page_token, "next");
        assert_eq!(
            ListEventsResponse::new(entries.to_vec(), "next".into()).encode_to_vec(),
            bytes
        );
    }

    #[test]
    fn an_encoded_append_is_an_append_request() {
        let events: Vec<proto::Event> = ["a", "b"]
            .iter()
            .map(|id| proto::Event {
                id: id.to_string(),
                kind: "consult".into(),
                labels: [("goldstein".to_string(), "1.5".to_string())].into(),
                ..Default::default()
            })
            .collect();
        let encoded: Vec<Vec<u8>> = events.iter().map(EncodedAppend::encode_event).collect();
        let request = EncodedAppend::new(encoded.iter().map(Vec::as_slice));
        let bytes = prost::Message::encode_to_vec(&request);
        assert_eq!(bytes.len(), prost::Message::encoded_len(&request));
        let decoded = <proto::AppendRequest as prost::Message>::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.events, events);
        assert!(decoded.omit_events);
        assert_eq!(decoded.expected_last_seq, None);
    }
}
