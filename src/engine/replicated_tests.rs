//! The replicated writer against a log in memory: two views of one log,
//! each appending while the other's messages have not reached it.

use super::super::sequencer::{LogMessage, Refused, Sequencer};
use super::super::{Database, Limits};
use crate::error::{Error, Result};
use crate::proto;
use crate::store::{MemoryStore, StoredEntry};
use std::sync::{Arc, Mutex};

/// A replicated log in memory: message k at index k − 1.
#[derive(Default)]
struct MemoryLog {
    messages: Mutex<Vec<Vec<StoredEntry>>>,
}

impl Sequencer for MemoryLog {
    fn publish_all(&self, position: u64, messages: &[&[StoredEntry]]) -> (usize, Option<Refused>) {
        let mut log = self.messages.lock().unwrap();
        for (index, entries) in messages.iter().enumerate() {
            if log.len() as u64 != position + index as u64 {
                return (index, Some(Refused::Moved));
            }
            log.push(entries.to_vec());
        }
        (messages.len(), None)
    }

    fn fetch(&self, position: u64, limit: usize) -> Result<Vec<LogMessage>> {
        let log = self.messages.lock().unwrap();
        Ok(log
            .iter()
            .enumerate()
            .skip(position as usize)
            .take(limit)
            .map(|(index, entries)| LogMessage {
                position: index as u64 + 1,
                entries: entries.clone(),
            })
            .collect())
    }

    fn fetch_through(&self, position: u64, through: u64) -> Result<Vec<LogMessage>> {
        self.fetch(position, through.saturating_sub(position) as usize)
    }

    fn last_position(&self) -> Result<u64> {
        Ok(self.messages.lock().unwrap().len() as u64)
    }

    fn locate(&self, last_seq: u64) -> Result<u64> {
        if last_seq == 0 {
            return Ok(0);
        }
        let log = self.messages.lock().unwrap();
        log.iter()
            .position(|entries| entries.last().is_some_and(|entry| entry.seq == last_seq))
            .map(|index| index as u64 + 1)
            .ok_or_else(|| Error::FailedPrecondition(format!("no message ends at {last_seq}")))
    }
}

fn view(log: &Arc<MemoryLog>) -> Database {
    let sequencer: Arc<dyn Sequencer> = log.clone();
    Database::open_replicated(Arc::new(MemoryStore::new()), Limits::default(), sequencer).unwrap()
}

fn declare(id: &str, entity: &str) -> proto::Event {
    let mut event = note(id, entity);
    event.kind = "declaration".into();
    event.effects = vec![proto::Effect {
        change: Some(proto::effect::Change::Declare(proto::Declare {
            id: entity.into(),
            name: entity.to_uppercase(),
            r#type: proto::EntityType::Country as i32,
            aliases: Vec::new(),
        })),
        ..Default::default()
    }];
    event
}

