//! A typed client for annals, for the CLI and for other Rust services.
//!
//! `Client` wraps the generated tonic client (re-exported as
//! `TimelineServiceClient` for full control) with one method per question,
//! following pages for you. Nothing is compressed unless `ClientOptions`
//! asks for gzip. `Client::connect_with` adds a bearer token and TLS
//! (`ClientOptions`).

use crate::proto;
use std::fmt;
use tonic::codec::{CompressionEncoding, Streaming};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

pub use crate::proto::timeline_service_client::TimelineServiceClient;

/// The default server address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// A connection to an annals server; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    inner: TimelineServiceClient<InterceptedService<Channel, Credentials>>,
    /// The same channel, for calls whose messages are encoded by hand.
    grpc: tonic::client::Grpc<InterceptedService<Channel, Credentials>>,
}

/// How to reach a server that asks for a token or serves TLS.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Sent on every call as `authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// PEM of the certificate authority to trust for an `https://` server;
    /// without it, the system's roots.
    pub ca_cert: Option<Vec<u8>>,
    /// gzip requests and ask for gzipped replies: for a slow link. Off by
    /// default: near the server, gzip costs more CPU than it saves.
    pub gzip: bool,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("ca_cert", &self.ca_cert.as_ref().map(Vec::len))
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// Why `Client::connect_with` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{}", crate::error::chain(.0))]
    Transport(#[from] tonic::transport::Error),
    #[error("the token cannot be sent as gRPC metadata: use printable ASCII without spaces")]
    Token,
    #[error("{0} cannot use TLS: give an https:// address with a CA certificate")]
    Scheme(String),
}

/// Adds the bearer token, if any, to every call. The value is marked
/// sensitive so that HTTP/2 header compression never indexes it.
#[derive(Clone, Default)]
pub struct Credentials {
    bearer: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.bearer.is_some() {
            "(hidden)"
        } else {
            "none"
        };
        write!(f, "Credentials {{ bearer: {token} }}")
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub entity: String,
    /// Only events naming this entity too (the dyad).
    pub counterpart: String,
    /// Only events carrying every one of these labels.
    pub labels: std::collections::BTreeMap<String, String>,
    pub kind: String,
    pub from: String,
    pub to: String,
    pub as_of_seq: u64,
    pub newest_first: bool,
    /// Stop after this many (0: all).
    pub limit: usize,
}

impl Client {
    /// Connects to `server`: `http://host:port`, or just `host:port`.
    pub async fn connect(server: &str) -> Result<Client, tonic::transport::Error> {
        let address = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let channel = Endpoint::from_shared(address)?.connect().await?;
        Ok(Client::from_channel(channel))
    }

