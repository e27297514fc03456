//! Standing queries: WatchEntity and WatchRelations.
//!
//! A watch is a task that sends the answer as of its start, then learns of
//! the entries that could change the answer (`Entry`: what each effect
//! touches, and from when): from the log itself up to where it registered
//! with the server's `Dispatcher`, then from the dispatcher, which reads
//! and works out each new entry once for every watch. For an entry whose
//! effects touch the watched answer at or before its `at`, the watch works
//! out again only the part touched (`Standing::refresh`: one attribute, or
//! the relations of one kind between two entities; the whole answer for a
//! correction) as of that entry's seq, and sends the answer when it
//! changed, with that seq and the entry's event id.
//!
//! A watcher that does not read never holds up appends: the task reads the
//! log at its own pace. A watcher that reads gets every change; once one
//! has taken no answer for `PATIENCE`, the task keeps only the latest
//! changed answer, sent once there is room (intermediate answers folded,
//! never a wrong or skipped latest state).

mod answers;
mod dispatch;
mod entry;
mod requests;

pub(super) use dispatch::Dispatcher;

use crate::engine::Database;
use crate::error::{Error, Result};
use answers::Standing;
use dispatch::Taken;
use entry::Entry;
use std::ops::ControlFlow;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tonic::Status;

/// Answers a watch sends ahead of its client; beyond it, answers fold.
const CHANNEL: usize = 16;

/// Log entries read at once.
const READ_BATCH: usize = 256;

/// How long an answer waits for room before the watch starts folding: a
/// watcher that keeps reading gets every change.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The channel a watch's answers go to the client through.
pub(super) type Answers<R> = mpsc::Sender<std::result::Result<R, Status>>;

pub(super) fn channel<R>() -> (Answers<R>, mpsc::Receiver<std::result::Result<R, Status>>) {
    mpsc::channel(CHANNEL)
}

/// Runs a watch from `from` (the seq its first answer is as of) until the
/// client goes away or the server shuts down. The entries before the
/// dispatcher's position when the watch registers are read from the log
/// here; those after come from the dispatcher.
async fn run<S: Standing>(
    _permit: OwnedSemaphorePermit,
    db: Database,
    dispatcher: Dispatcher,
    from: u64,
    standing: S,
    sender: Answers<S::Message>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (feed, registered) = dispatcher.register(&db, &standing.entities(), &shutdown);
    let current = match db.read(from, |snapshot| standing.answer(snapshot)) {
        Ok(Ok(first)) => first,
        Ok(Err(error)) | Err(error) => {
            let _ = sender.send(Err(error.into())).await;
            return;
        }
    };
    if sender
        .send(Ok(standing.message(&current, from, "")))
        .await
        .is_err()
    {
        return;
    }
    let mut watch = Watch {
        db,
        standing,
        sender,
        current,
        through: from,
        folding: false,
        latest: None,
        unsent: false,
    };
    // The log up to where the dispatcher took over.
    let mut next = from + 1;
    while next <= registered {
        let entries = match watch.db.read_log(next, READ_BATCH, false) {
            Ok(entries) if !entries.is_empty() => entries,
            Ok(_) => break,
            Err(error) => {
                let _ = watch.sender.send(Err(error.into())).await;
                return;
            }
        };
        for entry in entries {
            next = entry.seq + 1;
            if entry.seq > registered {
                break;
            }
            let Some(entry) = Entry::of(&entry) else {
                continue;
            };
            if watch.consider(&entry).await.is_break() {
                return;
            }
        }
    }
    loop {
        match feed.take() {
            Some(Taken::Entries(entries)) => {
                for entry in entries {
                    if watch.consider(&entry).await.is_break() {
                        return;
                    }
                }
            }
            Some(Taken::Latest(seq, event_id)) => {
                if seq > watch.through {
                    watch.folding = true;
                    watch.latest = Some((seq, event_id));
                }
            }
            None if watch.folding => {
                if watch.flush(&mut shutdown).await.is_break() {
                    return;
                }
            }
            None => {
                tokio::select! {
                    _ = feed.wait() => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => {
                        let _ = watch.sender.try_send(unavailable());
                        return;
                    }
                    _ = watch.sender.closed() => return,
                }
            }
        }
    }
}

fn unavailable<R>() -> std::result::Result<R, Status> {
    Err(Status::unavailable("the server is shutting down"))
}

