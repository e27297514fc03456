//! Per-entity timelines, read from the derived trees into a bounded cache.
//!
//! A timeline holds every change touching one entity, sorted by (relation
//! or attribute, earliest instant, seq, effect), and every event naming it,
//! sorted by (earliest instant, seq). It is loaded with one prefix scan of
//! `entity_log` and then kept up to date by the writer, which folds each round's writes
//! into the cached timelines while holding the cache lock, the same lock a
//! load holds while it scans: a timeline is never loaded from trees that a
//! round has half-written, nor missed by a round that wrote after its scan.
//! The cache is bounded in bytes; the least recently used timeline goes
//! first.

use super::keys;
use super::records::{ChangeRecord, EntityRecord, Op};
use crate::error::{Error, Result};
use crate::store::{LogStore, Tree, Write};
use crate::time::Instant;
use prost::Message;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// One change to a relation touching the entity.
#[derive(Clone, Debug)]
pub struct RelationChange {
    pub kind: Arc<str>,
    pub a: Arc<str>,
    pub b: Arc<str>,
    pub directed: bool,
    pub begins: bool,
    pub earliest: Instant,
    pub latest: Instant,
    pub seq: u64,
    pub effect: u32,
    /// The valid time as the event wrote it.
    pub time: Text,
    pub event_id: Text,
}

/// A string kept in its timeline's `texts` (see `EntityTimeline::text`).
///
/// The texts a query copies into its answer (valid times as written, event
/// ids, attribute values) live in one buffer per timeline, laid out in the
/// order of the sorted lists, rather than in an allocation each: at a
/// million events a timeline is far larger than the CPU caches, and a
/// pointer per text was a cache miss per text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text {
    start: u32,
    len: u32,
}

/// Appends `text` to `texts`.
fn put(texts: &mut String, text: &str) -> Text {
    let start = texts.len() as u32;
    u32::try_from(texts.len() + text.len()).expect("a timeline's texts stay under 4 GiB");
    texts.push_str(text);
    Text {
        start,
        len: text.len() as u32,
    }
}

impl RelationChange {
    /// Bytes for the cache budget: the change and its texts.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + (self.time.len + self.event_id.len) as usize
    }

    /// Sort order: the relation, then (earliest, seq, effect).
    fn order(&self) -> (&str, &str, &str, bool, Instant, u64, u32) {
        (
            &self.kind,
            &self.a,
            &self.b,
            self.directed,
            self.earliest,
            self.seq,
            self.effect,
        )
    }

    /// Do both changes concern the same relation?
    pub fn same_relation(&self, other: &RelationChange) -> bool {
        self.directed == other.directed
            && same(&self.kind, &other.kind)
            && same(&self.a, &other.a)
            && same(&self.b, &other.b)
    }
}

/// One change to an attribute of the entity.
#[derive(Clone, Debug)]
pub struct AttributeChange {
    pub key: Arc<str>,
    /// Empty unsets.
    pub value: Text,
    pub earliest: Instant,
    pub latest: Instant,
    pub seq: u64,
    pub effect: u32,
    pub time: Text,
    pub event_id: Text,
}

impl AttributeChange {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + (self.time.len + self.value.len + self.event_id.len) as usize
    }

    fn order(&self) -> (&str, Instant, u64, u32) {
        (&self.key, self.earliest, self.seq, self.effect)
    }
}

/// An event naming the entity.
#[derive(Clone, Debug)]
pub struct EventMention {
    pub earliest: Instant,
    pub latest: Instant,
    pub seq: u64,
    pub kind: Arc<str>,
}

/// Everything touching one entity, in flat sorted lists that a query walks
/// front to back. The writer does not insert into them (at a million events
/// a popular entity's lists are megabytes, and an insert would move half of
/// them): it adds to `pending`, and the next query merges all that is
/// pending in one pass (`settle`).
#[derive(Default, Debug)]
pub struct EntityTimeline {
    pub relations: Vec<RelationChange>,
    pub attributes: Vec<AttributeChange>,
    pub events: Vec<EventMention>,
    /// The longest span among `events`.
    pub max_span: Instant,
    /// The texts of the changes (`Text`).
    texts: String,
    pending: Pending,
}

