//! Every RPC of annals.v1.TimelineService, end to end over gRPC on
//! 127.0.0.1: appends and their guarantees, the log, subscriptions, the
//! point-in-time queries, and the ecosystem services (health, reflection,
//! gzip).

mod common;

use annals::client::{Client, EventQuery, TimelineServiceClient};
use annals::proto;
use common::{
    at, begin, declarations, declare, end, event, get_by_seq, last_seq, set, two_countries,
    TestServer,
};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;
use tokio::time::timeout;
use tonic::codec::{CompressionEncoding, Streaming};
use tonic::Code;

/// Upper bound for anything that could block: stream reads, joins.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

fn id_of(entry: &proto::LogEntry) -> &str {
    entry.event.as_ref().map_or("", |event| event.id.as_str())
}

fn seqs(entries: &[proto::LogEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

fn ids(entries: &[proto::LogEntry]) -> Vec<&str> {
    entries.iter().map(id_of).collect()
}

fn recorded(entry: &proto::LogEntry) -> (i64, i32) {
    let time = entry.recorded_at.as_ref().expect("recorded_at is set");
    (time.seconds, time.nanos)
}

/// An event spanning `start` to `end`.
fn span_event(
    id: &str,
    kind: &str,
    start: &str,
    end: &str,
    effects: Vec<proto::Effect>,
) -> proto::Event {
    let mut event = event(id, kind, start, effects);
    event.occurred.as_mut().unwrap().end = end.to_string();
    event
}

/// An event with participants (role `subject`).
fn with_participants(mut event: proto::Event, entities: &[&str]) -> proto::Event {
    event.participants = entities
        .iter()
        .map(|entity| proto::Participant {
            entity: entity.to_string(),
            role: "subject".to_string(),
        })
        .collect();
    event
}

fn correction(mut event: proto::Event, corrects: &str) -> proto::Event {
    event.corrects = corrects.to_string();
    event
}

fn directed_begin(a: &str, b: &str, kind: &str) -> proto::Effect {
    common::effect(proto::effect::Change::Begin(proto::BeginRelation {
        a: a.to_string(),
        b: b.to_string(),
        kind: kind.to_string(),
        directed: true,
    }))
}

/// The whole log, following `next_seq`.
async fn read_all(client: &mut Client) -> Vec<proto::LogEntry> {
    let mut entries = Vec::new();
    let mut from = 1;
    for _ in 0..1000 {
        let page = client
            .read_log(from, 1000, false)
            .await
            .expect("ReadLog answers");
        entries.extend(page.entries);
        if page.next_seq == 0 {
            return entries;
        }
        assert!(page.next_seq > from, "next_seq moves forward");
        from = page.next_seq;
    }
    panic!("ReadLog never reached the end");
}

async fn get_by_id(client: &mut Client, id: &str) -> Result<proto::LogEntry, tonic::Status> {
    client.event(id).await
}

/// The next entry of a subscription, within `WAIT`.
async fn next_entry(stream: &mut Streaming<proto::SubscribeResponse>) -> proto::LogEntry {
    timeout(WAIT, stream.message())
        .await
        .expect("an entry arrives in time")
        .expect("the subscription does not fail")
        .expect("the subscription stays open")
        .entry
        .expect("a SubscribeResponse carries an entry")
}

/// Asserts that nothing more arrives on a subscription for a short while.
async fn assert_quiet(stream: &mut Streaming<proto::SubscribeResponse>) {
    if let Ok(next) = timeout(Duration::from_millis(300), stream.message()).await {
        panic!("expected nothing more on the subscription, got {next:?}");
    }
}

fn relation_keys(relations: &[proto::Relation]) -> Vec<(String, String, String)> {
    let mut keys: Vec<_> = relations
        .iter()
        .map(|relation| {
            (
                relation.a.clone(),
                relation.b.clone(),
                relation.kind.clone(),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn find_relation<'a>(
    relations: &'a [proto::Relation],
    a: &str,
    b: &str,
    kind: &str,
) -> Option<&'a proto::Relation> {
    relations
        .iter()
        .find(|relation| relation.a == a && relation.b == b && relation.kind == kind)
}

fn attribute<'a>(
    response: &'a proto::GetEntityResponse,
    key: &str,
) -> Option<&'a proto::Attribute> {
    response
        .attributes
        .iter()
        .find(|attribute| attribute.key == key)
}

// ----------------------------------------------------------------- Append

#[tokio::test]
async fn append_assigns_contiguous_seqs_recorded_times_and_uuid7_ids() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;

    let first = client
        .append(vec![two_countries("decl")], None)
        .await
        .expect("the declaration is appended");
    assert_eq!(seqs(&first.entries), vec![1]);
    assert_eq!(first.last_seq, 1);
    assert_eq!(id_of(&first.entries[0]), "decl");

    let batch = vec![
        event("", "statement", "2001", vec![]),
        event("", "statement", "2002-03", vec![]),
        event(
            "named-3",
            "meeting",
            "2003-04-05",
            vec![begin("aland", "borduria", "alliance")],
        ),
    ];
    let second = client.append(batch.clone(), None).await.expect("appended");
    assert_eq!(seqs(&second.entries), vec![2, 3, 4]);
    assert_eq!(second.last_seq, 4);

    for (sent, entry) in batch.iter().zip(&second.entries) {
        let stored = entry.event.as_ref().expect("an entry carries its event");
        assert_eq!(stored.kind, sent.kind);
        assert_eq!(stored.occurred, sent.occurred);
        assert_eq!(stored.summary, sent.summary);
        assert_eq!(stored.effects, sent.effects);
    }
    let assigned: Vec<&str> = ids(&second.entries[..2]);
    for id in &assigned {
        assert_eq!(id.len(), 36, "a UUID in text form: {id}");
        assert_eq!(id.as_bytes()[14], b'7', "version nibble 7: {id}");
        assert_eq!(
            [
                id.as_bytes()[8],
                id.as_bytes()[13],
                id.as_bytes()[18],
                id.as_bytes()[23]
            ],
            [b'-'; 4],
            "hyphenated: {id}"
        );
        let uuid = uuid::Uuid::parse_str(id).expect("parses as a UUID");
        assert_eq!(uuid.get_version_num(), 7);
    }
    assert_ne!(assigned[0], assigned[1], "each event gets its own id");
    assert_eq!(id_of(&second.entries[2]), "named-3", "a client id is kept");

    let third = client
        .append(vec![event("", "statement", "1949", vec![])], None)
        .await
        .expect("appended");
    assert_eq!(seqs(&third.entries), vec![5]);
    assert_eq!(third.last_seq, 5);

    let all: Vec<proto::LogEntry> = first
        .entries
        .iter()
        .chain(&second.entries)
        .chain(&third.entries)
        .cloned()
        .collect();
    for pair in all.windows(2) {
        assert!(
            recorded(&pair[0]) <= recorded(&pair[1]),
            "recorded_at never decreases: {:?} then {:?}",
            pair[0].recorded_at,
            pair[1].recorded_at
        );
    }

    // The assigned id is the event's id from then on.
    let fetched = get_by_id(&mut client, assigned[0])
        .await
        .expect("found by its assigned id");
    assert_eq!(fetched.seq, 2);
    assert_eq!(fetched.recorded_at, second.entries[0].recorded_at);

    // The log holds exactly what was acknowledged.
    let log = read_all(&mut client).await;
    assert_eq!(seqs(&log), vec![1, 2, 3, 4, 5]);
    assert_eq!(log, all);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_with_an_invalid_event_stores_nothing() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    let before = last_seq(&mut client).await;
    assert_eq!(before, 1);

    let good_1 = event(
        "atomic-1",
        "treaty_signed",
        "1961",
        vec![begin("aland", "borduria", "alliance")],
    );
    let good_2 = event(
        "atomic-2",
        "statement",
        "1962",
        vec![set("aland", "leader", "anna")],
    );
    let bad = event("atomic-3", "meeting", "1950-13", vec![]);
    let error = client
        .append(vec![good_1.clone(), good_2.clone(), bad], None)
        .await
        .expect_err("a batch with an unparseable time is refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(last_seq(&mut client).await, before, "nothing was stored");
    let missing = get_by_id(&mut client, "atomic-1")
        .await
        .expect_err("not stored");
    assert_eq!(missing.code(), Code::NotFound);
    let missing = get_by_id(&mut client, "atomic-2")
        .await
        .expect_err("not stored");
    assert_eq!(missing.code(), Code::NotFound);

    // A third event that fails only against the log (an undeclared entity)
    // also takes the first two down with it.
    let undeclared = event(
        "atomic-3",
        "meeting",
        "1963",
        vec![begin("aland", "cadia", "rivalry")],
    );
    let error = client
        .append(vec![good_1.clone(), good_2.clone(), undeclared], None)
        .await
        .expect_err("a batch naming an undeclared entity is refused");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_eq!(last_seq(&mut client).await, before);
    assert_eq!(
        get_by_id(&mut client, "atomic-1").await.unwrap_err().code(),
        Code::NotFound
    );
    let state = client.entity("aland", "", 0).await.unwrap();
    assert!(
        state.relations.is_empty(),
        "no effect of the refused batch shows"
    );
    assert!(
        state.attributes.is_empty(),
        "no effect of the refused batch shows"
    );

    // The good events alone go in.
    let stored = client.append(vec![good_1, good_2], None).await.unwrap();
    assert_eq!(seqs(&stored.entries), vec![2, 3]);
    server.stop().await;
}

#[tokio::test]
async fn resending_an_event_returns_its_original_entry() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    let declaration = client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    let original = declaration.entries[0].clone();

    // A pause so that a second copy would get a later recorded_at.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    assert_eq!(
        again.entries,
        vec![original.clone()],
        "same seq, same recorded_at"
    );
    assert_eq!(again.last_seq, 1);
    assert_eq!(last_seq(&mut client).await, 1, "the log did not grow");

    // Known + new: only the new one is stored.
    let new = event(
        "new-1",
        "statement",
        "2000",
        vec![set("aland", "leader", "anna")],
    );
    let mixed = client
        .append(vec![two_countries("decl"), new.clone()], None)
        .await
        .unwrap();
    assert_eq!(mixed.entries.len(), 2);
    assert_eq!(mixed.entries[0], original);
    assert_eq!(mixed.entries[1].seq, 2);
    assert_eq!(id_of(&mixed.entries[1]), "new-1");
    assert_eq!(mixed.last_seq, 2);

    // And both again: nothing new.
    let both = client
        .append(vec![new, two_countries("decl")], None)
        .await
        .unwrap();
    assert_eq!(seqs(&both.entries), vec![2, 1], "entries in request order");
    assert_eq!(both.entries[1], original);
    assert_eq!(both.entries[0], mixed.entries[1]);

    let log = read_all(&mut client).await;
    assert_eq!(ids(&log), vec!["decl", "new-1"], "one copy of each");
    server.stop().await;
}

