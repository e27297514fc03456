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
//! are cached (into a pending list, merged in one pass by the next reader),
//! holding the cache lock as it writes the round to the store: a copy is
//! registered before its walk begins, so every round after that reaches it,
//! and a round the walk saw as well is merged once.

use super::keys::{self, Part};
use super::records::{ChangeValue, Op};
use crate::error::{Error, Result};
use crate::store::{LogStore, Tree, Write};
use crate::time::Instant;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// One change to a relation or attribute, as a walk sees it. Its texts are
/// in the `History` it came with. 32 bytes: a cached copy holds millions.
#[derive(Clone, Copy, Debug)]
pub struct Change {
    pub earliest: Instant,
    pub seq: u64,
    /// Where its texts start in their buffer.
    start: u32,
    effect: u16,
    /// The span in whole days (`latest` = earliest + days − 1 µs); 0 for an
    /// instant (`latest` = earliest). Every valid time is one or the other.
    span_days: u16,
    value_len: u16,
    time_len: u16,
    id_len: u8,
    compact: u8,
    pub op: Op,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Change {
    /// The change a `changes` entry holds (its key and value), with its
    /// texts laid out already; `None` when damaged.
    fn stored(key: &keys::ChangeKey, record: &ChangeValue, texts: Texts) -> Option<Change> {
        Change::new(
            key.earliest,
            record.latest,
            key.seq,
            key.effect,
            record.op,
            texts,
        )
    }

    /// A change; `None` when its numbers are no valid time's or no event's
    /// (a damaged record).
    fn new(
        earliest: Instant,
        latest: Instant,
        seq: u64,
        effect: u32,
        op: Op,
        texts: Texts,
    ) -> Option<Change> {
        let span = latest.checked_sub(earliest)?;
        let span_days = if span == 0 {
            0
        } else if (span + 1) % MICROS_PER_DAY == 0 {
            u16::try_from((span + 1) / MICROS_PER_DAY).ok()?
        } else {
            return None;
        };
        let mut change = Change {
            earliest,
            seq,
            start: 0,
            effect: u16::try_from(effect).ok()?,
            span_days,
            value_len: 0,
            time_len: 0,
            id_len: 0,
            compact: 0,
            op,
        };
        change.set_texts(texts);
        Some(change)
    }

    pub fn begins(&self) -> bool {
        self.op == Op::Begin
    }

    /// The last instant of its valid time.
    pub fn latest(&self) -> Instant {
        match self.span_days {
            0 => self.earliest,
            days => self.earliest + i64::from(days) * MICROS_PER_DAY - 1,
        }
    }

    /// Its position among its event's effects.
    pub fn effect(&self) -> u32 {
        u32::from(self.effect)
    }

    /// The order of changes within a group.
    fn order(&self) -> (Instant, u64, u16) {
        (self.earliest, self.seq, self.effect)
    }

    fn texts(&self) -> Texts {
        Texts {
            start: self.start,
            time: self.time_len,
            event_id: self.id_len,
            value: self.value_len,
            compact: self.compact,
        }
    }

    fn set_texts(&mut self, texts: Texts) {
        self.start = texts.start;
        self.time_len = texts.time;
        self.id_len = texts.event_id;
        self.value_len = texts.value;
        self.compact = texts.compact;
    }
}

/// Where a change's texts sit in their buffer: the valid time as written,
/// the event id and the attribute value, one after the other. A cached copy
/// keeps the two commonest shapes shorter (`COMPACT_*`).
#[derive(Clone, Copy, Debug)]
struct Texts {
    start: u32,
    time: u16,
    event_id: u8,
    value: u16,
    compact: u8,
}

/// The valid time is the day that starts at the change's earliest instant,
/// written `YYYY-MM-DD`: nothing is stored.
const COMPACT_DAY: u8 = 1;
/// The event id is a lowercase hyphenated UUID: its 16 bytes are stored.
const COMPACT_UUID: u8 = 2;

impl Texts {
    fn len(&self) -> usize {
        usize::from(self.time) + usize::from(self.event_id) + usize::from(self.value)
    }
}

/// Appends a change's texts to `buffer` as they are.
fn put(buffer: &mut Vec<u8>, time: &str, event_id: &str, value: &str) -> Texts {
    put_parts(
        buffer,
        time.as_bytes(),
        event_id.as_bytes(),
        value.as_bytes(),
        0,
    )
}

/// Appends a change's texts to `buffer`, the time and id compacted when
/// they have a common shape.
fn put_compact(
    buffer: &mut Vec<u8>,
    earliest: Instant,
    time: &str,
    event_id: &str,
    value: &str,
) -> Texts {
    let mut compact = 0;
    let mut time_bytes = time.as_bytes();
    if crate::time::is_day_text(earliest, time) {
        compact |= COMPACT_DAY;
        time_bytes = &[];
    }
    let uuid = uuid::Uuid::try_parse(event_id)
        .ok()
        .filter(|uuid| uuid.hyphenated().encode_lower(&mut [0; 36]) == event_id);
    let uuid_bytes;
    let mut id_bytes = event_id.as_bytes();
    if let Some(uuid) = uuid {
        compact |= COMPACT_UUID;
        uuid_bytes = *uuid.as_bytes();
        id_bytes = &uuid_bytes;
    }
    put_parts(buffer, time_bytes, id_bytes, value.as_bytes(), compact)
}

fn put_parts(
    buffer: &mut Vec<u8>,
    time: &[u8],
    event_id: &[u8],
    value: &[u8],
    compact: u8,
) -> Texts {
    let start = u32::try_from(buffer.len()).expect("a timeline's texts stay under 4 GiB");
    u32::try_from(buffer.len() + time.len() + event_id.len() + value.len())
        .expect("a timeline's texts stay under 4 GiB");
    let length = |text: &[u8]| u16::try_from(text.len()).expect("texts are validated short");
    let texts = Texts {
        start,
        time: length(time),
        event_id: u8::try_from(event_id.len()).expect("event ids are validated short"),
        value: length(value),
        compact,
    };
    buffer.extend_from_slice(time);
    buffer.extend_from_slice(event_id);
    buffer.extend_from_slice(value);
    texts
}

/// Copies a change's stored texts from one buffer to another, as stored.
fn copy_texts(from: &[u8], texts: Texts, to: &mut Vec<u8>) -> Texts {
    let start = texts.start as usize;
    let bytes = &from[start..start + texts.len()];
    let moved = Texts {
        start: u32::try_from(to.len()).expect("a timeline's texts stay under 4 GiB"),
        ..texts
    };
    to.extend_from_slice(bytes);
    moved
}

/// The changes of one relation or attribute, in (earliest, seq, effect)
/// order, with their texts.
#[derive(Clone, Copy)]
pub struct History<'a> {
    pub changes: &'a [Change],
    texts: &'a [u8],
}

