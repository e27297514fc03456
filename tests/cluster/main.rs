//! Cluster mode end to end: three nats-server processes and two or three
//! `annals serve --log …` nodes on loopback, per case. Skipped (with a
//! line saying why) when no nats-server ≥ 2.10 is found; a failure under
//! `ANNALS_REQUIRE_NATS=1`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../oracle/compare.rs"]
mod compare;
mod faults;
mod harness;
#[path = "../oracle/history.rs"]
mod history;
mod oracle;
#[path = "../oracle/replay.rs"]
mod replay;

use annals::client::Client;
use annals::proto;
use common::{declarations, event, set, two_countries};
use harness::{eventually, nats_server, two_nodes, Nats, Node};
use std::time::Duration;
use tonic::Code;

/// Every entry of a node's log, in seq order.
pub async fn whole_log(client: &mut Client) -> Vec<proto::LogEntry> {
    let mut entries = Vec::new();
    loop {
        let page = client
            .read_log(entries.len() as u64 + 1, 1000, false)
            .await
            .expect("ReadLog answers");
        if page.entries.is_empty() {
            return entries;
        }
        entries.extend(page.entries);
    }
}

/// Waits until both nodes hold the same log of at least `seq` entries,
/// and returns it.
pub async fn same_log(a: &mut Client, b: &mut Client, seq: u64) -> Vec<proto::LogEntry> {
    eventually(Duration::from_secs(60), "both views reach the seq", || {
        let (mut a, mut b) = (a.clone(), b.clone());
        async move { common::last_seq(&mut a).await >= seq && common::last_seq(&mut b).await >= seq }
    })
    .await;
    let (left, right) = (whole_log(a).await, whole_log(b).await);
    assert_eq!(left.len(), right.len(), "the nodes' logs have one length");
    assert_eq!(left, right, "the nodes hold the same log, seq for seq");
    for (position, entry) in left.iter().enumerate() {
        assert_eq!(entry.seq, position as u64 + 1, "seqs are contiguous");
    }
    left
}

