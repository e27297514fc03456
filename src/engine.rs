//! The database: the log, its derived index, and the one writer that orders
//! appends.
//!
//! `Database` is a cheap-to-clone handle around an `Arc`. Appends go through
//! a channel to a single writer thread, which is what keeps seqs contiguous
//! and unique. The writer takes every append waiting in the channel at once,
//! validates each against the log and the ones before it, and writes them
//! all with one durable `LogStore::append` (group commit): concurrent
//! clients share one flush and fdatasync. Only then are they acknowledged and
//! made visible to readers, through `durable_seq`.

use crate::error::{Error, Result};
use crate::index::{EventRuns, Index, TimelineCache};
use crate::model::{Change, Declaration, Event};
use crate::proto;
use crate::query::Snapshot;
use crate::store::{timestamp, LogStore, StoredEntry, Write};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{mpsc, oneshot, watch};

/// Limits on what one append may carry, and the memory the index may use.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_batch_events: usize,
    pub max_event_bytes: usize,
    /// Bytes of entity timelines kept in memory (see `index::TimelineCache`).
    pub timeline_cache_bytes: usize,
    /// Bytes of event runs kept in memory (see `index::EventRuns`).
    pub event_cache_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_batch_events: 10_000,
            max_event_bytes: 64 * 1024,
            timeline_cache_bytes: 1024 * 1024 * 1024,
            event_cache_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The result of an append: one entry per event in request order (a re-sent
/// event gets its original entry) and the log's last seq.
#[derive(Debug)]
pub struct Appended {
    pub entries: Vec<StoredEntry>,
    pub last_seq: u64,
    /// Per event: was it in the log already (and nothing stored for it)?
    pub already_present: Vec<bool>,
}

struct AppendJob {
    events: Vec<proto::Event>,
    expected_last_seq: Option<u64>,
    /// For a restore from a backup: the `recorded_at` of each event, kept
    /// instead of the server clock. Empty for an ordinary append.
    recorded_at: Vec<i64>,
    reply: oneshot::Sender<Result<Appended>>,
}

#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn LogStore>,
    index: RwLock<Index>,
    timelines: TimelineCache,
    runs: EventRuns,
    /// The last seq known to be durable; readers never look past it.
    durable: watch::Sender<u64>,
    jobs: Mutex<Option<mpsc::Sender<AppendJob>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when a write failed: the log on disk may be behind the index,
    /// so no further append is taken until a restart rebuilds the index.
    failed: AtomicBool,
    limits: Limits,
}

impl Database {
    /// Opens a database over `store`. The derived trees are used as they
    /// are, after indexing any log entries they lag behind (a crash between
    /// the log write and the index write); the log is not replayed.
    pub fn open(store: Arc<dyn LogStore>, limits: Limits) -> Result<Database> {
        let index = Index::open(store.as_ref())?;
        let last_recorded_at = match index.last_seq() {
            0 => i64::MIN,
            last => store.get(last)?.map_or(i64::MIN, |entry| entry.recorded_at),
        };
        let last_seq = index.last_seq();
        let (jobs, receiver) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            store,
            index: RwLock::new(index),
            timelines: TimelineCache::new(limits.timeline_cache_bytes),
            runs: EventRuns::new(limits.event_cache_bytes),
            durable: watch::Sender::new(last_seq),
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(None),
            failed: AtomicBool::new(false),
            limits,
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("annals-writer".into())
            .spawn(move || run_writer(writer_shared, receiver, last_recorded_at))?;
        *shared.writer.lock().expect("writer lock") = Some(writer);
        Ok(Database { shared })
    }

    /// Appends a batch: validated completely, then stored atomically and
    /// durably, then acknowledged. See `AppendJob` handling in `prepare`.
    pub async fn append(
        &self,
        events: Vec<proto::Event>,
        expected_last_seq: Option<u64>,
    ) -> Result<Appended> {
        self.submit(events, expected_last_seq, Vec::new()).await
    }