impl<'a> History<'a> {
    fn bytes(&self, change: &Change, skip: usize, len: usize) -> &'a [u8] {
        let start = change.start as usize + skip;
        &self.texts[start..start + len]
    }

    fn text(&self, change: &Change, skip: usize, len: usize) -> &'a str {
        std::str::from_utf8(self.bytes(change, skip, len)).expect("texts are stored as UTF-8")
    }

    /// The valid time as the event wrote it.
    pub fn time(&self, change: &Change) -> Cow<'a, str> {
        if change.compact & COMPACT_DAY != 0 {
            if let Some(day) = crate::time::day_text(change.earliest) {
                return Cow::Owned(day);
            }
        }
        Cow::Borrowed(self.text(change, 0, usize::from(change.time_len)))
    }

    pub fn event_id(&self, change: &Change) -> Cow<'a, str> {
        let skip = usize::from(change.time_len);
        let len = usize::from(change.id_len);
        if change.compact & COMPACT_UUID != 0 {
            if let Ok(bytes) = <[u8; 16]>::try_from(self.bytes(change, skip, len)) {
                let mut text = [0; 36];
                let uuid = uuid::Uuid::from_bytes(bytes);
                return Cow::Owned(uuid.hyphenated().encode_lower(&mut text).to_owned());
            }
        }
        Cow::Borrowed(self.text(change, skip, len))
    }

    /// `time` as bytes, rendered into `scratch` when compacted.
    pub fn time_bytes<'b>(&'b self, change: &Change, scratch: &'b mut [u8; 36]) -> &'b [u8] {
        if change.compact & COMPACT_DAY != 0 {
            let day: &mut [u8; 10] = (&mut scratch[..10]).try_into().expect("10 bytes");
            if crate::time::write_day(change.earliest, day).is_some() {
                return &scratch[..10];
            }
        }
        self.bytes(change, 0, usize::from(change.time_len))
    }

    /// `event_id` as bytes, rendered into `scratch` when compacted.
    pub fn event_id_bytes<'b>(&'b self, change: &Change, scratch: &'b mut [u8; 36]) -> &'b [u8] {
        let skip = usize::from(change.time_len);
        let len = usize::from(change.id_len);
        if change.compact & COMPACT_UUID != 0 {
            if let Ok(bytes) = <[u8; 16]>::try_from(self.bytes(change, skip, len)) {
                let uuid = uuid::Uuid::from_bytes(bytes);
                uuid.hyphenated().encode_lower(scratch);
                return &scratch[..];
            }
        }
        self.bytes(change, skip, len)
    }

    /// The attribute value (empty unsets).
    pub fn value(&self, change: &Change) -> &'a str {
        let skip = usize::from(change.time_len) + usize::from(change.id_len);
        self.text(change, skip, usize::from(change.value_len))
    }
}

