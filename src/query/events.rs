//! Events by valid time: the listing (`ListEvents`) and the counts per
//! bucket (`CountEvents`), both one walk of the index in (earliest, seq)
//! order — of a dyad's keys in `dyads` when there is a counterpart, of an
//! entity's `mentions`, or of the whole `timeline`.
//!
//! Each key's value carries the event's kind and its facts (the labels of
//! `records::FACT_LABELS`), so a filter or a sum on them reads nothing
//! else; any other label is read from the event's log entry, only for the
//! events the index could not rule out first.

use super::Snapshot;
use crate::error::{Error, Result};
use crate::index::keys;
use crate::index::records::{fact_position, number, EventValue, Fact};
use crate::index::runs::RunBuilder;
use crate::store::Tree;
use crate::time::{bucket_of, Bucket, Instant};
use std::sync::Arc;

/// A visitor of index keys: (earliest, seq, value) → go on?
type KeyVisit<'a> = dyn FnMut(Instant, u64, &[u8]) -> Result<bool> + 'a;

/// How an event's valid time must meet the window `[from, to]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Window {
    /// Any instant of the event lies in the window (a listing).
    #[default]
    Overlaps,
    /// The event's earliest instant lies in the window (a count).
    StartsIn,
}

/// Which events a listing or a count wants.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub entity: Option<String>,
    /// Only events naming this entity too (needs `entity`).
    pub counterpart: Option<String>,
    pub kind: Option<String>,
    /// Only events whose labels include every one of these pairs.
    pub labels: Vec<(String, String)>,
    /// First instant of the window (inclusive).
    pub from: Instant,
    /// Last instant of the window (inclusive).
    pub to: Instant,
    pub window: Window,
    /// At most this many (the first, in valid-time order); all when `None`.
    pub limit: Option<usize>,
}

/// The events of one bucket of a count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counted {
    /// The bucket as a valid time of its precision (`2018-06`).
    pub start: String,
    pub count: u64,
    /// Sum of the counted label over the events carrying it as a number.
    pub sum: f64,
    /// How many events carried it.
    pub valued: u64,
}

/// One event of a walk: its seq, its earliest instant, and the value of
/// the counted label when one was asked for and the event has it as a
/// number.
struct Found {
    seq: u64,
    earliest: Instant,
    value: Option<f64>,
}

/// Where the labels a walk filters on and sums are among the facts,
/// worked out once per walk.
struct FactPositions {
    labels: Vec<Option<usize>>,
    value: Option<usize>,
}

/// A crowded event naming the counterpart, held to be merged into a dyad's
/// walk.
struct Crowded {
    earliest: Instant,
    seq: u64,
    latest: Instant,
    kind: String,
    facts: Vec<u8>,
}

impl Crowded {
    fn of(earliest: Instant, seq: u64, value: &EventValue) -> Crowded {
        Crowded {
            earliest,
            seq,
            latest: value.latest,
            kind: value.kind.to_string(),
            facts: value.facts().to_vec(),
        }
    }

    fn value(&self) -> EventValue<'_> {
        EventValue::from_parts(self.latest, &self.kind, &self.facts)
    }
}

