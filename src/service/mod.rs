//! The gRPC layer: thin tonic handlers. Each one validates the request at
//! the edge, asks the engine, and converts the answer; the domain error is
//! mapped to a `Status` in exactly one place (`impl From<Error> for Status`).

use crate::engine::{wire_entry, Database};
use crate::error::Error;
use crate::metrics::OpenStream;
use crate::page;
use crate::proto::timeline_service_server::TimelineService;
use crate::proto::{self, get_event_request::Selector};
use crate::query::{EventFilter, Window};
use crate::time::{Bucket, Instant};
use crate::wire::RelationWriter;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

mod fields;
mod standing;
mod status;
mod subscribe;
mod view;
use fields::*;
pub use status::{MAX_REQUEST_BYTES, MAX_STATUS_MESSAGE_BYTES};
use subscribe::follow;

type Result<T> = std::result::Result<Response<T>, Status>;

pub struct Service {
    db: Database,
    shutdown: watch::Receiver<bool>,
    /// One permit per open subscription; none left means RESOURCE_EXHAUSTED.
    subscribers: Arc<Semaphore>,
    max_subscribers: usize,
    /// One permit per open watch (WatchEntity, WatchRelations).
    watches: Arc<Semaphore>,
    max_watches: usize,
    /// Reads the log once for every watch.
    dispatcher: standing::Dispatcher,
    /// The longest a read waits for the view to reach its `as_of_seq`
    /// (cluster mode); a client's shorter `grpc-timeout` wins.
    view_wait: Duration,
}

/// The permits of a cap on open streams of `kind`: the streams open, and
/// what `annals_subscriptions_open` reads.
fn open_streams(db: &Database, kind: OpenStream, max: usize) -> Arc<Semaphore> {
    let permits = Arc::new(Semaphore::new(max));
    db.metrics().count_open(kind, &permits, max);
    permits
}

/// Open subscriptions a `Service` allows unless told otherwise.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1024;

impl Service {
    /// `shutdown` turns true when the server is draining; open subscriptions
    /// then end with UNAVAILABLE so that the drain can finish.
    pub fn new(db: Database, shutdown: watch::Receiver<bool>) -> Service {
        Service {
            subscribers: open_streams(&db, OpenStream::Subscribe, DEFAULT_MAX_SUBSCRIBERS),
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            watches: open_streams(&db, OpenStream::Watch, DEFAULT_MAX_SUBSCRIBERS),
            max_watches: DEFAULT_MAX_SUBSCRIBERS,
            db,
            shutdown,
            dispatcher: standing::Dispatcher::default(),
            view_wait: Duration::from_secs(30),
        }
    }

    /// Caps the watches open at once (each holds a task and a channel).
    pub fn with_max_watches(mut self, max_watches: usize) -> Service {
        self.watches = open_streams(&self.db, OpenStream::Watch, max_watches);
        self.max_watches = max_watches;
        self
    }

    /// Caps the subscriptions open at once: each holds a task and a
    /// channel, so the cap bounds what idle followers can cost.
    pub fn with_max_subscribers(mut self, max_subscribers: usize) -> Service {
        self.subscribers = open_streams(&self.db, OpenStream::Subscribe, max_subscribers);
        self.max_subscribers = max_subscribers;
        self
    }
}

