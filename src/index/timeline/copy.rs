//! A cached copy of one part of an entity, and how it is built.

use super::change::{copy_texts, put_compact, Change, History, Name};
use crate::error::Result;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

/// A group's name as the cache keeps it: shared strings.
#[derive(Clone, Debug)]
pub(super) struct SharedName {
    pub(super) kind: Arc<str>,
    pub(super) a: Arc<str>,
    pub(super) b: Arc<str>,
    pub(super) directed: bool,
}

impl SharedName {
    pub(super) fn view(&self) -> Name<'_> {
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
pub(super) struct Group {
    pub(super) kind: u32,
    pub(super) a: u32,
    pub(super) b: u32,
    pub(super) end: u32,
    pub(super) directed: bool,
}

/// The distinct strings of a copy's group names, and where each is.
#[derive(Default, Debug)]
pub(super) struct Words {
    pub(super) words: Vec<Arc<str>>,
    pub(super) index: HashMap<Arc<str>, u32>,
}

impl Words {
    pub(super) fn position(&mut self, word: &Arc<str>) -> u32 {
        if let Some(position) = self.index.get(word) {
            return *position;
        }
        let position = u32::try_from(self.words.len()).expect("fewer than 4 billion names");
        self.words.push(Arc::clone(word));
        self.index.insert(Arc::clone(word), position);
        position
    }

    pub(super) fn group(&mut self, name: &SharedName, end: u32) -> Group {
        Group {
            kind: self.position(&name.kind),
            a: self.position(&name.a),
            b: self.position(&name.b),
            end,
            directed: name.directed,
        }
    }
}

/// A change the writer added to a copy since its last `settle`, and where
/// its group is among the copy's groups.
#[derive(Debug)]
pub(super) struct Added {
    pub(super) name: SharedName,
    pub(super) change: Change,
    /// The first of the copy's groups not before its own.
    slot: u32,
    /// Whether that group is its own (else its group is new).
    known: bool,
}

/// A cached copy of one part (relations or attributes) of an entity.
#[derive(Default, Debug)]
pub struct Timeline {
    pub(super) groups: Vec<Group>,
    /// The strings `groups` name.
    pub(super) words: Vec<Arc<str>>,
    pub(super) changes: Vec<Change>,
    pub(super) texts: Vec<u8>,
    /// What the writer added since the last `settle`, by (name, order)
    /// (`add`); its texts are in `texts` already.
    pub(super) pending: Vec<Added>,
    /// Filled by the walk that registered it; until then only `pending`
    /// holds anything.
    pub(super) loaded: bool,
}

impl Timeline {
    pub(super) fn name(&self, group: &Group) -> Name<'_> {
        Name {
            kind: &self.words[group.kind as usize],
            a: &self.words[group.a as usize],
            b: &self.words[group.b as usize],
            directed: group.directed,
        }
    }

    /// Calls `visit` with each group from `from` on, in order, until it
    /// returns `false`. What the writer added
    /// since the last `settle` is merged in on the way: a group with added
    /// changes is handed out merged (a change both walked and added once).
    pub(super) fn walk(
        &self,
        from: Bound<Name>,
        visit: &mut dyn FnMut(Name, History) -> Result<bool>,
    ) -> Result<()> {
        // Whether a group of this name comes before the walk's first.
        let before = |name: Name| match from {
            Bound::Included(from) => name < from,
            Bound::Excluded(after) => name <= after,
            Bound::Unbounded => false,
        };
        let first = self
            .groups
            .partition_point(|group| before(self.name(group)));
        let mut start = match first {
            0 => 0,
            first => self.groups[first - 1].end as usize,
        };
        let skip = self
            .pending
            .partition_point(|added| before(added.name.view()));
        let mut pending = &self.pending[skip..];
        let mut merged: Vec<Change> = Vec::new();
        for index in first..=self.groups.len() {
            // New groups that come before this one (after the last one, at
            // the end).
            while let Some(next) = pending
                .first()
                .filter(|added| !added.known && added.slot as usize == index)
            {
                let name = next.name.view();
                let count = pending
                    .iter()
                    .take_while(|added| {
                        !added.known && added.slot as usize == index && added.name.view() == name
                    })
                    .count();
                let (new, rest) = pending.split_at(count);
                pending = rest;
                merged.clear();
                merge(&[], new, &mut merged);
                let history = History {
                    changes: &merged,
                    texts: &self.texts,
                };
                if !visit(name, history)? {
                    return Ok(());
                }
            }
            let Some(group) = self.groups.get(index) else {
                break;
            };
            let walked = &self.changes[start..group.end as usize];
            start = group.end as usize;
            let count = pending
                .iter()
                .take_while(|added| added.known && added.slot as usize == index)
                .count();
            let (added, rest) = pending.split_at(count);
            pending = rest;
            let changes = if added.is_empty() {
                walked
            } else {
                merged.clear();
                merge(walked, added, &mut merged);
                &merged[..]
            };
            let history = History {
                changes,
                texts: &self.texts,
            };
            if !visit(self.name(group), history)? {
                break;
            }
        }
        Ok(())
    }

