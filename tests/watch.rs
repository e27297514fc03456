//! Standing queries end to end: WatchEntity and WatchRelations over gRPC,
//! on the built-in data set, with back-dated events and corrections.

mod common;

use annals::proto;
use common::{begin, declare, event, set, TestServer};
use std::time::Duration;
use tonic::{Code, Streaming};

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a message within 20 s")
        .expect("no error")
        .expect("the stream goes on")
}

/// A back-dated event declaring a new country and its trade with North
/// Korea from `start`.
fn trade(id: &str, partner: &str, start: &str) -> proto::Event {
    event(
        id,
        "agreement",
        start,
        vec![
            declare(partner, partner, proto::EntityType::Country, &[]),
            begin("north-korea", partner, "trade"),
        ],
    )
}

fn trades_with(relations: &[proto::Relation], partner: &str) -> bool {
    relations.iter().any(|relation| {
        relation.kind == "trade" && (relation.a == partner || relation.b == partner)
    })
}

#[tokio::test]
async fn a_watch_in_1951_fires_for_back_dated_events_and_corrections_only() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let mut watch = client
        .watch_entity("north-korea", "1951-06-01", 0)
        .await
        .unwrap();
    let first = next(&mut watch).await;
    let now = client.entity("north-korea", "1951-06-01", 0).await.unwrap();
    assert_eq!(
        first.answer.as_ref(),
        Some(&now),
        "the first answer is GetEntity's"
    );
    assert_eq!(first.seq, common::last_seq(&mut client).await);
    assert!(first.event_id.is_empty());

    // A 2024 event and a change dated 1960 leave the 1951 answer alone; a
    // back-dated begin recorded after them changes it.
    client
        .append(
            vec![event(
                "late",
                "visit",
                "2024-04-13",
                vec![set("north-korea", "visited", "yes")],
            )],
            None,
        )
        .await
        .unwrap();
    client
        .append(vec![trade("in-1960", "ruritania", "1960")], None)
        .await
        .unwrap();
    let back_dated = client
        .append(vec![trade("in-1950", "borduria", "1950-03")], None)
        .await
        .unwrap();
    let changed = next(&mut watch).await;
    assert_eq!(
        changed.event_id, "in-1950",
        "the first change is the back-dated one"
    );
    assert_eq!(changed.seq, back_dated.last_seq);
    let relations = &changed.answer.as_ref().unwrap().relations;
    assert!(trades_with(relations, "borduria"), "{relations:?}");
    assert!(!trades_with(relations, "ruritania"));

    // A correction that withdraws it fires the watch again.
    let mut retraction = event("retract", "retraction", "1950-03", Vec::new());
    retraction.corrects = "in-1950".into();
    let corrected = client.append(vec![retraction], None).await.unwrap();
    let changed = next(&mut watch).await;
    assert_eq!(changed.event_id, "retract");
    assert_eq!(changed.seq, corrected.last_seq);
    assert!(!trades_with(&changed.answer.unwrap().relations, "borduria"));
    server.stop().await;
}

#[tokio::test]
async fn a_resumed_watch_gets_exactly_the_changes_it_missed() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let mut watch = client
        .watch_relations("north-korea", "", "trade", "1955", 0)
        .await
        .unwrap();
    let first = next(&mut watch).await;
    assert!(first.relations.is_empty(), "{:?}", first.relations);
    let seen = first.seq;
    drop(watch);
    let a = client
        .append(vec![trade("t-a", "aland", "1950")], None)
        .await
        .unwrap();
    client
        .append(
            vec![event("noise", "note", "1955", vec![set("china", "n", "1")])],
            None,
        )
        .await
        .unwrap();
    let b = client
        .append(vec![trade("t-b", "borduria", "1951")], None)
        .await
        .unwrap();

    let mut resumed = client
        .watch_relations("north-korea", "", "trade", "1955", seen)
        .await
        .unwrap();
    let again = next(&mut resumed).await;
    assert_eq!(
        (again.seq, again.relations.clone()),
        (seen, first.relations)
    );
    let one = next(&mut resumed).await;
    assert_eq!((one.seq, one.event_id.as_str()), (a.last_seq, "t-a"));
    assert_eq!(one.relations.len(), 1);
    let two = next(&mut resumed).await;
    assert_eq!((two.seq, two.event_id.as_str()), (b.last_seq, "t-b"));
    assert_eq!(two.relations.len(), 2);
    // Nothing more: the next change is the next message.
    let c = client
        .append(vec![trade("t-c", "carpania", "1952")], None)
        .await
        .unwrap();
    let three = next(&mut resumed).await;
    assert_eq!((three.seq, three.event_id.as_str()), (c.last_seq, "t-c"));
    server.stop().await;
}