#[tonic::async_trait]
impl TimelineService for Service {
    async fn append(
        &self,
        request: Request<proto::AppendRequest>,
    ) -> Result<proto::AppendResponse> {
        let request = request.into_inner();
        let size = prost::Message::encoded_len(&request);
        if size > MAX_REQUEST_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "the request is {size} bytes; an append takes at most {MAX_REQUEST_BYTES}"
            ))
            .into());
        }
        let omit_events = request.omit_events;
        let appended = self
            .db
            .append(request.events, request.expected_last_seq)
            .await?;
        Ok(Response::new(proto::AppendResponse {
            entries: appended
                .entries
                .into_iter()
                .map(|entry| {
                    let mut entry = wire_entry(entry, "");
                    if omit_events {
                        entry.event = None;
                    }
                    entry
                })
                .collect(),
            last_seq: appended.last_seq,
            already_present: appended.already_present,
        }))
    }

    async fn get_event(
        &self,
        request: Request<proto::GetEventRequest>,
    ) -> Result<proto::GetEventResponse> {
        let last = self.db.last_seq();
        let seq = match request.into_inner().selector {
            Some(Selector::Id(id)) => self
                .db
                .read(0, |snapshot| snapshot.seq_of(&id))??
                .ok_or_else(|| Error::NotFound(format!("id: no event {id:?}")))?,
            Some(Selector::Seq(seq)) if (1..=last).contains(&seq) => seq,
            Some(Selector::Seq(seq)) => {
                return Err(
                    Error::NotFound(format!("seq: no entry {seq}; the log ends at {last}")).into(),
                )
            }
            None => return Err(Error::invalid("selector", "give an event id or a seq").into()),
        };
        let entry = self.db.entries(&[seq], last)?.pop();
        Ok(Response::new(proto::GetEventResponse { entry }))
    }

    async fn read_log(
        &self,
        request: Request<proto::ReadLogRequest>,
    ) -> Result<proto::ReadLogResponse> {
        let request = request.into_inner();
        let limit = page::page_size(request.limit);
        let last_seq = self.db.last_seq();
        let entries = self.db.read_log(request.from_seq, limit, request.reverse)?;
        let next_seq = match (entries.last(), request.reverse) {
            (Some(entry), false) if entry.seq < last_seq && entries.len() == limit => entry.seq + 1,
            (Some(entry), true) if entry.seq > 1 && entries.len() == limit => entry.seq - 1,
            _ => 0,
        };
        Ok(Response::new(proto::ReadLogResponse {
            entries,
            next_seq,
            last_seq,
        }))
    }

    type SubscribeStream = Pin<
        Box<
            dyn tokio_stream::Stream<Item = std::result::Result<proto::SubscribeResponse, Status>>
                + Send,
        >,
    >;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Self::SubscribeStream> {
        let request = request.into_inner();
        let kind = optional_kind("kind", &request.kind)?.map(str::to_string);
        let entity = match optional(&request.entity) {
            Some(name) => Some(
                self.db
                    .read(0, |snapshot| resolve(snapshot, "entity", name))??,
            ),
            None => None,
        };
        let permit = Arc::clone(&self.subscribers)
            .try_acquire_owned()
            .map_err(|_| {
                Error::ResourceExhausted(format!(
                    "{} subscriptions are open, the server's limit; close one or retry later",
                    self.max_subscribers
                ))
            })?;
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(follow(
            permit,
            self.db.clone(),
            request.from_seq.max(1),
            entity,
            kind,
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type WatchEntityStream = Pin<
        Box<
            dyn tokio_stream::Stream<Item = std::result::Result<proto::WatchEntityResponse, Status>>
                + Send,
        >,
    >;

    async fn watch_entity(
        &self,
        request: Request<proto::WatchEntityRequest>,
    ) -> Result<Self::WatchEntityStream> {
        let stream = self.start_watch_entity(request.into_inner())?;
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchRelationsStream = Pin<
        Box<
            dyn tokio_stream::Stream<
                    Item = std::result::Result<proto::WatchRelationsResponse, Status>,
                > + Send,
        >,
    >;

    async fn watch_relations(
        &self,
        request: Request<proto::WatchRelationsRequest>,
    ) -> Result<Self::WatchRelationsStream> {
        let stream = self.start_watch_relations(request.into_inner())?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_entity(
        &self,
        request: Request<proto::GetEntityRequest>,
    ) -> Result<proto::GetEntityResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        if request.id.is_empty() {
            return Err(Error::invalid("id", "name the entity (id or alias)").into());
        }
        let at = at_instant("at", &request.at)?;
        let response = self.db.read(request.as_of_seq, |snapshot| {
            let id = resolve(snapshot, "id", &request.id)?;
            Ok::<_, Error>(proto::GetEntityResponse {
                entity: snapshot.entity(&id),
                attributes: snapshot.attributes(&id, at)?,
                relations: snapshot.relations(Some(&id), None, None, at)?,
            })
        })??;
        Ok(Response::new(response))
    }

    async fn list_entities(
        &self,
        request: Request<proto::ListEntitiesRequest>,
    ) -> Result<proto::ListEntitiesResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        let entity_type = match proto::EntityType::try_from(request.r#type) {
            Ok(proto::EntityType::Unspecified) => None,
            Ok(entity_type) => Some(entity_type),
            Err(_) => {
                return Err(Error::invalid(
                    "type",
                    format!("{} is not an entity type", request.r#type),
                )
                .into())
            }
        };
        let fingerprint = page::fingerprint(&[
            "entities",
            &request.r#type.to_string(),
            &request.query,
            &request.as_of_seq.to_string(),
        ]);
        let cursor = cursor(
            &self.db,
            &request.page_token,
            fingerprint,
            request.as_of_seq,
        )?;
        let entities = self.db.read(cursor.as_of, |snapshot| {
            snapshot.entities(entity_type, &request.query)
        })?;
        let (entities, next_page_token) = page::slice(
            entities,
            &cursor,
            page::page_size(request.page_size),
            fingerprint,
        );
        Ok(Response::new(proto::ListEntitiesResponse {
            entities,
            next_page_token,
        }))
    }

    async fn list_relations(
        &self,
        request: Request<proto::ListRelationsRequest>,
    ) -> Result<proto::ListRelationsResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        let at = at_instant("at", &request.at)?;
        let kind = optional_kind("kind", &request.kind)?;
        let fingerprint = page::fingerprint(&[
            "relations",
            &request.entity,
            &request.counterpart,
            &request.kind,
            &request.at,
            &request.as_of_seq.to_string(),
        ]);
        let cursor = cursor(
            &self.db,
            &request.page_token,
            fingerprint,
            request.as_of_seq,
        )?;
        let size = page::page_size(request.page_size);
        let response = self.db.read(cursor.as_of, |snapshot| {
            let entity = optional(&request.entity)
                .map(|name| resolve(snapshot, "entity", name))
                .transpose()?;
            let counterpart = optional(&request.counterpart)
                .map(|name| resolve(snapshot, "counterpart", name))
                .transpose()?;
            // With a counterpart alone, its relations with anyone.
            let (entity, counterpart) = match (entity.as_deref(), counterpart.as_deref()) {
                (Some(entity), counterpart) => (entity, counterpart),
                (None, Some(counterpart)) => (counterpart, None),
                (None, None) => {
                    // The whole graph: every relation, then the page of it.
                    let relations = snapshot.relations(None, None, kind, at)?;
                    let (relations, next_page_token) =
                        page::slice(relations, &cursor, size, fingerprint);
                    return Ok::<_, Error>(proto::ListRelationsResponse::new(
                        relations,
                        next_page_token,
                    ));
                }
            };
            // One entity's relations: read from where the last page ended,
            // encoded as they are read.
            let after = (!cursor.after.is_empty()).then_some(cursor.after.as_slice());
            let mut relations = RelationWriter::default();
            let last = snapshot.relations_page_encoded(
                entity,
                counterpart,
                kind,
                at,
                after,
                size,
                &mut relations,
            )?;
            let next = last
                .map(|group| page::after(cursor.as_of, group, fingerprint))
                .unwrap_or_default();
            Ok(proto::ListRelationsResponse::encoded(relations, next))
        })??;
        Ok(Response::new(response))
    }

    async fn relation_history(
        &self,
        request: Request<proto::RelationHistoryRequest>,
    ) -> Result<proto::RelationHistoryResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        if request.a.is_empty() {
            return Err(Error::invalid("a", "name the entity whose relations to trace").into());
        }
        let kind = optional_kind("kind", &request.kind)?;
        let intervals = self.db.read(request.as_of_seq, |snapshot| {
            let a = resolve(snapshot, "a", &request.a)?;
            let b = optional(&request.b)
                .map(|name| resolve(snapshot, "b", name))
                .transpose()?;
            snapshot.relation_history(&a, b.as_deref(), kind)
        })??;
        Ok(Response::new(proto::RelationHistoryResponse { intervals }))
    }

    async fn attribute_history(
        &self,
        request: Request<proto::AttributeHistoryRequest>,
    ) -> Result<proto::AttributeHistoryResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        if request.entity.is_empty() {
            return Err(
                Error::invalid("entity", "name the entity whose attributes to trace").into(),
            );
        }
        let key = optional_kind("key", &request.key)?;
        let intervals = self.db.read(request.as_of_seq, |snapshot| {
            let entity = resolve(snapshot, "entity", &request.entity)?;
            snapshot.attribute_history(&entity, key)
        })??;
        Ok(Response::new(proto::AttributeHistoryResponse { intervals }))
    }

    async fn list_events(
        &self,
        request: Request<proto::ListEventsRequest>,
    ) -> Result<proto::ListEventsResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        let (from, to, kind, labels) =
            event_terms(&request.from, &request.to, &request.kind, &request.labels)?;
        let label_text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let fingerprint = page::fingerprint(&[
            "events",
            &request.entity,
            &request.counterpart,
            &request.kind,
            &label_text.join("\0"),
            &request.from,
            &request.to,
            &request.as_of_seq.to_string(),
            if request.newest_first {
                "newest"
            } else {
                "oldest"
            },
        ]);
        let cursor = cursor(
            &self.db,
            &request.page_token,
            fingerprint,
            request.as_of_seq,
        )?;
        let size = page::page_size(request.page_size);
        // Oldest first, the listing stops one past this page (to know there
        // is another); newest first needs the whole window.
        let limit = (!request.newest_first).then(|| {
            (cursor.offset as usize)
                .saturating_add(size)
                .saturating_add(1)
        });
        let mut seqs = self.db.read(cursor.as_of, |snapshot| {
            let (entity, counterpart) = dyad(snapshot, &request.entity, &request.counterpart)?;
            snapshot.events(&EventFilter {
                entity,
                counterpart,
                kind,
                labels,
                from,
                to,
                window: Window::Overlaps,
                limit,
            })
        })??;
        if request.newest_first {
            seqs.reverse();
        }
        let (seqs, next_page_token) = page::slice(seqs, &cursor, size, fingerprint);
        let entries = self.db.encoded_entries(&seqs, cursor.as_of)?;
        Ok(Response::new(proto::ListEventsResponse::encoded(
            entries,
            next_page_token,
        )))
    }

    async fn count_events(
        &self,
        request: Request<proto::CountEventsRequest>,
    ) -> Result<proto::CountEventsResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        let (from, to, kind, labels) =
            event_terms(&request.from, &request.to, &request.kind, &request.labels)?;
        let bucket = match proto::Bucket::try_from(request.bucket) {
            Ok(proto::Bucket::Day) => Bucket::Day,
            Ok(proto::Bucket::Month | proto::Bucket::Unspecified) => Bucket::Month,
            Ok(proto::Bucket::Year) => Bucket::Year,
            Err(_) => {
                return Err(Error::invalid(
                    "bucket",
                    format!(
                        "{} is not a Bucket: BUCKET_DAY, BUCKET_MONTH or BUCKET_YEAR",
                        request.bucket
                    ),
                )
                .into())
            }
        };
        let value_label = optional(&request.value_label);
        if let Some(label) = value_label {
            check_label_key("value_label", label)?;
        }
        let (as_of, buckets) = self.db.read(request.as_of_seq, |snapshot| {
            let (entity, counterpart) = dyad(snapshot, &request.entity, &request.counterpart)?;
            let buckets = snapshot.count_events(
                &EventFilter {
                    entity,
                    counterpart,
                    kind,
                    labels,
                    from,
                    to,
                    window: Window::StartsIn,
                    limit: None,
                },
                bucket,
                value_label,
            )?;
            Ok::<_, Error>((snapshot.as_of(), buckets))
        })??;
        let total = buckets.iter().map(|counted| counted.count).sum();
        Ok(Response::new(proto::CountEventsResponse {
            buckets: buckets
                .into_iter()
                .map(|counted| proto::EventCount {
                    mean: if counted.valued == 0 {
                        0.0
                    } else {
                        counted.sum / counted.valued as f64
                    },
                    start: counted.start,
                    count: counted.count,
                    sum: counted.sum,
                    valued: counted.valued,
                })
                .collect(),
            total,
            as_of_seq: as_of,
        }))
    }

    async fn diff(&self, request: Request<proto::DiffRequest>) -> Result<proto::DiffResponse> {
        let wait = self.wait_budget(request.metadata());
        let request = request.into_inner();
        self.view_at(request.as_of_seq, wait).await?;
        let from = if request.from.is_empty() {
            Instant::MIN
        } else {
            at_instant("from", &request.from)?
        };
        let to = at_instant("to", &request.to)?;
        if to < from {
            return Err(Error::invalid(
                "to",
                format!("{:?} is before from {:?}", request.to, request.from),
            )
            .into());
        }
        let changes = self.db.read(request.as_of_seq, |snapshot| {
            let entity = optional(&request.entity)
                .map(|name| resolve(snapshot, "entity", name))
                .transpose()?;
            snapshot.diff(from, to, entity.as_deref())
        })??;
        Ok(Response::new(proto::DiffResponse { changes }))
    }
}
