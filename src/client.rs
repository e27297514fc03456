//! A typed client for annals, for the CLI and for other Rust services.
//!
//! `Client` wraps the generated tonic client (re-exported as
//! `TimelineServiceClient` for full control) with one method per question,
//! following pages for you. Requests and responses are gzip-compressed.

use crate::proto;
use tonic::codec::{CompressionEncoding, Streaming};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

pub use crate::proto::timeline_service_client::TimelineServiceClient;

/// The default server address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// A connection to an annals server; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    inner: TimelineServiceClient<Channel>,
}

/// Which events to list.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub entity: String,
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

    pub fn from_channel(channel: Channel) -> Client {
        let inner = TimelineServiceClient::new(channel)
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 * 1024 * 1024);
        Client { inner }
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&mut self) -> &mut TimelineServiceClient<Channel> {
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
        };
        Ok(self.inner.append(request).await?.into_inner())
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