#[tokio::test]
async fn expected_last_seq_accepts_the_current_value() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    let first = client
        .append(vec![two_countries("decl")], Some(0))
        .await
        .unwrap();
    assert_eq!(first.last_seq, 1);
    let second = client
        .append(vec![event("e-2", "statement", "2000", vec![])], Some(1))
        .await
        .unwrap();
    assert_eq!(seqs(&second.entries), vec![2]);
    assert_eq!(second.last_seq, 2);
    let stale = client
        .append(vec![event("e-3", "statement", "2000", vec![])], Some(1))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(last_seq(&mut client).await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimistic_concurrent_appenders_all_succeed_without_gaps_or_duplicates() {
    const WRITERS: usize = 8;
    const EACH: usize = 5;
    const ATTEMPTS: usize = 2000;
    let server = TestServer::empty().await;

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<(String, u64)> = Vec::new();
            for i in 0..EACH {
                let id = format!("w{writer}-{i}");
                let mut stored = None;
                for _ in 0..ATTEMPTS {
                    let last = client
                        .read_log(0, 1, false)
                        .await
                        .expect("ReadLog")
                        .last_seq;
                    let events = vec![event(&id, "statement", "2000", vec![])];
                    match client.append(events, Some(last)).await {
                        Ok(response) => {
                            assert_eq!(response.entries.len(), 1);
                            assert_eq!(
                                response.entries[0].seq,
                                last + 1,
                                "an append with expected_last_seq lands right after it"
                            );
                            stored = Some(response.entries[0].seq);
                            break;
                        }
                        Err(status) if status.code() == Code::FailedPrecondition => {
                            tokio::task::yield_now().await;
                        }
                        Err(status) => panic!("unexpected failure for {id}: {status:?}"),
                    }
                }
                let seq =
                    stored.unwrap_or_else(|| panic!("{id} not stored in {ATTEMPTS} attempts"));
                acked.push((id, seq));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(
            timeout(Duration::from_secs(120), task)
                .await
                .expect("writers finish in time")
                .expect("a writer panicked"),
        );
    }

    let total = (WRITERS * EACH) as u64;
    let mut client = server.client().await;
    let log = read_all(&mut client).await;
    assert_eq!(
        seqs(&log),
        (1..=total).collect::<Vec<_>>(),
        "contiguous from 1"
    );
    let unique: HashSet<&str> = ids(&log).into_iter().collect();
    assert_eq!(unique.len(), log.len(), "no id stored twice");
    assert_eq!(acked.len(), total as usize);
    let mut acked_seqs: Vec<u64> = acked.iter().map(|(_, seq)| *seq).collect();
    acked_seqs.sort();
    assert_eq!(
        acked_seqs,
        (1..=total).collect::<Vec<_>>(),
        "each seq acknowledged once"
    );
    for (id, seq) in &acked {
        let copies = log.iter().filter(|entry| id_of(entry) == id).count();
        assert_eq!(copies, 1, "{id} is in the log exactly once");
        assert_eq!(
            id_of(&log[(*seq - 1) as usize]),
            id,
            "{id} at its acknowledged seq"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_concurrent_appends_get_contiguous_unique_seqs() {
    const WRITERS: usize = 16;
    const EACH: usize = 10;
    let server = TestServer::empty().await;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..EACH {
                let id = format!("p{writer}-{i}");
                let response = client
                    .append(vec![event(&id, "statement", "1999", vec![])], None)
                    .await
                    .unwrap_or_else(|status| panic!("{id}: {status:?}"));
                assert_eq!(response.entries.len(), 1);
                assert!(response.last_seq >= response.entries[0].seq);
                acked.push((id, response.entries[0].seq));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(
            timeout(Duration::from_secs(120), task)
                .await
                .expect("writers finish in time")
                .expect("a writer panicked"),
        );
    }
    let total = (WRITERS * EACH) as u64;
    let mut acked_seqs: Vec<u64> = acked.iter().map(|(_, seq)| *seq).collect();
    acked_seqs.sort();
    assert_eq!(acked_seqs, (1..=total).collect::<Vec<_>>());

    let mut client = server.client().await;
    let log = read_all(&mut client).await;
    assert_eq!(seqs(&log), (1..=total).collect::<Vec<_>>());
    let unique: HashSet<&str> = ids(&log).into_iter().collect();
    assert_eq!(unique.len(), total as usize);
    for (id, seq) in &acked {
        assert_eq!(id_of(&log[(*seq - 1) as usize]), id);
    }
    for pair in log.windows(2) {
        assert!(
            recorded(&pair[0]) <= recorded(&pair[1]),
            "recorded_at never decreases"
        );
    }
    server.stop().await;
}

// --------------------------------------------------------------- GetEvent

#[tokio::test]
async fn get_event_by_id_and_seq_and_superseded_by() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    let x = event(
        "x",
        "treaty_signed",
        "1961",
        vec![begin("aland", "borduria", "alliance")],
    );
    let appended = client.append(vec![x.clone()], None).await.unwrap();

    let by_id = get_by_id(&mut client, "x").await.unwrap();
    assert_eq!(by_id.seq, 2);
    assert_eq!(by_id.event.as_ref(), Some(&x));
    assert_eq!(by_id.superseded_by, "");
    assert_eq!(by_id.recorded_at, appended.entries[0].recorded_at);
    let by_seq = get_by_seq(&mut client, 2).await.unwrap();
    assert_eq!(by_seq, by_id);
    assert_eq!(id_of(&get_by_seq(&mut client, 1).await.unwrap()), "decl");

    let c = correction(
        event(
            "c",
            "treaty_signed",
            "1962",
            vec![begin("aland", "borduria", "alliance")],
        ),
        "x",
    );
    client.append(vec![c], None).await.unwrap();
    let x_now = get_by_id(&mut client, "x").await.unwrap();
    assert_eq!(x_now.superseded_by, "c");
    assert_eq!(
        x_now.event.as_ref(),
        Some(&x),
        "the log entry itself is unchanged"
    );
    assert_eq!(get_by_seq(&mut client, 2).await.unwrap().superseded_by, "c");
    let c_now = get_by_seq(&mut client, 3).await.unwrap();
    assert_eq!(id_of(&c_now), "c");
    assert_eq!(c_now.event.as_ref().unwrap().corrects, "x");
    assert_eq!(c_now.superseded_by, "");
    server.stop().await;
}

// ---------------------------------------------------------------- ReadLog

#[tokio::test]
async fn read_log_paginates_forward_and_in_reverse() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    for i in 2..=7 {
        client
            .append(
                vec![event(&format!("e-{i}"), "statement", "2000", vec![])],
                None,
            )
            .await
            .unwrap();
    }

    let page = client.read_log(0, 3, false).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.next_seq, page.last_seq),
        (vec![1, 2, 3], 4, 7)
    );
    let page = client.read_log(4, 3, false).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.next_seq, page.last_seq),
        (vec![4, 5, 6], 7, 7)
    );
    let page = client.read_log(7, 3, false).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.next_seq, page.last_seq),
        (vec![7], 0, 7)
    );
    assert_eq!(ids(&page.entries), vec!["e-7"]);
    let page = client.read_log(5, 3, false).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.next_seq),
        (vec![5, 6, 7], 0),
        "ends exactly"
    );
    let page = client.read_log(8, 3, false).await.unwrap();
    assert!(page.entries.is_empty());
    assert_eq!((page.next_seq, page.last_seq), (0, 7));
    let page = client.read_log(0, 0, false).await.unwrap();
    assert_eq!(
        seqs(&page.entries),
        (1..=7).collect::<Vec<_>>(),
        "limit 0 means 100"
    );

    let page = client.read_log(0, 3, true).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.next_seq, page.last_seq),
        (vec![7, 6, 5], 4, 7)
    );
    let page = client.read_log(4, 3, true).await.unwrap();
    assert_eq!((seqs(&page.entries), page.next_seq), (vec![4, 3, 2], 1));
    let page = client.read_log(1, 3, true).await.unwrap();
    assert_eq!((seqs(&page.entries), page.next_seq), (vec![1], 0));
    let page = client.read_log(3, 3, true).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.next_seq),
        (vec![3, 2, 1], 0),
        "ends exactly"
    );

    // Walking the seeded log both ways yields every entry once.
    let seeded = TestServer::seeded().await;
    let mut client = seeded.client().await;
    let last = last_seq(&mut client).await;
    assert!(last >= 40, "the data set is loaded ({last})");
    let mut forward = Vec::new();
    let mut from = 0;
    for _ in 0..100 {
        let page = client.read_log(from, 10, false).await.unwrap();
        assert!(page.entries.len() <= 10);
        forward.extend(seqs(&page.entries));
        if page.next_seq == 0 {
            break;
        }
        from = page.next_seq;
    }
    assert_eq!(forward, (1..=last).collect::<Vec<_>>());
    let mut backward = Vec::new();
    let mut from = 0;
    for _ in 0..100 {
        let page = client.read_log(from, 7, true).await.unwrap();
        backward.extend(seqs(&page.entries));
        if page.next_seq == 0 {
            break;
        }
        from = page.next_seq;
    }
    assert_eq!(backward, (1..=last).rev().collect::<Vec<_>>());
    seeded.stop().await;
    server.stop().await;
}

