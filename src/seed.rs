//! The built-in data set: the article's events, embedded in the binary.
//!
//! `data/article.jsonl` holds one `annals.v1.Event` per line in proto3 JSON,
//! exactly what `Append` takes. On first start with an empty log the server
//! appends them as one batch through the same validated path as any client
//! (with `expected_last_seq = 0`, so a log that is not empty is never
//! seeded twice).

use crate::engine::Database;
use crate::error::{Error, Result};
use crate::json::from_json;
use crate::proto;

/// The article's events, as proto3 JSON lines.
pub const ARTICLE_EVENTS: &str = include_str!("../data/article.jsonl");
/// The article itself: every `source.quote` of the data set is a substring.
pub const ARTICLE_TEXT: &str = include_str!("../data/article.txt");

/// Parses proto3 JSON lines into events; blank lines are skipped, and an
/// error names its line.
pub fn parse_lines(text: &str) -> Result<Vec<proto::Event>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            from_json::<proto::Event>(line)
                .map_err(|error| Error::invalid(format!("line {}", number + 1), error))
        })
        .collect()
}

/// The built-in data set.
pub fn article_events() -> Vec<proto::Event> {
    parse_lines(ARTICLE_EVENTS).expect("data/article.jsonl is valid proto3 JSON")
}

/// Appends the data set if the log is empty. Returns how many entries were
/// appended (0 when the log already had some).
pub async fn seed(db: &Database) -> Result<usize> {
    if db.last_seq() > 0 {
        return Ok(0);
    }
    // Some(0): a log that another writer (a cluster's other node) started
    // first is left as it is.
    match db.append(article_events(), Some(0)).await {
        Ok(appended) => Ok(appended
            .already_present
            .iter()
            .filter(|present| !**present)
            .count()),
        Err(Error::FailedPrecondition(_)) => Ok(0),
        Err(error) => Err(error),
    }
}