fn note(id: &str, entity: &str) -> proto::Event {
    proto::Event {
        id: id.into(),
        kind: "note".into(),
        occurred: Some(proto::TimeSpan {
            start: "1950".into(),
            end: String::new(),
        }),
        effects: vec![proto::Effect {
            change: Some(proto::effect::Change::Set(proto::SetAttribute {
                entity: entity.into(),
                key: "motto".into(),
                value: id.into(),
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn a_view_behind_the_log_catches_up_before_it_refuses_or_appends() {
    let log = Arc::new(MemoryLog::default());
    let (a, b) = (view(&log), view(&log));
    block_on(async {
        a.append(vec![declare("d", "x")], None).await.unwrap();
        // b has not seen the declaration: it catches up instead of refusing.
        let on_b = b.append(vec![note("n1", "x")], None).await.unwrap();
        assert_eq!(on_b.entries[0].seq, 2);
        // a is behind b now: its append goes after b's.
        let on_a = a.append(vec![note("n2", "x")], None).await.unwrap();
        assert_eq!(on_a.entries[0].seq, 3);
        // An event naming nothing declared is refused, once a knows the log.
        let refused = a
            .append(vec![note("n3", "nowhere")], None)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, Error::InvalidArgument { .. }),
            "{refused:?}"
        );
    });
    assert_eq!(log.last_position().unwrap(), 3, "one message per append");
    // Every message reaches b (as the follower delivers them).
    block_on(async {
        for message in log.fetch(0, 10).unwrap() {
            b.deliver(message).await.unwrap();
        }
        assert_eq!(b.reach(3, std::time::Duration::from_secs(5)).await, 3);
    });
    assert_eq!(
        a.read_log(1, 10, false).unwrap(),
        b.read_log(1, 10, false).unwrap()
    );
    a.close();
    b.close();
}

#[test]
fn two_views_keep_ids_and_expected_seqs_as_one_node_does() {
    let log = Arc::new(MemoryLog::default());
    let (a, b) = (view(&log), view(&log));
    block_on(async {
        a.append(vec![declare("d", "x")], Some(0)).await.unwrap();
        // The same expected_last_seq on the other view: refused, naming the seq.
        let stale = b
            .append(vec![declare("e", "y")], Some(0))
            .await
            .unwrap_err();
        assert!(
            matches!(&stale, Error::FailedPrecondition(why) if why.contains('1')),
            "{stale:?}"
        );
        // The same event on both: stored once, the original entry.
        let first = a.append(vec![note("same", "x")], None).await.unwrap();
        let again = b.append(vec![note("same", "x")], None).await.unwrap();
        assert_eq!(first.entries, again.entries);
        assert_eq!(again.already_present, vec![true]);
        // The same id with other content: ALREADY_EXISTS.
        let mut other = note("same", "x");
        other.kind = "other".into();
        let refused = b.append(vec![other], None).await.unwrap_err();
        assert!(matches!(refused, Error::AlreadyExists(_)), "{refused:?}");
    });
    assert_eq!(log.last_position().unwrap(), 2);
    a.close();
    b.close();
}

#[test]
fn a_message_that_does_not_continue_the_view_stops_its_appends() {
    let log = Arc::new(MemoryLog::default());
    let a = view(&log);
    block_on(async {
        let entry = StoredEntry {
            seq: 5,
            recorded_at: 1,
            event: declare("d", "x"),
        };
        a.deliver(LogMessage {
            position: 1,
            entries: vec![entry.clone()],
        })
        .await
        .unwrap();
        let refused = a.append(vec![note("n", "x")], None).await.unwrap_err();
        assert!(matches!(refused, Error::Unavailable(_)), "{refused:?}");
    });
    assert!(a.has_failed());
    assert_eq!(a.last_seq(), 0, "nothing of it applied");
    a.close();
}

#[test]
fn each_view_counts_the_appends_it_stored_and_its_lag_behind_the_stream() {
    let log = Arc::new(MemoryLog::default());
    let (a, b) = (view(&log), view(&log));
    block_on(async {
        a.append(vec![declare("d", "x"), note("n1", "x")], None)
            .await
            .unwrap();
        // b applies a's message first (a group commit of its own), then
        // stores its append: one batch, one event of its own.
        b.append(vec![note("n2", "x")], None).await.unwrap();
        // Re-sent to a: nothing new is stored.
        a.append(vec![note("n1", "x")], None).await.unwrap();
    });
    let (on_a, on_b) = (crate::metrics::render(&a), crate::metrics::render(&b));
    assert!(on_a.contains("annals_appends_total 1\n"), "{on_a}");
    assert!(on_a.contains("annals_events_appended_total 2\n"), "{on_a}");
    assert!(on_b.contains("annals_appends_total 1\n"), "{on_b}");
    assert!(on_b.contains("annals_events_appended_total 1\n"), "{on_b}");
    assert!(
        on_b.contains("annals_group_commit_events_count 2\n"),
        "a's message applied, then b's append: {on_b}"
    );
    assert!(
        on_b.contains("annals_group_commit_events_sum 3.0\n"),
        "{on_b}"
    );

    // The follower learnt of a message b's view does not hold yet.
    b.metrics().stream_position(b.log_position() + 1);
    let on_b = crate::metrics::render(&b);
    assert!(on_b.contains("annals_view_lag_messages 1\n"), "{on_b}");
    assert!(on_b.contains("annals_log_last_seq 3\n"), "{on_b}");
    a.close();
    b.close();
}
