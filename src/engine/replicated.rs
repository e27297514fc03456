//! The writer in cluster mode: the same validation (`writer::prepare`) and
//! the same local write (`writer::commit`), with the replicated log deciding
//! the order in between.
//!
//! An append is validated against the view at position P, published as the
//! message right after P, and applied to the view once the log has it. If
//! another node's message took position P + 1 first, nothing was stored:
//! the writer forgets what it folded in, applies the messages it missed,
//! and validates the append again (it may now be a re-send, or fail
//! `expected_last_seq`, exactly as on a single node). An append the view
//! refuses is refused only once the view is known to be current: a
//! declaration another node appended a moment ago may not have arrived yet.
//! Messages published by other nodes arrive as `Job::Apply` and are
//! applied as a restore is.

use super::sequencer::{LogMessage, Refused, Sequencer};
use super::writer::{commit, prepare, Round};
use super::{AppendJob, Appended, Job, Shared};
use crate::error::{Error, Result};
use crate::index::Index;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many times one append is validated again after other nodes took
/// the position it was meant for, before it is refused.
const MAX_ATTEMPTS: usize = 64;

/// Messages fetched at once when the view catches up.
const FETCH: usize = 256;

struct Replicated {
    shared: Arc<Shared>,
    sequencer: Arc<dyn Sequencer>,
    /// The writer's clock: the last `recorded_at` applied, or handed out.
    clock: i64,
}

pub(super) fn run_replicated(
    shared: Arc<Shared>,
    sequencer: Arc<dyn Sequencer>,
    mut jobs: mpsc::Receiver<Job>,
    clock: i64,
) {
    let mut writer = Replicated {
        shared,
        sequencer,
        clock,
    };
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Apply(message) => {
                if let Err(error) = writer.apply_through(message) {
                    writer.fail(&error);
                }
            }
            Job::Append(job) => {
                let AppendJob {
                    events,
                    expected_last_seq,
                    recorded_at,
                    reply,
                } = job;
                let mut answer = writer.append(events, expected_last_seq, &recorded_at);
                if let Ok(appended) = &mut answer {
                    appended.last_seq = *writer.shared.durable.borrow();
                }
                let _ = reply.send(answer);
            }
        }
    }
}

impl Replicated {
    fn position(&self) -> u64 {
        self.shared.position.load(Ordering::SeqCst)
    }

    fn fail(&self, error: &Error) {
        tracing::error!(%error, "applying the replicated log failed; refusing further appends");
        self.shared.failed.store(true, Ordering::SeqCst);
    }

