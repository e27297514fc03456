//! The checks a handler makes of a request's fields before it asks the
//! engine: times, kinds, labels, entity names, page tokens. Each failure
//! names its field.

use crate::engine::Database;
use crate::error::Error;
use crate::model::{check_kind, MAX_KIND_LEN};
use crate::page::{self, Cursor};
use crate::query::Snapshot;
use crate::time::{query_instant, window_start, Instant};

pub(super) fn at_instant(field: &str, text: &str) -> std::result::Result<Instant, Error> {
    query_instant(text).map_err(|error| Error::invalid(field, error.to_string()))
}

pub(super) fn optional(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

pub(super) fn optional_kind<'a>(
    field: &str,
    kind: &'a str,
) -> std::result::Result<Option<&'a str>, Error> {
    optional(kind)
        .map(|kind| check_kind(field, kind).map(|_| kind))
        .transpose()
}

/// The window `[from, to]` of an event query: `from` from the start of its
/// span, `to` to the end of its span; empty ends are open.
pub(super) fn window(from: &str, to: &str) -> std::result::Result<(Instant, Instant), Error> {
    let first = window_start(from).map_err(|error| Error::invalid("from", error.to_string()))?;
    let last = at_instant("to", to)?;
    if last < first {
        return Err(Error::invalid(
            "to",
            format!("{to:?} is before from {from:?}"),
        ));
    }
    Ok((first, last))
}

/// The window, kind and labels of an event listing or count, checked.
pub(super) type EventTerms = (Instant, Instant, Option<String>, Vec<(String, String)>);

pub(super) fn event_terms(
    from: &str,
    to: &str,
    kind: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<EventTerms, Error> {
    let (from, to) = window(from, to)?;
    let kind = optional_kind("kind", kind)?.map(str::to_string);
    Ok((from, to, kind, label_pairs(labels)?))
}

pub(super) fn check_label_key(field: &str, key: &str) -> std::result::Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KIND_LEN {
        return Err(Error::invalid(
            field,
            format!("label keys are 1 to {MAX_KIND_LEN} bytes"),
        ));
    }
    Ok(())
}

/// A request's label filter as sorted pairs.
pub(super) fn label_pairs(
    labels: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<Vec<(String, String)>, Error> {
    let pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (key, _) in &pairs {
        check_label_key("labels", key)?;
    }
    Ok(pairs)
}

/// Resolves the entity and counterpart of an event query; a counterpart
/// needs an entity.
pub(super) fn dyad(
    snapshot: &Snapshot,
    entity: &str,
    counterpart: &str,
) -> std::result::Result<(Option<String>, Option<String>), Error> {
    let entity = optional(entity)
        .map(|name| resolve(snapshot, "entity", name))
        .transpose()?;
    let counterpart = optional(counterpart)
        .map(|name| resolve(snapshot, "counterpart", name))
        .transpose()?;
    if entity.is_none() && counterpart.is_some() {
        return Err(Error::invalid(
            "counterpart",
            "a counterpart needs an entity: the events of the dyad entity-counterpart",
        ));
    }
    Ok((entity, counterpart))
}

/// Resolves an entity id or alias, or says which field named an unknown one.
pub(super) fn resolve(
    snapshot: &Snapshot,
    field: &str,
    name: &str,
) -> std::result::Result<String, Error> {
    snapshot
        .resolve(name)
        .map(str::to_string)
        .ok_or_else(|| Error::NotFound(format!("{field}: no entity {name:?}")))
}

/// Reads the pagination of a request: the cursor (first page: offset 0 at
/// the requested snapshot) and the page size.
pub(super) fn cursor(
    db: &Database,
    token: &str,
    fingerprint: u64,
    as_of_seq: u64,
) -> std::result::Result<Cursor, Error> {
    match page::decode(token, fingerprint)? {
        Some(cursor) => Ok(cursor),
        None => {
            let last = db.last_seq();
            if as_of_seq > last {
                return Err(Error::invalid(
                    "as_of_seq",
                    format!("{as_of_seq} is beyond the end of the log (last seq {last})"),
                ));
            }
            let as_of = if as_of_seq == 0 { last } else { as_of_seq };
            Ok(Cursor {
                offset: 0,
                as_of,
                after: Vec::new(),
            })
        }
    }
}
