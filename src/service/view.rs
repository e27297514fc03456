//! Cluster mode's read-your-writes: a read whose `as_of_seq` is beyond this
//! node's view waits for the view, within most of the call's deadline.

use super::Service;
use std::time::Duration;
use tonic::Status;

impl Service {
    /// Sets how long a read may wait for its `as_of_seq` (the server's
    /// deadline).
    pub fn with_view_wait(mut self, wait: Duration) -> Service {
        self.view_wait = wait;
        self
    }

    /// How long this call may wait for the view: most of its deadline.
    pub(super) fn wait_budget(&self, metadata: &tonic::metadata::MetadataMap) -> Duration {
        let asked = metadata
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(grpc_timeout);
        let deadline = asked.map_or(self.view_wait, |asked| asked.min(self.view_wait));
        deadline.mul_f64(0.9)
    }

    /// In cluster mode, waits (within `wait`) until this node's view holds
    /// `as_of_seq`, so that a client reads its own write on any node; then
    /// UNAVAILABLE. A single node answers at once (the read refuses a seq
    /// beyond the log).
    pub(super) async fn view_at(
        &self,
        as_of_seq: u64,
        wait: Duration,
    ) -> std::result::Result<(), Status> {
        if !self.db.is_replicated() || as_of_seq <= self.db.last_seq() {
            return Ok(());
        }
        let last = self.db.reach(as_of_seq, wait).await;
        if last < as_of_seq {
            return Err(Status::unavailable(format!(
                "this node's view holds the log up to seq {last}; seq {as_of_seq} did not reach it within {wait:.1?} (another node may be ahead, or the stream unreachable)"
            )));
        }
        Ok(())
    }
}

/// A `grpc-timeout` value (digits and a unit: H, M, S, m, u, n).
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}
