//! Overload: calls beyond the in-flight limit are shed at once with
//! RESOURCE_EXHAUSTED; a call that stalls ends at the deadline; a flood
//! leaves the server responsive and its memory bounded; subscriptions are
//! capped; a subscriber that stops reading blocks no writer; HTTP/2 streams
//! per connection are capped.

mod common;

use annals::client::Client;
use annals::proto;
use common::{event, set, TestServer};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

/// These tests measure timing under load they create themselves: one at a
/// time, so that one's flood does not starve another's probe.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Resident memory of this process (the server runs in it), in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|number| number.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

const MEMORY_BOUND: u64 = 300 * 1024 * 1024;

/// An Append whose request message never comes: the server holds the call
/// (and its in-flight slot) until the deadline. Resolves to its status.
async fn stalled_append(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let codec = tonic_prost::ProstCodec::<proto::AppendRequest, proto::AppendResponse>::default();
    let path = PathAndQuery::from_static("/annals.v1.TimelineService/Append");
    let never = tokio_stream::pending::<proto::AppendRequest>();
    grpc.client_streaming(tonic::Request::new(never), path, codec)
        .await
        .map(|_| ())
}

async fn get_entity(client: &mut Client) -> Result<(), tonic::Status> {
    timeout(WAIT, client.entity("china", "1962-01-01", 0))
        .await
        .expect("answers in time")
        .map(|_| ())
}

