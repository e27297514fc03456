//! What the writer stores: Append batches and their new events, and each
//! group commit's size and durable sync (`engine::writer::commit`, which
//! the single-node and the cluster writer share).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct WriterMetrics {
    appends: Counter,
    events_appended: Counter,
    group_commit_events: Histogram,
    durable_sync: Histogram,
}

impl WriterMetrics {
    pub(super) fn register(registry: &mut Registry) -> WriterMetrics {
        let metrics = WriterMetrics {
            appends: Counter::default(),
            events_appended: Counter::default(),
            // 1 to 131072 log entries.
            group_commit_events: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            // 50 µs to 3.3 s.
            durable_sync: Histogram::new(exponential_buckets(0.00005, 2.0, 17)),
        };
        registry.register(
            "appends",
            "Append batches (and restore batches) this node's writer stored with at least one new event; a batch of re-sent events alone stores nothing and is not counted, nor, in cluster mode, another node's batch applied to this view",
            metrics.appends.clone(),
        );
        registry.register(
            "events_appended",
            "Events those batches stored: new events only, not re-sent duplicates",
            metrics.events_appended.clone(),
        );
        registry.register(
            "group_commit_events",
            "Log entries written per group commit of the writer (one durable write of every append taken in a round; in cluster mode also each message of the stream applied to the view)",
            metrics.group_commit_events.clone(),
        );
        registry.register_with_unit(
            "durable_sync",
            "Time of the durable sync (flush and fsync of the log and the index) that ends a group commit",
            Unit::Seconds,
            metrics.durable_sync.clone(),
        );
        metrics
    }

    /// An append was stored and acknowledged with `new_events` events that
    /// were not in the log before (none: nothing is counted).
    pub fn stored(&self, new_events: usize) {
        if new_events > 0 {
            self.appends.inc();
            self.events_appended.inc_by(new_events as u64);
        }
    }

    /// A group commit of `entries` log entries, whose sync took `sync`.
    pub fn committed(&self, entries: usize, sync: Duration) {
        self.group_commit_events.observe(entries as f64);
        self.durable_sync.observe(sync.as_secs_f64());
    }
}
