//! Histories: every interval a relation held and every value an attribute
//! had, each with the events that began and ended it (RelationHistory,
//! AttributeHistory), as known at the snapshot's seq.

use super::Snapshot;
use crate::error::Result;
use crate::index::{keys, History, Name, Part};
use crate::proto;
use crate::time::Instant;
use std::ops::Bound;

impl Snapshot<'_> {
    /// Every interval during which a relation between `a` and `b` (any
    /// counterpart of `a` when `b` is `None`) held, by (from, seq).
    pub fn relation_history(
        &self,
        a: &str,
        b: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Vec<proto::RelationInterval>> {
        let mut intervals = Vec::new();
        self.walk(a, Part::Relations, &mut |name, history| {
            let theirs = if name.a == a { name.b } else { name.a };
            if !(kind.is_none_or(|kind| name.kind == kind) && b.is_none_or(|b| theirs == b)) {
                return Ok(true);
            }
            let mut open: Option<((Instant, u64, u32), proto::RelationInterval)> = None;
            for change in history
                .changes
                .iter()
                .filter(|change| self.in_force(change.seq))
            {
                match (change.begins(), open.take()) {
                    (true, None) => {
                        let interval = proto::RelationInterval {
                            kind: name.kind.to_owned(),
                            from: history.time(change).into_owned(),
                            to: String::new(),
                            begun_by: history.event_id(change).into_owned(),
                            ended_by: String::new(),
                            a: name.a.to_owned(),
                            b: name.b.to_owned(),
                            directed: name.directed,
                        };
                        open = Some(((change.earliest, change.seq, change.effect()), interval));
                    }
                    (false, Some((order, mut interval))) => {
                        interval.to = history.time(change).into_owned();
                        interval.ended_by = history.event_id(change).into_owned();
                        intervals.push((order, interval));
                    }
                    (_, still_open) => open = still_open,
                }
            }
            intervals.extend(open);
            Ok(true)
        })?;
        intervals.sort_by_key(|(order, _)| *order);
        Ok(intervals
            .into_iter()
            .map(|(_, interval)| interval)
            .collect())
    }

    /// Every value `entity`'s attributes (only `key`'s, when given) held,
    /// by (from, seq). A change to the value in force ends its interval and
    /// begins the next; an unset ends it; setting the same value again
    /// changes nothing.
    pub fn attribute_history(
        &self,
        entity: &str,
        key: Option<&str>,
    ) -> Result<Vec<proto::AttributeInterval>> {
        let mut intervals = Vec::new();
        let group = key.map(keys::attribute_group);
        let from = group.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let visit = &mut |name: Name, history: History| {
            if key.is_some_and(|key| key != name.kind) {
                return Ok(false);
            }
            let mut open: Option<((Instant, u64, u32), proto::AttributeInterval)> = None;
            for change in history
                .changes
                .iter()
                .filter(|change| self.in_force(change.seq))
            {
                let value = history.value(change);
                if open
                    .as_ref()
                    .is_some_and(|(_, interval)| interval.value == value)
                {
                    continue;
                }
                if let Some((order, mut interval)) = open.take() {
                    interval.to = history.time(change).into_owned();
                    interval.ended_by = history.event_id(change).into_owned();
                    intervals.push((order, interval));
                }
                if !value.is_empty() {
                    let interval = proto::AttributeInterval {
                        key: name.kind.to_owned(),
                        value: value.to_owned(),
                        from: history.time(change).into_owned(),
                        to: String::new(),
                        set_by: history.event_id(change).into_owned(),
                        ended_by: String::new(),
                    };
                    open = Some(((change.earliest, change.seq, change.effect()), interval));
                }
            }
            intervals.extend(open);
            Ok(true)
        };
        self.timelines
            .walk(self.store, entity, Part::Attributes, from, visit)?;
        intervals.sort_by_key(|(order, _)| *order);
        Ok(intervals
            .into_iter()
            .map(|(_, interval)| interval)
            .collect())
    }
}