async fn health_serving(channel: tonic::transport::Channel) -> bool {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let mut health = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: "annals.v1.TimelineService".into(),
    };
    matches!(
        timeout(WAIT, health.check(request)).await,
        Ok(Ok(response)) if response.get_ref().status == serving
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_limit_are_shed_and_stalled_calls_end_at_the_deadline() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const LIMIT: usize = 4;
    let server = TestServer::configured(true, |config| {
        config.limits.max_in_flight = LIMIT;
        config.limits.deadline = Duration::from_secs(20);
    })
    .await;
    let mut client = server.client().await;
    let before = client.read_log(0, 1, true).await.unwrap().last_seq;

    let mut stalled = Vec::new();
    for _ in 0..LIMIT {
        stalled.push(tokio::spawn(stalled_append(server.channel().await)));
    }

    // Once the stalled calls hold every slot, the next call is shed, and
    // at once. (Wait for that moment, boundedly.) A stalled call that
    // arrived while a probe held a slot was itself shed: it starts again.
    let start = Instant::now();
    let shed = loop {
        for call in stalled.iter_mut() {
            if call.is_finished() {
                let ended =
                    std::mem::replace(call, tokio::spawn(stalled_append(server.channel().await)));
                let status = ended.await.unwrap().unwrap_err();
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            }
        }
        let asked = Instant::now();
        match get_entity(&mut client).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                break (status, asked.elapsed())
            }
            Err(status) => panic!("only RESOURCE_EXHAUSTED may refuse it: {status:?}"),
            Ok(()) => {
                assert!(start.elapsed() < Duration::from_secs(15), "never shed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert!(shed.0.message().contains("calls in flight"), "{:?}", shed.0);
    assert!(
        shed.1 < Duration::from_secs(2),
        "shed at once, not queued: {:?}",
        shed.1
    );
    // Health answers while the TimelineService is full.
    assert!(health_serving(server.channel().await).await);

    // The stalled calls end with DEADLINE_EXCEEDED, which frees their slots.
    for call in stalled {
        let status = timeout(WAIT, call)
            .await
            .expect("the deadline ends the call")
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("deadline"), "{status:?}");
    }
    get_entity(&mut client).await.expect("served again");
    let after = client.read_log(0, 1, true).await.unwrap().last_seq;
    assert_eq!(after, before, "nothing was stored");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_shed_quickly_and_the_server_stays_responsive() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const TASKS: usize = 64;
    const CALLS: usize = 30;
    let server = TestServer::configured(true, |config| {
        config.limits.max_in_flight = 8;
    })
    .await;
    let mut probe = server.client().await;
    let probe_channel = server.channel().await;
    let memory_before = resident_bytes();

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.client().await);
    }
    let flood: Vec<_> = (0..TASKS)
        .map(|task| {
            let mut client = clients[task % clients.len()].clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(CALLS);
                for call in 0..CALLS {
                    let asked = Instant::now();
                    let result = match (task + call) % 3 {
                        0 => {
                            let id = format!("flood-{task}-{call}");
                            let effect = set("china", "flood_marker", &id);
                            client
                                .append(vec![event(&id, "statement", "2001", vec![effect])], None)
                                .await
                                .map(|_| ())
                        }
                        1 => client.entity("north-korea", "", 0).await.map(|_| ()),
                        _ => client
                            .raw()
                            .list_events(proto::ListEventsRequest {
                                page_size: 1000,
                                ..Default::default()
                            })
                            .await
                            .map(|_| ()),
                    };
                    outcomes.push((result.map_err(|status| status.code()), asked.elapsed()));
                }
                outcomes
            })
        })
        .collect();

    // While the flood runs, health and GetEntity answer within a bound
    // (GetEntity may itself be shed: that is an answer too).
    let mut probes = 0;
    while flood.iter().any(|task| !task.is_finished()) && probes < 200 {
        assert!(
            health_serving(probe_channel.clone()).await,
            "health answers during the flood"
        );
        match timeout(Duration::from_secs(10), probe.entity("china", "", 0)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
            Err(_) => panic!("GetEntity did not answer within 10 s during the flood"),
        }
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (mut ok, mut shed, mut slowest_shed) = (0, 0, Duration::ZERO);
    for task in flood {
        let outcomes = timeout(Duration::from_secs(120), task)
            .await
            .expect("the flood ends in time")
            .unwrap();
        for (outcome, took) in outcomes {
            match outcome {
                Ok(()) => ok += 1,
                Err(Code::ResourceExhausted) => {
                    shed += 1;
                    slowest_shed = slowest_shed.max(took);
                }
                Err(code) => panic!("a flooded call failed with {code:?}"),
            }
        }
    }
    assert_eq!(ok + shed, TASKS * CALLS);
    assert!(ok > 0, "some calls were served");
    assert!(
        slowest_shed < Duration::from_secs(5),
        "shed calls are answered at once, not queued: the slowest took {slowest_shed:?}"
    );
    eprintln!("flood: {ok} served, {shed} shed, slowest shed {slowest_shed:?}, {probes} probes");

    // Afterwards: served, healthy, and memory within a bound.
    get_entity(&mut probe)
        .await
        .expect("served after the flood");
    assert!(health_serving(probe_channel).await);
    let grown = resident_bytes().saturating_sub(memory_before);
    assert!(
        grown < MEMORY_BOUND,
        "resident memory grew by {grown} bytes"
    );
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_beyond_the_cap_are_refused_until_one_closes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = TestServer::configured(true, |config| config.limits.max_subscribers = 2).await;
    let mut client = server.client().await;
    let first = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap();
    let second = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap();
    let refused = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("subscriptions"), "{refused:?}");
    get_entity(&mut client)
        .await
        .expect("other calls are served");

    // Closing one frees its place (once the server notices the close).
    drop(first);
    let start = Instant::now();
    let mut third = loop {
        match timeout(WAIT, client.subscribe(1, "", "")).await.unwrap() {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    start.elapsed() < WAIT,
                    "the closed subscription's place was never freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    let entry = timeout(WAIT, third.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(entry.entry.map(|entry| entry.seq), Some(1));
    drop(second);
    drop(third);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_blocks_no_writer() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const EVENTS: usize = 5_000;
    const BATCH: usize = 250;
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let before = client.read_log(0, 1, true).await.unwrap().last_seq;
    let memory_before = resident_bytes();

    // Subscribed from the start of the log, on its own connection, and
    // never read.
    let mut idle = Client::from_channel(server.channel().await);
    let stalled = timeout(WAIT, idle.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap();

    let started = Instant::now();
    let summary = "x".repeat(512);
    for batch in 0..EVENTS / BATCH {
        let events = (0..BATCH)
            .map(|index| {
                let id = format!("while-stalled-{batch}-{index}");
                let mut event = event(&id, "statement", "2002", vec![set("china", "note", &id)]);
                event.summary = summary.clone();
                event
            })
            .collect();
        timeout(Duration::from_secs(60), client.append(events, None))
            .await
            .expect("an append is not held up by a stalled subscriber")
            .expect("appended");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(120),
        "{EVENTS} events took {took:?}"
    );
    let last = client.read_log(0, 1, true).await.unwrap().last_seq;
    assert_eq!(last, before + EVENTS as u64);
    get_entity(&mut client).await.expect("queries are served");
    let grown = resident_bytes().saturating_sub(memory_before);
    assert!(
        grown < MEMORY_BOUND,
        "resident memory grew by {grown} bytes"
    );

    // The subscriber, reading at last, gets the log in order from seq 1.
    let mut stalled = stalled;
    for expected in 1..=100u64 {
        let message = timeout(WAIT, stalled.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(message.entry.map(|entry| entry.seq), Some(expected));
    }
    drop(stalled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_has_at_most_its_cap_of_streams_open() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = TestServer::configured(true, |config| {
        config.limits.max_streams_per_connection = 2;
        config.limits.deadline = Duration::from_secs(6);
    })
    .await;
    let capped = server.channel().await;
    let stalled: Vec<_> = (0..2)
        .map(|_| tokio::spawn(stalled_append(capped.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A third call on the same connection waits for a free stream...
    let mut same = Client::from_channel(capped.clone());
    let waiting = tokio::spawn(async move { get_entity(&mut same).await });
    // ...while another connection is served.
    let mut other = server.client().await;
    get_entity(&mut other)
        .await
        .expect("another connection is served");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the third stream waited for a free one"
    );

    for call in stalled {
        let status = timeout(WAIT, call).await.unwrap().unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    timeout(WAIT, waiting)
        .await
        .expect("served once a stream is free")
        .unwrap()
        .expect("served");
    server.stop().await;
}