/// What a group is about: a relation (kind, a, b, directed), or an attribute
/// (its key in `kind`, `a` and `b` empty). Groups come in the order of these
/// fields, which is the byte order of their keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name<'a> {
    pub kind: &'a str,
    pub a: &'a str,
    pub b: &'a str,
    pub directed: bool,
}

impl<'a> Name<'a> {
    /// Reads a group of a `changes` key.
    fn parse(part: Part, group: &'a [u8]) -> Option<Name<'a>> {
        match part {
            Part::Relations => {
                let relation = keys::parse_relation_group(group)?;
                Some(Name {
                    kind: relation.kind,
                    a: relation.a,
                    b: relation.b,
                    directed: relation.directed,
                })
            }
            Part::Attributes => Some(Name {
                kind: keys::parse_attribute_group(group)?,
                a: "",
                b: "",
                directed: false,
            }),
        }
    }
}

/// A group's name as the cache keeps it: shared strings.
#[derive(Clone, Debug)]
struct SharedName {
    kind: Arc<str>,
    a: Arc<str>,
    b: Arc<str>,
    directed: bool,
}

impl SharedName {
    fn view(&self) -> Name<'_> {
        Name {
            kind: &self.kind,
            a: &self.a,
            b: &self.b,
            directed: self.directed,
        }
    }
}

/// A group of a cached copy: its name as positions in the copy's `words`,
/// and the end of its changes in `changes`.
#[derive(Clone, Copy, Debug)]
struct Group {
    kind: u32,
    a: u32,
    b: u32,
    end: u32,
    directed: bool,
}

/// The distinct strings of a copy's group names, and where each is.
#[derive(Default, Debug)]
struct Words {
    words: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Words {
    fn position(&mut self, word: &Arc<str>) -> u32 {
        if let Some(position) = self.index.get(word) {
            return *position;
        }
        let position = u32::try_from(self.words.len()).expect("fewer than 4 billion names");
        self.words.push(Arc::clone(word));
        self.index.insert(Arc::clone(word), position);
        position
    }

    fn group(&mut self, name: &SharedName, end: u32) -> Group {
        Group {
            kind: self.position(&name.kind),
            a: self.position(&name.a),
            b: self.position(&name.b),
            end,
            directed: name.directed,
        }
    }
}

/// A cached copy of one part (relations or attributes) of an entity.
#[derive(Default, Debug)]
pub struct Timeline {
    groups: Vec<Group>,
    /// The strings `groups` name.
    words: Vec<Arc<str>>,
    changes: Vec<Change>,
    texts: Vec<u8>,
    /// What the writer added since the last `settle`, in any order; its
    /// texts are in `texts` already.
    pending: Vec<(SharedName, Change)>,
    /// Filled by the walk that registered it; until then only `pending`
    /// holds anything.
    loaded: bool,
}

impl Timeline {
    fn name(&self, group: &Group) -> Name<'_> {
        Name {
            kind: &self.words[group.kind as usize],
            a: &self.words[group.a as usize],
            b: &self.words[group.b as usize],
            directed: group.directed,
        }
    }

    /// Calls `visit` with each group after `after` (from the first when
    /// `None`), in order, until it returns `false`.
    fn walk(
        &self,
        after: Option<Name>,
        visit: &mut dyn FnMut(Name, History) -> Result<bool>,
    ) -> Result<()> {
        let first = after.map_or(0, |after| {
            self.groups
                .partition_point(|group| self.name(group) <= after)
        });
        let mut start = match first {
            0 => 0,
            first => self.groups[first - 1].end as usize,
        };
        for group in &self.groups[first..] {
            let end = group.end as usize;
            let history = History {
                changes: &self.changes[start..end],
                texts: &self.texts,
            };
            start = end;
            if !visit(self.name(group), history)? {
                break;
            }
        }
        Ok(())
    }