#[tokio::test]
async fn watches_refuse_bad_input_and_are_capped() {
    let server = TestServer::configured(true, |config| config.limits.max_watches = 2).await;
    let mut client = server.client().await;
    let unknown = client.watch_entity("atlantis", "", 0).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let bad = client
        .watch_entity("china", "1951-13-45", 0)
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let beyond = client
        .watch_relations("china", "", "", "", 1_000_000)
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::InvalidArgument, "{beyond:?}");

    let _one = client.watch_entity("china", "", 0).await.unwrap();
    let _two = client.watch_relations("", "", "", "", 0).await.unwrap();
    let third = client.watch_entity("north-korea", "", 0).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    assert!(third.message().contains('2'), "{}", third.message());
    drop(_one);
    // A closed watch frees its place (its task notices the closed stream).
    let mut reopened = None;
    for _ in 0..50 {
        match client.watch_entity("north-korea", "", 0).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(reopened.is_some(), "a closed watch's place is given back");
    server.stop().await;
}

#[tokio::test]
async fn a_watcher_that_never_reads_does_not_hold_up_appends() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let mut idle = client.watch_entity("north-korea", "", 0).await.unwrap();
    const APPENDS: usize = 5_000;
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for number in (writer..APPENDS).step_by(8) {
                    let effects = vec![set("north-korea", "counter", &number.to_string())];
                    let event = event(&format!("count-{number}"), "note", "2020", effects);
                    client.append(vec![event], None).await.expect("an append");
                }
            })
        })
        .collect();
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(120), writer)
            .await
            .expect("the appends finish while the watcher reads nothing")
            .unwrap();
    }
    // The watcher, reading at last, gets answers in seq order and then the
    // latest one; what its transport did not buffer was folded.
    let now = client.entity("north-korea", "", 0).await.unwrap();
    let mut received = 0;
    let mut seq = 0;
    loop {
        let message = next(&mut idle).await;
        received += 1;
        assert!(message.seq > seq, "answers come in seq order");
        seq = message.seq;
        if message.answer.as_ref() == Some(&now) {
            break;
        }
    }
    // How many arrive depends on what the transport buffered before the
    // watch had to wait (the folding itself is tested in
    // `service::standing`).
    eprintln!("{received} answers for {APPENDS} changes");
    assert!(received <= APPENDS + 1);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_watches_with_unavailable() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let mut watch = client.watch_entity("china", "", 0).await.unwrap();
    next(&mut watch).await;
    let stopping = tokio::spawn(server.stop());
    let ended = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch ends");
    match ended {
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(other) => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    stopping.await.unwrap();
}

// The test thread blocks on the CLI's output: the server needs workers of
// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annals_watch_prints_the_answer_then_each_change() {
    use std::io::{BufRead, BufReader};
    let server = TestServer::seeded().await;
    let mut child = std::process::Command::new(common::BINARY)
        .args([
            "watch",
            "north-korea",
            "--at",
            "1951-06-01",
            "--server",
            &server.url(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let wait_for = |needle: &str| {
        let mut seen = Vec::new();
        loop {
            let line = received
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no line with {needle:?} in {seen:#?}"));
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
    };
    wait_for("as of seq");
    wait_for("at_war");
    let mut client = server.client().await;
    let appended = client
        .append(vec![trade("cli-1950", "borduria", "1950-03")], None)
        .await
        .unwrap();
    let header = wait_for("(event cli-1950)");
    assert!(header.contains(&appended.last_seq.to_string()), "{header}");
    let change = wait_for("begun");
    assert!(
        change.contains("trade") && change.contains("borduria"),
        "{change}"
    );
    let _ = child.kill();
    let _ = child.wait();
    server.stop().await;
}