async fn serving(node: &Node) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let Ok(channel) = tonic::transport::Channel::from_shared(node.url())
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    let request = HealthCheckRequest {
        service: "annals.v1.TimelineService".into(),
    };
    HealthClient::new(channel)
        .check(request)
        .await
        .is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_seed_once_and_serve_one_log() {
    let Some(binary) = nats_server() else { return };
    let nats = Nats::start(binary);
    nats.ready().await;
    let dir = tempfile::tempdir().unwrap();
    // Two nodes on an empty stream at once: the data set lands once.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Node::start(&nats, &dir.path().join("a"), &[]));
        let b = scope.spawn(|| Node::start(&nats, &dir.path().join("b"), &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let log = same_log(&mut ca, &mut cb, 1).await;
    let seed = annals::seed::article_events();
    assert_eq!(log.len(), seed.len(), "the built-in data set, once");
    let stream = nats.jetstream().await;
    let info = stream
        .get_stream("ANNALS")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 1, "one message per Append");
    // The stream as DESIGN.md sets it up.
    use async_nats::jetstream::stream::{DiscardPolicy, StorageType};
    let config = &info.config;
    assert_eq!(config.num_replicas, 3);
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.discard, DiscardPolicy::New);
    assert!(config.deny_delete && config.deny_purge && config.allow_direct);
    eventually(
        Duration::from_secs(30),
        "both nodes report SERVING",
        || async { serving(&a).await && serving(&b).await },
    )
    .await;

    // Append on one node, read it on the other with the returned seq.
    let appended = cb
        .append(vec![two_countries("c-1")], None)
        .await
        .expect("an append on b");
    let last = appended.last_seq;
    let on_a = ca
        .entity("aland", "", last)
        .await
        .expect("a waits for its view to hold the seq");
    assert_eq!(on_a.entity.unwrap().name, "Aland");
    assert_eq!(ca.event("c-1").await.unwrap().seq, last);

    // A seq that never comes: UNAVAILABLE within the call's deadline.
    let mut request = tonic::Request::new(proto::GetEntityRequest {
        id: "aland".into(),
        at: String::new(),
        as_of_seq: last + 1000,
    });
    request.set_timeout(Duration::from_millis(700));
    let status = ca.raw().get_entity(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("view"), "{}", status.message());

    // The single-node guarantees, across nodes.
    let again = ca.append(vec![two_countries("c-1")], None).await.unwrap();
    assert_eq!(
        again.entries[0].seq, last,
        "a re-send on the other node: the original"
    );
    let mut other = two_countries("c-1");
    other.kind = "other".into();
    let refused = ca.append(vec![other], None).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let stale = ca
        .append(
            vec![event(
                "c-2",
                "note",
                "1901",
                vec![set("aland", "motto", "x")],
            )],
            Some(1),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert!(
        stale.message().contains(&last.to_string()),
        "{}",
        stale.message()
    );

    // Subscribe on a sees what b appends.
    let mut followed = ca.subscribe(last + 1, "", "").await.unwrap();
    let next = cb
        .append(
            vec![event(
                "c-3",
                "note",
                "1902",
                vec![set("aland", "motto", "y")],
            )],
            None,
        )
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), followed.message())
        .await
        .expect("the subscription delivers")
        .unwrap()
        .unwrap();
    assert_eq!(seen.entry.unwrap().seq, next.last_seq);

    // An append larger than the servers' max_payload (8 MB here) is
    // RESOURCE_EXHAUSTED, and nothing of it is stored.
    let large: Vec<proto::Event> = (0..2_300)
        .map(|number| {
            let mut event = event(
                &format!("big-{number}"),
                "note",
                "1903",
                vec![set("aland", "n", "1")],
            );
            event.summary = "x".repeat(4_000);
            event
        })
        .collect();
    let before = common::last_seq(&mut cb).await;
    let refused = cb.append(large, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_payload"),
        "{}",
        refused.message()
    );
    assert_eq!(common::last_seq(&mut cb).await, before);
    assert!(cb.event("big-0").await.is_err());

    // A third node with an empty --data-dir builds its view from the stream.
    let c = Node::start(&nats, &dir.path().join("c"), &[]);
    let mut cc = c.client().await;
    let built = same_log(&mut ca, &mut cc, next.last_seq).await;
    assert_eq!(built.len() as u64, next.last_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_each_race_has_one_winner() {
    let Some(cluster) = two_nodes().await else {
        return;
    };
    let (a, b) = (&cluster.a, &cluster.b);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    ca.append(vec![declarations("d", &["x", "y"])], None)
        .await
        .unwrap();
    for round in 0..8 {
        // The same event sent to both nodes at once: stored once.
        let same = event(
            &format!("same-{round}"),
            "note",
            "1950",
            vec![set("x", "n", "1")],
        );
        let (left, right) = tokio::join!(
            ca.append(vec![same.clone()], None),
            cb.append(vec![same.clone()], None)
        );
        let (left, right) = (left.expect("a's answer"), right.expect("b's answer"));
        assert_eq!(
            left.entries[0].seq, right.entries[0].seq,
            "one seq for one id"
        );

        // The same id with other content: one wins, the other is told.
        let mut first = event(
            &format!("id-{round}"),
            "note",
            "1950",
            vec![set("x", "n", "2")],
        );
        let mut second = first.clone();
        first.kind = "first".into();
        second.kind = "second".into();
        let (left, right) =
            tokio::join!(ca.append(vec![first], None), cb.append(vec![second], None));
        let codes = [&left, &right].map(|answer| answer.as_ref().err().map(|status| status.code()));
        assert_eq!(
            codes.iter().filter(|code| code.is_none()).count(),
            1,
            "exactly one wins: {left:?} {right:?}"
        );
        assert!(codes.contains(&Some(Code::AlreadyExists)), "{codes:?}");

        // The same expected_last_seq: one wins, the other is refused.
        let expected = common::last_seq(&mut ca).await;
        let expected = expected.max(common::last_seq(&mut cb).await);
        eventually(
            Duration::from_secs(30),
            "both views at the same seq",
            || {
                let (mut a, mut b) = (ca.clone(), cb.clone());
                async move {
                    common::last_seq(&mut a).await == expected
                        && common::last_seq(&mut b).await == expected
                }
            },
        )
        .await;
        let (left, right) = tokio::join!(
            ca.append(
                vec![event(
                    &format!("l-{round}"),
                    "note",
                    "1951",
                    vec![set("y", "n", "l")]
                )],
                Some(expected)
            ),
            cb.append(
                vec![event(
                    &format!("r-{round}"),
                    "note",
                    "1951",
                    vec![set("y", "n", "r")]
                )],
                Some(expected)
            )
        );
        let codes = [&left, &right].map(|answer| answer.as_ref().err().map(|status| status.code()));
        assert_eq!(
            codes.iter().filter(|code| code.is_none()).count(),
            1,
            "exactly one wins: {left:?} {right:?}"
        );
        assert!(codes.contains(&Some(Code::FailedPrecondition)), "{codes:?}");
    }
    let log = same_log(&mut ca, &mut cb, 1).await;
    // 1 declaration, then per round: same-, id-, and l- or r-.
    assert_eq!(log.len(), 1 + 8 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_store_moves_into_a_stream_with_its_seqs_and_times() {
    let Some(binary) = nats_server() else { return };
    let nats = Nats::start(binary);
    nats.ready().await;
    let dir = tempfile::tempdir().unwrap();
    // A single-node store with the data set and one more append.
    let single = common::ServeProcess::start(&dir.path().join("single"), &[]);
    let mut client = Client::connect(&single.url()).await.unwrap();
    client
        .append(vec![two_countries("moved-1")], None)
        .await
        .unwrap();
    let original = whole_log(&mut client).await;
    let export = dir.path().join("export.jsonl");
    let exported = std::process::Command::new(common::BINARY)
        .args(["export", "--server", &single.url(), "--out"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(exported.status.success(), "{exported:?}");
    single.terminate();

    // One command moves it: the export, published in order.
    let restored = std::process::Command::new(common::BINARY)
        .args(["restore"])
        .arg(&export)
        .args(["--log", &nats.url(), "--data-dir"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(restored.status.success(), "{restored:?}");
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(
        said.contains(&format!("restored {} log entries", original.len())),
        "{said}"
    );
    // Again into the same stream: refused, nothing changes.
    let again = std::process::Command::new(common::BINARY)
        .args(["restore"])
        .arg(&export)
        .args(["--log", &nats.url(), "--data-dir"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("empty stream"),
        "{again:?}"
    );

    // The restored view serves, and a new node builds the same log.
    let a = Node::start(&nats, &dir.path().join("a"), &[]);
    let b = Node::start(&nats, &dir.path().join("b"), &[]);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let moved = same_log(&mut ca, &mut cb, original.len() as u64).await;
    assert_eq!(moved, original, "seqs, recorded_at and events as they were");
}