    fn bytes(&self) -> usize {
        128 + self.texts.capacity()
            + self.groups.capacity() * std::mem::size_of::<Group>()
            + self.words.capacity() * std::mem::size_of::<Arc<str>>()
            + self.changes.capacity() * std::mem::size_of::<Change>()
            + self.pending.capacity() * std::mem::size_of::<(SharedName, Change)>()
    }

    /// Merges what the writer added into the sorted lists, laying the texts
    /// out again in list order. A change both walked and added is kept once.
    fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by(|(x, first), (y, second)| {
            x.view()
                .cmp(&y.view())
                .then(first.order().cmp(&second.order()))
        });
        let old_groups = std::mem::take(&mut self.groups);
        let old_changes = std::mem::take(&mut self.changes);
        let old_texts = std::mem::take(&mut self.texts);
        let mut words = Words::default();
        for word in &self.words {
            words.position(word);
        }
        let mut texts = Vec::with_capacity(old_texts.len());
        let mut changes = Vec::with_capacity(old_changes.len() + pending.len());
        let mut groups = Vec::with_capacity(old_groups.len() + pending.len());
        // Copies a change into the group begun at `group_start`, unless the
        // group ends with it already.
        let mut copy = |change: &Change, changes: &mut Vec<Change>, group_start: usize| {
            if changes.len() > group_start
                && changes
                    .last()
                    .is_some_and(|last| last.order() == change.order())
            {
                return;
            }
            let mut copied = *change;
            copied.set_texts(copy_texts(&old_texts, change.texts(), &mut texts));
            changes.push(copied);
        };
        let shared = |group: &Group| SharedName {
            kind: Arc::clone(&self.words[group.kind as usize]),
            a: Arc::clone(&self.words[group.a as usize]),
            b: Arc::clone(&self.words[group.b as usize]),
            directed: group.directed,
        };

        let mut old = old_groups.iter().peekable();
        let mut old_start = 0usize;
        let mut added = pending.into_iter().peekable();
        loop {
            let next_name = match (old.peek(), added.peek()) {
                (None, None) => break,
                (Some(group), None) => shared(group),
                (None, Some((name, _))) => name.clone(),
                (Some(group), Some((name, _))) => match self.name(group).cmp(&name.view()) {
                    Ordering::Greater => name.clone(),
                    _ => shared(group),
                },
            };
            let group_start = changes.len();
            let mut from_old: &[Change] = &[];
            if old
                .peek()
                .is_some_and(|group| self.name(group) == next_name.view())
            {
                let group = old.next().expect("peeked");
                from_old = &old_changes[old_start..group.end as usize];
                old_start = group.end as usize;
            }
            let mut from_added = Vec::new();
            while added
                .peek()
                .is_some_and(|(name, _)| name.view() == next_name.view())
            {
                from_added.push(added.next().expect("peeked").1);
            }
            let (mut x, mut y) = (0, 0);
            while x < from_old.len() || y < from_added.len() {
                let take_old = y == from_added.len()
                    || (x < from_old.len() && from_old[x].order() <= from_added[y].order());
                if take_old {
                    copy(&from_old[x], &mut changes, group_start);
                    x += 1;
                } else {
                    copy(&from_added[y], &mut changes, group_start);
                    y += 1;
                }
            }
            if changes.len() > group_start {
                groups.push(words.group(&next_name, changes.len() as u32));
            }
        }
        self.groups = groups;
        self.words = words.words;
        self.changes = changes;
        self.texts = texts;
        self.shrink();
    }

    /// Gives back what the lists hold beyond their length.
    fn shrink(&mut self) {
        self.groups.shrink_to_fit();
        self.words.shrink_to_fit();
        self.changes.shrink_to_fit();
        self.texts.shrink_to_fit();
    }
}

/// Collects a walk into a new copy, until it grows past `budget` bytes.
struct Builder {
    timeline: Timeline,
    words: Words,
    budget: usize,
    given_up: bool,
}

impl Builder {
    fn add(&mut self, strings: &mut Strings, name: Name, history: History) {
        if self.given_up {
            return;
        }
        for change in history.changes {
            let mut copied = *change;
            copied.set_texts(put_compact(
                &mut self.timeline.texts,
                change.earliest,
                &history.time(change),
                &history.event_id(change),
                history.value(change),
            ));
            self.timeline.changes.push(copied);
        }
        let end = self.timeline.changes.len() as u32;
        let group = self.words.group(&strings.share(name), end);
        self.timeline.groups.push(group);
        if self.timeline.bytes() + self.words.words.len() * 16 > self.budget {
            self.given_up = true;
            self.timeline = Timeline::default();
        }
    }
}

