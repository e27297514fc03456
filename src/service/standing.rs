//! Standing queries: WatchEntity and WatchRelations.
//!
//! A watch is a task that sends the answer as of its start, then follows
//! the log as Subscribe does. For each new entry that could change the
//! answer (it names a watched entity, or corrects an event, or the watch is
//! of the whole graph) it answers again as of that entry's seq and sends
//! the answer when it differs from the last one sent, with that seq and the
//! entry's event id. Other entries cost a decode and a filter.
//!
//! A watcher that does not read never holds up appends: the task reads the
//! log at its own pace, and while the client's channel is full it keeps
//! only the latest changed answer, sent once there is room (intermediate
//! answers folded, never a wrong or skipped latest state).

use crate::engine::Database;
use crate::error::{Error, Result};
use crate::model::Event;
use crate::proto;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tonic::Status;

/// Answers a watch sends ahead of its client; beyond it, answers fold.
const CHANNEL: usize = 16;

/// Log entries read at once.
const READ_BATCH: usize = 256;

/// What a watch needs besides its answer: which entries can change it.
pub(super) struct Interest {
    /// Entities whose events can change the answer; empty: every event can.
    pub entities: Vec<String>,
}

impl Interest {
    fn touches(&self, entry: &proto::LogEntry) -> bool {
        if self.entities.is_empty() {
            return true;
        }
        let Some(event) = &entry.event else {
            return false;
        };
        // A correction withdraws another event's effects: answered again.
        if !event.corrects.is_empty() {
            return true;
        }
        Event::from_proto(event).is_ok_and(|parsed| {
            let named = parsed.entities();
            self.entities
                .iter()
                .any(|entity| named.contains(&entity.as_str()))
        })
    }
}

/// The channel a watch's answers go to the client through.
pub(super) type Answers<R> = mpsc::Sender<std::result::Result<R, Status>>;

pub(super) fn channel<R>() -> (Answers<R>, mpsc::Receiver<std::result::Result<R, Status>>) {
    mpsc::channel(CHANNEL)
}

/// Runs a watch from `from` (the seq its first answer is as of) until the
/// client goes away or the server shuts down. `answer` answers as of a
/// seq; `wrap` makes the message (answer, seq, event id).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<A, R>(
    _permit: OwnedSemaphorePermit,
    db: Database,
    from: u64,
    interest: Interest,
    answer: impl Fn(&Database, u64) -> Result<A> + Send,
    wrap: impl Fn(&A, u64, &str) -> R + Send,
    sender: Answers<R>,
    mut shutdown: watch::Receiver<bool>,
) where
    A: PartialEq + Send,
    R: Send + 'static,
{
    let unavailable = || Err(Status::unavailable("the server is shutting down"));
    let mut current = match answer(&db, from) {
        Ok(first) => first,
        Err(error) => {
            let _ = sender.send(Err(error.into())).await;
            return;
        }
    };
    if sender.send(Ok(wrap(&current, from, ""))).await.is_err() {
        return;
    }
    // A changed answer not sent yet, because the client's channel was full.
    let mut pending: Option<(u64, String)> = None;
    let mut next = from + 1;
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
                if !interest.touches(&entry) {
                    continue;
                }
                let now = match answer(&db, entry.seq) {
                    Ok(now) => now,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                if now == current {
                    continue;
                }
                current = now;
                let event_id = entry.event.map(|event| event.id).unwrap_or_default();
                pending = Some((entry.seq, event_id));
                if let Some((seq, event_id)) = pending.take() {
                    match sender.try_send(Ok(wrap(&current, seq, &event_id))) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => pending = Some((seq, event_id)),
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
        }
        if let Some((seq, event_id)) = pending.take() {
            // The latest answer waits for room; new entries are read after.
            tokio::select! {
                sent = sender.send(Ok(wrap(&current, seq, &event_id))) => if sent.is_err() { return },
                _ = shutdown.wait_for(|stopping| *stopping) => {
                    let _ = sender.try_send(unavailable());
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stopping| *stopping) => {
                let _ = sender.try_send(unavailable());
                return;
            }
            _ = sender.closed() => return,
        }
    }
}

/// The first seq a watch answers as of: `from_seq`, or the log's end.
pub(super) fn start(db: &Database, from_seq: u64) -> Result<u64> {
    let last = db.last_seq();
    if from_seq > last {
        return Err(Error::invalid(
            "from_seq",
            format!("{from_seq} is beyond the end of the log (last seq {last})"),
        ));
    }
    Ok(if from_seq == 0 { last } else { from_seq })
}
