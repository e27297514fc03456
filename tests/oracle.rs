//! The oracle: for random histories (valid times out of order, imprecise
//! dates, corrections and retractions, batches), every query's answer at a
//! random (at, as_of_seq) equals a deliberately naive full replay of the log.
//!
//! The replay below reads the raw log and folds it from scratch for every
//! question, with none of the index's structure: any faster query path
//! must keep agreeing with it.

mod common;

use annals::engine::{Database, Limits};
use annals::model::{Change as EffectChange, Event};
use annals::proto;
use annals::query::EventFilter;
use annals::store::{LogStore, MemoryStore, StoredEntry};
use annals::time::{query_instant, window_start, Instant, ValidTime};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A relation as the replay names it: (kind, a, b, directed).
type Key = (String, String, String, bool);
/// (kind, a, b, directed, from, to) of one interval.
type Interval = (String, String, String, bool, String, String);

const ENTITIES: [&str; 4] = ["e-a", "e-b", "e-c", "e-d"];

/// SplitMix64: a tiny deterministic generator driven by proptest's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A valid time in 1990–1994 at year, month or day precision.
    fn time(&mut self) -> String {
        let year = 1990 + self.below(5);
        let month = 1 + self.below(12);
        let day = 1 + self.below(28);
        match self.below(3) {
            0 => format!("{year}"),
            1 => format!("{year}-{month:02}"),
            _ => format!("{year}-{month:02}-{day:02}"),
        }
    }

    fn effect(&mut self) -> proto::Effect {
        use proto::effect::Change;
        let a = self.pick(&ENTITIES);
        let mut b = self.pick(&ENTITIES);
        while b == a {
            b = self.pick(&ENTITIES);
        }
        let kind = self.pick(&["ally", "trade"]).to_string();
        let directed = self.below(4) == 0;
        let change = match self.below(3) {
            0 => Change::Begin(proto::BeginRelation {
                a: a.into(),
                b: b.into(),
                kind,
                directed,
            }),
            1 => Change::End(proto::EndRelation {
                a: a.into(),
                b: b.into(),
                kind,
                directed,
            }),
            _ => Change::Set(proto::SetAttribute {
                entity: a.into(),
                key: self.pick(&["leader", "status"]).into(),
                value: self.pick(&["x", "y", ""]).into(),
            }),
        };
        proto::Effect {
            at: if self.below(3) == 0 {
                self.time()
            } else {
                String::new()
            },
            change: Some(change),
        }
    }
}

/// A random history: a declaration batch, then batches of 1–4 events,
/// some of them corrections or retractions of earlier events.
fn history(rng: &mut Rng, events: usize) -> Vec<Vec<proto::Event>> {
    let declarations = common::declarations("declarations", &ENTITIES);
    let mut batches = vec![vec![declarations]];
    let mut correctable: Vec<String> = Vec::new();
    let mut made = 0;
    while made < events {
        let size = 1 + rng.below(4) as usize;
        let mut batch = Vec::new();
        for _ in 0..size {
            // Ids of three shapes: the cache keeps lowercase UUIDs in 16
            // bytes and every other id as written.
            let id = match rng.below(3) {
                0 => format!("ev-{made}"),
                shape => {
                    let uuid = format!(
                        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                        rng.next() as u32,
                        rng.next() as u16,
                        rng.next() & 0xfff,
                        rng.next() & 0xfff,
                        rng.next() & 0xffff_ffff_ffff
                    );
                    if shape == 1 {
                        uuid
                    } else {
                        uuid.to_uppercase()
                    }
                }
            };
            made += 1;
            let start = rng.time();
            let end = if rng.below(4) == 0 {
                let later = rng.time();
                let (first, second) = (
                    ValidTime::parse(&start).unwrap(),
                    ValidTime::parse(&later).unwrap(),
                );
                (second.earliest() >= first.earliest() && second.latest() >= first.latest())
                    .then_some(later)
            } else {
                None
            };
            let mut corrects = String::new();
            if !correctable.is_empty() && rng.below(6) == 0 {
                let position = rng.below(correctable.len() as u64) as usize;
                corrects = correctable.remove(position);
            }
            let effects = if !corrects.is_empty() && rng.below(3) == 0 {
                Vec::new() // a retraction
            } else {
                (0..1 + rng.below(3)).map(|_| rng.effect()).collect()
            };
            batch.push(proto::Event {
                id: id.clone(),
                kind: rng.pick(&["meeting", "treaty"]).into(),
                occurred: Some(proto::TimeSpan {
                    start,
                    end: end.unwrap_or_default(),
                }),
                participants: vec![proto::Participant {
                    entity: rng.pick(&ENTITIES).into(),
                    role: "subject".into(),
                }],
                effects,
                corrects,
                ..Default::default()
            });
            correctable.push(id);
        }
        batches.push(batch);
    }
    batches
}