/// Shared copies of kinds, keys and entity ids, so equal strings are one
/// allocation.
#[derive(Default)]
struct Strings(HashSet<Arc<str>>);

impl Strings {
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }

    fn share(&mut self, name: Name) -> SharedName {
        SharedName {
            kind: self.intern(name.kind),
            a: self.intern(name.a),
            b: self.intern(name.b),
            directed: name.directed,
        }
    }
}

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
            timeline.pending.push((name, change));
            let added = std::mem::size_of::<(SharedName, Change)>()
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

    /// Calls `visit` with each relation (or attribute) group of `entity`,
    /// in order, with its history, until `visit` returns `false`; with
    /// `after` (the bytes of a group, as `keys::relation_group` lays them
    /// out), only with the groups after that one.
    pub fn walk(
        &self,
        store: &dyn LogStore,
        entity: &str,
        part: Part,
        after: Option<&[u8]>,
        visit: &mut dyn FnMut(Name, History) -> Result<bool>,
    ) -> Result<()> {
        let poisoned = || Error::Storage("a timeline lock was poisoned".into());
        let after_name = match after {
            Some(group) => Some(
                Name::parse(part, group)
                    .ok_or_else(|| Error::invalid("page_token", "names no relation"))?,
            ),
            None => None,
        };
        // A walk that starts part-way builds no copy.
        let source = match after {
            Some(_) => self.cached(entity, part),
            None => self.source(entity, part),
        };
        match source {
            Source::Cached(timeline) => {
                if !timeline.read().map_err(|_| poisoned())?.pending.is_empty() {
                    timeline.write().map_err(|_| poisoned())?.settle();
                }
                let timeline = timeline.read().map_err(|_| poisoned())?;
                timeline.walk(after_name, visit)
            }
            Source::Store => walk_store(store, entity, part, after, &mut |_, name, history| {
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
                let walked =
                    walk_store(store, entity, part, None, &mut |strings, name, history| {
                        builder.add(strings, name, history);
                        if wanted {
                            wanted = visit(name, history)?;
                        }
                        Ok(wanted || !builder.given_up)
                    });
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
            for (name, mut change) in pending {
                change.set_texts(copy_texts(&added_texts, change.texts(), &mut built.texts));
                built.pending.push((name, change));
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

/// Walks (entity, part) in the store, one group at a time (after the group
/// `after` when given).
fn walk_store(
    store: &dyn LogStore,
    entity: &str,
    part: Part,
    after: Option<&[u8]>,
    visit: &mut dyn FnMut(&mut Strings, Name, History) -> Result<bool>,
) -> Result<()> {
    let prefix = keys::part(entity, part);
    let to = keys::prefix_end(&prefix);
    let from = match after {
        Some(group) => keys::prefix_end(&[prefix.as_slice(), group].concat()),
        None => prefix,
    };
    let mut strings = Strings::default();
    let mut group: Vec<u8> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut texts: Vec<u8> = Vec::new();
    let mut going = true;
    let damaged = || {
        Error::DataLoss(format!(
            "a change key of {entity:?} in the index is damaged"
        ))
    };
    let mut flush = |group: &[u8],
                     changes: &mut Vec<Change>,
                     texts: &mut Vec<u8>,
                     strings: &mut Strings|
     -> Result<bool> {
        if changes.is_empty() {
            return Ok(true);
        }
        let name = Name::parse(part, group).ok_or_else(damaged)?;
        let history = History { changes, texts };
        let going = visit(strings, name, history)?;
        changes.clear();
        texts.clear();
        Ok(going)
    };
    store.visit_derived(Tree::Changes, &from, &to, &mut |key, value| {
        let parsed = keys::parse_change(key).ok_or_else(damaged)?;
        if parsed.group != group.as_slice() {
            going = flush(&group, &mut changes, &mut texts, &mut strings)?;
            if !going {
                return Ok(false);
            }
            group.clear();
            group.extend_from_slice(parsed.group);
        }
        let record = ChangeValue::decode(value)?;
        let texts_of = put(&mut texts, record.time, record.event_id, record.value);
        let change = Change::stored(&parsed, &record, texts_of).ok_or_else(damaged)?;
        changes.push(change);
        Ok(true)
    })?;
    if going {
        flush(&group, &mut changes, &mut texts, &mut strings)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

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
        let mut groups = Vec::new();
        cache
            .walk(
                store,
                entity,
                Part::Attributes,
                None,
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
}
