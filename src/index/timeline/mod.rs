//! Reading an entity's changes: straight from the `changes` tree, or from a
//! bounded cache of compact copies.
//!
//! On disk, an entity's changes to its relations (or its attributes) are one
//! key range, grouped by relation (or attribute) and sorted by (earliest
//! instant, seq, effect) within a group (`keys::change`). A question about
//! the entity walks that range once, one group at a time, holding only the
//! group in hand: nothing is loaded whole, sorted or decoded into owned
//! strings first, so an answer costs a read of the entity's changes of the
//! part asked about (relations, or attributes), wherever they are.
//!
//! The cache is an accelerator on top: the first walk of an entity's part
//! also builds a compact copy (fixed-size changes, texts in one buffer in
//! list order), kept while it fits the budget, least recently used out
//! first. A walk of a cached copy visits the same groups in the same order,
//! and finds a group's deciding change by binary search instead of reading
//! the group. The writer folds each round's changes into the copies that
//! are cached (into a sorted pending list that walks merge in on the way,
//! folded into the copy in one pass once it outgrows an eighth of it, so
//! an append costs a reader of a long timeline little), holding the cache lock as it writes the round to the store: a copy is
//! registered before its walk begins, so every round after that reaches it,
//! and a round the walk saw as well is merged once.

mod change;
mod copy;
mod store;
#[cfg(test)]
mod tests;

pub use change::{Change, History, Name};
pub use copy::Timeline;

use super::keys::{self, Part};
use super::records::ChangeValue;
use crate::error::{Error, Result};
use crate::metrics::CacheLookups;
use crate::store::{LogStore, Tree, Write};
use change::{copy_texts, put_compact};
use copy::{Added, Builder, Strings, Words};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use store::walk_store;

struct Cached {
    timeline: Arc<RwLock<Timeline>>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
pub struct CacheState {
    /// (entity, part) → its copy.
    timelines: HashMap<(String, Part), Cached>,
    bytes: usize,
    clock: u64,
    strings: Strings,
}

impl CacheState {
    /// Folds a round's derived writes into the copies that are cached or
    /// being built (the others will read them from the store).
    pub fn absorb(&mut self, writes: &[Write]) -> Result<()> {
        for (tree, key, value) in writes {
            if *tree != Tree::Changes {
                continue;
            }
            let damaged = || Error::DataLoss("a change key of the index is damaged".into());
            let parsed = keys::parse_change(key).ok_or_else(damaged)?;
            let slot = (parsed.entity.to_string(), parsed.part);
            let Some(cached) = self.timelines.get(&slot) else {
                continue;
            };
            let timeline = Arc::clone(&cached.timeline);
            let name = Name::parse(parsed.part, parsed.group).ok_or_else(damaged)?;
            let name = self.strings.share(name);
            let record = ChangeValue::decode(value)?;
            let mut timeline = timeline.write().expect("timeline lock");
            let texts = put_compact(
                &mut timeline.texts,
                parsed.earliest,
                record.time,
                record.event_id,
                record.value,
            );
            let change = Change::stored(&parsed, &record, texts).ok_or_else(damaged)?;
            timeline.add(name, change);
            let added = std::mem::size_of::<Added>()
                + 2 * std::mem::size_of::<Change>()
                + 2 * change.texts().len();
            drop(timeline);
            self.bytes += added;
            if let Some(cached) = self.timelines.get_mut(&slot) {
                cached.bytes += added;
            }
        }
        Ok(())
    }
}

/// The cache of timelines, bounded by `budget` bytes.
pub struct TimelineCache {
    state: Mutex<CacheState>,
    budget: usize,
    /// A walk served by a loaded copy is a hit; one read from the store
    /// (building a copy or not) a miss.
    lookups: CacheLookups,
}

/// How a walk is served.
enum Source {
    /// From a loaded copy.
    Cached(Arc<RwLock<Timeline>>),
    /// From the store, building a copy into this registered slot.
    Building(Arc<RwLock<Timeline>>),
    /// From the store alone.
    Store,
}

impl TimelineCache {
    pub fn new(budget: usize) -> TimelineCache {
        TimelineCache {
            state: Mutex::new(CacheState::default()),
            budget,
            lookups: CacheLookups::default(),
        }
    }

    /// Counts its hits and misses in `lookups`.
    pub fn with_lookups(mut self, lookups: CacheLookups) -> TimelineCache {
        self.lookups = lookups;
        self
    }

    /// Held by the writer while it writes a round's derived trees and
    /// folds them into the cache.
    pub fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().expect("timeline cache poisoned")
    }