// -------------------------------------------------------------- Subscribe

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_catches_up_then_follows_live_without_gaps() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    for i in 1..=5 {
        client
            .append(
                vec![event(&format!("s-{i}"), "statement", "2000", vec![])],
                None,
            )
            .await
            .unwrap();
    }
    let mut stream = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .expect("subscribes in time")
        .expect("subscribes");
    for expected in 1..=5 {
        let entry = next_entry(&mut stream).await;
        assert_eq!(entry.seq, expected);
        assert_eq!(id_of(&entry), format!("s-{expected}"));
    }

    let mut writer = server.client().await;
    let appending = tokio::spawn(async move {
        for i in 6..=10 {
            writer
                .append(
                    vec![event(&format!("s-{i}"), "statement", "2000", vec![])],
                    None,
                )
                .await
                .expect("live append");
        }
    });
    for expected in 6..=10 {
        let entry = next_entry(&mut stream).await;
        assert_eq!(entry.seq, expected, "live entries in order, none skipped");
        assert_eq!(id_of(&entry), format!("s-{expected}"));
        assert!(entry.recorded_at.is_some());
    }
    timeout(WAIT, appending)
        .await
        .expect("appends finish")
        .unwrap();
    assert_quiet(&mut stream).await;

    // Resume from a seq.
    let mut resumed = timeout(WAIT, client.subscribe(8, "", ""))
        .await
        .unwrap()
        .unwrap();
    for expected in 8..=10 {
        assert_eq!(next_entry(&mut resumed).await.seq, expected);
    }
    assert_quiet(&mut resumed).await;

    // from_seq 0 means 1.
    let mut from_zero = timeout(WAIT, client.subscribe(0, "", ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next_entry(&mut from_zero).await.seq, 1);
    drop(from_zero);

    // Both keep following.
    client
        .append(vec![event("s-11", "statement", "2000", vec![])], None)
        .await
        .unwrap();
    assert_eq!(next_entry(&mut stream).await.seq, 11);
    assert_eq!(next_entry(&mut resumed).await.seq, 11);
    drop(stream);
    drop(resumed);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_filters_by_entity_and_kind() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    let setup = vec![
        two_countries("decl"), // 1: aland, borduria
        event(
            "decl-cadia",
            "declaration",
            "1900",
            vec![declare("cadia", "Cadia", proto::EntityType::Country, &[])],
        ), // 2: cadia
        with_participants(event("m-1", "meeting", "2001", vec![]), &["aland", "cadia"]), // 3
        with_participants(
            event("m-2", "meeting", "2002", vec![]),
            &["borduria", "cadia"],
        ), // 4
        event(
            "st-1",
            "statement",
            "2003",
            vec![set("aland", "leader", "anna")],
        ), // 5
        event(
            "su-1",
            "summit",
            "2004",
            vec![begin("borduria", "cadia", "alliance")],
        ), // 6
    ];
    client.append(setup, None).await.unwrap();

    let mut of_aland = timeout(WAIT, client.subscribe(1, "ald", ""))
        .await
        .unwrap()
        .unwrap();
    let mut meetings = timeout(WAIT, client.subscribe(1, "", "meeting"))
        .await
        .unwrap()
        .unwrap();
    let mut both = timeout(WAIT, client.subscribe(1, "Cadia", "meeting"))
        .await
        .unwrap()
        .unwrap();

    for expected in ["decl", "m-1", "st-1"] {
        assert_eq!(id_of(&next_entry(&mut of_aland).await), expected);
    }
    for expected in ["m-1", "m-2"] {
        assert_eq!(id_of(&next_entry(&mut meetings).await), expected);
    }
    for expected in ["m-1", "m-2"] {
        assert_eq!(id_of(&next_entry(&mut both).await), expected);
    }

    // Live: a non-matching entry is skipped, the next matching one arrives.
    client
        .append(
            vec![with_participants(
                event("m-3", "meeting", "2005", vec![]),
                &["borduria"],
            )],
            None,
        )
        .await
        .unwrap(); // 7
    client
        .append(
            vec![event(
                "st-2",
                "statement",
                "2006",
                vec![set("aland", "leader", "bert")],
            )],
            None,
        )
        .await
        .unwrap(); // 8
    client
        .append(
            vec![with_participants(
                event("m-4", "meeting", "2007", vec![]),
                &["cadia", "aland"],
            )],
            None,
        )
        .await
        .unwrap(); // 9

    let entry = next_entry(&mut of_aland).await;
    assert_eq!((entry.seq, id_of(&entry)), (8, "st-2"));
    let entry = next_entry(&mut of_aland).await;
    assert_eq!((entry.seq, id_of(&entry)), (9, "m-4"));
    let entry = next_entry(&mut meetings).await;
    assert_eq!((entry.seq, id_of(&entry)), (7, "m-3"));
    let entry = next_entry(&mut meetings).await;
    assert_eq!((entry.seq, id_of(&entry)), (9, "m-4"));
    let entry = next_entry(&mut both).await;
    assert_eq!((entry.seq, id_of(&entry)), (9, "m-4"));
    assert_quiet(&mut of_aland).await;
    assert_quiet(&mut meetings).await;
    assert_quiet(&mut both).await;
    drop((of_aland, meetings, both));
    server.stop().await;
}

// -------------------------------------------------------------- GetEntity

#[tokio::test]
async fn get_entity_by_id_and_alias_case_insensitively() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    for name in [
        "north-korea",
        "dprk",
        "DPRK",
        "PRK",
        "North Korea",
        "north korea",
        "NORTH KOREA",
    ] {
        let response = client
            .entity(name, "2012-06-01", 0)
            .await
            .unwrap_or_else(|status| panic!("{name}: {status:?}"));
        let entity = response.entity.expect("an entity");
        assert_eq!(entity.id, "north-korea", "{name}");
        assert_eq!(entity.name, "North Korea");
        assert_eq!(entity.r#type, proto::EntityType::Country as i32);
        assert!(entity.aliases.iter().any(|alias| alias == "DPRK"));
        assert!(!entity.declared_by.is_empty());
    }

    let north_korea = client.entity("dprk", "2012-06-01", 0).await.unwrap();
    let leader = attribute(&north_korea, "leader").expect("a leader in 2012");
    assert_eq!(leader.value, "kim-jong-un");
    assert!(leader.certain);
    assert!(!leader.since.is_empty());
    let setter = get_by_id(&mut client, &leader.event_id)
        .await
        .expect("the setting event exists");
    assert!(
        setter.event.unwrap().effects.iter().any(|effect| matches!(
            &effect.change,
            Some(proto::effect::Change::Set(set)) if set.entity == "north-korea" && set.key == "leader" && set.value == "kim-jong-un"
        )),
        "the event_id names the event that set the leader"
    );

    let china = client.entity("China", "1962-01-01", 0).await.unwrap();
    let alliance = find_relation(&china.relations, "china", "north-korea", "alliance")
        .expect("allied in 1962");
    assert!(alliance.certain);
    assert!(!alliance.since.is_empty());
    let treaty = get_by_id(&mut client, &alliance.event_id).await.unwrap();
    assert!(treaty.event.unwrap().effects.iter().any(|effect| matches!(
        &effect.change,
        Some(proto::effect::Change::Begin(begin)) if begin.kind == "alliance"
    )));
    assert!(find_relation(
        &china.relations,
        "china",
        "north-korea",
        "diplomatic_relations"
    )
    .is_some());

    let before = client.entity("china", "1949-10-05", 0).await.unwrap();
    assert!(find_relation(
        &before.relations,
        "china",
        "north-korea",
        "diplomatic_relations"
    )
    .is_none());
    let after = client.entity("china", "1949-10-06", 0).await.unwrap();
    assert!(find_relation(
        &after.relations,
        "china",
        "north-korea",
        "diplomatic_relations"
    )
    .is_some());
    server.stop().await;
}

#[tokio::test]
async fn get_entity_reports_attributes_and_relations_with_since_and_event() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "leader-1",
                    "inauguration",
                    "1990-05-01",
                    vec![set("aland", "leader", "anna")],
                ),
                event(
                    "ally",
                    "treaty_signed",
                    "1961-07-11",
                    vec![begin("aland", "borduria", "alliance")],
                ),
                event(
                    "aid",
                    "statement",
                    "1970",
                    vec![at(
                        "1971-02",
                        directed_begin("borduria", "aland", "supports"),
                    )],
                ),
            ],
            None,
        )
        .await
        .unwrap();

    for name in ["aland", "ALAND", "ALD", "ald", "Aland"] {
        let response = client.entity(name, "2000", 0).await.unwrap();
        let entity = response.entity.clone().unwrap();
        assert_eq!(entity.id, "aland", "{name}");
        assert_eq!(entity.declared_by, "decl");
        assert_eq!(
            response.attributes,
            vec![proto::Attribute {
                key: "leader".into(),
                value: "anna".into(),
                since: "1990-05-01".into(),
                certain: true,
                event_id: "leader-1".into(),
            }]
        );
        let mut relations = response.relations.clone();
        relations.sort_by(|left, right| left.kind.cmp(&right.kind));
        assert_eq!(
            relations,
            vec![
                proto::Relation {
                    a: "aland".into(),
                    b: "borduria".into(),
                    kind: "alliance".into(),
                    directed: false,
                    since: "1961-07-11".into(),
                    certain: true,
                    event_id: "ally".into(),
                },
                proto::Relation {
                    a: "borduria".into(),
                    b: "aland".into(),
                    kind: "supports".into(),
                    directed: true,
                    since: "1971-02".into(),
                    certain: true,
                    event_id: "aid".into(),
                },
            ]
        );
    }
    // Before the treaty and the inauguration: nothing.
    let early = client.entity("aland", "1961-07-10", 0).await.unwrap();
    assert!(early.relations.is_empty(), "{:?}", early.relations);
    assert!(early.attributes.is_empty(), "{:?}", early.attributes);
    // The day itself counts (at is the end of the named span).
    let on_the_day = client.entity("aland", "1961-07-11", 0).await.unwrap();
    assert_eq!(
        relation_keys(&on_the_day.relations),
        vec![("aland".into(), "borduria".into(), "alliance".into())]
    );
    // The effect's own `at`, not the event's start, decides.
    let in_1970 = client.entity("borduria", "1970-12-31", 0).await.unwrap();
    assert!(find_relation(&in_1970.relations, "borduria", "aland", "supports").is_none());
    server.stop().await;
}

