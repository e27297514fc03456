//! The server's own gRPC routes as a client channel: the console's calls go
//! through exactly what a network call goes through — access control, load
//! shedding, deadlines, metrics, the service — without leaving the process.

use crate::proto::timeline_service_client::TimelineServiceClient;
use tonic::codegen::http::HeaderMap;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// A channel to the gRPC routes, cheap to clone.
#[derive(Clone)]
pub struct Local {
    routes: axum::Router,
}

/// A channel carrying one caller's credentials.
pub type Channel = InterceptedService<axum::Router, Forward>;

impl Local {
    pub fn new(routes: axum::Router) -> Local {
        Local { routes }
    }

    /// A channel for the caller of an HTTP request: its `authorization`
    /// header goes with every call.
    pub fn channel(&self, headers: &HeaderMap) -> Channel {
        let authorization = headers
            .get("authorization")
            .and_then(|value| MetadataValue::try_from(value.as_bytes()).ok());
        InterceptedService::new(self.routes.clone(), Forward { authorization })
    }

    pub fn timeline(&self, headers: &HeaderMap) -> TimelineServiceClient<Channel> {
        TimelineServiceClient::new(self.channel(headers))
            .max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// Puts the caller's `authorization` on each call.
#[derive(Clone)]
pub struct Forward {
    authorization: Option<AsciiMetadataValue>,
}

impl Interceptor for Forward {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}