    /// Adds a change the writer made, in (name, order) place among the
    /// others added since the last `settle`, noting where its group is.
    pub(super) fn add(&mut self, name: SharedName, change: Change) {
        let view = name.view();
        let slot = self.groups.partition_point(|group| self.name(group) < view);
        let known = self
            .groups
            .get(slot)
            .is_some_and(|group| self.name(group) == view);
        let place = self.pending.partition_point(|added| {
            (added.name.view(), added.change.order()) <= (view, change.order())
        });
        let added = Added {
            name,
            change,
            slot: slot as u32,
            known,
        };
        self.pending.insert(place, added);
    }

    /// Whether enough was added since the last `settle` that the next
    /// reader should settle: merging on the way costs each walk a little
    /// per added change, settling costs one pass over the copy.
    pub(super) fn unsettled(&self) -> bool {
        self.pending.len() > SETTLE_AT.max(self.changes.len() / 8)
    }

    pub(super) fn bytes(&self) -> usize {
        128 + self.texts.capacity()
            + self.groups.capacity() * std::mem::size_of::<Group>()
            + self.words.capacity() * std::mem::size_of::<Arc<str>>()
            + self.changes.capacity() * std::mem::size_of::<Change>()
            + self.pending.capacity() * std::mem::size_of::<Added>()
    }

    /// Merges what the writer added into the sorted lists, laying the texts
    /// out again in list order. A change both walked and added is kept once.
    pub(super) fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
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
                (None, Some(added)) => added.name.clone(),
                (Some(group), Some(added)) => match self.name(group).cmp(&added.name.view()) {
                    Ordering::Greater => added.name.clone(),
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
                .is_some_and(|added| added.name.view() == next_name.view())
            {
                from_added.push(added.next().expect("peeked").change);
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
    pub(super) fn shrink(&mut self) {
        self.groups.shrink_to_fit();
        self.words.shrink_to_fit();
        self.changes.shrink_to_fit();
        self.texts.shrink_to_fit();
    }
}

/// Changes added since the last `settle` beyond which the next reader
/// settles (or an eighth of the copy, when more).
const SETTLE_AT: usize = 64;

/// Merges a group's walked changes with those added to it (each list in
/// order) into `into`, a change in both once.
fn merge(walked: &[Change], added: &[Added], into: &mut Vec<Change>) {
    let mut added = added.iter().map(|added| &added.change).peekable();
    let mut walked = walked.iter().peekable();
    loop {
        let next = match (walked.peek(), added.peek()) {
            (None, None) => break,
            (Some(x), Some(y)) if y.order() < x.order() => added.next(),
            (Some(_), _) => walked.next(),
            (None, Some(_)) => added.next(),
        };
        let next = *next.expect("peeked");
        if into.last().is_none_or(|last| last.order() != next.order()) {
            into.push(next);
        }
    }
}

/// Collects a walk into a new copy, until it grows past `budget` bytes.
pub(super) struct Builder {
    pub(super) timeline: Timeline,
    pub(super) words: Words,
    pub(super) budget: usize,
    pub(super) given_up: bool,
}

impl Builder {
    pub(super) fn add(&mut self, strings: &mut Strings, name: Name, history: History) {
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
pub(super) struct Strings(HashSet<Arc<str>>);

impl Strings {
    pub(super) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }

    pub(super) fn share(&mut self, name: Name) -> SharedName {
        SharedName {
            kind: self.intern(name.kind),
            a: self.intern(name.a),
            b: self.intern(name.b),
            directed: name.directed,
        }
    }
}