#[tokio::test]
async fn an_imprecise_change_is_uncertain_within_its_span() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "tension",
                    "statement",
                    "2023-09",
                    vec![
                        set("aland", "border_status", "closed"),
                        begin("aland", "borduria", "rivalry"),
                    ],
                ),
            ],
            None,
        )
        .await
        .unwrap();

    let mid = client.entity("aland", "2023-09-15", 0).await.unwrap();
    let status = attribute(&mid, "border_status").expect("possible on 2023-09-15");
    assert_eq!(
        (status.value.as_str(), status.since.as_str(), status.certain),
        ("closed", "2023-09", false)
    );
    let rivalry = find_relation(&mid.relations, "aland", "borduria", "rivalry").expect("possible");
    assert!(!rivalry.certain);
    assert_eq!(rivalry.since, "2023-09");
    let listed = client.relations("", "", "", "2023-09-15", 0).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].certain);

    let end_of_month = client.entity("aland", "2023-09-30", 0).await.unwrap();
    assert!(attribute(&end_of_month, "border_status").unwrap().certain);
    assert!(
        find_relation(&end_of_month.relations, "aland", "borduria", "rivalry")
            .unwrap()
            .certain
    );
    let month = client.entity("aland", "2023-09", 0).await.unwrap();
    assert!(
        attribute(&month, "border_status").unwrap().certain,
        "at=2023-09 is the end of September"
    );
    let instant = client
        .entity("aland", "2023-09-15T12:00:00+00:00", 0)
        .await
        .unwrap();
    assert!(!attribute(&instant, "border_status").unwrap().certain);

    let before = client.entity("aland", "2023-08-31", 0).await.unwrap();
    assert!(attribute(&before, "border_status").is_none());
    assert!(before.relations.is_empty());
    assert!(client
        .relations("", "", "", "2023-08-31", 0)
        .await
        .unwrap()
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn competing_changes_are_ordered_by_earliest_instant_then_seq() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    // Recorded first, dated later: the end.
    client
        .append(
            vec![event(
                "ended",
                "statement",
                "2000",
                vec![end("aland", "borduria", "alliance")],
            )],
            None,
        )
        .await
        .unwrap();
    // Recorded later, dated earlier: the begin.
    client
        .append(
            vec![event(
                "begun",
                "treaty_signed",
                "1990",
                vec![begin("borduria", "aland", "alliance")],
            )],
            None,
        )
        .await
        .unwrap();
    let in_1995 = client.relations("aland", "", "", "1995", 0).await.unwrap();
    assert_eq!(
        relation_keys(&in_1995),
        vec![("aland".into(), "borduria".into(), "alliance".into())]
    );
    assert_eq!(in_1995[0].event_id, "begun");
    let in_2005 = client.relations("aland", "", "", "2005", 0).await.unwrap();
    assert!(
        in_2005.is_empty(),
        "the end dated later wins though recorded earlier: {in_2005:?}"
    );
    let now = client.relations("", "", "", "", 0).await.unwrap();
    assert!(now.is_empty(), "{now:?}");

    // Attributes: later earliest instant wins over later seq ...
    client
        .append(
            vec![event(
                "lead-a",
                "statement",
                "2010-06-01",
                vec![set("aland", "leader", "a")],
            )],
            None,
        )
        .await
        .unwrap();
    client
        .append(
            vec![event(
                "lead-b",
                "statement",
                "2010",
                vec![set("aland", "leader", "b")],
            )],
            None,
        )
        .await
        .unwrap();
    let state = client.entity("aland", "2010", 0).await.unwrap();
    let leader = attribute(&state, "leader").unwrap();
    assert_eq!(
        (leader.value.as_str(), leader.event_id.as_str()),
        ("a", "lead-a")
    );
    let state = client.entity("aland", "2010-05-31", 0).await.unwrap();
    assert_eq!(
        attribute(&state, "leader").unwrap().value,
        "b",
        "b applies from 2010-01-01"
    );
    assert!(
        !attribute(&state, "leader").unwrap().certain,
        "2010 is not over on 2010-05-31"
    );
    // ... and with the same earliest instant, the later seq wins.
    client
        .append(
            vec![event(
                "lead-c",
                "statement",
                "2009",
                vec![at("2010-06-01", set("aland", "leader", "c"))],
            )],
            None,
        )
        .await
        .unwrap();
    let state = client.entity("aland", "2010", 0).await.unwrap();
    let leader = attribute(&state, "leader").unwrap();
    assert_eq!(
        (leader.value.as_str(), leader.event_id.as_str()),
        ("c", "lead-c")
    );
    // As known before lead-c, a still held.
    let before_c = last_seq(&mut client).await - 1;
    let state = client.entity("aland", "2010", before_c).await.unwrap();
    assert_eq!(attribute(&state, "leader").unwrap().value, "a");
    server.stop().await;
}

// ------------------------------------------------------------ Corrections

#[tokio::test]
async fn corrections_are_bitemporal() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap(); // 1
    client
        .append(
            vec![event(
                "x",
                "treaty_signed",
                "1961",
                vec![begin("aland", "borduria", "alliance")],
            )],
            None,
        )
        .await
        .unwrap(); // 2
    client
        .append(
            vec![correction(
                event(
                    "c",
                    "statement",
                    "1962",
                    vec![begin("aland", "borduria", "rivalry")],
                ),
                "x",
            )],
            None,
        )
        .await
        .unwrap(); // 3

    // As known at seq 2: X's relation, nothing of C.
    let then = client.entity("aland", "", 2).await.unwrap();
    assert_eq!(
        relation_keys(&then.relations),
        vec![("aland".into(), "borduria".into(), "alliance".into())]
    );
    assert_eq!(then.relations[0].event_id, "x");
    let then = client.relations("", "", "", "1970", 2).await.unwrap();
    assert_eq!(
        relation_keys(&then),
        vec![("aland".into(), "borduria".into(), "alliance".into())]
    );
    // As known now: C's effects only.
    let now = client.entity("aland", "", 0).await.unwrap();
    assert_eq!(
        relation_keys(&now.relations),
        vec![("aland".into(), "borduria".into(), "rivalry".into())]
    );
    assert_eq!(now.relations[0].event_id, "c");
    let now = client.relations("", "", "", "1970", 3).await.unwrap();
    assert_eq!(
        relation_keys(&now),
        vec![("aland".into(), "borduria".into(), "rivalry".into())]
    );
    // The history follows the same snapshot.
    let history = client.history("aland", "borduria", "", 2).await.unwrap();
    assert_eq!(
        history.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(),
        vec!["alliance"]
    );
    let history = client.history("aland", "borduria", "", 0).await.unwrap();
    assert_eq!(
        history.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(),
        vec!["rivalry"]
    );

    // Listings show X, with superseded_by as known at the snapshot.
    let listed = client.events(&EventQuery::default()).await.unwrap();
    let x = listed
        .iter()
        .find(|entry| id_of(entry) == "x")
        .expect("X is still listed");
    assert_eq!(x.superseded_by, "c");
    let c = listed
        .iter()
        .find(|entry| id_of(entry) == "c")
        .expect("C is listed");
    assert_eq!(c.superseded_by, "");
    let listed_then = client
        .events(&EventQuery {
            as_of_seq: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&listed_then), vec!["decl", "x"]);
    assert_eq!(
        listed_then[1].superseded_by, "",
        "not superseded as known at seq 2"
    );

    // A retraction (no effects) removes the corrected event's effects.
    client
        .append(
            vec![event(
                "y",
                "statement",
                "1970",
                vec![
                    set("aland", "leader", "anna"),
                    directed_begin("borduria", "aland", "supports"),
                ],
            )],
            None,
        )
        .await
        .unwrap(); // 4
    client
        .append(
            vec![correction(event("r", "retraction", "2024", vec![]), "y")],
            None,
        )
        .await
        .unwrap(); // 5
    let before = client.entity("aland", "", 4).await.unwrap();
    assert_eq!(
        attribute(&before, "leader").map(|a| a.value.as_str()),
        Some("anna")
    );
    assert!(find_relation(&before.relations, "borduria", "aland", "supports").is_some());
    let after = client.entity("aland", "", 0).await.unwrap();
    assert!(
        attribute(&after, "leader").is_none(),
        "{:?}",
        after.attributes
    );
    assert!(find_relation(&after.relations, "borduria", "aland", "supports").is_none());
    assert_eq!(
        relation_keys(&after.relations),
        vec![("aland".into(), "borduria".into(), "rivalry".into())]
    );
    assert_eq!(
        get_by_id(&mut client, "y").await.unwrap().superseded_by,
        "r"
    );
    let listed = client.events(&EventQuery::default()).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|entry| id_of(entry) == "y")
            .unwrap()
            .superseded_by,
        "r"
    );
    // The log itself still holds everything.
    assert_eq!(
        ids(&read_all(&mut client).await),
        vec!["decl", "x", "c", "y", "r"]
    );
    server.stop().await;
}

// ----------------------------------------------------------- ListEntities

