//! Subscribe: log entries from a seq on, first what is recorded, then live.

use crate::engine::Database;
use crate::model::Event;
use crate::proto;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tonic::Status;

/// Feeds one subscription: the log from `next` on, then each new entry as
/// it becomes durable. It reads the log itself rather than buffering
/// appends, so a slow subscriber holds at most one channel of entries and
/// never slows a writer; and since it walks seqs one by one it can neither
/// skip nor repeat one. `_permit` counts it among the open subscriptions
/// until it ends.
pub(super) async fn follow(
    _permit: OwnedSemaphorePermit,
    db: Database,
    mut next: u64,
    entity: Option<String>,
    kind: Option<String>,
    sender: mpsc::Sender<std::result::Result<proto::SubscribeResponse, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    const READ_BATCH: usize = 256;
    let mut durable = db.watch_last_seq();
    loop {
        let last = *durable.borrow_and_update();
        while next <= last {
            let entries = match db.read_log(next, READ_BATCH, false) {
                Ok(entries) if !entries.is_empty() => entries,
                Ok(_) => break,
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            };
            for entry in entries {
                next = entry.seq + 1;
                if !wanted(&entry, entity.as_deref(), kind.as_deref()) {
                    continue;
                }
                let response = proto::SubscribeResponse { entry: Some(entry) };
                tokio::select! {
                    sent = sender.send(Ok(response)) => if sent.is_err() { return },
                    _ = shutdown.wait_for(|stopping| *stopping) => {
                        let _ = sender.try_send(Err(Status::unavailable("the server is shutting down")));
                        return;
                    }
                }
            }
        }
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stopping| *stopping) => {
                let _ = sender.try_send(Err(Status::unavailable("the server is shutting down")));
                return;
            }
            _ = sender.closed() => return,
        }
    }
}

/// Does a log entry pass a subscription's filters?
fn wanted(entry: &proto::LogEntry, entity: Option<&str>, kind: Option<&str>) -> bool {
    let Some(event) = &entry.event else {
        return false;
    };
    kind.is_none_or(|kind| event.kind == kind)
        && entity.is_none_or(|entity| {
            Event::from_proto(event).is_ok_and(|parsed| parsed.entities().contains(&entity))
        })
}
