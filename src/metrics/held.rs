//! Gauges read at scrape time from the semaphores that already count what
//! they measure: the in-flight limit of `admission`, the caps on open
//! Subscribe and Watch streams of `service`. The permits handed out are the
//! value, so there is one count, kept where the limit is enforced.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Semaphore;

/// The kind of open stream a gauge counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenStream {
    /// Subscribe.
    Subscribe,
    /// WatchEntity and WatchRelations.
    Watch,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabels {
    kind: &'static str,
}

impl KindLabels {
    pub(super) fn of(kind: OpenStream) -> KindLabels {
        KindLabels {
            kind: match kind {
                OpenStream::Subscribe => "subscribe",
                OpenStream::Watch => "watch",
            },
        }
    }
}

/// A gauge whose value is the permits handed out by the semaphores it
/// watches (several services over one database add up). A semaphore that
/// was dropped (a service gone, or given a new cap) no longer counts.
#[derive(Debug)]
pub(super) struct Held {
    gauge: Gauge,
    semaphores: Mutex<Vec<(Weak<Semaphore>, usize)>>,
}

impl Held {
    pub(super) fn new(gauge: Gauge) -> Held {
        Held {
            gauge,
            semaphores: Mutex::default(),
        }
    }

    pub(super) fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }

    /// Counts the permits `permits` (created with `max`) has handed out.
    pub(super) fn watch(&self, permits: &Arc<Semaphore>, max: usize) {
        let mut semaphores = self.semaphores.lock().expect("held gauge lock");
        semaphores.retain(|(semaphore, _)| semaphore.strong_count() > 0);
        semaphores.push((Arc::downgrade(permits), max));
    }

    /// Sets the gauge to the permits handed out now.
    pub(super) fn refresh(&self) {
        let mut semaphores = self.semaphores.lock().expect("held gauge lock");
        semaphores.retain(|(semaphore, _)| semaphore.strong_count() > 0);
        let held: usize = semaphores
            .iter()
            .filter_map(|(semaphore, max)| {
                let semaphore = semaphore.upgrade()?;
                Some(max.saturating_sub(semaphore.available_permits()))
            })
            .sum();
        self.gauge.set(i64::try_from(held).unwrap_or(i64::MAX));
    }
}