    /// Restores log entries from a backup (`annals export`), keeping their
    /// seqs and `recorded_at`, through the same validation as an append.
    /// The entries must continue the log: restoring into an empty store
    /// recreates it exactly. Returns the log's last seq.
    pub async fn restore(&self, entries: Vec<proto::LogEntry>) -> Result<u64> {
        let mut last = self.last_seq();
        for chunk in entries.chunks(1000) {
            let mut events = Vec::with_capacity(chunk.len());
            let mut recorded_at = Vec::with_capacity(chunk.len());
            for entry in chunk {
                if entry.seq != last + 1 + events.len() as u64 {
                    return Err(Error::invalid(
                        "seq",
                        format!(
                            "entry {} does not continue the log at seq {}",
                            entry.seq,
                            last + 1 + events.len() as u64
                        ),
                    ));
                }
                let time = entry.recorded_at.ok_or_else(|| {
                    Error::invalid("recorded_at", format!("entry {} has none", entry.seq))
                })?;
                recorded_at.push(time.seconds * 1_000_000 + i64::from(time.nanos / 1_000));
                events.push(entry.event.clone().ok_or_else(|| {
                    Error::invalid("event", format!("entry {} has none", entry.seq))
                })?);
            }
            last = self.submit(events, Some(last), recorded_at).await?.last_seq;
        }
        Ok(last)
    }

    async fn submit(
        &self,
        events: Vec<proto::Event>,
        expected_last_seq: Option<u64>,
        recorded_at: Vec<i64>,
    ) -> Result<Appended> {
        let sender = self
            .shared
            .jobs
            .lock()
            .expect("jobs lock")
            .clone()
            .ok_or_else(|| Error::Unavailable("the server is shutting down".into()))?;
        let (reply, answer) = oneshot::channel();
        let job = AppendJob {
            events,
            expected_last_seq,
            recorded_at,
            reply,
        };
        sender
            .send(job)
            .await
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the writer stopped before answering".into()))?
    }

    /// The last durable seq: what every reader sees.
    pub fn last_seq(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// Bytes the timeline cache holds, and the copies in it.
    pub fn cache_usage(&self) -> (usize, usize) {
        self.shared.timelines.usage()
    }

    /// Notified whenever `last_seq` grows.
    pub fn watch_last_seq(&self) -> watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    /// Runs `query` against the index as known at `as_of_seq` (0 = all that
    /// is durable). An `as_of_seq` beyond the log is an error, not a guess.
    pub fn read<R>(&self, as_of_seq: u64, query: impl FnOnce(&Snapshot) -> R) -> Result<R> {
        let last = self.last_seq();
        if as_of_seq > last {
            return Err(Error::invalid(
                "as_of_seq",
                format!("{as_of_seq} is beyond the end of the log (last seq {last})"),
            ));
        }
        let as_of = if as_of_seq == 0 { last } else { as_of_seq };
        let index = self.index();
        Ok(query(&self.snapshot(&index, as_of, last)))
    }

    /// A reader's snapshot at `as_of`; `durable` is the durable seq read
    /// before the index was locked (every derived write up to it is in the
    /// store).
    fn snapshot<'a>(&'a self, index: &'a Index, as_of: u64, durable: u64) -> Snapshot<'a> {
        Snapshot::new(
            index,
            &self.shared.timelines,
            self.shared.store.as_ref(),
            as_of,
        )
        .with_runs(&self.shared.runs, durable)
    }

    /// The wire form of stored entries, with `superseded_by` as known at
    /// `as_of`.
    fn wire_entries(&self, stored: Vec<StoredEntry>, as_of: u64) -> Result<Vec<proto::LogEntry>> {
        let corrections: Vec<Option<u64>> = {
            let index = self.index();
            let snapshot = self.snapshot(&index, as_of, self.last_seq());
            stored
                .iter()
                .map(|entry| snapshot.superseded_by(entry.seq))
                .collect()
        };
        stored
            .into_iter()
            .zip(corrections)
            .map(|(entry, correction)| {
                let superseded_by = match correction {
                    Some(seq) => self
                        .shared
                        .store
                        .get(seq)?
                        .map(|correction| correction.event.id)
                        .unwrap_or_default(),
                    None => String::new(),
                };
                Ok(wire_entry(entry, &superseded_by))
            })
            .collect()
    }

    fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.shared.index.read().expect("index lock poisoned")
    }

    /// Log entries by seq, with `superseded_by` as known at `as_of`.
    pub fn entries(&self, seqs: &[u64], as_of: u64) -> Result<Vec<proto::LogEntry>> {
        let stored = seqs
            .iter()
            .map(|seq| {
                self.shared
                    .store
                    .get(*seq)?
                    .ok_or_else(|| Error::DataLoss(format!("log entry {seq} is missing")))
            })
            .collect::<Result<Vec<_>>>()?;
        self.wire_entries(stored, as_of)
    }

