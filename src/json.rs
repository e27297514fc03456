//! Proto3 JSON, the canonical mapping, for any message of the API: the form
//! of `data/*.jsonl`, of `annals append FILE`, and of `--json` output.
//!
//! Driven by the descriptors compiled into the binary (prost-reflect), so
//! it follows the `.proto` exactly: enums by name, 64-bit integers as
//! strings, timestamps as RFC 3339, unknown fields refused.

use crate::proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use std::sync::OnceLock;

pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the compiled descriptors decode")
    })
}

fn descriptor(full_name: &str) -> prost_reflect::MessageDescriptor {
    pool()
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is a message of the API"))
}

/// A message of the API, by its protobuf type name.
pub trait Named: Message + Default {
    const NAME: &'static str;
}

macro_rules! named {
    ($($message:ident),* $(,)?) => {
        $(impl Named for crate::proto::$message {
            const NAME: &'static str = concat!("annals.v1.", stringify!($message));
        })*
    };
}

named!(
    Event,
    LogEntry,
    AppendResponse,
    GetEventResponse,
    ReadLogResponse,
    SubscribeResponse,
    GetEntityResponse,
    ListEntitiesResponse,
    ListRelationsResponse,
    RelationHistoryResponse,
    AttributeHistoryResponse,
    ListEventsResponse,
    DiffResponse,
    CountEventsResponse,
    WatchEntityResponse,
    WatchRelationsResponse,
);

/// Proto3 JSON of `message`, with the .proto's field names.
pub fn to_json<M: Named>(message: &M) -> serde_json::Value {
    let dynamic = DynamicMessage::decode(descriptor(M::NAME), message.encode_to_vec().as_slice())
        .expect("a message decodes as its own type");
    let options = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("every message has a JSON form")
}

/// Parses proto3 JSON (either field-name style); unknown fields are errors.
pub fn from_json<M: Named>(text: &str) -> Result<M, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let dynamic =
        DynamicMessage::deserialize_with_options(descriptor(M::NAME), &mut deserializer, &options)
            .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    #[test]
    fn events_round_trip_through_json() {
        let line = r#"{"id":"e-1","kind":"meeting","occurred":{"start":"2024-04-13"},
            "effects":[{"declare":{"id":"china","name":"China","type":"ENTITY_TYPE_COUNTRY"}}],
            "labels":{"basis":"A"}}"#;
        let event: proto::Event = from_json(line).unwrap();
        assert_eq!(event.effects.len(), 1);
        assert_eq!(event.labels["basis"], "A");
        let json = to_json(&event);
        assert_eq!(json["effects"][0]["declare"]["type"], "ENTITY_TYPE_COUNTRY");
        let again: proto::Event = from_json(&json.to_string()).unwrap();
        assert_eq!(again, event);
    }

    #[test]
    fn unknown_fields_and_bad_enums_are_refused() {
        assert!(from_json::<proto::Event>(r#"{"id":"x","colour":"red"}"#).is_err());
        assert!(from_json::<proto::Event>(
            r#"{"effects":[{"declare":{"type":"ENTITY_TYPE_PLANET"}}]}"#
        )
        .is_err());
        assert!(from_json::<proto::Event>("{} {}").is_err());
    }

    #[test]
    fn seqs_print_as_strings_and_times_as_rfc3339() {
        let entry = proto::LogEntry {
            seq: 7,
            recorded_at: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let json = to_json(&entry);
        assert_eq!(json["seq"], "7");
        assert_eq!(json["recorded_at"], "1970-01-01T00:00:00Z");
    }
}
