use super::*;
use crate::index::records::Op;
use crate::store::MemoryStore;
use std::ops::Bound;

/// A change to one attribute of `entity` by event `seq`.
fn attribute(entity: &str, key: &str, seq: u64) -> Write {
    let value = ChangeValue {
        op: Op::Set,
        latest: seq as i64,
        time: "1970-01-01",
        event_id: &format!("event-{seq:06}"),
        value: &format!("value-{seq}"),
    };
    (
        Tree::Changes,
        keys::change(
            entity,
            Part::Attributes,
            &keys::attribute_group(key),
            seq as i64,
            seq,
            0,
        ),
        value.encode(),
    )
}

fn walked(
    cache: &TimelineCache,
    store: &dyn LogStore,
    entity: &str,
) -> Vec<(String, Vec<u64>, Vec<String>)> {
    walked_after(cache, store, entity, None)
}

/// The groups after the attribute `after` (all when `None`).
fn walked_after(
    cache: &TimelineCache,
    store: &dyn LogStore,
    entity: &str,
    after: Option<&str>,
) -> Vec<(String, Vec<u64>, Vec<String>)> {
    let mut groups = Vec::new();
    let after = after.map(keys::attribute_group);
    cache
        .walk(
            store,
            entity,
            Part::Attributes,
            after.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            &mut |name, history| {
                groups.push((
                    name.kind.to_string(),
                    history.changes.iter().map(|change| change.seq).collect(),
                    history
                        .changes
                        .iter()
                        .map(|change| history.value(change).to_string())
                        .collect(),
                ));
                Ok(true)
            },
        )
        .unwrap();
    groups
}

#[test]
fn a_walk_reads_the_same_groups_cached_or_not_and_the_cache_keeps_its_budget() {
    let store = MemoryStore::new();
    let entities: Vec<String> = (0..40).map(|i| format!("entity-{i}")).collect();
    let writes: Vec<Write> = entities
        .iter()
        .enumerate()
        .flat_map(|(i, entity)| {
            (0..50).map(move |n| {
                let key = ["leader", "status"][n % 2];
                attribute(entity, key, (i * 50 + n + 1) as u64)
            })
        })
        .collect();
    store.write_derived(writes).unwrap();

    let uncached = TimelineCache::new(0);
    let expected = walked(&uncached, &store, "entity-3");
    assert_eq!(expected.len(), 2, "two attributes");
    assert_eq!(expected[0].1.len(), 25);
    assert!(expected[0].1.windows(2).all(|pair| pair[0] < pair[1]));

    let one = {
        let cache = TimelineCache::new(usize::MAX);
        walked(&cache, &store, "entity-0");
        cache.usage().0
    };
    let budget = one * 5;
    let cache = TimelineCache::new(budget);
    for entity in &entities {
        let first = walked(&cache, &store, entity);
        let again = walked(&cache, &store, entity);
        assert_eq!(first, again, "from the store, then from the copy");
        let (bytes, copies) = cache.usage();
        assert!(bytes <= budget, "{bytes} bytes cached, budget {budget}");
        assert!(copies <= 6);
    }
    assert_eq!(walked(&cache, &store, "entity-3"), expected);
}

#[test]
fn a_cached_change_takes_32_bytes() {
    assert_eq!(std::mem::size_of::<Change>(), 32);
}

#[test]
fn changes_the_writer_adds_reach_cached_copies_once() {
    let store = MemoryStore::new();
    let first: Vec<Write> = (1..=4)
        .map(|seq| attribute("e", "leader", seq * 2))
        .collect();
    store.write_derived(first).unwrap();
    let cache = TimelineCache::new(usize::MAX);
    walked(&cache, &store, "e");
    // A round the store has and the cached copy is told about: the
    // new changes fall between the old ones, one is a repeat.
    let round: Vec<Write> = [3, 5, 8]
        .iter()
        .map(|seq| attribute("e", if *seq == 5 { "status" } else { "leader" }, *seq))
        .collect();
    {
        let mut state = cache.lock();
        state.absorb(&round).unwrap();
        store.write_derived(round).unwrap();
    }
    let after = walked(&cache, &store, "e");
    assert_eq!(after, walked(&TimelineCache::new(0), &store, "e"));
    assert_eq!(after[0].1, vec![2, 3, 4, 6, 8]);
    assert_eq!(after[1].1, vec![5]);
}

#[test]
fn a_copy_walked_between_settles_reads_what_the_store_holds() {
    let store = MemoryStore::new();
    let keys = ["a", "c", "e", "g"];
    let first: Vec<Write> = (1..=40)
        .map(|seq| attribute("e", keys[seq as usize % 4], seq * 10))
        .collect();
    store.write_derived(first).unwrap();
    let cache = TimelineCache::new(usize::MAX);
    walked(&cache, &store, "e");
    let uncached = TimelineCache::new(0);
    // Rounds of one to three changes, into old groups and new ones ("b",
    // "d", "h"), between old changes and after them, some repeated: more
    // than the copy settles at, walked (whole and part-way) after each.
    let all_keys = ["a", "b", "c", "d", "e", "g", "h"];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut written: Vec<(usize, u64)> = Vec::new();
    for round in 0..200u64 {
        let mut writes = Vec::new();
        for _ in 0..=next(3) {
            let (key, seq) = if !written.is_empty() && next(5) == 0 {
                written[next(written.len() as u64) as usize]
            } else {
                (next(all_keys.len() as u64) as usize, 1 + next(1000 + round))
            };
            written.push((key, seq));
            writes.push(attribute("e", all_keys[key], seq));
        }
        {
            let mut locked = cache.lock();
            locked.absorb(&writes).unwrap();
            store.write_derived(writes).unwrap();
        }
        assert_eq!(
            walked(&cache, &store, "e"),
            walked(&uncached, &store, "e"),
            "round {round}"
        );
        let after = all_keys[next(all_keys.len() as u64) as usize];
        assert_eq!(
            walked_after(&cache, &store, "e", Some(after)),
            walked_after(&uncached, &store, "e", Some(after)),
            "round {round}, after {after}"
        );
    }
}
