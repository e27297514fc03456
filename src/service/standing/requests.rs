//! The WatchEntity and WatchRelations requests: validated and resolved as
//! GetEntity and ListRelations are, then handed to a watch task (`run`).

use super::{channel, run, start, Interest};
use crate::engine::Database;
use crate::error::Error;
use crate::proto;
use crate::service::fields::{at_instant, optional, optional_kind, resolve};
use crate::service::Service;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

type Stream<R> = ReceiverStream<std::result::Result<R, Status>>;

impl Service {
    fn watch_permit(&self) -> std::result::Result<OwnedSemaphorePermit, Error> {
        Arc::clone(&self.watches).try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "{} watches are open, the server's limit (--max-watches); close one or retry later",
                self.max_watches
            ))
        })
    }

    pub(in crate::service) fn start_watch_entity(
        &self,
        request: proto::WatchEntityRequest,
    ) -> std::result::Result<Stream<proto::WatchEntityResponse>, Status> {
        if request.id.is_empty() {
            return Err(Error::invalid("id", "name the entity (id or alias)").into());
        }
        let at = at_instant("at", &request.at)?;
        let id = self
            .db
            .read(0, |snapshot| resolve(snapshot, "id", &request.id))??;
        let interest = Interest {
            entities: vec![id.clone()],
            at,
        };
        let answer = move |db: &Database, as_of: u64| {
            db.read(as_of, |snapshot| {
                Ok::<_, Error>(proto::GetEntityResponse {
                    entity: snapshot.entity(&id),
                    attributes: snapshot.attributes(&id, at)?,
                    relations: snapshot.relations(Some(&id), None, None, at)?,
                })
            })?
        };
        let wrap = |answer: &proto::GetEntityResponse, seq: u64, event_id: &str| {
            proto::WatchEntityResponse {
                answer: Some(answer.clone()),
                seq,
                event_id: event_id.to_string(),
            }
        };
        self.spawn_watch(request.from_seq, interest, answer, wrap)
    }

    pub(in crate::service) fn start_watch_relations(
        &self,
        request: proto::WatchRelationsRequest,
    ) -> std::result::Result<Stream<proto::WatchRelationsResponse>, Status> {
        let at = at_instant("at", &request.at)?;
        let kind = optional_kind("kind", &request.kind)?.map(str::to_string);
        let (entity, counterpart) = self.db.read(0, |snapshot| {
            let entity = optional(&request.entity)
                .map(|name| resolve(snapshot, "entity", name))
                .transpose()?;
            let counterpart = optional(&request.counterpart)
                .map(|name| resolve(snapshot, "counterpart", name))
                .transpose()?;
            // With a counterpart alone, its relations with anyone.
            Ok::<_, Error>(match (entity, counterpart) {
                (None, Some(counterpart)) => (Some(counterpart), None),
                pair => pair,
            })
        })??;
        let interest = Interest {
            entities: entity.iter().chain(&counterpart).cloned().collect(),
            at,
        };
        let answer = move |db: &Database, as_of: u64| {
            db.read(as_of, |snapshot| {
                snapshot.relations(
                    entity.as_deref(),
                    counterpart.as_deref(),
                    kind.as_deref(),
                    at,
                )
            })?
        };
        let wrap = |relations: &Vec<proto::Relation>, seq: u64, event_id: &str| {
            proto::WatchRelationsResponse {
                relations: relations.clone(),
                seq,
                event_id: event_id.to_string(),
            }
        };
        self.spawn_watch(request.from_seq, interest, answer, wrap)
    }

    /// Starts the watch task of a resolved request: its first answer as of
    /// `from_seq` (0: now), then its changes.
    fn spawn_watch<A, R, F, W>(
        &self,
        from_seq: u64,
        interest: Interest,
        answer: F,
        wrap: W,
    ) -> std::result::Result<Stream<R>, Status>
    where
        A: PartialEq + Send + 'static,
        R: Send + 'static,
        F: Fn(&Database, u64) -> crate::error::Result<A> + Send + 'static,
        W: Fn(&A, u64, &str) -> R + Send + 'static,
    {
        let from = start(&self.db, from_seq)?;
        let permit = self.watch_permit()?;
        let (sender, receiver) = channel();
        tokio::spawn(run(
            permit,
            self.db.clone(),
            self.dispatcher.clone(),
            from,
            interest,
            answer,
            wrap,
            sender,
            self.shutdown.clone(),
        ));
        Ok(ReceiverStream::new(receiver))
    }
}
