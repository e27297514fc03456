//! One reader of the log for every watch of a server: each new entry is
//! read and worked out once (`Entry`), and queued to the watches of the
//! entities whose state it changes (every watch, for a correction; the
//! whole-graph watches, for everything).

use super::entry::Entry;
use crate::engine::Database;
use crate::proto;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{watch, Notify};

/// Entries a watch may have waiting; beyond it, it folds.
const QUEUE: usize = 4096;

/// Log entries read at once.
const READ_BATCH: usize = 256;

/// What a watch is told: entries that may change its answer, in seq order.
#[derive(Default)]
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    notify: Notify,
}

#[derive(Default)]
struct FeedState {
    queue: VecDeque<Arc<Entry>>,
    /// Set when the queue overflowed: the latest entry, all before it
    /// dropped (the watch folds them).
    overflowed: Option<(u64, String)>,
}

/// What a watch takes from its feed at once.
pub(crate) enum Taken {
    Entries(Vec<Arc<Entry>>),
    /// More than the queue holds arrived: only the latest.
    Latest(u64, String),
}

impl Feed {
    fn push(&self, entry: &Arc<Entry>) {
        let mut state = self.state.lock().expect("feed lock");
        if state.overflowed.is_some() || state.queue.len() >= QUEUE {
            state.queue.clear();
            state.overflowed = Some((entry.seq, entry.event_id.clone()));
        } else {
            state.queue.push_back(Arc::clone(entry));
        }
        drop(state);
        self.notify.notify_one();
    }

    /// What is waiting, or `None` when nothing is.
    pub(crate) fn take(&self) -> Option<Taken> {
        let mut state = self.state.lock().expect("feed lock");
        if let Some((seq, event_id)) = state.overflowed.take() {
            state.queue.clear();
            return Some(Taken::Latest(seq, event_id));
        }
        if state.queue.is_empty() {
            return None;
        }
        Some(Taken::Entries(state.queue.drain(..).collect()))
    }

    /// Waits until something is pushed (or was, since the last `take`).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[derive(Default)]
struct Registry {
    /// The last seq dispatched: a watch registered now is told of every
    /// entry after it.
    position: u64,
    by_entity: HashMap<String, Vec<Weak<Feed>>>,
    everything: Vec<Weak<Feed>>,
    all: Vec<Weak<Feed>>,
    started: bool,
}

/// The server's dispatcher (cheap to clone).
#[derive(Clone, Default)]
pub(crate) struct Dispatcher {
    registry: Arc<Mutex<Registry>>,
}

impl Dispatcher {
    /// Registers a watch of `entities` (empty: the whole graph). Returns
    /// its feed and the seq after which the feed tells it everything; the
    /// watch reads the log itself up to there.
    pub(crate) fn register(
        &self,
        db: &Database,
        entities: &[String],
        shutdown: &watch::Receiver<bool>,
    ) -> (Arc<Feed>, u64) {
        let feed = Arc::new(Feed::default());
        let mut registry = self.registry.lock().expect("registry lock");
        if !registry.started {
            registry.started = true;
            registry.position = db.last_seq();
            tokio::spawn(dispatch(
                Arc::downgrade(&self.registry),
                db.clone(),
                shutdown.clone(),
            ));
        }
        let weak = Arc::downgrade(&feed);
        if entities.is_empty() {
            registry.everything.push(weak.clone());
        }
        for entity in entities {
            registry
                .by_entity
                .entry(entity.clone())
                .or_default()
                .push(weak.clone());
        }
        registry.all.push(weak);
        (feed, registry.position)
    }
}

/// Follows the log until the server shuts down (or its registry is gone).
async fn dispatch(
    registry: Weak<Mutex<Registry>>,
    db: Database,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut durable = db.watch_last_seq();
    loop {
        let last = *durable.borrow_and_update();
        loop {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let next = registry.lock().expect("registry lock").position + 1;
            if next > last {
                break;
            }
            let entries = match db.read_log(next, READ_BATCH, false) {
                Ok(entries) if !entries.is_empty() => entries,
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "watches cannot read the log");
                    return;
                }
            };
            let mut registry = registry.lock().expect("registry lock");
            for entry in &entries {
                tell(&mut registry, entry);
                registry.position = entry.seq;
            }
            prune(&mut registry);
        }
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

fn tell(registry: &mut Registry, entry: &proto::LogEntry) {
    let Some(entry) = Entry::of(entry).filter(Entry::changes_anything) else {
        return;
    };
    let entry = Arc::new(entry);
    let push = |feeds: &[Weak<Feed>]| {
        for feed in feeds.iter().filter_map(Weak::upgrade) {
            feed.push(&entry);
        }
    };
    // A correction withdraws another event's effects, about whomever.
    if entry.corrects {
        push(&registry.all);
        return;
    }
    push(&registry.everything);
    let mut told: Vec<&str> = Vec::new();
    for name in entry.entities() {
        if told.contains(&name) {
            continue;
        }
        told.push(name);
        if let Some(feeds) = registry.by_entity.get(name) {
            push(feeds);
        }
    }
}

/// Drops the feeds of watches that ended.
fn prune(registry: &mut Registry) {
    let alive = |feeds: &mut Vec<Weak<Feed>>| feeds.retain(|feed| feed.strong_count() > 0);
    alive(&mut registry.everything);
    alive(&mut registry.all);
    registry.by_entity.retain(|_, feeds| {
        alive(feeds);
        !feeds.is_empty()
    });
}
