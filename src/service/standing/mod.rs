//! Standing queries: WatchEntity and WatchRelations.
//!
//! A watch is a task that sends the answer as of its start, then learns of
//! the entries that could change the answer (they name a watched entity,
//! or correct an event, or the watch is of the whole graph): from the log
//! itself up to where it registered with the server's `Dispatcher`, then
//! from the dispatcher, which reads each new entry once for every watch.
//! For each such entry it answers again as of that entry's seq and sends
//! the answer when it differs from the last one sent, with that seq and the
//! entry's event id.
//!
//! A watcher that does not read never holds up appends: the task reads the
//! log at its own pace. A watcher that reads gets every change; once one
//! has taken no answer for `PATIENCE`, the task keeps only the latest
//! changed answer, sent once there is room (intermediate answers folded,
//! never a wrong or skipped latest state).

mod dispatch;
mod requests;

pub(super) use dispatch::Dispatcher;

use crate::engine::Database;
use crate::error::{Error, Result};
use crate::proto;
use crate::time::{Instant, ValidTime};
use dispatch::Taken;
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

/// What a watch needs besides its answer: which entries can change it.
pub(super) struct Interest {
    /// Entities whose events can change the answer; empty: every event can.
    pub entities: Vec<String>,
    /// The valid time watched: a change dated after it cannot change the
    /// answer.
    pub at: Instant,
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

/// The earliest valid time of an event's effects, the time from which it
/// can change an answer: `Instant::MIN` for a correction (it withdraws
/// effects of any date), `None` for an event without effects (it changes
/// no state).
fn earliest_change(event: &proto::Event) -> Option<Instant> {
    use proto::effect::Change;
    if !event.corrects.is_empty() {
        return Some(Instant::MIN);
    }
    let occurred = event.occurred.clone().unwrap_or_default();
    event
        .effects
        .iter()
        .map(|effect| {
            let text = if !effect.at.is_empty() {
                &effect.at
            } else if matches!(effect.change, Some(Change::End(_))) && !occurred.end.is_empty() {
                &occurred.end
            } else {
                &occurred.start
            };
            // A logged event's times parse; were one not to, it counts.
            ValidTime::parse(text).map_or(Instant::MIN, |time| time.earliest())
        })
        .min()
}

/// Does a logged event name `entity`?
fn names(event: &proto::Event, entity: &str) -> bool {
    names_of(event).any(|name| name == entity)
}

/// The entities a logged event names (a participant, its location, in an
/// effect), perhaps more than once. Read from the wire form as stored: a
/// logged event is valid, and nothing needs parsing to know whom it names.
fn names_of(event: &proto::Event) -> impl Iterator<Item = &str> {
    use proto::effect::Change;
    let effects = event.effects.iter().flat_map(|effect| {
        let (first, second) = match &effect.change {
            Some(Change::Declare(declare)) => (Some(declare.id.as_str()), None),
            Some(Change::Set(set)) => (Some(set.entity.as_str()), None),
            Some(Change::Begin(relation)) => (Some(relation.a.as_str()), Some(relation.b.as_str())),
            Some(Change::End(relation)) => (Some(relation.a.as_str()), Some(relation.b.as_str())),
            None => (None, None),
        };
        first.into_iter().chain(second)
    });
    event
        .participants
        .iter()
        .map(|participant| participant.entity.as_str())
        .chain((!event.location.is_empty()).then_some(event.location.as_str()))
        .chain(effects)
}

/// The channel a watch's answers go to the client through.
pub(super) type Answers<R> = mpsc::Sender<std::result::Result<R, Status>>;

pub(super) fn channel<R>() -> (Answers<R>, mpsc::Receiver<std::result::Result<R, Status>>) {
    mpsc::channel(CHANNEL)
}

/// Runs a watch from `from` (the seq its first answer is as of) until the
/// client goes away or the server shuts down. `answer` answers as of a
/// seq; `wrap` makes the message (answer, seq, event id). The entries
/// before the dispatcher's position when the watch registers are read from
/// the log here; those after come from the dispatcher.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<A, R, F, W>(
    _permit: OwnedSemaphorePermit,
    db: Database,
    dispatcher: Dispatcher,
    from: u64,
    interest: Interest,
    answer: F,
    wrap: W,
    sender: Answers<R>,
    mut shutdown: watch::Receiver<bool>,
) where
    A: PartialEq + Send,
    R: Send + 'static,
    F: Fn(&Database, u64) -> Result<A> + Send,
    W: Fn(&A, u64, &str) -> R + Send,
{
    let (feed, registered) = dispatcher.register(&db, &interest.entities, &shutdown);
    let current = match answer(&db, from) {
        Ok(first) => first,
        Err(error) => {
            let _ = sender.send(Err(error.into())).await;
            return;
        }
    };
    if sender.send(Ok(wrap(&current, from, ""))).await.is_err() {
        return;
    }
    let mut watch = Watch {
        at: interest.at,
        db,
        answer,
        wrap,
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
            if interest.touches(&entry) {
                let Some(event) = entry.event else { continue };
                let earliest = earliest_change(&event);
                if watch
                    .consider(entry.seq, event.id, earliest)
                    .await
                    .is_break()
                {
                    return;
                }
            }
        }
    }
    loop {
        match feed.take() {
            Some(Taken::Entries(entries)) => {
                for (seq, event_id, earliest) in entries {
                    if watch.consider(seq, event_id, earliest).await.is_break() {
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
struct Watch<A, R, F, W> {
    at: Instant,
    db: Database,
    answer: F,
    wrap: W,
    sender: Answers<R>,
    current: A,
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

impl<A, R, F, W> Watch<A, R, F, W>
where
    A: PartialEq + Send,
    R: Send + 'static,
    F: Fn(&Database, u64) -> Result<A> + Send,
    W: Fn(&A, u64, &str) -> R + Send,
{
    /// An entry that may change the answer: answered again as of it, and
    /// sent when the answer changed (or noted, while folding).
    async fn consider(
        &mut self,
        seq: u64,
        event_id: String,
        earliest: Option<Instant>,
    ) -> ControlFlow<()> {
        if seq <= self.through {
            return ControlFlow::Continue(());
        }
        self.through = seq;
        // Only a change dated at or before `at` can change the answer there.
        if earliest.is_none_or(|earliest| earliest > self.at) {
            return ControlFlow::Continue(());
        }
        if self.folding {
            self.latest = Some((seq, event_id));
            return ControlFlow::Continue(());
        }
        let now = match (self.answer)(&self.db, seq) {
            Ok(now) => now,
            Err(error) => {
                let _ = self.sender.send(Err(error.into())).await;
                return ControlFlow::Break(());
            }
        };
        if now == self.current {
            return ControlFlow::Continue(());
        }
        self.current = now;
        let message = Ok((self.wrap)(&self.current, seq, &event_id));
        match tokio::time::timeout(PATIENCE, self.sender.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return ControlFlow::Break(()),
            Err(_) => {
                self.folding = true;
                self.unsent = true;
                self.latest = Some((seq, event_id));
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
        let now = match (self.answer)(&self.db, seq) {
            Ok(now) => now,
            Err(error) => {
                let _ = self.sender.send(Err(error.into())).await;
                return ControlFlow::Break(());
            }
        };
        if now == self.current && !unsent {
            return ControlFlow::Continue(());
        }
        self.current = now;
        tokio::select! {
            sent = self.sender.send(Ok((self.wrap)(&self.current, seq, &event_id))) => {
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
            Dispatcher::default(),
            from,
            Interest {
                entities: vec!["x".into()],
                at: Instant::MAX,
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