/// Changes and events the writer added since the last `settle`.
#[derive(Default, Debug)]
struct Pending {
    relations: Vec<RelationChange>,
    attributes: Vec<AttributeChange>,
    events: Vec<EventMention>,
}

fn same(left: &Arc<str>, right: &Arc<str>) -> bool {
    Arc::ptr_eq(left, right) || left == right
}

fn relation_order(x: &RelationChange, y: &RelationChange) -> Ordering {
    x.order().cmp(&y.order())
}

fn attribute_order(x: &AttributeChange, y: &AttributeChange) -> Ordering {
    x.order().cmp(&y.order())
}

fn event_order(x: &EventMention, y: &EventMention) -> Ordering {
    (x.earliest, x.seq).cmp(&(y.earliest, y.seq))
}

/// Merges `pending` into `items` (both sorted by `compare` once `pending` is
/// sorted here), keeping one of any items that compare equal: the writer
/// may add a record that a load has just read.
fn merge_into<T>(items: &mut Vec<T>, pending: &mut Vec<T>, compare: impl Fn(&T, &T) -> Ordering) {
    if pending.is_empty() {
        return;
    }
    pending.sort_by(&compare);
    let old = std::mem::take(items);
    let mut merged = Vec::with_capacity(old.len() + pending.len());
    let mut old = old.into_iter().peekable();
    let mut new = pending.drain(..).peekable();
    loop {
        let take_old = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => compare(x, y) != Ordering::Greater,
        };
        let item = if take_old { old.next() } else { new.next() }.expect("peeked");
        if merged
            .last()
            .is_some_and(|last| compare(last, &item) == Ordering::Equal)
        {
            continue;
        }
        merged.push(item);
    }
    *items = merged;
}

impl EntityTimeline {
    fn insert_relation(&mut self, change: RelationChange) {
        self.pending.relations.push(change);
    }

    fn insert_attribute(&mut self, change: AttributeChange) {
        self.pending.attributes.push(change);
    }

    fn insert_event(&mut self, mention: EventMention) {
        self.max_span = self
            .max_span
            .max(mention.latest.saturating_sub(mention.earliest));
        self.pending.events.push(mention);
    }

    pub fn text(&self, text: Text) -> &str {
        &self.texts[text.start as usize..(text.start + text.len) as usize]
    }

    /// Copies the texts into a new buffer in the order of the sorted lists
    /// (after a load, which reads them in log order).
    fn lay_out_texts(&mut self) {
        let old = std::mem::take(&mut self.texts);
        let mut texts = String::with_capacity(old.len());
        let mut copy = |text: &mut Text| {
            *text = put(
                &mut texts,
                &old[text.start as usize..(text.start + text.len) as usize],
            );
        };
        for change in &mut self.relations {
            copy(&mut change.time);
            copy(&mut change.event_id);
        }
        for change in &mut self.attributes {
            copy(&mut change.time);
            copy(&mut change.value);
            copy(&mut change.event_id);
        }
        self.texts = texts;
    }

    /// Whether the lists hold everything added (no `settle` needed).
    pub fn is_settled(&self) -> bool {
        self.pending.relations.is_empty()
            && self.pending.attributes.is_empty()
            && self.pending.events.is_empty()
    }

    /// Merges what the writer added into the sorted lists.
    pub fn settle(&mut self) {
        merge_into(
            &mut self.relations,
            &mut self.pending.relations,
            relation_order,
        );
        merge_into(
            &mut self.attributes,
            &mut self.pending.attributes,
            attribute_order,
        );
        merge_into(&mut self.events, &mut self.pending.events, event_order);
    }

    /// A rough count of the bytes the timeline holds, for the cache budget
    /// (pending items count as what they will be).
    fn bytes(&self) -> usize {
        let relations = self.relations.len() + self.pending.relations.len();
        let attributes = self.attributes.len() + self.pending.attributes.len();
        let events = self.events.len() + self.pending.events.len();
        64 + self.texts.capacity()
            + relations * std::mem::size_of::<RelationChange>()
            + attributes * std::mem::size_of::<AttributeChange>()
            + events * std::mem::size_of::<EventMention>()
    }
}