async fn list_entities_paged(
    client: &mut Client,
    entity_type: proto::EntityType,
    query: &str,
    page_size: u32,
) -> Vec<proto::Entity> {
    let mut request = proto::ListEntitiesRequest {
        r#type: entity_type as i32,
        query: query.to_string(),
        as_of_seq: 0,
        page_size,
        page_token: String::new(),
    };
    let mut entities = Vec::new();
    for _ in 0..1000 {
        let page = client
            .raw()
            .list_entities(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(
            page.entities.len() <= page_size as usize,
            "a page holds at most page_size"
        );
        entities.extend(page.entities);
        if page.next_page_token.is_empty() {
            return entities;
        }
        request.page_token = page.next_page_token;
    }
    panic!("ListEntities never ended");
}

#[tokio::test]
async fn list_entities_by_type_and_prefix_with_pagination() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let countries = list_entities_paged(&mut client, proto::EntityType::Country, "", 2).await;
    let unique: HashSet<&str> = countries.iter().map(|entity| entity.id.as_str()).collect();
    assert_eq!(
        unique.len(),
        countries.len(),
        "no entity twice across pages"
    );
    assert!(countries.len() > 2, "more than one page");
    for id in [
        "north-korea",
        "south-korea",
        "china",
        "russia",
        "united-states",
        "japan",
        "india",
    ] {
        assert!(unique.contains(id), "{id} is a country");
    }
    assert!(countries
        .iter()
        .all(|entity| entity.r#type == proto::EntityType::Country as i32));
    assert!(!unique.contains("kim-jong-un") && !unique.contains("pyongyang"));
    let at_once = client
        .entities(proto::EntityType::Country, "", 0)
        .await
        .unwrap();
    assert_eq!(countries, at_once, "paging changes nothing");

    let people = client
        .entities(proto::EntityType::Person, "", 0)
        .await
        .unwrap();
    assert!(people.iter().any(|entity| entity.id == "kim-jong-un"));
    assert!(people
        .iter()
        .all(|entity| entity.r#type == proto::EntityType::Person as i32));
    let all = list_entities_paged(&mut client, proto::EntityType::Unspecified, "", 2).await;
    assert!(all.len() >= countries.len() + people.len());

    let north = client
        .entities(proto::EntityType::Unspecified, "north", 0)
        .await
        .unwrap();
    assert!(north.iter().any(|entity| entity.id == "north-korea"));
    let dprk = client
        .entities(proto::EntityType::Unspecified, "dPr", 0)
        .await
        .unwrap();
    assert_eq!(
        dprk.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["north-korea"],
        "alias prefix, any case"
    );
    let kim = client
        .entities(proto::EntityType::Person, "Kim", 0)
        .await
        .unwrap();
    assert!(kim.iter().any(|entity| entity.id == "kim-jong-un"));
    let none = client
        .entities(proto::EntityType::Place, "north korea", 0)
        .await
        .unwrap();
    assert!(none.is_empty(), "type and prefix combine: {none:?}");
    server.stop().await;
}

#[tokio::test]
async fn list_entities_pages_exactly() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    let declarations = ["alpha", "beta", "gamma", "delta", "epsilon"]
        .iter()
        .map(|id| declare(id, &id.to_uppercase(), proto::EntityType::Organization, &[]))
        .chain([declare(
            "zed",
            "Zed",
            proto::EntityType::Person,
            &["Omega Man"],
        )])
        .collect();
    client
        .append(
            vec![event("decl", "declaration", "1900", declarations)],
            None,
        )
        .await
        .unwrap();
    let mut request = proto::ListEntitiesRequest {
        r#type: proto::EntityType::Organization as i32,
        page_size: 2,
        ..Default::default()
    };
    let mut pages = Vec::new();
    for _ in 0..10 {
        let page = client
            .raw()
            .list_entities(request.clone())
            .await
            .unwrap()
            .into_inner();
        pages.push(
            page.entities
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>(),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    let flat: BTreeSet<String> = pages.into_iter().flatten().collect();
    assert_eq!(flat.len(), 5);
    assert!(!flat.contains("zed"));
    let omega = client
        .entities(proto::EntityType::Unspecified, "omega", 0)
        .await
        .unwrap();
    assert_eq!(omega.len(), 1);
    assert_eq!(omega[0].id, "zed");
    assert_eq!(omega[0].declared_by, "decl");
    server.stop().await;
}

// ---------------------------------------------------------- ListRelations

#[tokio::test]
async fn list_relations_whole_graph_filters_and_pagination() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let graph = client.relations("", "", "", "1962-01-01", 0).await.unwrap();
    assert!(find_relation(&graph, "china", "north-korea", "alliance").is_some());
    assert!(find_relation(&graph, "china", "north-korea", "diplomatic_relations").is_some());
    assert!(
        graph.iter().any(|relation| !relation.involves_china()),
        "the whole graph, not just china's"
    );

    let pair = client
        .relations("china", "DPRK", "", "1962-01-01", 0)
        .await
        .unwrap();
    assert!(pair.len() >= 2);
    for relation in &pair {
        let ends: BTreeSet<&str> = [relation.a.as_str(), relation.b.as_str()].into();
        assert_eq!(
            ends,
            BTreeSet::from(["china", "north-korea"]),
            "{relation:?}"
        );
    }
    let alliance = client
        .relations("china", "north-korea", "alliance", "1962-01-01", 0)
        .await
        .unwrap();
    assert_eq!(
        relation_keys(&alliance),
        vec![("china".into(), "north-korea".into(), "alliance".into())]
    );
    let reverse = client
        .relations("north-korea", "china", "alliance", "1962-01-01", 0)
        .await
        .unwrap();
    assert_eq!(
        reverse, alliance,
        "a symmetric relation is found from either end"
    );
    let wartime = client
        .relations("china", "north-korea", "co_belligerent", "1951-06-01", 0)
        .await
        .unwrap();
    assert_eq!(wartime.len(), 1);
    let after_armistice = client
        .relations("china", "north-korea", "co_belligerent", "1953-08-01", 0)
        .await
        .unwrap();
    assert!(after_armistice.is_empty());
    let by_kind = client
        .relations("", "", "alliance", "1962-01-01", 0)
        .await
        .unwrap();
    assert!(by_kind.iter().all(|relation| relation.kind == "alliance"));
    assert!(by_kind.len() >= 2, "{by_kind:?}");

    // Pagination over the whole graph now.
    let all = client.relations("", "", "", "", 0).await.unwrap();
    let mut request = proto::ListRelationsRequest {
        page_size: 2,
        ..Default::default()
    };
    let mut paged = Vec::new();
    for _ in 0..1000 {
        let page = client
            .raw()
            .list_relations(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.relations.len() <= 2);
        paged.extend(page.relations);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert!(all.len() > 2);
    assert_eq!(paged, all);
    let unique: HashSet<(String, String, String)> = relation_keys(&paged).into_iter().collect();
    assert_eq!(unique.len(), paged.len(), "no relation twice");
    server.stop().await;
}

/// Every page of one entity's relations, `size` at a time, with `between`
/// appended after the first page.
async fn relation_pages(
    client: &mut Client,
    mut request: proto::ListRelationsRequest,
    between: Vec<proto::Event>,
) -> Vec<Vec<proto::Relation>> {
    let mut between = Some(between);
    let mut pages = Vec::new();
    for _ in 0..100 {
        let page = client
            .raw()
            .list_relations(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.relations.len() <= request.page_size as usize);
        pages.push(page.relations);
        if page.next_page_token.is_empty() {
            return pages;
        }
        if let Some(events) = between.take() {
            client.append(events, None).await.unwrap();
        }
        request.page_token = page.next_page_token;
    }
    panic!("ListRelations never ended");
}

#[tokio::test]
async fn one_entitys_relations_page_from_where_the_last_page_ended() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    let others: Vec<String> = (0..7).map(|i| format!("other-{i}")).collect();
    let mut names: Vec<&str> = vec!["hub"];
    names.extend(others.iter().map(String::as_str));
    client
        .append(vec![declarations("decl", &names)], None)
        .await
        .unwrap();
    // Two kinds with every other, one kind ended again.
    let mut effects = Vec::new();
    for other in &others {
        effects.push(begin("hub", other, "trade"));
        effects.push(begin("hub", other, "ally"));
    }
    effects.push(at("2001", end("hub", "other-3", "ally")));
    client
        .append(vec![event("links", "treaty_signed", "2000", effects)], None)
        .await
        .unwrap();
    let all = client.relations("hub", "", "", "2002", 0).await.unwrap();
    assert_eq!(all.len(), 13);

    let request = proto::ListRelationsRequest {
        entity: "hub".into(),
        at: "2002".into(),
        page_size: 3,
        ..Default::default()
    };
    // A relation begun between the pages, sorting among the first ones,
    // must not shift the later pages: they keep the first page's snapshot.
    let late = event(
        "late",
        "meeting",
        "1999",
        vec![begin("hub", "other-0", "aid")],
    );
    let pages = relation_pages(&mut client, request.clone(), vec![late]).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 3, 1]
    );
    assert_eq!(
        pages.concat(),
        all,
        "the pages are the whole answer, in order"
    );

    // With a counterpart, and with a page exactly as long as the answer.
    let pair = proto::ListRelationsRequest {
        counterpart: "other-5".into(),
        page_size: 2,
        ..request.clone()
    };
    let pages = relation_pages(&mut client, pair, Vec::new()).await;
    assert_eq!(pages.len(), 1, "no empty page after a full last one");
    assert_eq!(relation_keys(&pages[0]).len(), 2);

    // A fresh listing sees the late relation.
    let now = client.relations("hub", "", "", "2002", 0).await.unwrap();
    assert_eq!(now.len(), 14);
    assert_eq!(now[0].kind, "aid");
    server.stop().await;
}

trait InvolvesChina {
    fn involves_china(&self) -> bool;
}

impl InvolvesChina for proto::Relation {
    fn involves_china(&self) -> bool {
        self.a == "china" || self.b == "china"
    }
}

// -------------------------------------------------------- RelationHistory

#[tokio::test]
async fn relation_history_lists_intervals() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "b1",
                    "treaty_signed",
                    "1961",
                    vec![begin("aland", "borduria", "alliance")],
                ),
                event(
                    "e1",
                    "statement",
                    "1970-03",
                    vec![end("borduria", "aland", "alliance")],
                ),
                event(
                    "b2",
                    "treaty_signed",
                    "1980-01-02",
                    vec![begin("aland", "borduria", "alliance")],
                ),
                event(
                    "w",
                    "war",
                    "1975",
                    vec![begin("aland", "borduria", "at_war")],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let history = client
        .history("aland", "borduria", "alliance", 0)
        .await
        .unwrap();
    let summary: Vec<_> = history
        .iter()
        .map(|i| {
            (
                i.kind.as_str(),
                i.from.as_str(),
                i.to.as_str(),
                i.begun_by.as_str(),
                i.ended_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("alliance", "1961", "1970-03", "b1", "e1"),
            ("alliance", "1980-01-02", "", "b2", ""),
        ]
    );
    assert!(history
        .iter()
        .all(|i| i.a == "aland" && i.b == "borduria" && !i.directed));

    let every_kind = client.history("BRD", "ald", "", 0).await.unwrap();
    let kinds: Vec<(&str, &str)> = every_kind
        .iter()
        .map(|i| (i.kind.as_str(), i.from.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("alliance", "1961"),
            ("at_war", "1975"),
            ("alliance", "1980-01-02")
        ]
    );
    let war = every_kind.iter().find(|i| i.kind == "at_war").unwrap();
    assert_eq!(
        (war.to.as_str(), war.begun_by.as_str()),
        ("", "w"),
        "still active"
    );

    // As known before the second begin.
    let then = client
        .history("aland", "borduria", "alliance", 3)
        .await
        .unwrap();
    assert_eq!(then.len(), 1);
    assert_eq!(then[0].to, "1970-03");

    let seeded = TestServer::seeded().await;
    let mut client = seeded.client().await;
    let war = client
        .history("china", "north-korea", "co_belligerent", 0)
        .await
        .unwrap();
    assert_eq!(war.len(), 1, "{war:?}");
    assert_eq!(war[0].to, "1953-07-27");
    assert!(!war[0].begun_by.is_empty() && !war[0].ended_by.is_empty());
    seeded.stop().await;
    server.stop().await;
}

// ------------------------------------------------------------- ListEvents

#[tokio::test]
async fn list_events_overlap_kind_order_and_pages() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"), // 1900
                with_participants(event("after", "meeting", "2024-04-14", vec![]), &["aland"]),
                with_participants(
                    span_event("talks", "meeting", "2024-04-11", "2024-04-13", vec![]),
                    &["aland", "borduria"],
                ),
                with_participants(
                    event("visit", "state_visit", "2024-04-12", vec![]),
                    &["borduria"],
                ),
                with_participants(event("old", "meeting", "2020", vec![]), &["aland"]),
                with_participants(event("month", "statement", "2024-04", vec![]), &["aland"]),
                with_participants(
                    event("precise", "statement", "2024-04-12T10:00:00+09:00", vec![]),
                    &["aland"],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let query = |from: &str, to: &str| EventQuery {
        from: from.to_string(),
        to: to.to_string(),
        ..Default::default()
    };

    let on_the_12th = client
        .events(&query("2024-04-12", "2024-04-12"))
        .await
        .unwrap();
    assert_eq!(
        ids(&on_the_12th),
        vec!["month", "talks", "visit", "precise"],
        "overlap, valid-time order"
    );
    let meetings = client
        .events(&EventQuery {
            kind: "meeting".into(),
            ..query("2024-04-12", "2024-04-12")
        })
        .await
        .unwrap();
    assert_eq!(ids(&meetings), vec!["talks"]);
    let newest = client
        .events(&EventQuery {
            newest_first: true,
            ..query("2024-04-12", "2024-04-12")
        })
        .await
        .unwrap();
    assert_eq!(ids(&newest), vec!["precise", "visit", "talks", "month"]);
    let of_aland = client
        .events(&EventQuery {
            entity: "ALD".into(),
            ..query("2024", "2024")
        })
        .await
        .unwrap();
    assert_eq!(ids(&of_aland), vec!["month", "talks", "precise", "after"]);
    let everything = client.events(&query("", "")).await.unwrap();
    assert_eq!(
        ids(&everything),
        vec!["decl", "old", "month", "talks", "visit", "precise", "after"]
    );
    let before_talks = client
        .events(&query("2024-04-01", "2024-04-10"))
        .await
        .unwrap();
    assert_eq!(ids(&before_talks), vec!["month"]);

    // Pages of one, newest first.
    let mut request = proto::ListEventsRequest {
        from: "2024-04-11".into(),
        to: "2024-04-14".into(),
        page_size: 1,
        newest_first: true,
        ..Default::default()
    };
    let mut paged = Vec::new();
    for _ in 0..20 {
        let page = client
            .raw()
            .list_events(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.entries.len(), 1);
        paged.push(id_of(&page.entries[0]).to_string());
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(paged, vec!["after", "precise", "visit", "talks", "month"]);

    let seeded = TestServer::seeded().await;
    let mut client = seeded.client().await;
    let september = client
        .events(&EventQuery {
            entity: "kim-jong-un".into(),
            ..query("2023-09-01", "2023-09-30")
        })
        .await
        .unwrap();
    let summit = september
        .iter()
        .find(|entry| entry.event.as_ref().unwrap().kind == "summit")
        .expect("the Vostochny summit");
    let summit = summit.event.as_ref().unwrap();
    assert_eq!(summit.occurred.as_ref().unwrap().start, "2023-09-13");
    assert!(summit
        .participants
        .iter()
        .any(|p| p.entity == "vladimir-putin"));
    let day = client
        .events(&query("2024-04-13", "2024-04-13"))
        .await
        .unwrap();
    assert!(day.iter().any(|entry| {
        let event = entry.event.as_ref().unwrap();
        event.kind == "meeting"
            && event.participants.iter().any(|p| p.entity == "zhao-leji")
            && event.participants.iter().any(|p| p.entity == "kim-jong-un")
    }));
    seeded.stop().await;
    server.stop().await;
}

// ------------------------------------------------------------------- Diff

#[tokio::test]
async fn diff_reports_relations_and_attributes_with_events() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "r1",
                    "statement",
                    "1990",
                    vec![begin("aland", "borduria", "rivalry")],
                ),
                event(
                    "s1",
                    "inauguration",
                    "1990",
                    vec![set("aland", "leader", "alpha")],
                ),
                event(
                    "c1",
                    "statement",
                    "1990",
                    vec![set("aland", "capital", "oldtown")],
                ),
                event(
                    "b",
                    "treaty_signed",
                    "2000",
                    vec![begin("aland", "borduria", "alliance")],
                ),
                event(
                    "r2",
                    "statement",
                    "2004",
                    vec![end("aland", "borduria", "rivalry")],
                ),
                event(
                    "s2",
                    "inauguration",
                    "2005",
                    vec![set("aland", "leader", "beta")],
                ),
                event("c2", "statement", "2006", vec![set("aland", "capital", "")]),
                event(
                    "late",
                    "statement",
                    "2020",
                    vec![set("borduria", "leader", "gamma")],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let changes = client.diff("1999", "2010", "aland", 0).await.unwrap();
    let summary: Vec<_> = changes
        .iter()
        .map(|change| {
            let kind = proto::ChangeKind::try_from(change.kind).unwrap();
            let subject = match &change.relation {
                Some(relation) => format!("{}~{}:{}", relation.a, relation.b, relation.kind),
                None => format!("{}.{}", change.entity, change.key),
            };
            (
                kind,
                subject,
                change.value.clone(),
                change.previous_value.clone(),
                change.at.clone(),
                change.event_id.clone(),
            )
        })
        .collect();
    use proto::ChangeKind::*;
    let s = |text: &str| text.to_string();
    assert_eq!(
        summary,
        vec![
            (
                RelationBegun,
                s("aland~borduria:alliance"),
                s(""),
                s(""),
                s("2000"),
                s("b")
            ),
            (
                RelationEnded,
                s("aland~borduria:rivalry"),
                s(""),
                s(""),
                s("2004"),
                s("r2")
            ),
            (
                AttributeSet,
                s("aland.leader"),
                s("beta"),
                s("alpha"),
                s("2005"),
                s("s2")
            ),
            (
                AttributeUnset,
                s("aland.capital"),
                s(""),
                s("oldtown"),
                s("2006"),
                s("c2")
            ),
        ]
    );
    assert!(changes.iter().all(|change| change.certain));

    let nothing = client.diff("2007", "2010", "aland", 0).await.unwrap();
    assert!(nothing.is_empty(), "{nothing:?}");
    let whole = client.diff("2007", "2030", "", 0).await.unwrap();
    assert_eq!(whole.len(), 1);
    assert_eq!(
        (
            whole[0].entity.as_str(),
            whole[0].value.as_str(),
            whole[0].event_id.as_str()
        ),
        ("borduria", "gamma", "late")
    );
    let known_earlier = client.diff("1999", "2010", "aland", 5).await.unwrap();
    assert_eq!(
        known_earlier.len(),
        1,
        "only the alliance was known at seq 5: {known_earlier:?}"
    );

    let seeded = TestServer::seeded().await;
    let mut client = seeded.client().await;
    let changes = client
        .diff("2019-12-31", "2021-01-01", "north-korea", 0)
        .await
        .unwrap();
    let closure = changes
        .iter()
        .find(|change| change.key == "border_status")
        .expect("the border closure");
    assert_eq!(closure.kind, proto::ChangeKind::AttributeSet as i32);
    assert_eq!(
        (closure.value.as_str(), closure.at.as_str()),
        ("closed", "2020-01-22")
    );
    let closing = get_by_id(&mut client, &closure.event_id).await.unwrap();
    assert_eq!(closing.event.unwrap().kind, "border_closure");
    seeded.stop().await;
    server.stop().await;
}

// ------------------------------------------------- health, reflection, gzip

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
    let server = TestServer::empty().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "annals.v1.TimelineService"] {
        let response = timeout(
            WAIT,
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .expect("answers in time")
        .unwrap_or_else(|status| panic!("{service:?}: {status:?}"))
        .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_and_describe_the_service() {
    use prost::Message;
    let server = TestServer::empty().await;
    let channel = server.channel().await;

    // v1
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel.clone());
        let requests = vec![
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "annals.v1.TimelineService".into(),
                )),
            },
        ];
        let mut responses = timeout(
            WAIT,
            client.server_reflection_info(tokio_stream::iter(requests)),
        )
        .await
        .unwrap()
        .expect("v1 reflection answers")
        .into_inner();
        let listed = timeout(WAIT, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match listed.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
                assert!(names.contains(&"annals.v1.TimelineService"), "{names:?}");
            }
            other => panic!("v1 ListServices answered {other:?}"),
        }
        let described = timeout(WAIT, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match described.message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                assert!(!files.file_descriptor_proto.is_empty());
                let found = files.file_descriptor_proto.iter().any(|bytes| {
                    let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                        .expect("a file descriptor");
                    file.package() == "annals.v1"
                        && file
                            .service
                            .iter()
                            .any(|service| service.name() == "TimelineService")
                });
                assert!(
                    found,
                    "the descriptor of annals.v1.TimelineService is among the files"
                );
            }
            other => panic!("v1 FileContainingSymbol answered {other:?}"),
        }
    }

    // v1alpha
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel.clone());
        let requests = vec![
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "annals.v1.TimelineService".into(),
                )),
            },
        ];
        let mut responses = timeout(
            WAIT,
            client.server_reflection_info(tokio_stream::iter(requests)),
        )
        .await
        .unwrap()
        .expect("v1alpha reflection answers")
        .into_inner();
        let listed = timeout(WAIT, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match listed.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
                assert!(names.contains(&"annals.v1.TimelineService"), "{names:?}");
            }
            other => panic!("v1alpha ListServices answered {other:?}"),
        }
        let described = timeout(WAIT, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match described.message_response {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                let found = files.file_descriptor_proto.iter().any(|bytes| {
                    let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                        .expect("a file descriptor");
                    file.package() == "annals.v1"
                        && file
                            .service
                            .iter()
                            .any(|service| service.name() == "TimelineService")
                });
                assert!(
                    found,
                    "the descriptor of annals.v1.TimelineService is among the files"
                );
            }
            other => panic!("v1alpha FileContainingSymbol answered {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn gzip_both_ways() {
    let server = TestServer::seeded().await;

    // A raw client that compresses requests and asks for compressed replies.
    let mut raw = TimelineServiceClient::new(server.channel().await)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = raw
        .read_log(proto::ReadLogRequest {
            from_seq: 1,
            limit: 20,
            reverse: false,
        })
        .await
        .expect("a gzip request is accepted");
    assert_eq!(
        response
            .metadata()
            .get("grpc-encoding")
            .and_then(|value| value.to_str().ok()),
        Some("gzip"),
        "the reply is gzip-compressed"
    );
    assert_eq!(response.into_inner().entries.len(), 20);
    let appended = raw
        .append(proto::AppendRequest {
            events: vec![event("zipped", "statement", "2024", vec![])],
            expected_last_seq: None,
            omit_events: false,
        })
        .await
        .expect("a gzip append is accepted");
    assert_eq!(
        appended
            .metadata()
            .get("grpc-encoding")
            .and_then(|value| value.to_str().ok()),
        Some("gzip")
    );
    let stored = appended.into_inner().entries[0].clone();

    // The wrapper client (which sends gzip) reads it back, and its large
    // reply arrives intact.
    let mut client = server.client().await;
    assert_eq!(client.event("zipped").await.unwrap(), stored);
    let everything = client.events(&EventQuery::default()).await.unwrap();
    assert_eq!(everything.len() as u64, stored.seq);

    // An uncompressed client is served as well.
    let mut plain = TimelineServiceClient::new(server.channel().await);
    let response = plain
        .read_log(proto::ReadLogRequest {
            from_seq: 0,
            limit: 1,
            reverse: true,
        })
        .await
        .unwrap();
    assert_ne!(
        response
            .metadata()
            .get("grpc-encoding")
            .and_then(|value| value.to_str().ok()),
        Some("gzip"),
        "no gzip for a client that did not ask for it"
    );
    assert_eq!(response.into_inner().entries[0].seq, stored.seq);
    server.stop().await;
}

/// A TCP relay in front of the server that notes, for every HTTP/2 stream
/// a client opens, the compressed-flag byte of the first gRPC message the
/// client sends on it (1: compressed, 0: not). Serves `connections`
/// connections.
fn spawn_relay(
    upstream: std::net::SocketAddr,
    connections: usize,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    fn relay_requests(mut client: TcpStream, mut server: TcpStream, seen: Arc<Mutex<Vec<u8>>>) {
        use std::io::{Read, Write};
        const PREFACE: usize = 24;
        let mut buffer = Vec::new();
        let mut past_preface = false;
        let mut started = HashSet::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let read = match client.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if server.write_all(&chunk[..read]).is_err() {
                break;
            }
            buffer.extend_from_slice(&chunk[..read]);
            if !past_preface {
                if buffer.len() < PREFACE {
                    continue;
                }
                buffer.drain(..PREFACE);
                past_preface = true;
            }
            // HTTP/2 frames: 3 bytes length, type, flags, 4 bytes stream.
            while buffer.len() >= 9 {
                let length = u32::from_be_bytes([0, buffer[0], buffer[1], buffer[2]]) as usize;
                if buffer.len() < 9 + length {
                    break;
                }
                let (kind, flags) = (buffer[3], buffer[4]);
                let stream =
                    u32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]) & 0x7fff_ffff;
                let mut payload = &buffer[9..9 + length];
                if kind == 0 {
                    if flags & 0x8 != 0 && !payload.is_empty() {
                        let padding = payload[0] as usize;
                        payload = &payload[1..payload.len().saturating_sub(padding).max(1)];
                    }
                    if !payload.is_empty() && started.insert(stream) {
                        seen.lock().unwrap().push(payload[0]);
                    }
                }
                buffer.drain(..9 + length);
            }
        }
        let _ = server.shutdown(Shutdown::Write);
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let flags: Arc<Mutex<Vec<u8>>> = Arc::default();
    let seen = Arc::clone(&flags);
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (mut from_server, mut to_client) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Both);
            });
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || relay_requests(client, server, seen));
        }
    });
    (address, flags)
}