/// A running watch: its last answer, and whether it is folding.
struct Watch<S: Standing> {
    db: Database,
    standing: S,
    sender: Answers<S::Message>,
    current: S::Answer,
    /// The last seq considered.
    through: u64,
    /// Set once the client took no answer for `PATIENCE`: answers are then
    /// not worked out entry by entry; the latest one is sent when there is
    /// room.
    folding: bool,
    /// While folding: the last entry that could change the answer.
    latest: Option<(u64, String)>,
    /// While folding: the current answer never reached the client.
    unsent: bool,
}

impl<S: Standing> Watch<S> {
    /// An entry that may change the answer: the answer worked out again as
    /// of it (whole for a correction, else the parts it touches), and sent
    /// when it changed (or noted, while folding).
    async fn consider(&mut self, entry: &Entry) -> ControlFlow<()> {
        if entry.seq <= self.through {
            return ControlFlow::Continue(());
        }
        self.through = entry.seq;
        // Only a change dated at or before `at` can change the answer there.
        let at = self.standing.at();
        let touches: Vec<&entry::Touch> = entry
            .touches
            .iter()
            .filter(|(touch, from)| *from <= at && self.standing.follows(touch))
            .map(|(touch, _)| touch)
            .collect();
        if !entry.corrects && touches.is_empty() {
            return ControlFlow::Continue(());
        }
        if self.folding {
            self.latest = Some((entry.seq, entry.event_id.clone()));
            return ControlFlow::Continue(());
        }
        let (standing, current) = (&self.standing, &mut self.current);
        let changed = self.db.read(entry.seq, |snapshot| {
            if entry.corrects {
                let now = standing.answer(snapshot)?;
                let changed = now != *current;
                *current = now;
                return Ok(changed);
            }
            let mut changed = false;
            for touch in &touches {
                changed |= standing.refresh(snapshot, touch, current)?;
            }
            Ok::<_, Error>(changed)
        });
        match changed {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return ControlFlow::Continue(()),
            Ok(Err(error)) | Err(error) => {
                let _ = self.sender.send(Err(error.into())).await;
                return ControlFlow::Break(());
            }
        }
        let message = Ok(self
            .standing
            .message(&self.current, entry.seq, &entry.event_id));
        match tokio::time::timeout(PATIENCE, self.sender.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return ControlFlow::Break(()),
            Err(_) => {
                self.folding = true;
                self.unsent = true;
                self.latest = Some((entry.seq, entry.event_id.clone()));
            }
        }
        ControlFlow::Continue(())
    }

    /// While folding, with nothing more waiting: the latest answer, once
    /// there is room; then back to entry by entry.
    async fn flush(&mut self, shutdown: &mut watch::Receiver<bool>) -> ControlFlow<()> {
        self.folding = false;
        let unsent = std::mem::take(&mut self.unsent);
        let Some((seq, event_id)) = self.latest.take() else {
            return ControlFlow::Continue(());
        };
        let now = match self.db.read(seq, |snapshot| self.standing.answer(snapshot)) {
            Ok(Ok(now)) => now,
            Ok(Err(error)) | Err(error) => {
                let _ = self.sender.send(Err(error.into())).await;
                return ControlFlow::Break(());
            }
        };
        if now == self.current && !unsent {
            return ControlFlow::Continue(());
        }
        self.current = now;
        let message = self.standing.message(&self.current, seq, &event_id);
        tokio::select! {
            sent = self.sender.send(Ok(message)) => {
                if sent.is_err() {
                    return ControlFlow::Break(());
                }
            }
            _ = shutdown.wait_for(|stopping| *stopping) => {
                let _ = self.sender.try_send(unavailable());
                return ControlFlow::Break(());
            }
        }
        // What arrived while the client was away is folded too.
        self.folding = true;
        ControlFlow::Continue(())
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
    use crate::proto;
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
        let from = db.last_seq();
        tokio::spawn(run(
            permit,
            db.clone(),
            Dispatcher::default(),
            from,
            answers::EntityAnswer {
                id: "x".into(),
                at: Instant::MAX,
            },
            sender,
            shutdown,
        ));
        assert_eq!(receiver.recv().await.unwrap().unwrap().seq, from);
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
            let message = receiver.recv().await.unwrap().unwrap();
            received.push(message.seq);
            if message
                .answer
                .unwrap()
                .attributes
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
            let message = receiver.recv().await.unwrap().unwrap();
            assert_eq!(message.seq, appended.last_seq);
        }
        db.close();
    }
}