    /// Connects with a token and TLS: `https://host:port` uses TLS (trusting
    /// `options.ca_cert`, else the system's roots); a bare `host:port` uses
    /// TLS when a CA certificate is given.
    pub async fn connect_with(
        server: &str,
        options: ClientOptions,
    ) -> Result<Client, ConnectError> {
        let credentials = match &options.token {
            None => Credentials::default(),
            Some(token) => {
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(ConnectError::Token);
                }
                let mut bearer = MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| ConnectError::Token)?;
                bearer.set_sensitive(true);
                Credentials {
                    bearer: Some(bearer),
                }
            }
        };
        let address = if server.contains("://") {
            server.to_string()
        } else if options.ca_cert.is_some() {
            format!("https://{server}")
        } else {
            format!("http://{server}")
        };
        let mut endpoint = Endpoint::from_shared(address.clone())?;
        if address.starts_with("https://") {
            let tls = match &options.ca_cert {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls)?;
        } else if options.ca_cert.is_some() {
            return Err(ConnectError::Scheme(address));
        }
        let channel = endpoint.connect().await?;
        Ok(Client::with_credentials(channel, credentials, options.gzip))
    }

    pub fn from_channel(channel: Channel) -> Client {
        Client::with_credentials(channel, Credentials::default(), false)
    }

    /// Uncompressed unless `gzip`: a database's client is mostly on the
    /// same machine or network as its server, where gzip costs more CPU
    /// than it saves (an import spent a third of its time compressing its
    /// batches and their answers).
    fn with_credentials(channel: Channel, credentials: Credentials, gzip: bool) -> Client {
        let service = InterceptedService::new(channel, credentials);
        let mut inner =
            TimelineServiceClient::new(service.clone()).max_decoding_message_size(64 * 1024 * 1024);
        let mut grpc = tonic::client::Grpc::new(service);
        if gzip {
            inner = inner
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
            grpc = grpc
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Client { inner, grpc }
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&mut self) -> &mut TimelineServiceClient<InterceptedService<Channel, Credentials>> {
        &mut self.inner
    }

    pub async fn append(
        &mut self,
        events: Vec<proto::Event>,
        expected_last_seq: Option<u64>,
    ) -> Result<proto::AppendResponse, Status> {
        let request = proto::AppendRequest {
            events,
            expected_last_seq,
            omit_events: false,
        };
        Ok(self.inner.append(request).await?.into_inner())
    }

    /// Appends as a bulk loader does: events encoded once (and sent again
    /// without re-encoding after a refusal), the answer's entries with
    /// their seqs and `recorded_at` but not the events.
    pub async fn append_encoded(
        &mut self,
        request: crate::wire::EncodedAppend,
    ) -> Result<proto::AppendResponse, Status> {
        self.grpc.ready().await.map_err(|error| {
            Status::unavailable(format!("the server is not reachable: {error}"))
        })?;
        let codec =
            tonic_prost::ProstCodec::<crate::wire::EncodedAppend, proto::AppendResponse>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/annals.v1.TimelineService/Append",
        );
        Ok(self
            .grpc
            .unary(Request::new(request), path, codec)
            .await?
            .into_inner())
    }

    pub async fn event(&mut self, id: &str) -> Result<proto::LogEntry, Status> {
        let request = proto::GetEventRequest {
            selector: Some(proto::get_event_request::Selector::Id(id.to_string())),
        };
        let response = self.inner.get_event(request).await?.into_inner();
        response
            .entry
            .ok_or_else(|| Status::internal("GetEvent answered without an entry"))
    }

    pub async fn read_log(
        &mut self,
        from_seq: u64,
        limit: u32,
        reverse: bool,
    ) -> Result<proto::ReadLogResponse, Status> {
        let request = proto::ReadLogRequest {
            from_seq,
            limit,
            reverse,
        };
        Ok(self.inner.read_log(request).await?.into_inner())
    }

    pub async fn subscribe(
        &mut self,
        from_seq: u64,
        entity: &str,
        kind: &str,
    ) -> Result<Streaming<proto::SubscribeResponse>, Status> {
        let request = proto::SubscribeRequest {
            from_seq,
            entity: entity.to_string(),
            kind: kind.to_string(),
        };
        Ok(self.inner.subscribe(request).await?.into_inner())
    }

    /// A standing GetEntity: the answer as of `from_seq` (0: now), then
    /// each answer an appended event changes at `at`.
    pub async fn watch_entity(
        &mut self,
        id: &str,
        at: &str,
        from_seq: u64,
    ) -> Result<Streaming<proto::WatchEntityResponse>, Status> {
        let request = proto::WatchEntityRequest {
            id: id.to_string(),
            at: at.to_string(),
            from_seq,
        };
        Ok(self.inner.watch_entity(request).await?.into_inner())
    }

    /// A standing ListRelations, as `watch_entity`.
    pub async fn watch_relations(
        &mut self,
        entity: &str,
        counterpart: &str,
        kind: &str,
        at: &str,
        from_seq: u64,
    ) -> Result<Streaming<proto::WatchRelationsResponse>, Status> {
        let request = proto::WatchRelationsRequest {
            entity: entity.to_string(),
            counterpart: counterpart.to_string(),
            kind: kind.to_string(),
            at: at.to_string(),
            from_seq,
        };
        Ok(self.inner.watch_relations(request).await?.into_inner())
    }

    pub async fn entity(
        &mut self,
        id: &str,
        at: &str,
        as_of_seq: u64,
    ) -> Result<proto::GetEntityResponse, Status> {
        let request = proto::GetEntityRequest {
            id: id.to_string(),
            at: at.to_string(),
            as_of_seq,
        };
        Ok(self.inner.get_entity(request).await?.into_inner())
    }

    /// Every entity of a type (any: `Unspecified`) matching a prefix.
    pub async fn entities(
        &mut self,
        entity_type: proto::EntityType,
        query: &str,
        as_of_seq: u64,
    ) -> Result<Vec<proto::Entity>, Status> {
        let mut request = proto::ListEntitiesRequest {
            r#type: entity_type as i32,
            query: query.to_string(),
            as_of_seq,
            page_size: 1000,
            page_token: String::new(),
        };
        let mut entities = Vec::new();
        loop {
            let page = self
                .inner
                .list_entities(request.clone())
                .await?
                .into_inner();
            entities.extend(page.entities);
            if page.next_page_token.is_empty() {
                return Ok(entities);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// Every relation active at `at` (of `entity`, or the whole graph).
    pub async fn relations(
        &mut self,
        entity: &str,
        counterpart: &str,
        kind: &str,
        at: &str,
        as_of_seq: u64,
    ) -> Result<Vec<proto::Relation>, Status> {
        let mut request = proto::ListRelationsRequest {
            entity: entity.to_string(),
            counterpart: counterpart.to_string(),
            kind: kind.to_string(),
            at: at.to_string(),
            as_of_seq,
            page_size: 1000,
            page_token: String::new(),
        };
        let mut relations = Vec::new();
        loop {
            let page = self
                .inner
                .list_relations(request.clone())
                .await?
                .into_inner();
            relations.extend(page.relations);
            if page.next_page_token.is_empty() {
                return Ok(relations);
            }
            request.page_token = page.next_page_token;
        }
    }

    pub async fn history(
        &mut self,
        a: &str,
        b: &str,
        kind: &str,
        as_of_seq: u64,
    ) -> Result<Vec<proto::RelationInterval>, Status> {
        let request = proto::RelationHistoryRequest {
            a: a.to_string(),
            b: b.to_string(),
            kind: kind.to_string(),
            as_of_seq,
        };
        Ok(self
            .inner
            .relation_history(request)
            .await?
            .into_inner()
            .intervals)
    }

    /// Every value an entity's attributes (`key`'s only, unless empty) held.
    pub async fn attribute_history(
        &mut self,
        entity: &str,
        key: &str,
        as_of_seq: u64,
    ) -> Result<Vec<proto::AttributeInterval>, Status> {
        let request = proto::AttributeHistoryRequest {
            entity: entity.to_string(),
            key: key.to_string(),
            as_of_seq,
        };
        Ok(self
            .inner
            .attribute_history(request)
            .await?
            .into_inner()
            .intervals)
    }

    /// Events overlapping a window, following pages up to `query.limit`.
    pub async fn events(&mut self, query: &EventQuery) -> Result<Vec<proto::LogEntry>, Status> {
        let mut request = proto::ListEventsRequest {
            entity: query.entity.clone(),
            kind: query.kind.clone(),
            from: query.from.clone(),
            to: query.to.clone(),
            as_of_seq: query.as_of_seq,
            page_size: 1000,
            page_token: String::new(),
            newest_first: query.newest_first,
            counterpart: query.counterpart.clone(),
            labels: query.labels.clone(),
        };
        let mut entries = Vec::new();
        loop {
            let page = self.inner.list_events(request.clone()).await?.into_inner();
            entries.extend(page.entries);
            if query.limit > 0 && entries.len() >= query.limit {
                entries.truncate(query.limit);
                return Ok(entries);
            }
            if page.next_page_token.is_empty() {
                return Ok(entries);
            }
            request.page_token = page.next_page_token;
        }
    }

    pub async fn count_events(
        &mut self,
        request: proto::CountEventsRequest,
    ) -> Result<proto::CountEventsResponse, Status> {
        Ok(self.inner.count_events(request).await?.into_inner())
    }

    pub async fn diff(
        &mut self,
        from: &str,
        to: &str,
        entity: &str,
        as_of_seq: u64,
    ) -> Result<Vec<proto::StateChange>, Status> {
        let request = proto::DiffRequest {
            from: from.to_string(),
            to: to.to_string(),
            entity: entity.to_string(),
            as_of_seq,
        };
        Ok(self.inner.diff(request).await?.into_inner().changes)
    }
}
