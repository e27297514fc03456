//! The client of the timed calls. It counts the items of each answer in the
//! reply's wire bytes (field tags and lengths) instead of decoding them into
//! structs with a `String` per field, as pgbench takes its rows without
//! converting their values: the benchmark's clients share the two cores
//! with the server, and decoding hundreds of relations per reply would
//! spend them on the client. The correctness gate (`check.rs`) decodes
//! every answer in full.

use crate::questions::{Params, Question};
use crate::workload::{entity_name, valid_date};
use annals::proto;
use prost::bytes::Buf;
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// What a reply held: how many items of the counted fields, and the next
/// page's token.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counted {
    pub items: usize,
    pub next_page_token: String,
}

/// Which fields of a reply message are counted, and which is the token.
#[derive(Clone, Copy)]
struct Shape {
    counted: &'static [u32],
    token: Option<u32>,
}

/// ListRelationsResponse and ListEventsResponse: items in field 1, the
/// token in field 2.
const PAGE: Shape = Shape {
    counted: &[1],
    token: Some(2),
};

/// GetEntityResponse: attributes (2) and relations (3).
const STATE: Shape = Shape {
    counted: &[2, 3],
    token: None,
};

fn damaged() -> Status {
    Status::internal("the reply is not a well-formed protobuf message")
}

/// Counts the length-delimited fields of `shape` in one encoded message.
fn count(mut bytes: &[u8], shape: Shape) -> Result<Counted, Status> {
    use prost::encoding::decode_varint;
    let mut counted = Counted::default();
    while bytes.has_remaining() {
        let key = decode_varint(&mut bytes).map_err(|_| damaged())?;
        let (field, wire_type) = ((key >> 3) as u32, key & 7);
        let skip = match wire_type {
            0 => {
                decode_varint(&mut bytes).map_err(|_| damaged())?;
                0
            }
            1 => 8,
            2 => {
                let len = decode_varint(&mut bytes).map_err(|_| damaged())?;
                let len = usize::try_from(len).map_err(|_| damaged())?;
                if len > bytes.len() {
                    return Err(damaged());
                }
                if shape.counted.contains(&field) {
                    counted.items += 1;
                } else if shape.token == Some(field) {
                    counted.next_page_token =
                        String::from_utf8(bytes[..len].to_vec()).map_err(|_| damaged())?;
                }
                len
            }
            5 => 4,
            _ => return Err(damaged()),
        };
        if skip > bytes.len() {
            return Err(damaged());
        }
        bytes.advance(skip);
    }
    Ok(counted)
}

/// Encodes requests with prost, counts replies.
struct CountingCodec<T> {
    shape: Shape,
    request: PhantomData<T>,
}

struct RequestEncoder<T>(PhantomData<T>);

impl<T: prost::Message> Encoder for RequestEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

struct ReplyCounter(Shape);

impl Decoder for ReplyCounter {
    type Item = Counted;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Counted>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        count(&bytes, self.0).map(Some)
    }
}

impl<T: prost::Message + Send + 'static> Codec for CountingCodec<T> {
    type Encode = T;
    type Decode = Counted;
    type Encoder = RequestEncoder<T>;
    type Decoder = ReplyCounter;

    fn encoder(&mut self) -> RequestEncoder<T> {
        RequestEncoder(PhantomData)
    }

    fn decoder(&mut self) -> ReplyCounter {
        ReplyCounter(self.shape)
    }
}

/// One benchmark client: its own HTTP/2 connection.
pub struct Counter {
    grpc: tonic::client::Grpc<Channel>,
}

impl Counter {
    pub fn new(channel: Channel) -> Counter {
        Counter {
            grpc: tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        }
    }

    async fn call<T: prost::Message + Send + 'static>(
        &mut self,
        method: &'static str,
        shape: Shape,
        request: T,
    ) -> Result<Counted, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let codec = CountingCodec {
            shape,
            request: PhantomData,
        };
        let path = PathAndQuery::from_static(method);
        Ok(self
            .grpc
            .unary(tonic::Request::new(request), path, codec)
            .await?
            .into_inner())
    }

    /// Asks one question; returns the number of items in the answer (every
    /// page of relations).
    pub async fn ask(&mut self, question: Question, params: &Params) -> Result<usize, Status> {
        let entity = entity_name(params.entity);
        let at = valid_date(params.at);
        match question {
            Question::Q1 | Question::Q1Hot | Question::Q3 => {
                let mut request = proto::ListRelationsRequest {
                    entity,
                    at,
                    as_of_seq: params.as_of_seq,
                    page_size: 1000,
                    ..Default::default()
                };
                let mut items = 0;
                // Bounded: more pages than relations could exist means a
                // broken token.
                for _ in 0..10_000 {
                    let page = self
                        .call(
                            "/annals.v1.TimelineService/ListRelations",
                            PAGE,
                            request.clone(),
                        )
                        .await?;
                    items += page.items;
                    if page.next_page_token.is_empty() {
                        return Ok(items);
                    }
                    request.page_token = page.next_page_token;
                }
                Err(Status::internal("ListRelations kept returning page tokens"))
            }
            Question::Q2 => {
                let request = proto::GetEntityRequest {
                    id: entity,
                    at,
                    as_of_seq: 0,
                };
                let state = self
                    .call("/annals.v1.TimelineService/GetEntity", STATE, request)
                    .await?;
                Ok(state.items)
            }
            Question::Q4 => {
                let request = proto::ListEventsRequest {
                    entity,
                    from: at,
                    to: valid_date(params.window_end()),
                    page_size: 100,
                    ..Default::default()
                };
                let page = self
                    .call("/annals.v1.TimelineService/ListEvents", PAGE, request)
                    .await?;
                Ok(page.items)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn relation(b: &str) -> proto::Relation {
        proto::Relation {
            a: "country-001".into(),
            b: b.into(),
            kind: "alliance".into(),
            since: "1950-01-01".into(),
            certain: true,
            event_id: "e-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_the_relations_of_a_page_and_reads_its_token() {
        let page = proto::ListRelationsResponse::new(
            (0..250).map(|i| relation(&format!("x-{i}"))).collect(),
            "next".into(),
        );
        let counted = count(&page.encode_to_vec(), PAGE).unwrap();
        assert_eq!(
            counted,
            Counted {
                items: 250,
                next_page_token: "next".into()
            }
        );
        let last = proto::ListRelationsResponse::default();
        assert_eq!(
            count(&last.encode_to_vec(), PAGE).unwrap(),
            Counted::default()
        );
    }

    #[test]
    fn counts_attributes_and_relations_of_a_state_but_not_the_entity() {
        let state = proto::GetEntityResponse {
            entity: Some(proto::Entity {
                id: "country-001".into(),
                ..Default::default()
            }),
            attributes: vec![proto::Attribute::default(); 3],
            relations: vec![relation("x"), relation("y")],
        };
        assert_eq!(count(&state.encode_to_vec(), STATE).unwrap().items, 5);
    }

    #[test]
    fn a_truncated_reply_is_an_error() {
        let page = proto::ListRelationsResponse::new(vec![relation("x")], String::new());
        let bytes = page.encode_to_vec();
        assert!(count(&bytes[..bytes.len() - 3], PAGE).is_err());
    }
}