struct Cached {
    timeline: Arc<RwLock<EntityTimeline>>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
pub struct CacheState {
    timelines: HashMap<String, Cached>,
    bytes: usize,
    clock: u64,
    /// Shared copies of kinds, keys and entity ids, so equal strings are
    /// one allocation and compare by pointer.
    strings: HashSet<Arc<str>>,
}

impl CacheState {
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        shared
    }

    /// Folds derived writes into the timelines that are cached (the others
    /// will read them from the trees when next loaded).
    pub fn absorb(&mut self, writes: &[Write]) -> Result<()> {
        for (tree, key, value) in writes {
            if *tree != Tree::EntityLog {
                continue;
            }
            let Some(entity) = entity_of(key) else {
                continue;
            };
            let Some(cached) = self.timelines.get(entity) else {
                continue;
            };
            let timeline = Arc::clone(&cached.timeline);
            let entity = entity.to_string();
            let mut timeline = timeline.write().expect("timeline lock");
            let (mention, changes) = self.record(key, value, &mut timeline.texts)?;
            let mut added = std::mem::size_of::<EventMention>();
            timeline.insert_event(mention);
            // Texts count twice: the buffer may double to hold them.
            for change in changes {
                match change {
                    Loaded::Relation(change) => {
                        added += 2 * change.bytes();
                        timeline.insert_relation(change);
                    }
                    Loaded::Attribute(change) => {
                        added += 2 * change.bytes();
                        timeline.insert_attribute(change);
                    }
                }
            }
            drop(timeline);
            self.bytes += added;
            if let Some(cached) = self.timelines.get_mut(&entity) {
                cached.bytes += added;
            }
        }
        Ok(())
    }

    /// Reads one `entity_log` record: the event and its changes.
    fn record(
        &mut self,
        key: &[u8],
        value: &[u8],
        texts: &mut String,
    ) -> Result<(EventMention, Vec<Loaded>)> {
        let record = EntityRecord::decode(value)
            .map_err(|_| Error::DataLoss("an entity_log record is damaged".into()))?;
        let split = key.iter().position(|byte| *byte == 0).unwrap_or(0) + 1;
        if key.len() < split + 8 {
            return Err(Error::DataLoss("an entity_log key is damaged".into()));
        }
        let seq = keys::decode_seq(&key[split..]);
        let mention = EventMention {
            earliest: record.earliest,
            latest: record.latest,
            seq,
            kind: self.intern(&record.kind),
        };
        let event_id = put(texts, &record.event_id);
        let changes = record
            .changes
            .into_iter()
            .map(|change| self.change(seq, event_id, change, texts))
            .collect();
        Ok((mention, changes))
    }

    fn change(
        &mut self,
        seq: u64,
        event_id: Text,
        record: ChangeRecord,
        texts: &mut String,
    ) -> Loaded {
        let time = put(texts, &record.time);
        if record.op == Op::Set as i32 {
            Loaded::Attribute(AttributeChange {
                key: self.intern(&record.kind),
                value: put(texts, &record.value),
                earliest: record.earliest,
                latest: record.latest,
                seq,
                effect: record.effect,
                time,
                event_id,
            })
        } else {
            Loaded::Relation(RelationChange {
                kind: self.intern(&record.kind),
                a: self.intern(&record.a),
                b: self.intern(&record.b),
                directed: record.directed,
                begins: record.op == Op::Begin as i32,
                earliest: record.earliest,
                latest: record.latest,
                seq,
                effect: record.effect,
                time,
                event_id,
            })
        }
    }
}

enum Loaded {
    Relation(RelationChange),
    Attribute(AttributeChange),
}

/// The entity a derived key is stored under (`entity ++ 0x00 ++ …`).
fn entity_of(key: &[u8]) -> Option<&str> {
    let split = key.iter().position(|byte| *byte == 0)?;
    std::str::from_utf8(&key[..split]).ok()
}

/// The cache of entity timelines, bounded by `budget` bytes.
pub struct TimelineCache {
    state: Mutex<CacheState>,
    budget: usize,
}

