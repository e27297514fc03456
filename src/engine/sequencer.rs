//! Where the order of appends is decided when this node's writer is not
//! alone: a replicated log that several nodes append to (cluster mode,
//! `cluster::Stream`).
//!
//! The log is a sequence of *messages*, one per Append request, numbered
//! by *position* 1, 2, 3, … without gaps; a message holds the request's new
//! entries with their seqs and `recorded_at`, so every node that applies the
//! messages in order holds the same log. A node's view (its `LogStore`) is a
//! copy of a prefix of it.

use crate::error::Result;
use crate::store::StoredEntry;

/// One message of the replicated log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogMessage {
    pub position: u64,
    pub entries: Vec<StoredEntry>,
}

/// Why a message was not published.
#[derive(Debug)]
pub enum Refused {
    /// The log has moved past the position it was meant to follow: another
    /// node appended first. Nothing was stored.
    Moved,
    /// The log could not be reached (the sentence says why). The message may
    /// or may not have been stored; if it was, it arrives as any other.
    Unavailable(String),
    /// The log refuses this message as it is (too large, say): the error
    /// for the client. Nothing was stored.
    Rejected(crate::error::Error),
}

/// The contract a replicated log keeps.
pub trait Sequencer: Send + Sync + 'static {
    /// Publishes `entries` (one append, seqs continuing the view's log) as
    /// the message right after `position`, and returns its position once a
    /// quorum of the log's servers has it durably. A retried publish whose
    /// first attempt landed returns that attempt's position.
    fn publish(&self, position: u64, entries: &[StoredEntry]) -> Result<u64, Refused> {
        match self.publish_all(position, &[entries]) {
            (1, _) => Ok(position + 1),
            (_, refused) => Err(refused.unwrap_or(Refused::Moved)),
        }
    }

    /// Publishes several appends as the messages right after `position`, in
    /// order, each only if the one before it landed right before it (so
    /// that a message never follows another node's in place of its
    /// predecessor). Returns how many, from the first, the log holds at
    /// `position + 1 …`, and why the next one is not there, when it is
    /// not.
    fn publish_all(&self, position: u64, messages: &[&[StoredEntry]]) -> (usize, Option<Refused>);

    /// Up to `limit` messages after `position`, in order; fewer (or none) at
    /// the log's end.
    fn fetch(&self, position: u64, limit: usize) -> Result<Vec<LogMessage>>;

    /// The messages after `position` up to `through`, which the log is
    /// known to hold (a copy that lags is waited for, not taken for the
    /// end).
    fn fetch_through(&self, position: u64, through: u64) -> Result<Vec<LogMessage>>;

    /// The position of the log's last message.
    fn last_position(&self) -> Result<u64>;

    /// The position of the message whose last entry has seq `last_seq` (0
    /// for 0): where a view holding the log up to `last_seq` resumes.
    /// `Error::FailedPrecondition` when no message ends there (the view is
    /// not a copy of this log).
    fn locate(&self, last_seq: u64) -> Result<u64>;
}
