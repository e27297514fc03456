//! The one place a domain error becomes a gRPC `Status`, and the bounds on
//! what a status may carry.

use crate::error::Error;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

/// Largest request the service takes; larger ones are RESOURCE_EXHAUSTED.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Longest status message (and field name) sent. A status travels in
/// HTTP/2 headers, and messages quote what the client sent: a megabyte id
/// would otherwise come back as a megabyte header, which clients refuse
/// (by closing the connection).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// Cuts `text` to `MAX_STATUS_MESSAGE_BYTES` at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_STATUS_MESSAGE_BYTES {
        let mut end = MAX_STATUS_MESSAGE_BYTES - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument { field, message } => {
                let (field, message) = (bounded(field), bounded(message));
                Status::with_error_details(
                    tonic::Code::InvalidArgument,
                    bounded(format!("{field}: {message}")),
                    ErrorDetails::with_bad_request_violation(field, message),
                )
            }
            Error::NotFound(message) => Status::not_found(bounded(message)),
            Error::AlreadyExists(message) => Status::already_exists(bounded(message)),
            Error::FailedPrecondition(message) => Status::failed_precondition(bounded(message)),
            Error::ResourceExhausted(message) => Status::resource_exhausted(bounded(message)),
            Error::Unavailable(message) => Status::unavailable(bounded(message)),
            Error::DataLoss(message) => Status::data_loss(bounded(message)),
            Error::Storage(message) => Status::internal(bounded(format!("storage: {message}"))),
        }
    }
}
