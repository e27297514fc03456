//! The faults a cluster must survive: a stream leader killed during
//! appends, an annals node killed, the server hosting a view's consumer
//! killed, every server stopped.

use crate::common::{declarations, event, set};
use crate::harness::{eventually, nats_server, two_nodes, Nats, Node};
use crate::{same_log, whole_log};
use annals::client::Client;
use annals::proto;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;

/// Three events of one append, all or none.
fn batch(writer: &str, number: usize) -> Vec<proto::Event> {
    (0..3)
        .map(|part| {
            event(
                &format!("{writer}-{number}-{part}"),
                "note",
                "1950",
                vec![set("x", "count", &number.to_string())],
            )
        })
        .collect()
}

/// Appends batches until `stop`, each re-sent with the same ids until it
/// is answered (UNAVAILABLE during an election). Returns the acknowledged
/// batches' ids.
async fn keep_appending(
    mut client: Client,
    writer: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut number = 0;
    while !stop.load(Ordering::SeqCst) {
        let events = batch(writer, number);
        answered(&mut client, events.clone(), Duration::from_secs(60)).await;
        acknowledged.extend(events.into_iter().map(|event| event.id));
        number += 1;
    }
    acknowledged
}

/// Appends `events`, re-sent with the same ids while the answer is
/// UNAVAILABLE or DEADLINE_EXCEEDED (an election, an outage), for at most
/// `limit`; any other refusal fails the test.
async fn answered(
    client: &mut Client,
    events: Vec<proto::Event>,
    limit: Duration,
) -> proto::AppendResponse {
    let give_up = Instant::now() + limit;
    loop {
        match client.append(events.clone(), None).await {
            Ok(answer) => return answer,
            Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                assert!(
                    Instant::now() < give_up,
                    "appends did not resume within {limit:?}: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("an append was refused: {status:?}"),
        }
    }
}

/// Checks a log after the faults: every acknowledged id once, each batch
/// whole and in one piece.
fn audit(log: &[proto::LogEntry], acknowledged: &[String]) {
    let mut seqs: HashMap<&str, u64> = HashMap::new();
    for entry in log {
        let id = entry.event.as_ref().unwrap().id.as_str();
        assert!(seqs.insert(id, entry.seq).is_none(), "{id} is stored twice");
    }
    for id in acknowledged {
        assert!(
            seqs.contains_key(id.as_str()),
            "acknowledged {id} is missing"
        );
    }
    // A batch is three consecutive seqs, or absent altogether.
    let batches: HashSet<&str> = seqs
        .keys()
        .filter_map(|id| id.rsplit_once('-').map(|(batch, _)| batch))
        .filter(|batch| batch.contains('-'))
        .collect();
    for batch in batches {
        let parts: Vec<Option<&u64>> = (0..3)
            .map(|part| seqs.get(format!("{batch}-{part}").as_str()))
            .collect();
        let parts: Vec<u64> = parts
            .iter()
            .map(|seq| *seq.unwrap_or_else(|| panic!("batch {batch} is partial")))
            .collect();
        assert!(
            parts[1] == parts[0] + 1 && parts[2] == parts[1] + 1,
            "batch {batch} is not in one piece: {parts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_no_acknowledged_append() {
    let Some(mut cluster) = two_nodes().await else {
        return;
    };
    let (a, b, nats) = (&cluster.a, &cluster.b, &mut cluster.nats);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    ca.append(vec![declarations("d", &["x"])], None)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        tokio::spawn(keep_appending(ca.clone(), "a", Arc::clone(&stop))),
        tokio::spawn(keep_appending(cb.clone(), "b", Arc::clone(&stop))),
    ];
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = nats
            .stream_leader("ANNALS")
            .await
            .expect("the stream has a leader");
        let before = crate::common::last_seq(&mut ca).await;
        let killed = Instant::now();
        nats.kill(leader);
        // Appends continue once a new leader is elected.
        eventually(
            Duration::from_secs(60),
            "appends resume after the election",
            || {
                let mut client = ca.clone();
                async move { crate::common::last_seq(&mut client).await > before + 6 }
            },
        )
        .await;
        eprintln!(
            "appends resumed {:?} after the leader n{leader} was killed",
            killed.elapsed()
        );
        nats.start_server(leader);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let last = crate::common::last_seq(&mut ca)
        .await
        .max(crate::common::last_seq(&mut cb).await);
    let log = same_log(&mut ca, &mut cb, last).await;
    assert!(
        acknowledged.len() > 12,
        "appends went on: {}",
        acknowledged.len()
    );
    audit(&log, &acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_catches_up_from_its_last_message() {
    let Some(mut cluster) = two_nodes().await else {
        return;
    };
    let (a, b) = (&cluster.a, &mut cluster.b);
    let mut ca = a.client().await;
    ca.append(vec![declarations("d", &["x"])], None)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(keep_appending(ca.clone(), "a", Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(800)).await;
    b.kill();
    // a keeps serving while b is gone.
    let before = crate::common::last_seq(&mut ca).await;
    eventually(Duration::from_secs(30), "a appends without b", || {
        let mut client = ca.clone();
        async move { crate::common::last_seq(&mut client).await > before + 9 }
    })
    .await;
    b.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let acknowledged = writer.await.unwrap();
    let mut cb = b.client().await;
    let last = crate::common::last_seq(&mut ca).await;
    let log = same_log(&mut ca, &mut cb, last).await;
    audit(&log, &acknowledged);

    // A stopped node's view is a data directory like any other: verify
    // and rebuild-indexes work on it, and it serves again after them.
    b.kill();
    for command in ["verify", "rebuild-indexes"] {
        let output = std::process::Command::new(crate::common::BINARY)
            .args([command, "--data-dir"])
            .arg(&b.data_dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{command}: {output:?}");
    }
    b.restart();
    let mut cb = b.client().await;
    assert_eq!(same_log(&mut ca, &mut cb, last).await, log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_resumes_within_30_s_when_its_consumers_server_dies() {
    let Some(mut cluster) = two_nodes().await else {
        return;
    };
    let (a, b, nats) = (&cluster.a, &cluster.b, &mut cluster.nats);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    ca.append(vec![declarations("d", &["x"])], None)
        .await
        .unwrap();
    same_log(&mut ca, &mut cb, 1).await;
    let hosts = nats.consumer_hosts("ANNALS").await;
    assert_eq!(hosts.len(), 2, "one consumer per node: {hosts:?}");
    let host = hosts[0];
    let killed = Instant::now();
    nats.kill(host);
    // Appended on both nodes (one of them may wait out an election), seen
    // on both within 30 s of the kill.
    let mut last = 0;
    for (number, client) in [&mut ca, &mut cb].into_iter().enumerate() {
        let events = vec![event(
            &format!("after-{number}"),
            "note",
            "1951",
            vec![set("x", "n", "1")],
        )];
        let answer = answered(client, events, Duration::from_secs(25)).await;
        last = last.max(answer.last_seq);
    }
    let log = same_log(&mut ca, &mut cb, last).await;
    let resumed = killed.elapsed();
    eprintln!("both views held the appends {resumed:?} after n{host} was killed");
    assert!(
        resumed < Duration::from_secs(30),
        "the views resumed after {resumed:?}"
    );
    assert_eq!(log.len() as u64, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_stopped_appends_are_unavailable_and_reads_go_on() {
    let Some(binary) = nats_server() else { return };
    let mut nats = Nats::start(binary);
    nats.ready().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&nats, &dir.path().join("a"), &[]);
    let mut ca = a.client().await;
    let before = whole_log(&mut ca).await;
    for number in 0..3 {
        nats.kill(number);
    }
    let refused = ca
        .append(
            vec![event("lost", "note", "1951", vec![set("china", "n", "1")])],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("stream"),
        "{}",
        refused.message()
    );
    // Reads answer from the view; health says the node cannot append.
    let relations = ca
        .relations("china", "", "", "1951-06-01", 0)
        .await
        .unwrap();
    assert!(!relations.is_empty());
    assert_eq!(whole_log(&mut ca).await, before);
    eventually(
        Duration::from_secs(10),
        "health reports NOT_SERVING",
        || async { !crate::serving(&a).await },
    )
    .await;
    for number in 0..3 {
        nats.start_server(number);
    }
    let events = vec![event("after", "note", "1951", vec![set("china", "n", "2")])];
    let answer = answered(&mut ca, events, Duration::from_secs(60)).await;
    assert!(answer.last_seq > before.len() as u64);
    eventually(
        Duration::from_secs(30),
        "health reports SERVING again",
        || async { crate::serving(&a).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_on_two_nodes_share_one_gapless_log() {
    let Some(cluster) = two_nodes().await else {
        return;
    };
    let (a, b) = (&cluster.a, &cluster.b);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    ca.append(vec![declarations("d", &["x"])], None)
        .await
        .unwrap();
    // 12 clients per node, each with 8 batches, some re-sent to the
    // other node: the writers publish many appends at once and lose
    // races to each other all the time.
    let writers = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    let mut tasks = Vec::new();
    for (number, writer) in writers.iter().enumerate() {
        for (node, client) in [("A", ca.clone()), ("B", cb.clone())] {
            let (mut client, mut other) =
                (client, if node == "A" { cb.clone() } else { ca.clone() });
            let name: &'static str = Box::leak(format!("{writer}{node}").into_boxed_str());
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for round in 0..8 {
                    let events = batch(name, round);
                    let answer = client
                        .append(events.clone(), None)
                        .await
                        .expect("an append");
                    if (round + number) % 3 == 0 {
                        let again = other.append(events.clone(), None).await.expect("a re-send");
                        let seqs = |answer: &proto::AppendResponse| -> Vec<u64> {
                            answer.entries.iter().map(|entry| entry.seq).collect()
                        };
                        assert_eq!(
                            seqs(&answer),
                            seqs(&again),
                            "a re-send elsewhere: the originals"
                        );
                    }
                    acknowledged.extend(events.into_iter().map(|event| event.id));
                }
                acknowledged
            }));
        }
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    let last = crate::common::last_seq(&mut ca)
        .await
        .max(crate::common::last_seq(&mut cb).await);
    let log = same_log(&mut ca, &mut cb, last).await;
    assert_eq!(log.len(), 1 + acknowledged.len(), "each batch once");
    audit(&log, &acknowledged);
}