    fn refuse_if_failed(&self) -> Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "this node's view could not apply the log; restart it (a view can be rebuilt from the stream)".into(),
            ));
        }
        Ok(())
    }

    fn append(
        &mut self,
        events: Vec<crate::proto::Event>,
        expected_last_seq: Option<u64>,
        recorded_at: &[i64],
    ) -> Result<Appended> {
        self.refuse_if_failed()?;
        let mut current = false;
        for _ in 0..MAX_ATTEMPTS {
            let clock = self.clock;
            let mut round = Round::default();
            let prepared = {
                let mut index = self.shared.index.write().expect("index lock poisoned");
                prepare(
                    &self.shared,
                    &mut index,
                    events.clone(),
                    expected_last_seq,
                    recorded_at,
                    &mut round,
                    &mut self.clock,
                )
            };
            let appended = match prepared {
                Ok(appended) => appended,
                Err(error) if !current => {
                    // Refused by a view that may be behind: check again
                    // once it holds everything the stream has.
                    self.clock = clock;
                    let last = self.sequencer.last_position().map_err(|_| error)?;
                    if last > self.position() {
                        self.catch_up()?;
                    }
                    current = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            if round.entries.is_empty() {
                return Ok(appended);
            }
            let position = self.position();
            match self.sequencer.publish(position, &round.entries) {
                Ok(published) if published == position + 1 => {
                    self.write(&mut round, published)?;
                    return Ok(appended);
                }
                Ok(published) => {
                    // Only a retry of a message that landed elsewhere can
                    // answer so; the view catches up and checks again.
                    tracing::warn!(position, published, "the log placed a message elsewhere");
                    self.forget(clock)?;
                    self.catch_up()?;
                }
                Err(Refused::Moved) => {
                    self.forget(clock)?;
                    self.catch_up()?;
                }
                Err(Refused::Rejected(error)) => {
                    self.forget(clock)?;
                    return Err(error);
                }
                Err(Refused::Unavailable(why)) => {
                    self.forget(clock)?;
                    return Err(Error::Unavailable(format!(
                        "the log's stream cannot be reached: {why}"
                    )));
                }
            }
        }
        Err(Error::Unavailable(format!(
            "other nodes appended first {MAX_ATTEMPTS} times in a row; try again"
        )))
    }

    /// Undoes what `prepare` folded into the resident index for entries the
    /// log did not take: the store never saw them, so the index is read
    /// back from it.
    fn forget(&mut self, clock: i64) -> Result<()> {
        self.clock = clock;
        let mut index = self.shared.index.write().expect("index lock poisoned");
        *index = Index::open(self.shared.store.as_ref())?;
        Ok(())
    }

    /// Applies every message the log holds after the view's position.
    fn catch_up(&mut self) -> Result<()> {
        loop {
            let messages = self.sequencer.fetch(self.position(), FETCH)?;
            if messages.is_empty() {
                return Ok(());
            }
            for message in messages {
                self.apply(message)?;
            }
        }
    }

    /// Applies a message that arrived from the log, first fetching any it
    /// skipped over; one the view holds already is ignored.
    fn apply_through(&mut self, message: LogMessage) -> Result<()> {
        self.refuse_if_failed()?;
        while self.position() + 1 < message.position {
            let before = self.position();
            for missed in self.sequencer.fetch(before, FETCH)? {
                if missed.position < message.position {
                    self.apply(missed)?;
                }
            }
            if self.position() == before {
                return Err(Error::DataLoss(format!(
                    "the log has no message {} (message {} arrived)",
                    before + 1,
                    message.position
                )));
            }
        }
        self.apply(message)
    }

    /// Folds one message into the view, as a restore of its entries.
    fn apply(&mut self, message: LogMessage) -> Result<()> {
        if message.position <= self.position() {
            return Ok(());
        }
        let Some(first) = message.entries.first() else {
            return Err(Error::DataLoss(format!(
                "message {} of the log holds no entries",
                message.position
            )));
        };
        let after = first.seq - 1;
        let times: Vec<i64> = message
            .entries
            .iter()
            .map(|entry| entry.recorded_at)
            .collect();
        let events = message
            .entries
            .into_iter()
            .map(|entry| entry.event)
            .collect();
        let mut round = Round::default();
        {
            let mut index = self.shared.index.write().expect("index lock poisoned");
            prepare(
                &self.shared,
                &mut index,
                events,
                Some(after),
                &times,
                &mut round,
                &mut self.clock,
            )
            .map_err(|error| {
                let error = Error::DataLoss(format!(
                    "message {} of the log does not apply to this view: {error}",
                    message.position
                ));
                self.fail(&error);
                error
            })?;
        }
        self.write(&mut round, message.position)
    }

    /// Writes an applied round to the view and makes it visible.
    fn write(&mut self, round: &mut Round, position: u64) -> Result<()> {
        let last = round.entries.last().map_or(0, |entry| entry.seq);
        if let Err(error) = commit(&self.shared, round) {
            self.fail(&error);
            return Err(Error::Unavailable(format!(
                "the view could not be written: {error}"
            )));
        }
        self.shared.position.store(position, Ordering::SeqCst);
        self.shared.durable.send_replace(last);
        Ok(())
    }
}
