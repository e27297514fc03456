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
use super::writer::{commit, count_stored, prepare, Round};
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

/// Appends taken into one writer round at most.
const MAX_JOBS_PER_ROUND: usize = 512;

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
    while let Some(first) = jobs.blocking_recv() {
        let mut taken = vec![first];
        while taken.len() < MAX_JOBS_PER_ROUND {
            match jobs.try_recv() {
                Ok(job) => taken.push(job),
                Err(_) => break,
            }
        }
        // Messages first: a view that is more current refuses fewer
        // appends for having been overtaken.
        let mut appends = Vec::new();
        for job in taken {
            match job {
                Job::Apply(message) => match writer.apply_through(message) {
                    Ok(()) => {}
                    // The stream out of reach while filling a gap: the
                    // follower's watchdog starts again from the view.
                    Err(Error::Unavailable(why)) => {
                        tracing::warn!(%why, "a message of the log could not be applied yet");
                    }
                    Err(error) => writer.fail(&error),
                },
                Job::Append(job) => appends.push(Waiting {
                    job,
                    current: false,
                }),
            }
        }
        if !appends.is_empty() {
            writer.append_all(appends);
        }
    }
}

/// An append waiting for its answer; `current` once it was checked
/// against a view known to hold the whole stream.
struct Waiting {
    job: AppendJob,
    current: bool,
}

/// An append validated in this round: its answer so far, and where its
/// entries and derived writes end in the round.
struct Prepared {
    waiting: Waiting,
    appended: Appended,
    entries: std::ops::Range<usize>,
    derived_end: usize,
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

    fn answer(&self, waiting: Waiting, mut answer: Result<Appended>) {
        if let Ok(appended) = &mut answer {
            appended.last_seq = *self.shared.durable.borrow();
        }
        // A client that went away still had its events stored.
        let _ = waiting.job.reply.send(answer);
    }

    /// Validates the appends in order against the view, publishes the
    /// accepted ones one after another, applies those the log placed, and
    /// goes round again with the rest: after catching up when another node
    /// took the position, or once to re-check an append the view refused
    /// while it may have been behind. An append refused in a round where an
    /// earlier one was not placed is validated again too (its refusal may
    /// have rested on that one).
    fn append_all(&mut self, mut waiting: Vec<Waiting>) {
        for _ in 0..MAX_ATTEMPTS {
            if waiting.is_empty() {
                return;
            }
            if let Err(error) = self.refuse_if_failed() {
                for each in waiting {
                    self.answer(each, Err(Error::Unavailable(error.to_string())));
                }
                return;
            }
            let clock = self.clock;
            let mut round = Round::default();
            let mut prepared: Vec<Prepared> = Vec::new();
            let mut refused: Vec<(Waiting, Error)> = Vec::new();
            {
                let mut index = self.shared.index.write().expect("index lock poisoned");
                for each in waiting.drain(..) {
                    let start = round.entries.len();
                    let outcome = prepare(
                        &self.shared,
                        &mut index,
                        each.job.events.clone(),
                        each.job.expected_last_seq,
                        &each.job.recorded_at,
                        &mut round,
                        &mut self.clock,
                    );
                    match outcome {
                        Ok(appended) if round.entries.len() == start => {
                            // Every event was in the log already.
                            self.answer(each, Ok(appended));
                        }
                        Ok(appended) => prepared.push(Prepared {
                            waiting: each,
                            appended,
                            entries: start..round.entries.len(),
                            derived_end: round.derived_len(),
                        }),
                        Err(error) => refused.push((each, error)),
                    }
                }
            }
            let messages: Vec<&[crate::store::StoredEntry]> = prepared
                .iter()
                .map(|each| &round.entries[each.entries.clone()])
                .collect();
            let position = self.position();
            let (placed, why) = if messages.is_empty() {
                (0, None)
            } else {
                self.sequencer.publish_all(position, &messages)
            };
            let mut rest = prepared.split_off(placed);
            if let Some(last) = prepared.last() {
                round.truncate(last.entries.end, last.derived_end);
                let recorded_at = round
                    .entries
                    .last()
                    .map_or(clock, |entry| entry.recorded_at);
                if let Err(error) = self.write(&mut round, position + placed as u64) {
                    for each in prepared
                        .into_iter()
                        .map(|each| each.waiting)
                        .chain(rest.into_iter().map(|each| each.waiting))
                    {
                        self.answer(each, Err(Error::Unavailable(error.to_string())));
                    }
                    for (each, _) in refused {
                        self.answer(each, Err(Error::Unavailable(error.to_string())));
                    }
                    return;
                }
                self.clock = recorded_at.max(clock);
                for each in prepared {
                    count_stored(&self.shared, &each.appended);
                    self.answer(each.waiting, Ok(each.appended));
                }
            } else {
                self.clock = clock;
            }
            if !rest.is_empty() {
                // What prepare folded in for the appends the log did not
                // take is read back from the store.
                if let Err(error) = self.reload_index() {
                    self.fail(&error);
                }
            }
            let mut moved = false;
            match why {
                None => {}
                Some(Refused::Moved) => moved = true,
                Some(Refused::Rejected(error)) => {
                    let first = rest.remove(0);
                    self.answer(first.waiting, Err(error));
                }
                Some(Refused::Unavailable(why)) => {
                    let message = format!("the log's stream cannot be reached: {why}");
                    for each in rest.drain(..) {
                        self.answer(each.waiting, Err(Error::Unavailable(message.clone())));
                    }
                    for (each, _) in refused.drain(..) {
                        self.answer(each, Err(Error::Unavailable(message.clone())));
                    }
                }
            }
            let unplaced = !rest.is_empty();
            waiting.extend(rest.into_iter().map(|each| each.waiting));
            if unplaced {
                // Validated again after the catch-up below.
                waiting.extend(refused.drain(..).map(|(each, _)| each));
            }
            // An append refused by a view that may be behind is checked
            // again once the view holds everything the stream has.
            let stale: Vec<(Waiting, Error)> = refused;
            let mut behind = moved;
            if stale.iter().any(|(each, _)| !each.current) && !behind {
                behind = self
                    .sequencer
                    .last_position()
                    .is_ok_and(|last| last > self.position());
            }
            if behind {
                if let Err(error) = self.catch_up() {
                    let message =
                        format!("this node's view cannot catch up with the stream: {error}");
                    for each in waiting.drain(..) {
                        self.answer(each, Err(Error::Unavailable(message.clone())));
                    }
                    for (each, error) in stale {
                        self.answer(each, Err(error));
                    }
                    return;
                }
            }
            for (mut each, error) in stale {
                if behind && !each.current {
                    each.current = true;
                    waiting.push(each);
                } else {
                    self.answer(each, Err(error));
                }
            }
        }
        for each in waiting {
            self.answer(
                each,
                Err(Error::Unavailable(format!(
                    "other nodes appended first {MAX_ATTEMPTS} times in a row; try again"
                ))),
            );
        }
    }

    fn reload_index(&mut self) -> Result<()> {
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
        if self.position() + 1 < message.position {
            let missed = self
                .sequencer
                .fetch_through(self.position(), message.position - 1)?;
            for missed in missed {
                self.apply(missed)?;
            }
            if self.position() + 1 < message.position {
                return Err(Error::DataLoss(format!(
                    "the log has no message {} (message {} arrived)",
                    self.position() + 1,
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

#[cfg(test)]
#[path = "replicated_tests.rs"]
mod tests;
