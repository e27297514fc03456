//! The WatchEntity and WatchRelations requests: validated and resolved as
//! GetEntity and ListRelations are, then handed to a watch task (`run`).

use super::answers::{EntityAnswer, RelationsAnswer, Standing};
use super::{channel, run, start};
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
        self.spawn_watch(request.from_seq, EntityAnswer { id, at })
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
        let standing = RelationsAnswer {
            entity,
            counterpart,
            kind,
            at,
        };
        self.spawn_watch(request.from_seq, standing)
    }

    /// Starts the watch task of a resolved request: its first answer as of
    /// `from_seq` (0: now), then its changes.
    fn spawn_watch<S: Standing>(
        &self,
        from_seq: u64,
        standing: S,
    ) -> std::result::Result<Stream<S::Message>, Status> {
        let from = start(&self.db, from_seq)?;
        let permit = self.watch_permit()?;
        let (sender, receiver) = channel();
        tokio::spawn(run(
            permit,
            self.db.clone(),
            self.dispatcher.clone(),
            from,
            standing,
            sender,
            self.shutdown.clone(),
        ));
        Ok(ReceiverStream::new(receiver))
    }
}
