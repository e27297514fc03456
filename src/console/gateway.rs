//! The JSON gateway: `POST /api/annals.v1.TimelineService/METHOD` with the
//! request as proto3 JSON, answered with the response as proto3 JSON (the
//! .proto's field names, defaults included). Generated from the service's
//! descriptors, not written per method: the JSON becomes the method's
//! request message, the call goes to the gRPC service in-process, and its
//! answer or status comes back as JSON — so it answers exactly what `buf
//! curl` would. Errors are `{"code": "NOT_FOUND", "message": ...}` with the
//! HTTP status gRPC-gateway gives that code.
//!
//! Only `application/json` bodies are taken: a browser sends those across
//! sites only after a CORS preflight, which this server never grants, so a
//! page elsewhere cannot append through a loopback server's console.

use super::local::Local;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MethodDescriptor, SerializeOptions};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The service the gateway serves.
pub const SERVICE: &str = "annals.v1.TimelineService";

/// Largest JSON request taken.
pub const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

pub async fn call(
    State(local): State<Local>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match answer(&local, &method, &headers, &body).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(status) => error(&status),
    }
}

async fn answer(
    local: &Local,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Status> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(Status::invalid_argument(
            "send the request as proto3 JSON with content-type: application/json",
        ));
    }
    let method = descriptor(method)?;
    if method.is_server_streaming() || method.is_client_streaming() {
        return Err(Status::unimplemented(format!(
            "{} streams: call it over gRPC (or gRPC-Web); the JSON gateway answers unary methods only",
            method.name()
        )));
    }
    if body.len() > MAX_JSON_BYTES {
        return Err(Status::resource_exhausted(format!(
            "the JSON request is {} bytes, over the gateway's {MAX_JSON_BYTES}",
            body.len()
        )));
    }
    let text = if body.is_empty() { &b"{}"[..] } else { body };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let request =
        DynamicMessage::deserialize_with_options(method.input(), &mut deserializer, &options)
            .and_then(|request| deserializer.end().map(|()| request))
            .map_err(|error| {
                Status::invalid_argument(format!(
                    "the body is not a {}: {error}",
                    method.input().full_name()
                ))
            })?;
    let mut grpc = tonic::client::Grpc::new(local.channel(headers))
        .max_decoding_message_size(64 * 1024 * 1024);
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(format!("the service is not ready: {error}")))?;
    let path = format!("/{SERVICE}/{}", method.name())
        .parse()
        .map_err(|_| Status::invalid_argument("not a method name"))?;
    let response = grpc
        .unary(tonic::Request::new(request.encode_to_vec()), path, Raw)
        .await?
        .into_inner();
    let response = DynamicMessage::decode(method.output(), response.as_slice())
        .map_err(|error| Status::internal(format!("the answer does not decode: {error}")))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    response
        .serialize_with_options(&mut serializer, &options)
        .map_err(|error| Status::internal(format!("the answer has no JSON form: {error}")))?;
    String::from_utf8(out).map_err(|error| Status::internal(error.to_string()))
}

fn descriptor(method: &str) -> Result<MethodDescriptor, Status> {
    crate::json::pool()
        .get_service_by_name(SERVICE)
        .and_then(|service| {
            service
                .methods()
                .find(|candidate| candidate.name() == method)
        })
        .ok_or_else(|| Status::not_found(format!("{SERVICE} has no method {method:?}")))
}

/// A status as the gateway's JSON error, with gRPC-gateway's HTTP status.
pub fn error(status: &Status) -> Response {
    use tonic::Code;
    let http = match status.code() {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = format!("{:?}", status.code());
    let body = serde_json::json!({
        "code": screaming(&code),
        "message": status.message(),
    });
    (
        http,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `InvalidArgument` → `INVALID_ARGUMENT`, as gRPC names its codes.
fn screaming(name: &str) -> String {
    let mut out = String::new();
    for (index, character) in name.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

/// Messages passed through as their encoded bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(buffer, &item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        let mut item = vec![0; buffer.remaining()];
        buffer.copy_to_slice(&mut item);
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(super::screaming("InvalidArgument"), "INVALID_ARGUMENT");
        assert_eq!(super::screaming("Ok"), "OK");
        assert_eq!(super::screaming("DataLoss"), "DATA_LOSS");
    }
}
