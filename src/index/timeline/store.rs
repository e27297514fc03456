//! Walking an entity's part straight from the `changes` tree.

use super::change::{put, Change, History, Name};
use super::copy::Strings;
use crate::error::Error;
use crate::error::Result;
use crate::index::keys::{self, Part};
use crate::index::records::ChangeValue;
use crate::store::{LogStore, Tree};
use std::ops::Bound;

/// Walks (entity, part) in the store, one group at a time (from, or after,
/// the group `from` when bounded).
pub(super) fn walk_store(
    store: &dyn LogStore,
    entity: &str,
    part: Part,
    from: Bound<&[u8]>,
    visit: &mut dyn FnMut(&mut Strings, Name, History) -> Result<bool>,
) -> Result<()> {
    let prefix = keys::part(entity, part);
    let to = keys::prefix_end(&prefix);
    let from = match from {
        Bound::Included(group) => [prefix.as_slice(), group].concat(),
        Bound::Excluded(group) => keys::prefix_end(&[prefix.as_slice(), group].concat()),
        Bound::Unbounded => prefix,
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
