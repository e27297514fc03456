//! Hit and miss counters of an in-memory cache: the timeline cache
//! (`index::TimelineCache`) and the event runs (`index::EventRuns`).
//!
//! Both counters are made once, with their labels, when the metrics are:
//! a lookup only adds one to an atomic (no label lookup, lock or
//! allocation on the hot path).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

/// The lookups of one cache. `Default` counts into counters no registry
/// holds (a cache made outside a `Database`, in tests).
#[derive(Clone, Debug, Default)]
pub struct CacheLookups {
    hits: Counter,
    misses: Counter,
}

impl CacheLookups {
    pub(super) fn of(family: &Family<CacheLabels, Counter>, cache: &'static str) -> CacheLookups {
        let counter = |result| family.get_or_create_owned(&CacheLabels { cache, result });
        CacheLookups {
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }

    /// A lookup found what it looked for (`hit`) or not.
    pub fn record(&self, hit: bool) {
        if hit {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }
}
