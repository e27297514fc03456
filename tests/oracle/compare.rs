//! The oracle's comparison: every query path of a `Database` against the
//! naive replay, at random (at, as_of_seq, window) questions.

use crate::history::{Rng, ENTITIES, FILTER_LABELS, LABEL_CODES, VALUE_LABELS};
use crate::replay::{NaiveChange, Replay};
use annals::engine::Database;
use annals::proto;
use annals::query::{EventFilter, Window};
use annals::time::{query_instant, window_start, Bucket, Instant};
use std::collections::BTreeMap;

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

pub fn compare(
    db: &Database,
    replay: &Replay,
    rng: &mut Rng,
    queries: usize,
    seed: u64,
    path: &str,
) {
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
                // One kind with one counterpart: only their groups are read.
                let (other, kind) = (rng.pick(&ENTITIES), rng.pick(&["ally", "trade"]));
                assert_eq!(
                    snapshot
                        .relations(Some(entity), Some(other), Some(kind), at)
                        .unwrap(),
                    snapshot
                        .relations(Some(entity), None, None, at)
                        .unwrap()
                        .into_iter()
                        .filter(|relation| {
                            let theirs = if relation.a == entity {
                                &relation.b
                            } else {
                                &relation.a
                            };
                            relation.kind == *kind && theirs == other
                        })
                        .collect::<Vec<_>>(),
                    "{kind} relations of {entity} with {other}, {context}"
                );
                assert_eq!(
                    snapshot.attributes(entity, at).unwrap(),
                    replay.attributes(entity, at, as_of),
                    "attributes of {entity}, {context}"
                );
                // One key: only its group is read.
                let key = rng.pick(&["leader", "status", "absent"]);
                assert_eq!(
                    snapshot.attribute(entity, key, at).unwrap(),
                    replay
                        .attributes(entity, at, as_of)
                        .into_iter()
                        .find(|attribute| attribute.key == *key),
                    "{key} of {entity}, {context}"
                );
                let filter = EventFilter {
                    entity: Some(entity.to_string()),
                    from,
                    to,
                    ..EventFilter::default()
                };
                assert_eq!(
                    snapshot.events(&filter).unwrap(),
                    replay.events(from, to, Some(entity), as_of),
                    "events of {entity}, {context}"
                );
                // A dyad, labels, a kind, either window; and its counts.
                let filter = EventFilter {
                    counterpart: (rng.below(2) == 0).then(|| rng.pick(&ENTITIES).to_string()),
                    kind: (rng.below(3) == 0).then(|| rng.pick(&["meeting", "treaty"]).to_string()),
                    labels: match rng.below(3) {
                        0 => vec![(
                            rng.pick(&FILTER_LABELS).to_string(),
                            rng.pick(&LABEL_CODES).to_string(),
                        )],
                        1 => FILTER_LABELS
                            .iter()
                            .map(|key| (key.to_string(), rng.pick(&LABEL_CODES).to_string()))
                            .collect(),
                        _ => Vec::new(),
                    },
                    window: if rng.below(2) == 0 {
                        Window::Overlaps
                    } else {
                        Window::StartsIn
                    },
                    ..filter
                };
                assert_eq!(
                    snapshot.events(&filter).unwrap(),
                    replay.events_matching(&filter, as_of),
                    "events of {filter:?}, {context}"
                );
                let bucket = [Bucket::Day, Bucket::Month, Bucket::Year][rng.below(3) as usize];
                let value = (rng.below(3) != 0).then(|| rng.pick(&VALUE_LABELS));
                let counts = snapshot.count_events(&filter, bucket, value).unwrap();
                let counts: Vec<_> = counts
                    .into_iter()
                    .map(|counted| (counted.start, counted.count, counted.sum, counted.valued))
                    .collect();
                assert_eq!(
                    counts,
                    replay.count(&filter, bucket, value, as_of),
                    "counts by {bucket:?} of {filter:?}, {context}"
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
                from,
                to,
                ..EventFilter::default()
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
