//! The oracle: for random histories (valid times out of order, imprecise
//! dates, corrections and retractions, batches), every query's answer at a
//! random (at, as_of_seq) equals a deliberately naive full replay of the log.
//!
//! The replay below reads the raw log and folds it from scratch for every
//! question, with none of the index's structure: any faster query path
//! must keep agreeing with it.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod history;
mod replay;
mod watches;

use annals::engine::{Database, Limits};
use annals::query::{EventFilter, Window};
use annals::store::{LogStore, MemoryStore};
use annals::time::{Bucket, Instant};
use compare::compare;
use history::{history, Rng, ENTITIES};
use proptest::prelude::*;
use replay::Replay;
use std::sync::Arc;

/// Builds a random history, then checks every index path against the
/// replay: cached copies kept up to date by the writer and event runs it
/// drops (queries run between appends, so some copies and runs are cached
/// while later batches arrive), a reopen with no caches (every answer
/// walks the derived trees), a rebuild read through caches of a few KiB,
/// and an index caught up from a bare log.
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
            // A count builds and keeps the run of an entity's or a dyad's
            // events; later batches must drop it when they add to it.
            if rng.below(2) == 0 {
                let filter = EventFilter {
                    entity: Some(rng.pick(&ENTITIES).to_string()),
                    counterpart: (rng.below(2) == 0).then(|| rng.pick(&ENTITIES).to_string()),
                    from: Instant::MIN,
                    to: Instant::MAX,
                    window: Window::StartsIn,
                    ..EventFilter::default()
                };
                db.read(0, |snapshot| {
                    snapshot.count_events(&filter, Bucket::Year, None).unwrap()
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
        event_cache_bytes: 0,
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
        event_cache_bytes: 8192,
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