/// The naive replay: everything derived from the raw log, from scratch.
struct Replay {
    log: Vec<(StoredEntry, Event)>,
}

#[derive(Clone, Debug)]
struct NaiveChange {
    earliest: Instant,
    latest: Instant,
    seq: u64,
    effect: usize,
    time: String,
    change: EffectChange,
}

impl Replay {
    fn new(store: &dyn LogStore) -> Replay {
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

    fn id(&self, seq: u64) -> String {
        self.log[(seq - 1) as usize].0.event.id.clone()
    }

    /// Entries known at S and not withdrawn by a correction known at S.
    fn in_force(&self, as_of: u64) -> Vec<&(StoredEntry, Event)> {
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

    fn changes(&self, as_of: u64) -> Vec<NaiveChange> {
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
    fn relation_state(&self, at: Instant, as_of: u64) -> BTreeMap<Key, (bool, NaiveChange)> {
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

    fn relations(&self, entity: Option<&str>, at: Instant, as_of: u64) -> Vec<proto::Relation> {
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
    fn attribute_state(
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

    fn attributes(&self, entity: &str, at: Instant, as_of: u64) -> Vec<proto::Attribute> {
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

    fn events(&self, from: Instant, to: Instant, entity: Option<&str>, as_of: u64) -> Vec<u64> {
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
    fn history(&self, entity: &str, as_of: u64) -> Vec<Interval> {
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
}

/// Builds a random history, then checks every index path against the
/// replay: cached copies kept up to date by the writer (queries run between
/// appends, so some copies are cached while later batches arrive), a reopen
/// with no cache (every answer walks the derived trees), a rebuild read
/// through a cache of a few KiB, and an index caught up from a bare log.
fn check_history(seed: u64, events: usize, queries: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let db = Database::open(store.clone(), Limits::default()).unwrap();
    let mut rng = Rng(seed);
    runtime.block_on(async {
        for batch in history(&mut rng, events) {
            db.append(batch, None)
                .await
                .expect("generated histories are valid");
            if rng.below(2) == 0 {
                let entity = rng.pick(&ENTITIES);
                db.read(0, |snapshot| {
                    snapshot
                        .relations(Some(entity), None, None, Instant::MAX)
                        .unwrap()
                })
                .unwrap();
            }
        }
    });
    let replay = Replay::new(store.as_ref());
    compare(&db, &replay, &mut rng, queries, seed, "live");
    db.close();

    // No cache at all: every question walks the entity's changes in the
    // store (the read path that never holds a whole timeline).
    let no_cache = Limits {
        timeline_cache_bytes: 0,
        ..Limits::default()
    };
    let reopened = Database::open(store.clone(), no_cache).unwrap();
    compare(
        &reopened,
        &replay,
        &mut rng,
        queries / 2 + 1,
        seed,
        "reopened",
    );
    reopened.close();

    // A cache of a few KiB, rebuilt indexes: copies are built, dropped for
    // the budget and built again all the time.
    let tiny_cache = Limits {
        timeline_cache_bytes: 4096,
        ..Limits::default()
    };
    let rebuilt = Database::open(store.clone(), tiny_cache).unwrap();
    rebuilt.rebuild_indexes().unwrap();
    compare(
        &rebuilt,
        &replay,
        &mut rng,
        queries / 2 + 1,
        seed,
        "rebuilt",
    );
    rebuilt.close();

    let bare = Arc::new(MemoryStore::new());
    bare.append(&store.read(1, usize::MAX).unwrap(), Vec::new())
        .unwrap();
    let caught_up = Database::open(bare, Limits::default()).unwrap();
    compare(
        &caught_up,
        &replay,
        &mut rng,
        queries / 2 + 1,
        seed,
        "caught up",
    );
    caught_up.close();
}

/// An entity's relations at `at` as ListRelations sends them: encoded
/// straight from the index, `size` a page, each page read after the last.
fn encoded_pages(
    snapshot: &annals::query::Snapshot,
    entity: &str,
    at: Instant,
    size: usize,
) -> Vec<proto::Relation> {
    use prost::Message;
    let mut relations = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    for _ in 0..1000 {
        let mut writer = annals::wire::RelationWriter::default();
        let last = snapshot
            .relations_page_encoded(entity, None, None, at, after.as_deref(), size, &mut writer)
            .unwrap();
        assert!(writer.len() <= size);
        let bytes = proto::ListRelationsResponse::encoded(writer, String::new()).encode_to_vec();
        relations.extend(
            proto::ListRelationsResponse::decode(bytes.as_slice())
                .unwrap()
                .relations,
        );
        match last {
            Some(key) => after = Some(key),
            None => return relations,
        }
    }
    panic!("pages never ended");
}

fn compare(db: &Database, replay: &Replay, rng: &mut Rng, queries: usize, seed: u64, path: &str) {
    let last = db.last_seq();
    for _ in 0..queries {
        let as_of_seq = rng.below(last + 1);
        let as_of = if as_of_seq == 0 { last } else { as_of_seq };
        let at_text = if rng.below(8) == 0 {
            String::new()
        } else {
            rng.time()
        };
        let at = query_instant(&at_text).unwrap();
        let from_text = rng.time();
        let from = window_start(&from_text).unwrap();
        let to = query_instant(&rng.time()).unwrap().max(from);
        let context = format!("{path}, seed {seed}, at {at_text:?}, as_of_seq {as_of_seq}");
        db.read(as_of_seq, |snapshot| {
            assert_eq!(
                snapshot.relations(None, None, None, at).unwrap(),
                replay.relations(None, at, as_of),
                "graph, {context}"
            );
            for entity in ENTITIES {
                assert_eq!(
                    snapshot.relations(Some(entity), None, None, at).unwrap(),
                    {
                        let mut expected = replay.relations(Some(entity), at, as_of);
                        expected.sort_by(|x, y| {
                            (&x.kind, &x.a, &x.b, x.directed)
                                .cmp(&(&y.kind, &y.a, &y.b, y.directed))
                        });
                        expected
                    },
                    "relations of {entity}, {context}"
                );
                assert_eq!(
                    encoded_pages(snapshot, entity, at, 1 + rng.below(3) as usize),
                    snapshot.relations(Some(entity), None, None, at).unwrap(),
                    "relations of {entity} in encoded pages, {context}"
                );
                assert_eq!(
                    snapshot.attributes(entity, at).unwrap(),
                    replay.attributes(entity, at, as_of),
                    "attributes of {entity}, {context}"
                );
                let filter = EventFilter {
                    entity: Some(entity.to_string()),
                    kind: None,
                    from,
                    to,
                    limit: None,
                };
                assert_eq!(
                    snapshot.events(&filter).unwrap(),
                    replay.events(from, to, Some(entity), as_of),
                    "events of {entity}, {context}"
                );
                let history: Vec<_> = snapshot
                    .relation_history(entity, None, None)
                    .unwrap()
                    .into_iter()
                    .map(|interval| {
                        (
                            interval.kind,
                            interval.a,
                            interval.b,
                            interval.directed,
                            interval.from,
                            interval.to,
                        )
                    })
                    .collect();
                assert_eq!(
                    history,
                    replay.history(entity, as_of),
                    "history of {entity}, {context}"
                );
            }
            let all = EventFilter {
                entity: None,
                kind: None,
                from,
                to,
                limit: None,
            };
            assert_eq!(
                snapshot.events(&all).unwrap(),
                replay.events(from, to, None, as_of),
                "events, {context}"
            );

            // Diff = the difference between two replays.
            let diff = snapshot.diff(from, at.max(from), None).unwrap();
            let (before, after) = (
                replay.relation_state(from, as_of),
                replay.relation_state(at.max(from), as_of),
            );
            let mut expected_relations = 0;
            for (key, (active, _)) in &after {
                let was = before.get(key).is_some_and(|(active, _)| *active);
                expected_relations += usize::from(*active != was);
            }
            for (key, (active, _)) in &before {
                expected_relations += usize::from(*active && !after.contains_key(key));
            }
            let (before, after) = (
                replay.attribute_state(from, as_of),
                replay.attribute_state(at.max(from), as_of),
            );
            let value = |state: &BTreeMap<(String, String), (String, NaiveChange)>,
                         key: &(String, String)| {
                state
                    .get(key)
                    .map(|(value, _)| value.clone())
                    .unwrap_or_default()
            };
            let mut expected_attributes = 0;
            for key in after.keys() {
                expected_attributes += usize::from(value(&before, key) != value(&after, key));
            }
            let relation_changes = diff
                .iter()
                .filter(|change| change.relation.is_some())
                .count();
            assert_eq!(
                relation_changes, expected_relations,
                "diff relations, {context}"
            );
            assert_eq!(
                diff.len() - relation_changes,
                expected_attributes,
                "diff attributes, {context}"
            );
            for change in &diff {
                if change.relation.is_none() {
                    let key = (change.entity.clone(), change.key.clone());
                    assert_eq!(change.value, value(&after, &key), "diff value, {context}");
                    assert_eq!(
                        change.previous_value,
                        value(&before, &key),
                        "diff previous value, {context}"
                    );
                }
            }
        })
        .unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_equals_a_naive_replay(seed in any::<u64>()) {
        check_history(seed, 40, 12);
    }
}

#[test]
fn a_long_history_agrees_with_the_replay() {
    check_history(42, 400, 40);
}
