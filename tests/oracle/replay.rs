//! The naive replay: every answer derived from the raw log from scratch,
//! with none of the index's structure.

use annals::model::{Change as EffectChange, Event};
use annals::proto;
use annals::query::{EventFilter, Window};
use annals::store::{LogStore, StoredEntry};
use annals::time::{bucket_of, Bucket, Instant};
use std::collections::{BTreeMap, HashMap};

/// A relation as the replay names it: (kind, a, b, directed).
type Key = (String, String, String, bool);
/// (kind, a, b, directed, from, to) of one interval.
pub type Interval = (String, String, String, bool, String, String);

/// The naive replay: everything derived from the raw log, from scratch.
pub struct Replay {
    log: Vec<(StoredEntry, Event)>,
}

#[derive(Clone, Debug)]
pub struct NaiveChange {
    earliest: Instant,
    latest: Instant,
    seq: u64,
    effect: usize,
    time: String,
    change: EffectChange,
}

impl Replay {
    pub fn new(store: &dyn LogStore) -> Replay {
        let log = store
            .read(1, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|entry| {
                let event = Event::from_proto(&entry.event).unwrap();
                (entry, event)
            })
            .collect();
        Replay { log }
    }

    pub fn id(&self, seq: u64) -> String {
        self.log[(seq - 1) as usize].0.event.id.clone()
    }

    /// Entries known at S and not withdrawn by a correction known at S.
    pub fn in_force(&self, as_of: u64) -> Vec<&(StoredEntry, Event)> {
        let known: Vec<_> = self
            .log
            .iter()
            .filter(|(entry, _)| entry.seq <= as_of)
            .collect();
        let withdrawn: Vec<&str> = known
            .iter()
            .filter_map(|(_, event)| event.corrects.as_deref())
            .collect();
        known
            .into_iter()
            .filter(|(entry, _)| !withdrawn.contains(&entry.event.id.as_str()))
            .collect()
    }

    pub fn changes(&self, as_of: u64) -> Vec<NaiveChange> {
        let mut changes = Vec::new();
        for (entry, event) in self.in_force(as_of) {
            for (position, effect) in event.effects.iter().enumerate() {
                changes.push(NaiveChange {
                    earliest: effect.time.earliest(),
                    latest: effect.time.latest(),
                    seq: entry.seq,
                    effect: position,
                    time: effect.time.text().to_string(),
                    change: effect.change.clone(),
                });
            }
        }
        changes.sort_by_key(|change| (change.earliest, change.seq, change.effect));
        changes
    }

    /// Relation key → (is active, deciding change) at Q.
    pub fn relation_state(&self, at: Instant, as_of: u64) -> BTreeMap<Key, (bool, NaiveChange)> {
        let mut state = BTreeMap::new();
        for change in self
            .changes(as_of)
            .into_iter()
            .filter(|change| change.earliest <= at)
        {
            let (key, active) = match &change.change {
                EffectChange::Begin(key) => (key, true),
                EffectChange::End(key) => (key, false),
                _ => continue,
            };
            let key = (key.kind.clone(), key.a.clone(), key.b.clone(), key.directed);
            state.insert(key, (active, change.clone()));
        }
        state
    }

    pub fn relations(&self, entity: Option<&str>, at: Instant, as_of: u64) -> Vec<proto::Relation> {
        self.relation_state(at, as_of)
            .into_iter()
            .filter(|((_, a, b, _), (active, _))| {
                *active && entity.is_none_or(|entity| a == entity || b == entity)
            })
            .map(|((kind, a, b, directed), (_, change))| proto::Relation {
                a,
                b,
                kind,
                directed,
                since: change.time.clone(),
                certain: change.latest <= at,
                event_id: self.id(change.seq),
            })
            .collect()
    }

    /// (entity, key) → (value, deciding change) at Q.
    pub fn attribute_state(
        &self,
        at: Instant,
        as_of: u64,
    ) -> BTreeMap<(String, String), (String, NaiveChange)> {
        let mut state = BTreeMap::new();
        for change in self
            .changes(as_of)
            .into_iter()
            .filter(|change| change.earliest <= at)
        {
            if let EffectChange::Set { entity, key, value } = &change.change {
                state.insert(
                    (entity.clone(), key.clone()),
                    (value.clone(), change.clone()),
                );
            }
        }
        state
    }

    pub fn attributes(&self, entity: &str, at: Instant, as_of: u64) -> Vec<proto::Attribute> {
        self.attribute_state(at, as_of)
            .into_iter()
            .filter(|((owner, _), (value, _))| owner == entity && !value.is_empty())
            .map(|((_, key), (value, change))| proto::Attribute {
                key,
                value,
                since: change.time.clone(),
                certain: change.latest <= at,
                event_id: self.id(change.seq),
            })
            .collect()
    }