impl Snapshot<'_> {
    /// Seqs of the wanted events, by (earliest, seq): the first
    /// `filter.limit` of them when it is set. Withdrawn events are listed
    /// (a listing shows them with `superseded_by`).
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<u64>> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut seqs = Vec::new();
        if limit == 0 {
            return Ok(seqs);
        }
        self.walk_events(filter, None, false, &mut |found| {
            seqs.push(found.seq);
            Ok(seqs.len() < limit)
        })?;
        Ok(seqs)
    }

    /// The wanted events counted per bucket of their earliest instant, in
    /// valid-time order (only buckets holding an event), with the sum of
    /// the numeric label `value_label` when one is named. Events withdrawn
    /// by a correction are not counted.
    pub fn count_events(
        &self,
        filter: &EventFilter,
        bucket: Bucket,
        value_label: Option<&str>,
    ) -> Result<Vec<Counted>> {
        // Events come in valid-time order, so their buckets do too: the
        // current one is the last, with the range of instants it holds.
        let mut buckets: Vec<Counted> = Vec::new();
        let mut current = (Instant::MAX, Instant::MIN);
        self.walk_events(filter, value_label, true, &mut |found| {
            if self.superseded_by(found.seq).is_some() {
                return Ok(true);
            }
            if !(current.0..current.1).contains(&found.earliest) {
                let (first, next, start) = bucket_of(found.earliest, bucket).ok_or_else(|| {
                    Error::invalid(
                        "from",
                        "counts are per bucket of years 0001-9999; narrow the window",
                    )
                })?;
                current = (first, next);
                buckets.push(Counted {
                    start,
                    ..Counted::default()
                });
            }
            let counted = buckets.last_mut().expect("a bucket was made above");
            counted.count += 1;
            if let Some(value) = found.value {
                counted.sum += value;
                counted.valued += 1;
            }
            Ok(true)
        })?;
        Ok(buckets)
    }

    /// Calls `visit` with each wanted event, by (earliest, seq), until it
    /// returns `false`, with the value of `value_label`. The walk is of the
    /// dyad's keys when there is a counterpart (and of the entity's crowded
    /// events beside them), else of the entity's mentions, else of the
    /// whole timeline. Labels are read from the facts beside each key; the
    /// log entry only for a label the facts do not hold.
    fn walk_events(
        &self,
        filter: &EventFilter,
        value_label: Option<&str>,
        build: bool,
        visit: &mut dyn FnMut(Found) -> Result<bool>,
    ) -> Result<()> {
        let overlaps = filter.window == Window::Overlaps;
        let counterpart = filter
            .counterpart
            .as_deref()
            .filter(|counterpart| Some(*counterpart) != filter.entity.as_deref());
        let first = match (overlaps, &filter.entity) {
            (false, _) => filter.from,
            (true, Some(entity)) => {
                let span = match counterpart {
                    Some(other) => self.index.span_of(entity).max(self.index.span_of(other)),
                    None => self.index.span_of(entity),
                };
                filter.from.saturating_sub(span)
            }
            (true, None) => filter.from.saturating_sub(self.index.max_span),
        };
        // A label on a fact lets a run visit only the events holding it.
        let only = filter
            .labels
            .iter()
            .find_map(|(key, value)| Some((fact_position(key)?, value.as_str())));
        let positions = FactPositions {
            labels: filter
                .labels
                .iter()
                .map(|(key, _)| fact_position(key))
                .collect(),
            value: value_label.and_then(fact_position),
        };
        let mut consider = |earliest: Instant, seq: u64, record: EventValue| -> Result<bool> {
            let in_window = if overlaps {
                record.latest >= filter.from
            } else {
                earliest >= filter.from
            };
            let wanted = seq <= self.as_of
                && in_window
                && filter
                    .kind
                    .as_deref()
                    .is_none_or(|kind| kind == record.kind);
            if !wanted {
                return Ok(true);
            }
            match self.labels_of(filter, (value_label, &positions), seq, &record)? {
                Some(value) => visit(Found {
                    seq,
                    earliest,
                    value,
                }),
                None => Ok(true),
            }
        };
        match (&filter.entity, counterpart) {
            (Some(entity), Some(counterpart)) => {
                // The entity's crowded events that name the counterpart
                // too (few), merged into the walk of the dyad's keys.
                let mut crowded = Vec::new();
                self.walk_prefix(
                    Tree::Dyads,
                    &keys::crowded_prefix(entity),
                    (first, filter.to),
                    (build, only),
                    &mut |earliest, seq, value| {
                        let key = keys::mention(counterpart, earliest, seq);
                        if self.store.get_derived(Tree::Mentions, &key)?.is_some() {
                            crowded.push(Crowded::of(earliest, seq, &value));
                        }
                        Ok(true)
                    },
                )?;
                let mut crowded = crowded.into_iter().peekable();
                let mut going = true;
                self.walk_prefix(
                    Tree::Dyads,
                    &keys::pair_prefix(entity, counterpart),
                    (first, filter.to),
                    (build, only),
                    &mut |earliest, seq, value| {
                        while let Some(before) = crowded
                            .next_if(|before| (before.earliest, before.seq) < (earliest, seq))
                        {
                            going = consider(before.earliest, before.seq, before.value())?;
                            if !going {
                                return Ok(false);
                            }
                        }
                        going = consider(earliest, seq, value)?;
                        Ok(going)
                    },
                )?;
                for before in crowded {
                    if !going {
                        break;
                    }
                    going = consider(before.earliest, before.seq, before.value())?;
                }
                Ok(())
            }
            (Some(entity), None) => self.walk_prefix(
                Tree::Mentions,
                &keys::entity(entity),
                (first, filter.to),
                (build, only),
                &mut |earliest, seq, value| consider(earliest, seq, value),
            ),
            (None, _) => self.scan_tree(
                Tree::Timeline,
                0,
                &keys::instant(first),
                &keys::prefix_end(&keys::instant(filter.to)),
                &mut |earliest, seq, value| consider(earliest, seq, EventValue::decode(value)?),
            ),
        }
    }

    /// Calls `visit` with each event under `prefix` of `tree` whose
    /// earliest instant is in `window`, by (earliest, seq): from the
    /// prefix's run when one is kept, else from the store — building a run
    /// of the whole prefix first when `build` asks (a count reads long
    /// windows, again and again). With `only` (a fact's position and a
    /// value), a run may leave out the events whose fact is another value.
    fn walk_prefix(
        &self,
        tree: Tree,
        prefix: &[u8],
        (first, last): (Instant, Instant),
        (build, only): (bool, Option<(usize, &str)>),
        visit: &mut dyn FnMut(Instant, u64, EventValue) -> Result<bool>,
    ) -> Result<()> {
        if let Some((runs, durable)) = self.runs {
            let run = match runs.get(tree, prefix) {
                Some(run) => Some(run),
                None if build => {
                    let building = runs.start(tree, prefix);
                    let mut builder = RunBuilder::new(durable);
                    self.scan_tree(
                        tree,
                        prefix.len(),
                        prefix,
                        &keys::prefix_end(prefix),
                        &mut |earliest, seq, value| {
                            builder.push(earliest, seq, &EventValue::decode(value)?)?;
                            Ok(true)
                        },
                    )?;
                    let run = Arc::new(builder.finish());
                    if let Some(building) = building {
                        runs.keep(building, Arc::clone(&run));
                    }
                    Some(run)
                }
                None => None,
            };
            if let Some(run) = run {
                return run.visit((first, last), only, visit);
            }
        }
        let key = |instant: Instant, seq: u64| {
            let mut key = prefix.to_vec();
            key.extend_from_slice(&keys::instant(instant));
            key.extend_from_slice(&keys::seq(seq));
            key
        };
        self.scan_tree(
            tree,
            prefix.len(),
            &key(first, 0),
            &keys::prefix_end(&key(last, u64::MAX)),
            &mut |earliest, seq, value| visit(earliest, seq, EventValue::decode(value)?),
        )
    }

    /// Calls `visit` with (earliest, seq, value) of each key of `tree` in
    /// `[from, to)`, whose `prefix` bytes precede the 16 of (earliest, seq).
    fn scan_tree(
        &self,
        tree: Tree,
        prefix: usize,
        from: &[u8],
        to: &[u8],
        visit: &mut KeyVisit,
    ) -> Result<()> {
        self.store.visit_derived(tree, from, to, &mut |key, value| {
            let key = &key[prefix.min(key.len())..];
            if key.len() != 16 {
                return Err(Error::DataLoss(
                    "an event key of the index is damaged".into(),
                ));
            }
            visit(
                keys::decode_instant(&key[..8]),
                keys::decode_seq(&key[8..]),
                value,
            )
        })
    }

    /// Does the event match the filter's labels? If so, `Some` with the
    /// value of `value_label` (when it is a finite number). The facts
    /// beside the key answer when they can; the log entry otherwise.
    fn labels_of(
        &self,
        filter: &EventFilter,
        (value_label, positions): (Option<&str>, &FactPositions),
        seq: u64,
        record: &EventValue,
    ) -> Result<Option<Option<f64>>> {
        let mut in_the_log = Vec::new();
        for ((key, value), position) in filter.labels.iter().zip(&positions.labels) {
            match record.fact_at(*position)? {
                Fact::Value(fact) if fact == value => {}
                Fact::Value(_) | Fact::Absent => return Ok(None),
                Fact::InTheLog => in_the_log.push((key, value)),
            }
        }
        let mut counted = match value_label {
            None => Ok(None),
            Some(_) => record.number_at(positions.value)?.ok_or(()),
        };
        if !in_the_log.is_empty() || counted.is_err() {
            let entry = self
                .store
                .get(seq)?
                .ok_or_else(|| Error::DataLoss(format!("log entry {seq} is missing")))?;
            let labels = &entry.event.labels;
            if !in_the_log
                .iter()
                .all(|(key, value)| labels.get(*key) == Some(*value))
            {
                return Ok(None);
            }
            if counted.is_err() {
                counted = Ok(value_label
                    .and_then(|label| labels.get(label))
                    .and_then(|text| number(text)));
            }
        }
        Ok(Some(counted.unwrap_or(None)))
    }
}