/// The wrapper client asked for gzip compresses its requests, as observed
/// on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_client_sends_gzip_when_asked() {
    let server = TestServer::empty().await;
    let (relay, flags) = spawn_relay(server.server.local_addr(), 2);
    let url = format!("http://{relay}");

    let options = annals::client::ClientOptions {
        gzip: true,
        ..Default::default()
    };
    let mut client = timeout(WAIT, Client::connect_with(&url, options))
        .await
        .unwrap()
        .unwrap();
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    assert_eq!(client.event("decl").await.unwrap().seq, 1);
    assert_eq!(
        client
            .entity("ald", "", 0)
            .await
            .unwrap()
            .entity
            .unwrap()
            .id,
        "aland"
    );
    assert_eq!(
        *flags.lock().unwrap(),
        vec![1, 1, 1],
        "every request message of the wrapper is compressed"
    );

    // The relay tells an uncompressed client apart.
    let channel = timeout(
        WAIT,
        tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect(),
    )
    .await
    .unwrap()
    .unwrap();
    let mut plain = TimelineServiceClient::new(channel);
    let page = plain
        .read_log(proto::ReadLogRequest {
            from_seq: 1,
            limit: 1,
            reverse: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(*flags.lock().unwrap(), vec![1, 1, 1, 0]);
    drop(client);
    drop(plain);
    server.stop().await;
}

// ------------------------------------------------------- further guarantees

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_subscriber_does_not_block_writers() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    // Subscribed, but not reading.
    let mut idle = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap();
    let mut writer = server.client().await;
    let writing = async {
        for i in 1..=400u64 {
            let mut event = event(&format!("n-{i}"), "statement", "2000", vec![]);
            event.summary = "s".repeat(2000);
            let response = writer.append(vec![event], None).await.expect("appended");
            assert_eq!(response.entries[0].seq, i);
        }
    };
    timeout(Duration::from_secs(60), writing)
        .await
        .expect("writers are not held up by a subscriber that does not read");
    // The subscriber then gets everything, in order, once.
    for expected in 1..=400 {
        let entry = next_entry(&mut idle).await;
        assert_eq!(entry.seq, expected);
        assert_eq!(id_of(&entry), format!("n-{expected}"));
    }
    assert_quiet(&mut idle).await;
    drop(idle);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribing_while_appends_stream_in_neither_skips_nor_repeats() {
    const TOTAL: u64 = 300;
    let server = TestServer::empty().await;
    let mut writer = server.client().await;
    let (halfway, reached) = tokio::sync::oneshot::channel();
    let writing = tokio::spawn(async move {
        let mut halfway = Some(halfway);
        for i in 1..=TOTAL {
            writer
                .append(
                    vec![event(&format!("c-{i}"), "statement", "2000", vec![])],
                    None,
                )
                .await
                .expect("appended");
            if i == 120 {
                let _ = halfway.take().unwrap().send(());
            }
        }
    });
    timeout(WAIT, reached).await.unwrap().unwrap();
    let mut client = server.client().await;
    let mut from_start = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap();
    let mut from_middle = timeout(WAIT, client.subscribe(100, "", ""))
        .await
        .unwrap()
        .unwrap();
    for expected in 1..=TOTAL {
        assert_eq!(next_entry(&mut from_start).await.seq, expected);
    }
    for expected in 100..=TOTAL {
        assert_eq!(next_entry(&mut from_middle).await.seq, expected);
    }
    timeout(Duration::from_secs(60), writing)
        .await
        .unwrap()
        .unwrap();
    assert_quiet(&mut from_start).await;
    assert_quiet(&mut from_middle).await;
    drop((from_start, from_middle));
    server.stop().await;
}

#[tokio::test]
async fn read_log_caps_its_limit_at_1000() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    let batch: Vec<proto::Event> = (1..=1200)
        .map(|i| event(&format!("r-{i}"), "statement", "2000", vec![]))
        .collect();
    client.append(batch, None).await.unwrap();
    let page = client.read_log(1, 5000, false).await.unwrap();
    assert_eq!(page.entries.len(), 1000);
    assert_eq!((page.next_seq, page.last_seq), (1001, 1200));
    let page = client.read_log(page.next_seq, 5000, false).await.unwrap();
    assert_eq!(seqs(&page.entries), (1001..=1200).collect::<Vec<_>>());
    assert_eq!(page.next_seq, 0);
    let page = client.read_log(0, 0, true).await.unwrap();
    assert_eq!(page.entries.len(), 100, "0 means 100");
    assert_eq!((page.entries[0].seq, page.next_seq), (1200, 1100));
    server.stop().await;
}

