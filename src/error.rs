//! The one error type of the domain. It is mapped to a gRPC status in exactly
//! one place, `service::status`; nothing here knows about tonic.

/// Everything that can go wrong below the service layer. Every message says
/// what was wrong, and `InvalidArgument` names the offending field the way a
/// client wrote it (`events[2].occurred.start`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DataLoss(String),
    #[error("storage: {0}")]
    Storage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its sources, each once: a transport or TLS error keeps
/// its detail (a refused certificate, say) in them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field of an `InvalidArgument` with where it sits in the
    /// request (`events[3]` + `occurred.start`).
    pub fn within(self, prefix: &str) -> Error {
        match self {
            Error::InvalidArgument { field, message } => Error::InvalidArgument {
                field: if field.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{field}")
                },
                message,
            },
            other => other,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(error: sled::Error) -> Error {
        match error {
            sled::Error::Corruption { .. } => Error::DataLoss(format!("store corrupted: {error}")),
            other => Error::Storage(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error::Storage(error.to_string())
    }
}
