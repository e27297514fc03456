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
use crate::metrics::Metrics;
use crate::proto;
use crate::query::Snapshot;
use crate::store::{timestamp, LogStore, StoredEntry};
use crate::wire::EntryWriter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{mpsc, oneshot, watch};
use writer::run_writer;

mod replicated;
mod sequencer;
mod writer;

pub use sequencer::{LogMessage, Refused, Sequencer};

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

/// What the writer thread is given to do.
enum Job {
    Append(AppendJob),
    /// A message of the replicated log (cluster mode), to apply to the view.
    Apply(LogMessage),
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
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when a write failed: the log on disk may be behind the index,
    /// so no further append is taken until a restart rebuilds the index.
    failed: AtomicBool,
    limits: Limits,
    /// In cluster mode, the replicated log that orders appends.
    sequencer: Option<Arc<dyn Sequencer>>,
    /// In cluster mode, the position of the last message the view holds.
    position: AtomicU64,
    metrics: Metrics,
}

impl Database {
    /// Opens a database over `store`. The derived trees are used as they
    /// are, after indexing any log entries they lag behind (a crash between
    /// the log write and the index write); the log is not replayed.
    pub fn open(store: Arc<dyn LogStore>, limits: Limits) -> Result<Database> {
        Database::open_with(store, limits, None)
    }

    /// Opens a database whose log is replicated (cluster mode): `store` is
    /// this node's view, a copy of a prefix of `sequencer`'s log, and every
    /// append goes through the log before the view (`replicated`).
    pub fn open_replicated(
        store: Arc<dyn LogStore>,
        limits: Limits,
        sequencer: Arc<dyn Sequencer>,
    ) -> Result<Database> {
        Database::open_with(store, limits, Some(sequencer))
    }

    fn open_with(
        store: Arc<dyn LogStore>,
        limits: Limits,
        sequencer: Option<Arc<dyn Sequencer>>,
    ) -> Result<Database> {
        let index = Index::open(store.as_ref())?;
        let position = match &sequencer {
            Some(sequencer) => sequencer.locate(index.last_seq())?,
            None => 0,
        };
        let last_recorded_at = match index.last_seq() {
            0 => i64::MIN,
            last => store.get(last)?.map_or(i64::MIN, |entry| entry.recorded_at),
        };
        let last_seq = index.last_seq();
        let (jobs, receiver) = mpsc::channel(1024);
        let metrics = match sequencer {
            Some(_) => Metrics::for_cluster(),
            None => Metrics::new(),
        };
        let shared = Arc::new(Shared {
            store,
            index: RwLock::new(index),
            timelines: TimelineCache::new(limits.timeline_cache_bytes)
                .with_lookups(metrics.timeline_cache()),
            runs: EventRuns::new(limits.event_cache_bytes).with_lookups(metrics.event_cache()),
            durable: watch::Sender::new(last_seq),
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(None),
            failed: AtomicBool::new(false),
            limits,
            sequencer,
            position: AtomicU64::new(position),
            metrics,
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("annals-writer".into())
            .spawn(move || match writer_shared.sequencer.clone() {
                Some(sequencer) => {
                    replicated::run_replicated(writer_shared, sequencer, receiver, last_recorded_at)
                }
                None => run_writer(writer_shared, receiver, last_recorded_at),
            })?;
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
        let (reply, answer) = oneshot::channel();
        let job = Job::Append(AppendJob {
            events,
            expected_last_seq,
            recorded_at,
            reply,
        });
        self.send(job).await?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the writer stopped before answering".into()))?
    }

    /// Hands a message of the replicated log to the writer, which applies
    /// it unless the view holds it already (cluster mode).
    pub async fn deliver(&self, message: LogMessage) -> Result<()> {
        self.send(Job::Apply(message)).await
    }

    /// Hands a job to the writer (UNAVAILABLE once it is closing).
    async fn send(&self, job: Job) -> Result<()> {
        let closing = || Error::Unavailable("the server is shutting down".into());
        let sender = self
            .shared
            .jobs
            .lock()
            .expect("jobs lock")
            .clone()
            .ok_or_else(closing)?;
        sender.send(job).await.map_err(|_| closing())
    }

    /// The position in the replicated log of the last message the view
    /// holds (cluster mode; 0 otherwise).
    pub fn log_position(&self) -> u64 {
        self.shared.position.load(Ordering::SeqCst)
    }

    /// The metrics of this database and the server over it (see
    /// `metrics::render`).
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Is the log replicated (cluster mode)?
    pub fn is_replicated(&self) -> bool {
        self.shared.sequencer.is_some()
    }

    /// Did a write to the log or the view fail (no appends until a restart)?
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Waits until the view holds seq `seq`, for at most `wait` (cluster
    /// mode: a client reading its own write on another node). Returns the
    /// last seq, which may still be short of `seq`.
    pub async fn reach(&self, seq: u64, wait: std::time::Duration) -> u64 {
        let mut last = self.watch_last_seq();
        let _ = tokio::time::timeout(wait, last.wait_for(|last| *last >= seq)).await;
        self.last_seq()
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
        let seqs: Vec<u64> = stored.iter().map(|entry| entry.seq).collect();
        let superseded = self.superseded_ids(&seqs, as_of)?;
        Ok(stored
            .into_iter()
            .zip(superseded)
            .map(|(entry, superseded_by)| wire_entry(entry, &superseded_by))
            .collect())
    }

    /// Per seq, the id of the correction that withdrew it as known at
    /// `as_of` (empty when none did).
    fn superseded_ids(&self, seqs: &[u64], as_of: u64) -> Result<Vec<String>> {
        let corrections: Vec<Option<u64>> = {
            let index = self.index();
            let snapshot = self.snapshot(&index, as_of, self.last_seq());
            seqs.iter()
                .map(|seq| snapshot.superseded_by(*seq))
                .collect()
        };
        corrections
            .into_iter()
            .map(|correction| match correction {
                Some(seq) => Ok(self
                    .shared
                    .store
                    .get(seq)?
                    .map(|correction| correction.event.id)
                    .unwrap_or_default()),
                None => Ok(String::new()),
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

    /// Log entries by seq as `ListEventsResponse` sends them, with
    /// `superseded_by` as known at `as_of`: their stored bytes, none
    /// decoded but a withdrawing correction's (for its id).
    pub fn encoded_entries(&self, seqs: &[u64], as_of: u64) -> Result<EntryWriter> {
        let superseded = self.superseded_ids(seqs, as_of)?;
        let mut writer = EntryWriter::default();
        for (seq, superseded_by) in seqs.iter().zip(superseded) {
            let payload = self
                .shared
                .store
                .get_payload(*seq)?
                .ok_or_else(|| Error::DataLoss(format!("log entry {seq} is missing")))?;
            writer.push(&payload, &superseded_by);
        }
        Ok(writer)
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