#[tokio::test]
async fn pages_hold_their_snapshot_while_the_log_grows() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    let dated: Vec<proto::Event> = (1..=6)
        .map(|i| {
            with_participants(
                event(&format!("ev-{i}"), "meeting", &format!("200{i}"), vec![]),
                &["aland"],
            )
        })
        .collect();
    client.append(dated, None).await.unwrap();

    let mut request = proto::ListEventsRequest {
        entity: "aland".into(),
        page_size: 3,
        ..Default::default()
    };
    let first = client
        .raw()
        .list_events(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&first.entries), vec!["decl", "ev-1", "ev-2"]);
    // Earlier-dated events arrive between the pages.
    client
        .append(
            vec![
                with_participants(event("early-1", "meeting", "1950", vec![]), &["aland"]),
                with_participants(event("early-2", "meeting", "1951", vec![]), &["aland"]),
            ],
            None,
        )
        .await
        .unwrap();
    let mut rest = Vec::new();
    request.page_token = first.next_page_token;
    for _ in 0..10 {
        let page = client
            .raw()
            .list_events(request.clone())
            .await
            .unwrap()
            .into_inner();
        rest.extend(ids(&page.entries).into_iter().map(str::to_string));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(
        rest,
        vec!["ev-3", "ev-4", "ev-5", "ev-6"],
        "no shift, no duplicate"
    );

    // The same for entities.
    let mut request = proto::ListEntitiesRequest {
        page_size: 1,
        ..Default::default()
    };
    let first = client
        .raw()
        .list_entities(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entities[0].id, "aland");
    client
        .append(
            vec![event(
                "decl-more",
                "declaration",
                "1900",
                vec![declare(
                    "abcland",
                    "Abcland",
                    proto::EntityType::Country,
                    &[],
                )],
            )],
            None,
        )
        .await
        .unwrap();
    request.page_token = first.next_page_token;
    let second = client
        .raw()
        .list_entities(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entities[0].id, "borduria");
    assert!(second.next_page_token.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn valid_times_span_years_0001_to_9999() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "ancient",
                    "statement",
                    "0001-01-01",
                    vec![set("aland", "era", "first")],
                ),
                event(
                    "distant",
                    "statement",
                    "9999-12-31",
                    vec![set("aland", "era", "last")],
                ),
                event(
                    "tokyo",
                    "meeting",
                    "2024-04-13T08:30:00+09:00",
                    vec![set("aland", "mood", "calm")],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let all = client
        .events(&EventQuery {
            from: "0001".into(),
            to: "9999".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&all), vec!["ancient", "decl", "tokyo", "distant"]);
    let first = client.entity("aland", "0001", 0).await.unwrap();
    assert_eq!(attribute(&first, "era").unwrap().value, "first");
    let last = client.entity("aland", "9999", 0).await.unwrap();
    assert_eq!(attribute(&last, "era").unwrap().value, "last");
    // 08:30 in Tokyo is 23:30 UTC the day before.
    let eve = client.entity("aland", "2024-04-12", 0).await.unwrap();
    assert_eq!(
        attribute(&eve, "mood").map(|a| a.value.as_str()),
        Some("calm")
    );
    let before = client
        .entity("aland", "2024-04-12T23:29:59Z", 0)
        .await
        .unwrap();
    assert!(attribute(&before, "mood").is_none());
    let exactly = client
        .entity("aland", "2024-04-12T23:30:00Z", 0)
        .await
        .unwrap();
    assert!(attribute(&exactly, "mood").unwrap().certain);
    server.stop().await;
}

#[tokio::test]
async fn a_redeclaration_changes_names_from_its_seq_on() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap(); // 1
    client
        .append(
            vec![event(
                "rename",
                "declaration",
                "1950",
                vec![declare(
                    "aland",
                    "Aland Republic",
                    proto::EntityType::Country,
                    &["ALR"],
                )],
            )],
            None,
        )
        .await
        .unwrap(); // 2
    let now = client.entity("alr", "", 0).await.unwrap().entity.unwrap();
    assert_eq!(
        (now.id.as_str(), now.name.as_str(), now.declared_by.as_str()),
        ("aland", "Aland Republic", "rename")
    );
    assert_eq!(now.aliases, vec!["ALR".to_string()]);
    assert_eq!(
        client.entity("ALD", "", 0).await.unwrap_err().code(),
        Code::NotFound,
        "the old alias is gone"
    );
    let then = client.entity("ALD", "", 1).await.unwrap().entity.unwrap();
    assert_eq!(
        (then.name.as_str(), then.declared_by.as_str()),
        ("Aland", "decl")
    );
    assert_eq!(
        client.entity("alr", "", 1).await.unwrap_err().code(),
        Code::NotFound
    );
    let listed = client
        .entities(proto::EntityType::Unspecified, "aland r", 0)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_correction_may_follow_its_target_in_one_batch() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "x",
                    "treaty_signed",
                    "1961",
                    vec![begin("aland", "borduria", "alliance")],
                ),
                correction(
                    event(
                        "c",
                        "treaty_signed",
                        "1962",
                        vec![begin("aland", "borduria", "alliance")],
                    ),
                    "x",
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let relation = client.relations("aland", "", "", "", 0).await.unwrap();
    assert_eq!(relation.len(), 1);
    assert_eq!(
        (relation[0].since.as_str(), relation[0].event_id.as_str()),
        ("1962", "c")
    );
    let then = client.relations("aland", "", "", "", 2).await.unwrap();
    assert_eq!(then[0].event_id, "x");
    assert!(client
        .relations("aland", "", "", "1961-12-31", 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        get_by_id(&mut client, "x").await.unwrap().superseded_by,
        "c"
    );
    server.stop().await;
}

#[tokio::test]
async fn answers_survive_a_restart() {
    use annals::server::{Config, Server};
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        seed: false,
        cache_bytes: 16 * 1024 * 1024,
        ..Config::default()
    };
    async fn connect(server: &Server) -> Client {
        timeout(
            WAIT,
            Client::connect(&format!("http://{}", server.local_addr())),
        )
        .await
        .unwrap()
        .unwrap()
    }
    async fn answers(client: &mut Client) -> impl PartialEq + std::fmt::Debug {
        (
            read_all(client).await,
            client.entity("ALD", "", 0).await.unwrap(),
            client.entity("aland", "1965", 2).await.unwrap(),
            client.relations("", "", "", "", 0).await.unwrap(),
            client.events(&EventQuery::default()).await.unwrap(),
            client.history("aland", "borduria", "", 0).await.unwrap(),
            client.diff("1950", "2000", "", 0).await.unwrap(),
            client
                .entities(proto::EntityType::Unspecified, "", 0)
                .await
                .unwrap(),
        )
    }

    let server = Server::start(&config).await.expect("starts");
    let mut client = connect(&server).await;
    client
        .append(
            vec![
                two_countries("decl"),
                event(
                    "x",
                    "treaty_signed",
                    "1961",
                    vec![begin("aland", "borduria", "alliance")],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    client
        .append(
            vec![
                correction(
                    event(
                        "c",
                        "treaty_signed",
                        "1962",
                        vec![begin("aland", "borduria", "alliance")],
                    ),
                    "x",
                ),
                event(
                    "y",
                    "inauguration",
                    "1970",
                    vec![set("aland", "leader", "anna")],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let before = answers(&mut client).await;
    let y = get_by_id(&mut client, "y").await.unwrap();
    drop(client);
    timeout(WAIT, server.shutdown()).await.unwrap().unwrap();

    let mut restarted = None;
    for _ in 0..50 {
        match Server::start(&config).await {
            Ok(server) => {
                restarted = Some(server);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let server = restarted.expect("restarts over the same directory");
    let mut client = connect(&server).await;
    assert_eq!(
        answers(&mut client).await,
        before,
        "the same answers after a restart"
    );

    // Idempotency, conflicts and corrections still know the old entries.
    let again = client
        .append(
            vec![event(
                "y",
                "inauguration",
                "1970",
                vec![set("aland", "leader", "anna")],
            )],
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.entries, vec![y.clone()]);
    let conflict = client
        .append(vec![event("y", "inauguration", "1971", vec![])], None)
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let twice = client
        .append(
            vec![correction(event("c2", "statement", "1963", vec![]), "x")],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let next = client
        .append(vec![event("z", "statement", "1980", vec![])], Some(4))
        .await
        .unwrap();
    assert_eq!(next.entries[0].seq, 5, "seqs continue");
    assert!(
        recorded(&next.entries[0]) >= recorded(&y),
        "recorded_at never decreases"
    );
    drop(client);
    timeout(WAIT, server.shutdown()).await.unwrap().unwrap();
}

/// A response that takes several TCP segments must not wait for the
/// client's delayed ACK (Nagle's algorithm on the server's socket costs
/// ~40 ms a call): the server sets TCP_NODELAY on every accepted connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_segment_responses_do_not_wait_for_delayed_acks() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let first = client.read_log(1, 1000, false).await.unwrap();
    let bytes = prost::Message::encoded_len(&first);
    assert!(
        bytes > 16 * 1024,
        "a response of several segments: {bytes} bytes"
    );
    const CALLS: u32 = 20;
    let started = std::time::Instant::now();
    for _ in 0..CALLS {
        client.read_log(1, 1000, false).await.unwrap();
    }
    let per_call = started.elapsed() / CALLS;
    assert!(
        per_call < Duration::from_millis(25),
        "{per_call:?} a call: responses are waiting for delayed ACKs"
    );
    server.stop().await;
}
