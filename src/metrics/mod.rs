//! Prometheus metrics: one registry per `Database`, and its OpenMetrics
//! text (`render`).
//!
//! `Metrics` is a cheap-to-clone handle around an `Arc`, made with the
//! database (`Database::open`, `Database::open_replicated`) and reached as
//! `db.metrics()`: no global registry, so several servers in one process
//! each count their own calls. The parts that record are handed clones of
//! the metric they move (a counter is an `Arc` around an atomic), so that
//! recording is an atomic add, never a lock:
//!
//! - `rpc`: every TimelineService call, by the `Metered` tower wrapper;
//! - `writer`: what the writer stores, in `engine::writer`;
//! - `cache`: the lookups of the timeline cache and the event runs;
//! - `held`: gauges read at scrape time from the semaphores that already
//!   count calls in flight and open streams (one count, not two).
//!
//! The log's length and, in cluster mode, the view's lag behind the stream
//! are read from the database when `render` runs.

mod body;
mod cache;
mod held;
mod rpc;
#[cfg(test)]
mod tests;
mod writer;

pub use cache::CacheLookups;
pub use held::OpenStream;
pub use rpc::Metered;
pub use writer::WriterMetrics;

use crate::engine::Database;
use cache::CacheLabels;
use held::{Held, KindLabels};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rpc::RpcMetrics;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The metrics of one database and the server over it.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    rpc: RpcMetrics,
    shed: Counter,
    in_flight: Held,
    subscriptions: Held,
    watches: Held,
    writer: WriterMetrics,
    timeline_cache: CacheLookups,
    event_cache: CacheLookups,
    log_last_seq: Gauge<u64, AtomicU64>,
    /// Cluster mode: the view's lag, and the stream's last position as the
    /// follower last learnt it.
    view: Option<View>,
}

#[derive(Debug)]
struct View {
    lag: Gauge<u64, AtomicU64>,
    stream_last_position: AtomicU64,
}

impl Metrics {
    /// The metrics of a single-node database.
    pub fn new() -> Metrics {
        Metrics::build(false)
    }

    /// The metrics of a database whose log is replicated: also the view's
    /// lag behind the stream.
    pub fn for_cluster() -> Metrics {
        Metrics::build(true)
    }

    fn build(cluster: bool) -> Metrics {
        let mut registry = Registry::with_prefix("annals");
        let rpc = RpcMetrics::register(&mut registry);

        let shed = Counter::default();
        registry.register(
            "rpc_shed",
            "TimelineService calls refused with RESOURCE_EXHAUSTED because the server had its limit of calls in flight (load shedding)",
            shed.clone(),
        );
        let in_flight = Held::new(Gauge::default());
        registry.register(
            "rpc_in_flight",
            "TimelineService calls being worked on (the ones the in-flight limit counts; a stream counts until it starts)",
            in_flight.gauge(),
        );
        let open = Family::<KindLabels, Gauge>::default();
        registry.register(
            "subscriptions_open",
            "Open streams: Subscribe (kind=\"subscribe\"), WatchEntity and WatchRelations (kind=\"watch\")",
            open.clone(),
        );
        let held = |kind| Held::new(open.get_or_create_owned(&KindLabels::of(kind)));
        let subscriptions = held(OpenStream::Subscribe);
        let watches = held(OpenStream::Watch);

        let writer = WriterMetrics::register(&mut registry);

        let lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Lookups of the in-memory caches: the timeline cache (cache=\"timeline\") and the event runs (cache=\"events\"), by result (hit, miss)",
            lookups.clone(),
        );
        let timeline_cache = CacheLookups::of(&lookups, "timeline");
        let event_cache = CacheLookups::of(&lookups, "events");

        let log_last_seq = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "log_last_seq",
            "The log's last durable seq (its length), as readers see it",
            log_last_seq.clone(),
        );

        let view = cluster.then(|| {
            let lag = Gauge::<u64, AtomicU64>::default();
            registry.register(
                "view_lag_messages",
                "Messages of the replicated log's stream this node's view has not applied yet: the stream's last position (as the follower last learnt it) minus the view's",
                lag.clone(),
            );
            View {
                lag,
                stream_last_position: AtomicU64::new(0),
            }
        });

        Metrics {
            inner: Arc::new(Inner {
                registry,
                rpc,
                shed,
                in_flight,
                subscriptions,
                watches,
                writer,
                timeline_cache,
                event_cache,
                log_last_seq,
                view,
            }),
        }
    }

    pub(crate) fn rpc(&self) -> &RpcMetrics {
        &self.inner.rpc
    }

    /// What the writer records.
    pub fn writer(&self) -> &WriterMetrics {
        &self.inner.writer
    }

    /// The timeline cache's hit and miss counters.
    pub fn timeline_cache(&self) -> CacheLookups {
        self.inner.timeline_cache.clone()
    }

    /// The event runs' hit and miss counters.
    pub fn event_cache(&self) -> CacheLookups {
        self.inner.event_cache.clone()
    }

    /// A call refused by load shedding.
    pub fn shed(&self) {
        self.inner.shed.inc();
    }

    /// `permits` (of `max`) is the in-flight limit: the permits handed out
    /// are the calls in flight.
    pub fn count_in_flight(&self, permits: &Arc<Semaphore>, max: usize) {
        self.inner.in_flight.watch(permits, max);
    }

    /// `permits` (of `max`) caps the open streams of `kind`: the permits
    /// handed out are the streams open. A semaphore replaced (and dropped)
    /// stops counting.
    pub fn count_open(&self, kind: OpenStream, permits: &Arc<Semaphore>, max: usize) {
        match kind {
            OpenStream::Subscribe => self.inner.subscriptions.watch(permits, max),
            OpenStream::Watch => self.inner.watches.watch(permits, max),
        }
    }

    /// Cluster mode: the stream's last position, as the follower learnt it
    /// (a message's position plus the messages pending after it).
    pub fn stream_position(&self, last_position: u64) {
        if let Some(view) = &self.inner.view {
            view.stream_last_position
                .fetch_max(last_position, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// The metrics of `db` and the server over it as OpenMetrics text (served
/// as `application/openmetrics-text; version=1.0.0; charset=utf-8`), after
/// reading the gauges that are read at scrape time.
pub fn render(db: &Database) -> String {
    let inner = &db.metrics().inner;
    inner.log_last_seq.set(db.last_seq());
    if let Some(view) = &inner.view {
        let stream = view
            .stream_last_position
            .load(std::sync::atomic::Ordering::Relaxed);
        view.lag.set(stream.saturating_sub(db.log_position()));
    }
    inner.in_flight.refresh();
    inner.subscriptions.refresh();
    inner.watches.refresh();
    let mut text = String::new();
    encode(&mut text, &inner.registry).expect("writing to a String does not fail");
    text
}
