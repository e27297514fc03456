//! Events by valid time: the listing (`ListEvents`) and the counts per
//! bucket (`CountEvents`), both one walk of the `mentions` tree of one
//! entity (or of the `timeline` tree for every event).
//!
//! A counterpart is checked with one point read of its own `mentions` key
//! (same instant, same seq), labels and a counted value with a read of the
//! log entry — only for the events the index could not rule out first.

use super::Snapshot;
use crate::error::{Error, Result};
use crate::index::keys;
use crate::index::records::EventValue;
use crate::store::{StoredEntry, Tree};
use crate::time::{bucket_of, Bucket, Instant};
use std::collections::BTreeMap;

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

/// One event of a walk: its seq, its earliest instant, and its log entry
/// when the filter needed it.
struct Found {
    seq: u64,
    earliest: Instant,
    entry: Option<StoredEntry>,
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
        self.walk_events(filter, false, &mut |found| {
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
        let mut buckets: BTreeMap<Instant, Counted> = BTreeMap::new();
        // The bucket of the last event, which the next one most often
        // shares: (first instant, next bucket's first instant).
        let mut current: Option<(Instant, Instant)> = None;
        self.walk_events(filter, value_label.is_some(), &mut |found| {
            if self.superseded_by(found.seq).is_some() {
                return Ok(true);
            }
            let first = match current {
                Some((first, next)) if (first..next).contains(&found.earliest) => first,
                _ => {
                    let (first, next, text) =
                        bucket_of(found.earliest, bucket).ok_or_else(|| {
                            Error::invalid(
                                "from",
                                "counts are per bucket of years 0001-9999; narrow the window",
                            )
                        })?;
                    buckets.entry(first).or_insert_with(|| Counted {
                        start: text,
                        ..Counted::default()
                    });
                    current = Some((first, next));
                    first
                }
            };
            let counted = buckets.get_mut(&first).expect("the bucket was made above");
            counted.count += 1;
            let value = value_label.and_then(|label| {
                let entry = found.entry.as_ref()?;
                entry.event.labels.get(label)?.trim().parse::<f64>().ok()
            });
            if let Some(value) = value.filter(|value| value.is_finite()) {
                counted.sum += value;
                counted.valued += 1;
            }
            Ok(true)
        })?;
        Ok(buckets.into_values().collect())
    }

    /// Calls `visit` with each wanted event, by (earliest, seq), until it
    /// returns `false`. The log entry is read when the labels must be
    /// checked or `with_entry` asks for it.
    fn walk_events(
        &self,
        filter: &EventFilter,
        with_entry: bool,
        visit: &mut dyn FnMut(Found) -> Result<bool>,
    ) -> Result<()> {
        let overlaps = filter.window == Window::Overlaps;
        let (tree, from, to, prefix) = match &filter.entity {
            Some(entity) => {
                let first = if overlaps {
                    filter.from.saturating_sub(self.index.span_of(entity))
                } else {
                    filter.from
                };
                let prefix = keys::entity(entity);
                let to = keys::prefix_end(&keys::mention(entity, filter.to, u64::MAX));
                (
                    Tree::Mentions,
                    keys::mention(entity, first, 0),
                    to,
                    prefix.len(),
                )
            }
            None => {
                let first = if overlaps {
                    filter.from.saturating_sub(self.index.max_span)
                } else {
                    filter.from
                };
                let to = keys::prefix_end(&keys::instant(filter.to));
                (Tree::Timeline, keys::instant(first).to_vec(), to, 0)
            }
        };
        let read_entry = with_entry || !filter.labels.is_empty();
        self.store
            .visit_derived(tree, &from, &to, &mut |key, value| {
                let key = &key[prefix..];
                if key.len() != 16 {
                    return Err(Error::DataLoss(
                        "an event key of the index is damaged".into(),
                    ));
                }
                let earliest = keys::decode_instant(&key[..8]);
                let seq = keys::decode_seq(&key[8..]);
                let record = EventValue::decode(value)?;
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
                if !wanted || !self.names_counterpart(filter, earliest, seq)? {
                    return Ok(true);
                }
                let entry = if read_entry {
                    let entry = self
                        .store
                        .get(seq)?
                        .ok_or_else(|| Error::DataLoss(format!("log entry {seq} is missing")))?;
                    let labels = &entry.event.labels;
                    let all_match = filter
                        .labels
                        .iter()
                        .all(|(key, value)| labels.get(key) == Some(value));
                    if !all_match {
                        return Ok(true);
                    }
                    Some(entry)
                } else {
                    None
                };
                visit(Found {
                    seq,
                    earliest,
                    entry,
                })
            })
    }

    /// Does the event at (earliest, seq) name the filter's counterpart (or
    /// is there none to check)?
    fn names_counterpart(&self, filter: &EventFilter, earliest: Instant, seq: u64) -> Result<bool> {
        let Some(counterpart) = &filter.counterpart else {
            return Ok(true);
        };
        let key = keys::mention(counterpart, earliest, seq);
        Ok(self.store.get_derived(Tree::Mentions, &key)?.is_some())
    }
}
