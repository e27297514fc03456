//! The writer thread: one round at a time, it drains the waiting appends,
//! checks each against the log and the ones before it (`prepare`), and
//! writes them with one durable `LogStore::append` (`commit`).

use super::{AppendJob, Appended, Job, Shared};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::model::{Change, Declaration, Event};
use crate::proto;
use crate::query::Snapshot;
use crate::store::{StoredEntry, Write};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What one writer round will write: the accepted entries, the derived
/// writes they imply, and their ids (not yet in the `ids` tree).
#[derive(Default)]
pub(super) struct Round {
    pub(super) entries: Vec<StoredEntry>,
    derived: Vec<Write>,
    ids: HashMap<String, u64>,
}

impl Round {
    pub(super) fn derived_len(&self) -> usize {
        self.derived.len()
    }

    /// Keeps only the first `entries` entries and `derived` derived writes
    /// (those of the appends before a cut).
    pub(super) fn truncate(&mut self, entries: usize, derived: usize) {
        self.entries.truncate(entries);
        self.derived.truncate(derived);
    }
}

/// Writes a round: the log, then the derived trees and the cached
/// timelines under the cache lock, then one sync for all of it (a group
/// commit, recorded in the writer's metrics once it is durable).
pub(super) fn commit(shared: &Shared, round: &mut Round) -> Result<()> {
    let entries = round.entries.len();
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
    let syncing = std::time::Instant::now();
    shared.store.sync()?;
    if entries > 0 {
        shared
            .metrics
            .writer()
            .committed(entries, syncing.elapsed());
    }
    Ok(())
}

/// Counts an append answered OK: the events it stored (not re-sent ones).
pub(super) fn count_stored(shared: &Shared, appended: &Appended) {
    let new_events = appended
        .already_present
        .iter()
        .filter(|present| !**present)
        .count();
    shared.metrics.writer().stored(new_events);
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
pub(super) fn run_writer(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>, mut clock: i64) {
    const MAX_JOBS_PER_ROUND: usize = 512;
    let append = |job: Job| match job {
        Job::Append(job) => Some(job),
        Job::Apply(message) => {
            tracing::error!(
                position = message.position,
                "a replicated message reached a single-node writer; ignored"
            );
            None
        }
    };
    while let Some(first) = jobs.blocking_recv() {
        let mut jobs_in_round: Vec<AppendJob> = append(first).into_iter().collect();
        while jobs_in_round.len() < MAX_JOBS_PER_ROUND {
            match jobs.try_recv() {
                Ok(job) => jobs_in_round.extend(append(job)),
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
                count_stored(&shared, appended);
            }
            // A client that went away still had its events stored.
            let _ = reply.send(answer);
        }
    }
}

/// Validates one append against the log (and the appends before it in this
/// round), and if it is acceptable assigns seqs, folds it into the index and
/// queues it in `pending`. Nothing changes when it returns an error.
pub(super) fn prepare(
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