    /// Up to `limit` durable entries from `from` on (towards seq 1 when
    /// `reverse`), with `superseded_by` as known now.
    pub fn read_log(&self, from: u64, limit: usize, reverse: bool) -> Result<Vec<proto::LogEntry>> {
        let last = self.last_seq();
        if reverse {
            let top = if from == 0 { last } else { from.min(last) };
            let seqs: Vec<u64> = (1..=top).rev().take(limit).collect();
            return self.entries(&seqs, last);
        }
        let from = from.max(1);
        if from > last {
            return Ok(Vec::new());
        }
        let count = limit.min((last - from + 1) as usize);
        let stored = self.shared.store.read(from, count)?;
        self.wire_entries(stored, last)
    }

    /// Rebuilds every derived tree from the log and empties the cache.
    pub fn rebuild_indexes(&self) -> Result<()> {
        let mut index = self.shared.index.write().expect("index lock poisoned");
        let _writes = self.shared.timelines.lock();
        *index = Index::rebuild(self.shared.store.as_ref())?;
        drop(_writes);
        self.shared.timelines.clear();
        self.shared.runs.clear();
        Ok(())
    }

    /// Stops taking appends, lets the writer finish what it has, and waits
    /// for it. Appends after this answer `Unavailable`.
    pub fn close(&self) {
        self.shared.jobs.lock().expect("jobs lock").take();
        if let Some(writer) = self.shared.writer.lock().expect("writer lock").take() {
            if writer.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
        if let Err(error) = self.shared.store.checkpoint() {
            tracing::error!(%error, "writing out the index failed; the next open catches it up from the log");
        }
    }
}

/// A stored entry as the wire shows it.
pub fn wire_entry(entry: StoredEntry, superseded_by: &str) -> proto::LogEntry {
    proto::LogEntry {
        seq: entry.seq,
        recorded_at: Some(timestamp(entry.recorded_at)),
        event: Some(entry.event),
        superseded_by: superseded_by.to_string(),
    }
}

/// What one writer round will write: the accepted entries, the derived
/// writes they imply, and their ids (not yet in the `ids` tree).
#[derive(Default)]
struct Round {
    entries: Vec<StoredEntry>,
    derived: Vec<Write>,
    ids: HashMap<String, u64>,
}

/// Writes a round: the log, then the derived trees and the cached
/// timelines under the cache lock, then one sync for all of it.
fn commit(shared: &Shared, round: &mut Round) -> Result<()> {
    // Before the writes land: a run built from the store from now on
    // might miss them, and so is not kept.
    if let Some(last) = round.entries.last() {
        shared.runs.touch(&round.derived, last.seq);
    }
    {
        let mut timelines = shared.timelines.lock();
        timelines.absorb(&round.derived)?;
        shared
            .store
            .append(&round.entries, std::mem::take(&mut round.derived))?;
    }
    shared.store.sync()
}

/// The seq of an event id: in this round, or in the `ids` tree.
fn seq_of(shared: &Shared, round: &Round, id: &str) -> Result<Option<u64>> {
    match round.ids.get(id) {
        Some(seq) => Ok(Some(*seq)),
        None => crate::index::seq_of(shared.store.as_ref(), id),
    }
}

/// The writer loop. One thread, so seqs are handed out in one order; each
/// round drains every waiting job and makes them durable together.
fn run_writer(shared: Arc<Shared>, mut jobs: mpsc::Receiver<AppendJob>, mut clock: i64) {
    const MAX_JOBS_PER_ROUND: usize = 512;
    while let Some(first) = jobs.blocking_recv() {
        let mut jobs_in_round = vec![first];
        while jobs_in_round.len() < MAX_JOBS_PER_ROUND {
            match jobs.try_recv() {
                Ok(job) => jobs_in_round.push(job),
                Err(_) => break,
            }
        }
        let mut round = Round::default();
        let mut answers: Vec<(oneshot::Sender<Result<Appended>>, Result<Appended>)> =
            Vec::with_capacity(jobs_in_round.len());
        {
            let mut index = shared.index.write().expect("index lock poisoned");
            for job in jobs_in_round {
                let answer = if shared.failed.load(Ordering::SeqCst) {
                    Err(Error::Unavailable(
                        "an earlier write to the log failed; restart the server".into(),
                    ))
                } else {
                    prepare(
                        &shared,
                        &mut index,
                        job.events,
                        job.expected_last_seq,
                        &job.recorded_at,
                        &mut round,
                        &mut clock,
                    )
                };
                answers.push((job.reply, answer));
            }
        }
        if !round.entries.is_empty() {
            let last = round.entries.last().map_or(0, |entry| entry.seq);
            if let Err(error) = commit(&shared, &mut round) {
                tracing::error!(%error, "writing to the log failed; refusing further appends");
                shared.failed.store(true, Ordering::SeqCst);
                for (_, answer) in &mut answers {
                    if answer.is_ok() {
                        *answer = Err(Error::Unavailable(format!(
                            "the log could not be written: {error}"
                        )));
                    }
                }
            } else {
                shared.durable.send_replace(last);
            }
        }
        let durable = *shared.durable.borrow();
        for (reply, mut answer) in answers {
            if let Ok(appended) = &mut answer {
                appended.last_seq = durable;
            }
            // A client that went away still had its events stored.
            let _ = reply.send(answer);
        }
    }
}

/// Validates one append against the log (and the appends before it in this
/// round), and if it is acceptable assigns seqs, folds it into the index and
/// queues it in `pending`. Nothing changes when it returns an error.
fn prepare(
    shared: &Shared,
    index: &mut Index,
    mut events: Vec<proto::Event>,
    expected_last_seq: Option<u64>,
    restored_times: &[i64],
    round: &mut Round,
    clock: &mut i64,
) -> Result<Appended> {
    let limits = &shared.limits;
    if events.is_empty() {
        return Err(Error::invalid(
            "events",
            "an append needs at least one event",
        ));
    }
    if events.len() > limits.max_batch_events {
        return Err(Error::ResourceExhausted(format!(
            "a batch holds at most {} events; this one has {}",
            limits.max_batch_events,
            events.len()
        )));
    }

    // Context-free validation, server-assigned ids, duplicates in the batch.
    let mut parsed = Vec::with_capacity(events.len());
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (position, event) in events.iter_mut().enumerate() {
        let field = format!("events[{position}]");
        let size = event.encoded_len();
        if size > limits.max_event_bytes {
            return Err(Error::ResourceExhausted(format!(
                "{field} is {size} bytes; an event holds at most {}",
                limits.max_event_bytes
            )));
        }
        let mut domain = Event::from_proto(event).map_err(|error| error.within(&field))?;
        if event.id.is_empty() {
            event.id = uuid::Uuid::now_v7().to_string();
            domain.id = event.id.clone();
        }
        if let Some(first) = positions.insert(event.id.clone(), position) {
            return Err(Error::invalid(
                format!("{field}.id"),
                format!("{:?} is also the id of events[{first}]", event.id),
            ));
        }
        parsed.push(domain);
    }

    // Re-sent events: same content returns the original, other content is refused.
    let mut originals: Vec<Option<StoredEntry>> = Vec::with_capacity(events.len());
    for (position, event) in events.iter().enumerate() {
        let Some(seq) = seq_of(shared, round, &event.id)? else {
            originals.push(None);
            continue;
        };
        let original = match round.entries.iter().find(|entry| entry.seq == seq) {
            Some(entry) => entry.clone(),
            None => shared
                .store
                .get(seq)?
                .ok_or_else(|| Error::DataLoss(format!("log entry {seq} is missing")))?,
        };
        if &original.event != event {
            return Err(Error::AlreadyExists(format!(
                "events[{position}]: event {:?} already exists (seq {seq}) with other content",
                event.id
            )));
        }
        originals.push(Some(original));
    }
    let restoring = !restored_times.is_empty();
    if restoring && originals.iter().any(Option::is_some) {
        return Err(Error::FailedPrecondition(
            "a restore needs a log without the restored events; restore into an empty store".into(),
        ));
    }
    if originals.iter().all(Option::is_some) {
        return Ok(Appended {
            already_present: vec![true; originals.len()],
            entries: originals.into_iter().flatten().collect(),
            last_seq: index.last_seq(),
        });
    }

    if let Some(expected) = expected_last_seq {
        if expected != index.last_seq() {
            return Err(Error::FailedPrecondition(format!(
                "expected_last_seq is {expected} but the log's last seq is {}",
                index.last_seq()
            )));
        }
    }

    let corrected = check_context(shared, index, round, &events, &parsed, &originals)?;

    // Accepted: assign seqs and fold into the index (invisible to readers
    // until the round is durable).
    if restoring {
        let in_order = restored_times.windows(2).all(|pair| pair[0] <= pair[1]);
        if restored_times.len() != events.len() || !in_order || restored_times[0] < *clock {
            return Err(Error::invalid(
                "recorded_at",
                "restored entries need one recorded_at each, never decreasing",
            ));
        }
    } else {
        let now = chrono::Utc::now().timestamp_micros();
        *clock = (*clock).max(now);
    }
    let mut entries = Vec::with_capacity(events.len());
    let already_present = originals.iter().map(Option::is_some).collect();
    for (position, (((event, domain), original), corrected)) in events
        .into_iter()
        .zip(&parsed)
        .zip(originals)
        .zip(corrected)
        .enumerate()
    {
        if restoring {
            *clock = restored_times[position];
        }
        let entry = match original {
            Some(original) => original,
            None => {
                let entry = StoredEntry {
                    seq: index.last_seq() + 1,
                    recorded_at: *clock,
                    event,
                };
                // A target earlier in this batch got its seq just above.
                let corrected = corrected.or_else(|| {
                    let target = domain.corrects.as_deref()?;
                    round.ids.get(target).copied()
                });
                round.derived.extend(index.apply(&entry, domain, corrected));
                round.ids.insert(entry.event.id.clone(), entry.seq);
                round.entries.push(entry.clone());
                entry
            }
        };
        entries.push(entry);
    }
    Ok(Appended {
        entries,
        last_seq: index.last_seq(),
        already_present,
    })
}

/// The checks that need the log: every named entity is declared (before, or
/// anywhere in this batch); a correction names an earlier event that nothing
/// has corrected yet; names and aliases stay unambiguous. Returns, per
/// event, the seq of the event it corrects (when it is in the log already).
fn check_context(
    shared: &Shared,
    index: &Index,
    round: &Round,
    events: &[proto::Event],
    parsed: &[Event],
    originals: &[Option<StoredEntry>],
) -> Result<Vec<Option<u64>>> {
    let current = Snapshot::new(
        index,
        &shared.timelines,
        shared.store.as_ref(),
        index.last_seq(),
    );
    let mut corrected_seqs = vec![None; events.len()];
    let new = || {
        parsed
            .iter()
            .enumerate()
            .filter(|(position, _)| originals[*position].is_none())
    };

    let mut declared: HashMap<&str, &Declaration> = HashMap::new();
    let mut names: HashMap<String, &str> = HashMap::new();
    for (position, event) in new() {
        for (effect_position, effect) in event.effects.iter().enumerate() {
            let Change::Declare(declaration) = &effect.change else {
                continue;
            };
            let field = format!("events[{position}].effects[{effect_position}].declare");
            declared.insert(&declaration.id, declaration);
            for name in declaration.lookup_names() {
                let owner = current
                    .resolve(&name)
                    .or_else(|| names.get(&name).copied())
                    .filter(|owner| *owner != declaration.id);
                if let Some(owner) = owner {
                    return Err(Error::invalid(
                        format!("{field}.aliases"),
                        format!("{name:?} already names the entity {owner:?}"),
                    ));
                }
                names.insert(name, &declaration.id);
            }
        }
    }

    let mut corrected: HashSet<&str> = HashSet::new();
    for (position, event) in new() {
        for entity in event.entities() {
            if current.entity(entity).is_none() && !declared.contains_key(entity) {
                return Err(Error::invalid(
                    format!("events[{position}]"),
                    format!(
                        "entity {entity:?} is not declared; declare it in this batch or an earlier one"
                    ),
                ));
            }
        }
        let Some(target) = event.corrects.as_deref() else {
            continue;
        };
        let field = format!("events[{position}].corrects");
        let earlier_in_batch = events[..position].iter().any(|other| other.id == target);
        match seq_of(shared, round, target)? {
            Some(seq) => {
                if let Some(by) = current.superseded_by(seq) {
                    let by = match round.entries.iter().find(|entry| entry.seq == by) {
                        Some(entry) => entry.event.id.clone(),
                        None => shared
                            .store
                            .get(by)?
                            .map(|entry| entry.event.id)
                            .unwrap_or_default(),
                    };
                    return Err(Error::FailedPrecondition(format!(
                        "{field}: event {target:?} is already superseded by {by:?}; correct that one instead"
                    )));
                }
                corrected_seqs[position] = Some(seq);
            }
            None if earlier_in_batch => {}
            None => {
                return Err(Error::invalid(
                    field,
                    format!("there is no event {target:?} to correct"),
                ))
            }
        }
        if !corrected.insert(target) {
            return Err(Error::invalid(
                field,
                format!("event {target:?} is corrected twice in this batch"),
            ));
        }
    }
    Ok(corrected_seqs)
}