    /// Empties the cache (after the derived trees were rebuilt).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.timelines.clear();
        state.bytes = 0;
    }

    /// Calls `visit` with each relation (or attribute) group of `entity`,
    /// in order, with its history, until `visit` returns `false`; with
    /// `from` bounded (by the bytes of a group, as `keys::relation_group`
    /// lays them out), only with the groups from (or after) that one.
    pub fn walk(
        &self,
        store: &dyn LogStore,
        entity: &str,
        part: Part,
        from: Bound<&[u8]>,
        visit: &mut dyn FnMut(Name, History) -> Result<bool>,
    ) -> Result<()> {
        let poisoned = || Error::Storage("a timeline lock was poisoned".into());
        let parse = |group| {
            Name::parse(part, group)
                .ok_or_else(|| Error::invalid("page_token", "names no relation"))
        };
        let from_name = match from {
            Bound::Included(group) => Bound::Included(parse(group)?),
            Bound::Excluded(group) => Bound::Excluded(parse(group)?),
            Bound::Unbounded => Bound::Unbounded,
        };
        // A walk that starts part-way builds no copy.
        let source = match from {
            Bound::Unbounded => self.source(entity, part),
            _ => self.cached(entity, part),
        };
        self.lookups.record(matches!(source, Source::Cached(_)));
        match source {
            Source::Cached(timeline) => {
                if timeline.read().map_err(|_| poisoned())?.unsettled() {
                    timeline.write().map_err(|_| poisoned())?.settle();
                }
                let timeline = timeline.read().map_err(|_| poisoned())?;
                timeline.walk(from_name, visit)
            }
            Source::Store => walk_store(store, entity, part, from, &mut |_, name, history| {
                visit(name, history)
            }),
            Source::Building(slot) => {
                let mut builder = Builder {
                    timeline: Timeline::default(),
                    words: Words::default(),
                    budget: self.budget,
                    given_up: false,
                };
                // Once `visit` has had enough, the walk goes on for the copy.
                let mut wanted = true;
                let walked = walk_store(
                    store,
                    entity,
                    part,
                    Bound::Unbounded,
                    &mut |strings, name, history| {
                        builder.add(strings, name, history);
                        if wanted {
                            wanted = visit(name, history)?;
                        }
                        Ok(wanted || !builder.given_up)
                    },
                );
                self.fill(entity, part, &slot, builder, walked.is_ok());
                walked
            }
        }
    }

    /// The loaded copy of (entity, part), if there is one.
    fn cached(&self, entity: &str, part: Part) -> Source {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let Some(cached) = state.timelines.get_mut(&(entity.to_string(), part)) else {
            return Source::Store;
        };
        cached.last_used = now;
        let timeline = Arc::clone(&cached.timeline);
        let loaded = timeline.read().is_ok_and(|timeline| timeline.loaded);
        if loaded {
            Source::Cached(timeline)
        } else {
            Source::Store
        }
    }

    /// Finds the copy of (entity, part), or registers one to be built.
    fn source(&self, entity: &str, part: Part) -> Source {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let slot = (entity.to_string(), part);
        if let Some(cached) = state.timelines.get_mut(&slot) {
            cached.last_used = now;
            let timeline = Arc::clone(&cached.timeline);
            let loaded = timeline.read().is_ok_and(|timeline| timeline.loaded);
            return if loaded {
                Source::Cached(timeline)
            } else {
                Source::Store
            };
        }
        if self.budget == 0 {
            return Source::Store;
        }
        let timeline = Arc::new(RwLock::new(Timeline::default()));
        state.timelines.insert(
            slot,
            Cached {
                timeline: Arc::clone(&timeline),
                bytes: 0,
                last_used: now,
            },
        );
        Source::Building(timeline)
    }

    /// Puts a built copy into its slot, keeping what the writer added
    /// meanwhile, and evicts the least recently used copies over budget;
    /// a copy too big for the budget, or a walk that failed, frees the slot.
    fn fill(
        &self,
        entity: &str,
        part: Part,
        slot: &Arc<RwLock<Timeline>>,
        builder: Builder,
        walked: bool,
    ) {
        let mut state = self.lock();
        let key = (entity.to_string(), part);
        let registered = state
            .timelines
            .get(&key)
            .is_some_and(|cached| Arc::ptr_eq(&cached.timeline, slot));
        if !registered {
            return;
        }
        if !walked || builder.given_up {
            if let Some(removed) = state.timelines.remove(&key) {
                state.bytes -= removed.bytes;
            }
            return;
        }
        let bytes = {
            let mut timeline = slot.write().expect("timeline lock");
            let pending = std::mem::take(&mut timeline.pending);
            let added_texts = std::mem::take(&mut timeline.texts);
            let mut built = builder.timeline;
            built.words = builder.words.words;
            // The pending changes' texts move into the built buffer.
            for Added {
                name, mut change, ..
            } in pending
            {
                change.set_texts(copy_texts(&added_texts, change.texts(), &mut built.texts));
                built.add(name, change);
            }
            built.loaded = true;
            built.shrink();
            *timeline = built;
            timeline.bytes()
        };
        let before = state
            .timelines
            .get_mut(&key)
            .map(|cached| std::mem::replace(&mut cached.bytes, bytes))
            .unwrap_or(0);
        state.bytes = state.bytes - before + bytes;
        while state.bytes > self.budget {
            let Some(oldest) = state
                .timelines
                .iter()
                .filter(|(name, _)| **name != key)
                .min_by_key(|(_, cached)| cached.last_used)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if let Some(evicted) = state.timelines.remove(&oldest) {
                state.bytes -= evicted.bytes;
            }
        }
        if state.bytes > self.budget {
            if let Some(removed) = state.timelines.remove(&key) {
                state.bytes -= removed.bytes;
            }
        }
    }

    /// Bytes the cache holds now, and the copies in it.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.lock();
        (state.bytes, state.timelines.len())
    }
}
