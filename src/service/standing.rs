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
//! log at its own pace. A watcher that reads gets every change; once one
//! has taken no answer for `PATIENCE`, the task keeps only the latest
//! changed answer, sent once there is room (intermediate answers folded,
//! never a wrong or skipped latest state).

use crate::engine::Database;
use crate::error::{Error, Result};
use crate::proto;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tonic::Status;

/// Answers a watch sends ahead of its client; beyond it, answers fold.
const CHANNEL: usize = 16;

/// Log entries read at once.
const READ_BATCH: usize = 256;

/// How long an answer waits for room before the watch starts folding: a
/// watcher that keeps reading gets every change.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

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
        self.entities.iter().any(|entity| names(event, entity))
    }
}

/// Does a logged event name `entity` (a participant, its location, or in an
/// effect)? Read from the wire form as stored: a logged event is valid, and
/// nothing needs parsing to know whom it names.
pub(super) fn names(event: &proto::Event, entity: &str) -> bool {
    use proto::effect::Change;
    event.location == entity
        || event
            .participants
            .iter()
            .any(|participant| participant.entity == entity)
        || event.effects.iter().any(|effect| match &effect.change {
            Some(Change::Declare(declare)) => declare.id == entity,
            Some(Change::Set(set)) => set.entity == entity,
            Some(Change::Begin(relation)) => relation.a == entity || relation.b == entity,
            Some(Change::End(relation)) => relation.a == entity || relation.b == entity,
            None => false,
        })
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
    // Set once the client took no answer for `PATIENCE`: answers are then
    // not worked out entry by entry; the latest one is sent when there is
    // room.
    let mut folding = false;
    // While folding: the last entry that could change the answer, and
    // whether the current answer never reached the client.
    let mut latest: Option<(u64, String)> = None;
    let mut unsent = false;
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
                let event_id = entry.event.map(|event| event.id).unwrap_or_default();
                if folding {
                    latest = Some((entry.seq, event_id));
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
                let message = Ok(wrap(&current, entry.seq, &event_id));
                match tokio::time::timeout(PATIENCE, sender.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        folding = true;
                        unsent = true;
                        latest = Some((entry.seq, event_id));
                    }
                }
            }
        }
        if folding {
            // The latest answer, once there is room; then whatever the log
            // gained meanwhile, folded the same way, until the watch has
            // caught up with it and goes entry by entry again.
            if let Some((seq, event_id)) = latest.take() {
                let now = match answer(&db, seq) {
                    Ok(now) => now,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                if now != current || unsent {
                    current = now;
                    tokio::select! {
                        sent = sender.send(Ok(wrap(&current, seq, &event_id))) => if sent.is_err() { return },
                        _ = shutdown.wait_for(|stopping| *stopping) => {
                            let _ = sender.try_send(unavailable());
                            return;
                        }
                    }
                    unsent = false;
                    continue;
                }
            }
            unsent = false;
            folding = false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Limits;
    use crate::store::MemoryStore;
    use crate::time::Instant;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn event(id: &str, change: proto::effect::Change) -> proto::Event {
        proto::Event {
            id: id.into(),
            kind: "note".into(),
            occurred: Some(proto::TimeSpan {
                start: "2000".into(),
                end: String::new(),
            }),
            effects: vec![proto::Effect {
                at: String::new(),
                change: Some(change),
            }],
            ..Default::default()
        }
    }

    fn count(value: usize) -> proto::effect::Change {
        proto::effect::Change::Set(proto::SetAttribute {
            entity: "x".into(),
            key: "count".into(),
            value: value.to_string(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_that_stops_reading_gets_the_latest_answer_not_every_one() {
        let db = Database::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap();
        let declare = proto::effect::Change::Declare(proto::Declare {
            id: "x".into(),
            name: "X".into(),
            r#type: proto::EntityType::Country as i32,
            aliases: Vec::new(),
        });
        db.append(vec![event("d", declare)], None).await.unwrap();
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let (sender, mut receiver) = channel();
        let (_stop, shutdown) = watch::channel(false);
        let answer = |db: &Database, as_of: u64| {
            db.read(as_of, |snapshot| snapshot.attributes("x", Instant::MAX))?
        };
        let wrap =
            |attributes: &Vec<proto::Attribute>, seq: u64, _: &str| (seq, attributes.clone());
        let from = db.last_seq();
        tokio::spawn(run(
            permit,
            db.clone(),
            from,
            Interest {
                entities: vec!["x".into()],
            },
            answer,
            wrap,
            sender,
            shutdown,
        ));
        assert_eq!(receiver.recv().await.unwrap().unwrap().0, from);
        const CHANGES: usize = 300;
        for value in 0..CHANGES {
            db.append(vec![event(&format!("c{value}"), count(value))], None)
                .await
                .unwrap();
        }
        // Not reading for longer than the watch's patience.
        tokio::time::sleep(PATIENCE + PATIENCE / 2).await;
        let mut received = Vec::new();
        loop {
            let (seq, attributes) = receiver.recv().await.unwrap().unwrap();
            received.push(seq);
            if attributes
                .first()
                .is_some_and(|a| a.value == (CHANGES - 1).to_string())
            {
                break;
            }
        }
        assert!(
            received.windows(2).all(|pair| pair[0] < pair[1]),
            "{received:?}"
        );
        assert!(
            received.len() <= CHANNEL + 2,
            "{} answers for {CHANGES} changes: the ones in between are folded",
            received.len()
        );
        assert_eq!(received.last(), Some(&db.last_seq()));
        // Reading again, every change comes, one by one.
        for value in CHANGES..CHANGES + 5 {
            let appended = db
                .append(vec![event(&format!("c{value}"), count(value))], None)
                .await
                .unwrap();
            let (seq, _) = receiver.recv().await.unwrap().unwrap();
            assert_eq!(seq, appended.last_seq);
        }
        db.close();
    }
}