impl TimelineCache {
    pub fn new(budget: usize) -> TimelineCache {
        TimelineCache {
            state: Mutex::new(CacheState::default()),
            budget,
        }
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

    /// The timeline of `entity`, loaded from the store if not cached.
    pub fn get(&self, store: &dyn LogStore, entity: &str) -> Result<Arc<RwLock<EntityTimeline>>> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        if let Some(cached) = state.timelines.get_mut(entity) {
            cached.last_used = now;
            return Ok(Arc::clone(&cached.timeline));
        }
        let prefix = keys::entity(entity);
        let end = keys::prefix_end(&prefix);
        let mut timeline = EntityTimeline::default();
        for (key, value) in store.scan_derived(Tree::EntityLog, &prefix, &end)? {
            let (mention, changes) = state.record(&key, &value, &mut timeline.texts)?;
            timeline.max_span = timeline
                .max_span
                .max(mention.latest.saturating_sub(mention.earliest));
            timeline.events.push(mention);
            for change in changes {
                match change {
                    Loaded::Relation(change) => timeline.relations.push(change),
                    Loaded::Attribute(change) => timeline.attributes.push(change),
                }
            }
        }
        timeline
            .events
            .sort_by_key(|event| (event.earliest, event.seq));
        timeline.relations.sort_by(|x, y| x.order().cmp(&y.order()));
        timeline
            .attributes
            .sort_by(|x, y| x.order().cmp(&y.order()));
        timeline.lay_out_texts();
        let bytes = timeline.bytes();
        let shared = Arc::new(RwLock::new(timeline));
        state.timelines.insert(
            entity.to_string(),
            Cached {
                timeline: Arc::clone(&shared),
                bytes,
                last_used: now,
            },
        );
        state.bytes += bytes;
        while state.bytes > self.budget && state.timelines.len() > 1 {
            let Some(oldest) = state
                .timelines
                .iter()
                .filter(|(name, _)| name.as_str() != entity)
                .min_by_key(|(_, cached)| cached.last_used)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if let Some(evicted) = state.timelines.remove(&oldest) {
                state.bytes -= evicted.bytes;
            }
        }
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// An `entity_log` record of an event naming `entity`, with one change.
    fn record(entity: &str, seq: u64) -> Write {
        let value = EntityRecord {
            earliest: seq as i64 * 1_000_000,
            latest: seq as i64 * 1_000_000,
            kind: "meeting".into(),
            event_id: format!("event-{seq:06}"),
            changes: vec![ChangeRecord {
                effect: 0,
                earliest: seq as i64 * 1_000_000,
                latest: seq as i64 * 1_000_000,
                time: "1970-01-01".into(),
                op: Op::Set as i32,
                kind: "status".into(),
                value: format!("value-{seq}"),
                ..Default::default()
            }],
        };
        (
            Tree::EntityLog,
            keys::entity_seq(entity, seq),
            value.encode_to_vec(),
        )
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_reloads_what_it_dropped() {
        let store = MemoryStore::new();
        let entities: Vec<String> = (0..40).map(|i| format!("entity-{i}")).collect();
        let writes: Vec<Write> = entities
            .iter()
            .enumerate()
            .flat_map(|(i, entity)| (0..50).map(move |n| record(entity, (i * 50 + n + 1) as u64)))
            .collect();
        store.write_derived(writes).unwrap();

        let one = {
            let cache = TimelineCache::new(usize::MAX);
            cache.get(&store, "entity-0").unwrap();
            let bytes = cache.lock().bytes;
            bytes
        };
        let budget = one * 5;
        let cache = TimelineCache::new(budget);
        for entity in &entities {
            let timeline = cache.get(&store, entity).unwrap();
            assert_eq!(timeline.read().unwrap().events.len(), 50);
            let state = cache.lock();
            assert!(
                state.bytes <= budget + one,
                "{} bytes cached, budget {budget}",
                state.bytes
            );
            assert!(state.timelines.len() <= 6);
        }
        // The first one was dropped long ago and comes back whole.
        let again = cache.get(&store, "entity-0").unwrap();
        assert_eq!(again.read().unwrap().attributes.len(), 50);
    }
}