    pub fn events(&self, from: Instant, to: Instant, entity: Option<&str>, as_of: u64) -> Vec<u64> {
        let mut seqs: Vec<(Instant, u64)> = self
            .log
            .iter()
            .filter(|(entry, event)| {
                entry.seq <= as_of
                    && event.earliest() <= to
                    && event.latest() >= from
                    && entity.is_none_or(|entity| event.entities().contains(&entity))
            })
            .map(|(entry, event)| (event.earliest(), entry.seq))
            .collect();
        seqs.sort();
        seqs.into_iter().map(|(_, seq)| seq).collect()
    }

    /// (kind, a, b, directed, from, to) of every interval of `entity`'s relations.
    pub fn history(&self, entity: &str, as_of: u64) -> Vec<Interval> {
        let mut open: HashMap<Key, (Instant, u64, usize, String)> = HashMap::new();
        let mut intervals = Vec::new();
        for change in self.changes(as_of) {
            let (key, begins) = match &change.change {
                EffectChange::Begin(key) => (key, true),
                EffectChange::End(key) => (key, false),
                _ => continue,
            };
            if !key.involves(entity) {
                continue;
            }
            let name = (key.kind.clone(), key.a.clone(), key.b.clone(), key.directed);
            match (begins, open.contains_key(&name)) {
                (true, false) => {
                    open.insert(
                        name,
                        (
                            change.earliest,
                            change.seq,
                            change.effect,
                            change.time.clone(),
                        ),
                    );
                }
                (false, true) => {
                    let (earliest, seq, effect, from) = open.remove(&name).unwrap();
                    intervals.push((
                        (earliest, seq, effect),
                        (name.0, name.1, name.2, name.3, from, change.time.clone()),
                    ));
                }
                _ => {}
            }
        }
        for (name, (earliest, seq, effect, from)) in open {
            intervals.push((
                (earliest, seq, effect),
                (name.0, name.1, name.2, name.3, from, String::new()),
            ));
        }
        intervals.sort();
        intervals
            .into_iter()
            .map(|(_, interval)| interval)
            .collect()
    }

    /// Seqs of the events `filter` wants, by (earliest, seq): the filter's
    /// every field, read the plain way.
    pub fn events_matching(&self, filter: &EventFilter, as_of: u64) -> Vec<u64> {
        self.matching(filter, as_of)
            .into_iter()
            .map(|(entry, _)| entry.seq)
            .collect()
    }

    fn matching(&self, filter: &EventFilter, as_of: u64) -> Vec<&(StoredEntry, Event)> {
        let mut found: Vec<&(StoredEntry, Event)> = self
            .log
            .iter()
            .filter(|(entry, event)| {
                let in_window = match filter.window {
                    Window::Overlaps => {
                        event.earliest() <= filter.to && event.latest() >= filter.from
                    }
                    Window::StartsIn => {
                        event.earliest() >= filter.from && event.earliest() <= filter.to
                    }
                };
                let names = |entity: &Option<String>| {
                    entity
                        .as_deref()
                        .is_none_or(|entity| event.entities().contains(&entity))
                };
                entry.seq <= as_of
                    && in_window
                    && names(&filter.entity)
                    && names(&filter.counterpart)
                    && filter
                        .kind
                        .as_deref()
                        .is_none_or(|kind| kind == entry.event.kind)
                    && filter
                        .labels
                        .iter()
                        .all(|(key, value)| entry.event.labels.get(key) == Some(value))
            })
            .collect();
        found.sort_by_key(|(entry, event)| (event.earliest(), entry.seq));
        found
    }

    /// Counts per bucket of the events' start, leaving out what a
    /// correction known at `as_of` withdrew: (bucket text, count, sum,
    /// events with a numeric value).
    pub fn count(
        &self,
        filter: &EventFilter,
        bucket: Bucket,
        value: Option<&str>,
        as_of: u64,
    ) -> Vec<(String, u64, f64, u64)> {
        let withdrawn: Vec<String> = self
            .log
            .iter()
            .filter(|(entry, _)| entry.seq <= as_of && !entry.event.corrects.is_empty())
            .map(|(entry, _)| entry.event.corrects.clone())
            .collect();
        let mut buckets: BTreeMap<Instant, (String, u64, f64, u64)> = BTreeMap::new();
        for (entry, event) in self.matching(filter, as_of) {
            if withdrawn.contains(&entry.event.id) {
                continue;
            }
            let (first, _, text) = bucket_of(event.earliest(), bucket).unwrap();
            let counted = buckets.entry(first).or_insert((text, 0, 0.0, 0));
            counted.1 += 1;
            let number = value
                .and_then(|label| entry.event.labels.get(label))
                .and_then(|text| text.parse::<f64>().ok());
            if let Some(number) = number {
                counted.2 += number;
                counted.3 += 1;
            }
        }
        buckets.into_values().collect()
    }
}
