//! Every error code DESIGN.md names (auth is not built yet): the code, a
//! message that names what was wrong, `google.rpc.BadRequest` details for
//! bad input, a log left unchanged, and a server that keeps serving.

mod common;

use annals::client::{Client, EventQuery, TimelineServiceClient};
use annals::proto;
use annals::server::{Config, Server};
use common::{begin, event, get_by_seq, last_seq, open_sled, set, two_countries, TestServer};
use std::path::Path;
use std::time::Duration;
use tokio::time::timeout;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

/// A server with `aland` and `borduria` declared (seq 1) and one more
/// event `x` (seq 2) that begins their alliance.
async fn small_server() -> (TestServer, Client) {
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
            ],
            None,
        )
        .await
        .expect("the set-up is appended");
    (server, client)
}

/// Asserts the code, and that the message mentions each of `mentions`.
fn assert_status(status: &Status, code: Code, mentions: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    for mention in mentions {
        assert!(
            status.message().contains(mention),
            "the message {:?} should name {mention:?}",
            status.message()
        );
    }
}

/// The fields of the `google.rpc.BadRequest` details.
fn violated_fields(status: &Status) -> Vec<String> {
    let details = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT carries google.rpc.BadRequest: {status:?}"));
    assert!(!details.field_violations.is_empty());
    for violation in &details.field_violations {
        assert!(
            !violation.description.is_empty(),
            "a violation says what is wrong"
        );
    }
    details
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

fn assert_bad_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        violated_fields(status),
        vec![field.to_string()],
        "{status:?}"
    );
}

/// Nothing changed, and the server still reads and appends.
async fn assert_unchanged_and_serving(client: &mut Client, before: u64, probe: &str) {
    assert_eq!(
        last_seq(client).await,
        before,
        "a refused request changes nothing"
    );
    if before > 0 {
        let first = get_by_seq(client, 1).await.expect("still answers queries");
        assert_eq!(first.seq, 1);
    }
    let response = client
        .append(
            vec![event(probe, "statement", "2000", vec![])],
            Some(before),
        )
        .await
        .expect("still takes appends");
    assert_eq!(response.entries[0].seq, before + 1);
}

// ------------------------------------------------------- INVALID_ARGUMENT

#[tokio::test]
async fn invalid_argument_unparseable_time() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;

    let error = client
        .append(vec![event("t-1", "meeting", "1950-13", vec![])], None)
        .await
        .unwrap_err();
    assert_status(
        &error,
        Code::InvalidArgument,
        &["1950-13", "occurred.start"],
    );
    assert_bad_field(&error, "events[0].occurred.start");

    // The path names the position in the batch.
    let error = client
        .append(
            vec![
                event("t-1", "meeting", "1950-12", vec![]),
                event("t-2", "meeting", "1950-13", vec![]),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert_bad_field(&error, "events[1].occurred.start");

    // An effect's own time.
    let error = client
        .append(
            vec![event(
                "t-3",
                "meeting",
                "1950",
                vec![common::at("1950-02-30", set("aland", "leader", "anna"))],
            )],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["1950-02-30"]);
    assert_bad_field(&error, "events[0].effects[0].at");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_end_before_start() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let mut reversed = event("rev", "war", "2000-05", vec![]);
    reversed.occurred.as_mut().unwrap().end = "2000-04".into();
    let error = client.append(vec![reversed], None).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["2000-04", "before"]);
    assert_bad_field(&error, "events[0].occurred.end");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_bad_entity_id() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let mut visit = event("visit", "state_visit", "2000", vec![]);
    visit.participants = vec![proto::Participant {
        entity: "North Korea".into(),
        role: "guest".into(),
    }];
    let error = client.append(vec![visit], None).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["North Korea"]);
    assert_bad_field(&error, "events[0].participants[0].entity");

    let error = client
        .append(
            vec![event(
                "e",
                "statement",
                "2000",
                vec![begin("aland", "Borduria", "alliance")],
            )],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["Borduria"]);
    assert_bad_field(&error, "events[0].effects[0].begin.b");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_bad_kind() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let error = client
        .append(vec![event("sv", "StateVisit", "2000", vec![])], None)
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["StateVisit"]);
    assert_bad_field(&error, "events[0].kind");

    let error = client
        .append(
            vec![event(
                "sv",
                "state_visit",
                "2000",
                vec![begin("aland", "borduria", "Alliance")],
            )],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["Alliance"]);
    assert_bad_field(&error, "events[0].effects[0].begin.kind");

    // A query's kind filter too.
    let error = client
        .relations("aland", "", "Alliance", "", 0)
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["Alliance"]);
    assert_bad_field(&error, "kind");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_undeclared_entity() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let error = client
        .append(
            vec![
                event("ok", "statement", "2000", vec![]),
                event(
                    "war",
                    "war",
                    "2001",
                    vec![begin("aland", "cadia", "at_war")],
                ),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["cadia"]);
    let fields = violated_fields(&error);
    assert!(
        fields[0].starts_with("events[1]"),
        "the field names the event: {fields:?}"
    );
    assert_unchanged_and_serving(&mut client, before, "probe").await;

    // Declared in the same batch, it is accepted.
    let declare_cadia = event(
        "decl-cadia",
        "declaration",
        "1900",
        vec![common::declare(
            "cadia",
            "Cadia",
            proto::EntityType::Country,
            &[],
        )],
    );
    client
        .append(
            vec![
                event(
                    "war",
                    "war",
                    "2001",
                    vec![begin("aland", "cadia", "at_war")],
                ),
                declare_cadia,
            ],
            None,
        )
        .await
        .expect("declared in the same batch");
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_unknown_corrects_target() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let mut fix = event("fix", "statement", "2000", vec![]);
    fix.corrects = "no-such-event".into();
    let error = client.append(vec![fix], None).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["no-such-event"]);
    assert_bad_field(&error, "events[0].corrects");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    assert!(client.entity("aland", "", 0).await.unwrap().relations.len() == 1);
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_empty_batch() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let error = client.append(vec![], None).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["event"]);
    assert_bad_field(&error, "events");
    let error = client.append(vec![], Some(before)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_bad_query_time() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let error = client.entity("aland", "2024-13-01", 0).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["2024-13-01"]);
    assert_bad_field(&error, "at");

    let error = client
        .relations("", "", "", "yesterday", 0)
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["yesterday"]);
    assert_bad_field(&error, "at");

    let error = client
        .events(&EventQuery {
            from: "2024-04-31".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["2024-04-31"]);
    assert_bad_field(&error, "from");

    let error = client.diff("2000", "20-01", "", 0).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["20-01"]);
    assert_bad_field(&error, "to");

    // A window that ends before it starts.
    let error = client
        .events(&EventQuery {
            from: "2024".into(),
            to: "2023".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_as_of_seq_beyond_the_end() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let beyond = before + 40;
    let mentions = [beyond.to_string(), before.to_string()];
    let mentions: Vec<&str> = mentions.iter().map(String::as_str).collect();

    let error = client.entity("aland", "", beyond).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &mentions);
    assert_bad_field(&error, "as_of_seq");
    let error = client.relations("", "", "", "", beyond).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &mentions);
    assert_bad_field(&error, "as_of_seq");
    let error = client
        .entities(proto::EntityType::Unspecified, "", beyond)
        .await
        .unwrap_err();
    assert_bad_field(&error, "as_of_seq");
    let error = client
        .events(&EventQuery {
            as_of_seq: beyond,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&error, "as_of_seq");
    let error = client
        .history("aland", "borduria", "", beyond)
        .await
        .unwrap_err();
    assert_bad_field(&error, "as_of_seq");
    let error = client.diff("", "2000", "", beyond).await.unwrap_err();
    assert_bad_field(&error, "as_of_seq");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_duplicate_ids_in_one_batch() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let error = client
        .append(
            vec![
                event("dup", "statement", "2000", vec![]),
                event("dup", "statement", "2001", vec![]),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["dup", "events[0]"]);
    assert_bad_field(&error, "events[1].id");
    // Identical duplicates too: the batch is ambiguous either way.
    let error = client
        .append(
            vec![
                event("same", "statement", "2000", vec![]),
                event("same", "statement", "2000", vec![]),
            ],
            None,
        )
        .await
        .unwrap_err();
    assert_bad_field(&error, "events[1].id");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    assert_eq!(
        client.event("dup").await.unwrap_err().code(),
        Code::NotFound
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_argument_bad_page_token() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let before = last_seq(&mut client).await;

    let garbage = proto::ListEntitiesRequest {
        page_token: "not-a-token".into(),
        ..Default::default()
    };
    let error = client.raw().list_entities(garbage).await.unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["page token"]);
    assert_bad_field(&error, "page_token");

    // A real token, used with other filters.
    let first = client
        .raw()
        .list_entities(proto::ListEntitiesRequest {
            r#type: proto::EntityType::Country as i32,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let error = client
        .raw()
        .list_entities(proto::ListEntitiesRequest {
            r#type: proto::EntityType::Person as i32,
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&error, "page_token");
    // ... or with another RPC.
    let error = client
        .raw()
        .list_events(proto::ListEventsRequest {
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&error, "page_token");
    // A tampered token.
    let mut tampered = first.next_page_token.clone().into_bytes();
    tampered[3] = if tampered[3] == b'0' { b'1' } else { b'0' };
    let error = client
        .raw()
        .list_entities(proto::ListEntitiesRequest {
            r#type: proto::EntityType::Country as i32,
            page_size: 1,
            page_token: String::from_utf8(tampered).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&error, "page_token");
    let error = client
        .raw()
        .list_relations(proto::ListRelationsRequest {
            page_token: "zz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&error, "page_token");

    // The real token still works with its own query.
    let second = client
        .raw()
        .list_entities(proto::ListEntitiesRequest {
            r#type: proto::EntityType::Country as i32,
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entities.len(), 1);
    assert_ne!(second.entities, first.entities);
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

// -------------------------------------------------------------- NOT_FOUND

#[tokio::test]
async fn not_found_unknown_entity_or_event() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;

    let error = client.entity("atlantis", "", 0).await.unwrap_err();
    assert_status(&error, Code::NotFound, &["atlantis"]);
    let error = client
        .relations("atlantis", "", "", "", 0)
        .await
        .unwrap_err();
    assert_status(&error, Code::NotFound, &["atlantis"]);
    let error = client
        .relations("aland", "Lemuria", "", "", 0)
        .await
        .unwrap_err();
    assert_status(&error, Code::NotFound, &["Lemuria"]);
    let error = client.history("aland", "mu", "", 0).await.unwrap_err();
    assert_status(&error, Code::NotFound, &["mu"]);
    let error = client
        .events(&EventQuery {
            entity: "atlantis".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&error, Code::NotFound, &["atlantis"]);
    let error = client.diff("", "2000", "atlantis", 0).await.unwrap_err();
    assert_status(&error, Code::NotFound, &["atlantis"]);
    let error = timeout(WAIT, client.subscribe(1, "atlantis", ""))
        .await
        .unwrap()
        .unwrap_err();
    assert_status(&error, Code::NotFound, &["atlantis"]);
    // An entity not yet declared at as_of_seq.
    client
        .append(
            vec![event(
                "decl-cadia",
                "declaration",
                "1900",
                vec![common::declare(
                    "cadia",
                    "Cadia",
                    proto::EntityType::Country,
                    &[],
                )],
            )],
            None,
        )
        .await
        .unwrap();
    let error = client.entity("cadia", "", before).await.unwrap_err();
    assert_status(&error, Code::NotFound, &["cadia"]);
    let before = last_seq(&mut client).await;

    let error = client.event("no-such-event").await.unwrap_err();
    assert_status(&error, Code::NotFound, &["no-such-event"]);
    let error = get_by_seq(&mut client, 999).await.unwrap_err();
    assert_status(&error, Code::NotFound, &["999"]);
    let error = get_by_seq(&mut client, 0).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "there is no seq 0: {error:?}");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

// --------------------------------------------------------- ALREADY_EXISTS

#[tokio::test]
async fn already_exists_same_id_other_content() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let original = client.event("x").await.unwrap();

    let other = event(
        "x",
        "treaty_signed",
        "1962",
        vec![begin("aland", "borduria", "alliance")],
    );
    let error = client.append(vec![other.clone()], None).await.unwrap_err();
    assert_status(&error, Code::AlreadyExists, &["\"x\""]);
    // In a batch with a new event: nothing is stored.
    let error = client
        .append(
            vec![event("fresh", "statement", "2000", vec![]), other],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::AlreadyExists, &["\"x\""]);
    assert_eq!(
        client.event("fresh").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        client.event("x").await.unwrap(),
        original,
        "the original stands"
    );
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

// ---------------------------------------------------- FAILED_PRECONDITION

#[tokio::test]
async fn failed_precondition_stale_expected_last_seq() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let before = last_seq(&mut client).await;
    assert!(before > 10);
    let error = client
        .append(vec![event("late", "statement", "2000", vec![])], Some(7))
        .await
        .unwrap_err();
    assert_status(&error, Code::FailedPrecondition, &[&before.to_string()]);
    let error = client
        .append(
            vec![event("early", "statement", "2000", vec![])],
            Some(before + 1),
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::FailedPrecondition, &[&before.to_string()]);
    assert_eq!(
        client.event("late").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

#[tokio::test]
async fn failed_precondition_correcting_a_superseded_event() {
    let (server, mut client) = small_server().await;
    let mut first = event(
        "c1",
        "treaty_signed",
        "1962",
        vec![begin("aland", "borduria", "alliance")],
    );
    first.corrects = "x".into();
    client.append(vec![first], None).await.unwrap();
    let before = last_seq(&mut client).await;

    let mut second = event("c2", "statement", "1963", vec![]);
    second.corrects = "x".into();
    let error = client.append(vec![second], None).await.unwrap_err();
    assert_status(&error, Code::FailedPrecondition, &["\"x\"", "c1"]);
    assert_eq!(client.event("x").await.unwrap().superseded_by, "c1");
    let relations = client.entity("aland", "", 0).await.unwrap().relations;
    assert_eq!(relations.len(), 1);
    assert_eq!(relations[0].event_id, "c1", "c1's effects stand");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

// ----------------------------------------------------- RESOURCE_EXHAUSTED

#[tokio::test]
async fn resource_exhausted_too_many_events_in_a_batch() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let batch: Vec<proto::Event> = (0..10_001)
        .map(|i| proto::Event {
            id: format!("b{i}"),
            kind: "statement".into(),
            occurred: Some(proto::TimeSpan {
                start: "2000".into(),
                end: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    let error = timeout(Duration::from_secs(120), client.append(batch.clone(), None))
        .await
        .expect("answers in time")
        .unwrap_err();
    assert_status(&error, Code::ResourceExhausted, &["10000", "10001"]);
    assert_eq!(client.event("b0").await.unwrap_err().code(), Code::NotFound);
    assert_unchanged_and_serving(&mut client, before, "probe").await;

    // Exactly the limit is fine.
    let limit: Vec<proto::Event> = batch.into_iter().take(10_000).collect();
    let stored = timeout(Duration::from_secs(120), client.append(limit, None))
        .await
        .expect("answers in time")
        .expect("10,000 events are one batch");
    assert_eq!(stored.entries.len(), 10_000);
    assert_eq!(stored.last_seq, before + 1 + 10_000);
    server.stop().await;
}

#[tokio::test]
async fn resource_exhausted_an_event_larger_than_64_kib() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let mut big = event("big", "statement", "2000", vec![]);
    for i in 0..20 {
        big.labels.insert(format!("l{i}"), "v".repeat(4000));
    }
    assert!(prost::Message::encoded_len(&big) > 64 * 1024);
    let error = client
        .append(vec![event("small", "statement", "2000", vec![]), big], None)
        .await
        .unwrap_err();
    assert_status(&error, Code::ResourceExhausted, &["events[1]", "65536"]);
    assert_eq!(
        client.event("small").await.unwrap_err().code(),
        Code::NotFound
    );

    // A single text field over its limit is bad input instead.
    let mut wordy = event("wordy", "statement", "2000", vec![]);
    wordy.summary = "w".repeat(5_000);
    let error = client.append(vec![wordy], None).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

/// Many events, each within its limit, adding up to a request over the
/// 16 MiB an append takes.
#[tokio::test]
async fn resource_exhausted_a_request_over_16_mib() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let batch: Vec<proto::Event> = (0..300)
        .map(|i| {
            let mut event = event(&format!("heavy-{i}"), "statement", "2000", vec![]);
            for label in 0..15 {
                event
                    .labels
                    .insert(format!("l{label}"), format!("{i:04}").repeat(1000));
            }
            event
        })
        .collect();
    let request = proto::AppendRequest {
        events: batch,
        expected_last_seq: None,
        omit_events: false,
    };
    let size = prost::Message::encoded_len(&request);
    assert!(size > 16 * 1024 * 1024 && size < 32 * 1024 * 1024, "{size}");
    let mut raw = TimelineServiceClient::new(server.channel().await);
    let error = timeout(Duration::from_secs(120), raw.append(request))
        .await
        .expect("answers in time")
        .unwrap_err();
    assert_status(&error, Code::ResourceExhausted, &[&size.to_string()]);
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

/// A message over the transport's limit is RESOURCE_EXHAUSTED too, as gRPC
/// specifies for an oversized message and DESIGN.md promises.
#[tokio::test]
async fn resource_exhausted_a_message_over_the_transport_limit() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;
    let mut huge = event("huge", "statement", "2000", vec![]);
    for label in 0..9_000 {
        huge.labels.insert(format!("l{label}"), "h".repeat(4000));
    }
    let request = proto::AppendRequest {
        events: vec![huge],
        expected_last_seq: None,
        omit_events: false,
    };
    assert!(prost::Message::encoded_len(&request) > 33 * 1024 * 1024);
    let mut raw = TimelineServiceClient::new(server.channel().await);
    let error = timeout(Duration::from_secs(120), raw.append(request))
        .await
        .expect("answers in time")
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}

// ------------------------------------------------------------ UNAVAILABLE

fn config(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        seed: false,
        cache_bytes: 16 * 1024 * 1024,
        ..Config::default()
    }
}

/// Server::start, retrying briefly while a previous instance's sled lock
/// may still be held.
async fn start_when_unlocked(dir: &Path) -> annals::Result<Server> {
    let mut last = None;
    for _ in 0..50 {
        match Server::start(&config(dir)).await {
            Err(annals::Error::Storage(message)) => {
                last = Some(annals::Error::Storage(message));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
    Err(last.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unavailable_when_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_when_unlocked(dir.path()).await.expect("starts");
    let url = format!("http://{}", server.local_addr());
    let mut client = Client::connect(&url).await.unwrap();
    client
        .append(
            vec![
                two_countries("decl"),
                event("s-2", "statement", "2000", vec![]),
            ],
            None,
        )
        .await
        .unwrap();
    let db = server.database().clone();

    let mut stream = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .unwrap();
    for expected in 1..=2 {
        let entry = timeout(WAIT, stream.message())
            .await
            .expect("catch-up in time")
            .unwrap()
            .unwrap();
        assert_eq!(entry.entry.unwrap().seq, expected);
    }

    // Shut down while the subscription is open.
    let stopping = tokio::spawn(server.shutdown());
    let ended = timeout(WAIT, stream.message())
        .await
        .expect("the subscription ends when the server shuts down");
    // The stream has nothing left to deliver, so it ends with the status
    // the server sends when it drains.
    match ended {
        Err(status) => assert_status(&status, Code::Unavailable, &["shutting down"]),
        Ok(None) => panic!("the subscription ended without UNAVAILABLE"),
        Ok(Some(more)) => panic!("nothing more was appended, got {more:?}"),
    }
    timeout(Duration::from_secs(30), stopping)
        .await
        .expect("an open subscription does not hold up shutdown")
        .unwrap()
        .expect("shuts down cleanly");

    // The engine refuses appends once closed.
    let refused = db
        .append(vec![event("after", "statement", "2000", vec![])], None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, annals::Error::Unavailable(_)),
        "{refused:?}"
    );
    assert_eq!(Status::from(refused).code(), Code::Unavailable);
    // And nothing answers on the old address (the client reports the
    // closed connection as CANCELLED or UNAVAILABLE, its own choice).
    let gone = timeout(WAIT, client.read_log(0, 1, false))
        .await
        .expect("fails in time")
        .unwrap_err();
    assert!(
        matches!(gone.code(), Code::Unavailable | Code::Cancelled),
        "{gone:?}"
    );
    drop(db);
    drop(client);

    // A restart finds the log as it was and serves.
    let server = start_when_unlocked(dir.path()).await.expect("restarts");
    let mut client = Client::connect(&format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    assert_eq!(last_seq(&mut client).await, 2);
    assert_unchanged_and_serving(&mut client, 2, "probe").await;
    timeout(Duration::from_secs(30), server.shutdown())
        .await
        .unwrap()
        .unwrap();
}

// -------------------------------------------------------------- DATA_LOSS

/// Three entries on disk, written through the server; then the server is
/// stopped.
async fn three_entries_on_disk(dir: &Path) {
    let server = start_when_unlocked(dir).await.expect("starts");
    let mut client = Client::connect(&format!("http://{}", server.local_addr()))
        .await
        .unwrap();
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
            vec![event(
                "y",
                "statement",
                "1970",
                vec![set("aland", "leader", "anna")],
            )],
            None,
        )
        .await
        .unwrap();
    drop(client);
    timeout(Duration::from_secs(30), server.shutdown())
        .await
        .unwrap()
        .unwrap();
}

/// A server over a damaged log either refuses to start with
/// `Error::DataLoss`, or starts and answers DATA_LOSS wherever the damaged
/// entry is needed: never a wrong answer (a garbled entry, or the log read
/// with a hole in it).
async fn assert_damage_is_never_served(dir: &Path, damaged: u64, damaged_id: &str) {
    let server = match start_when_unlocked(dir).await {
        Err(annals::Error::DataLoss(message)) => {
            assert!(
                message.contains(&damaged.to_string()),
                "names the entry: {message}"
            );
            assert_eq!(
                Status::from(annals::Error::DataLoss(message)).code(),
                Code::DataLoss
            );
            return;
        }
        Err(other) => panic!("expected DataLoss or a server, got {other:?}"),
        Ok(server) => server,
    };
    let mut client = Client::connect(&format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    let mentions = [damaged.to_string()];
    let mentions = [mentions[0].as_str()];

    let by_seq = get_by_seq(&mut client, damaged).await;
    match by_seq {
        Err(status) => assert_status(&status, Code::DataLoss, &mentions),
        Ok(entry) => panic!("GetEvent seq {damaged} served {entry:?}"),
    }
    match client.event(damaged_id).await {
        Err(status) => assert_status(&status, Code::DataLoss, &mentions),
        Ok(entry) => panic!("GetEvent id {damaged_id:?} served {entry:?}"),
    }
    match client.read_log(1, 10, false).await {
        Err(status) => assert_status(&status, Code::DataLoss, &mentions),
        Ok(page) => panic!(
            "ReadLog over the damage served seqs {:?}",
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>()
        ),
    }
    match client.read_log(0, 10, true).await {
        Err(status) => assert_status(&status, Code::DataLoss, &mentions),
        Ok(page) => panic!(
            "ReadLog (reverse) over the damage served seqs {:?}",
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>()
        ),
    }
    let mut stream = timeout(WAIT, client.subscribe(1, "", ""))
        .await
        .unwrap()
        .expect("subscribes");
    // Entries before the damage may come first; then DATA_LOSS, never an
    // entry past it.
    let mut expected = 1;
    loop {
        match timeout(WAIT, stream.message()).await.expect("in time") {
            Ok(Some(response)) => {
                let seq = response.entry.unwrap().seq;
                assert_eq!(seq, expected, "Subscribe went past the damage");
                assert!(seq < damaged, "Subscribe served seq {seq} past the damage");
                expected += 1;
            }
            Ok(None) => panic!("Subscribe ended without DATA_LOSS"),
            Err(status) => {
                assert_status(&status, Code::DataLoss, &mentions);
                break;
            }
        }
    }
    drop(stream);
    drop(client);
    timeout(Duration::from_secs(30), server.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn data_loss_a_damaged_entry_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    three_entries_on_disk(dir.path()).await;
    {
        let db = open_sled(dir.path());
        let log = db.open_tree("log").unwrap();
        assert_eq!(log.len(), 3, "the log tree holds the three entries");
        log.insert(2u64.to_be_bytes(), b"garbage, not a log entry".to_vec())
            .unwrap();
        db.flush().unwrap();
    }

    // The store itself reports the damage rather than a wrong entry.
    {
        let mut store = None;
        for _ in 0..50 {
            match annals::store::SledStore::open(dir.path(), 8 << 20) {
                Ok(opened) => {
                    store = Some(opened);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let store = store.expect("the store opens");
        let read = annals::store::LogStore::read(&store, 1, 10);
        assert!(
            matches!(read, Err(annals::Error::DataLoss(ref message)) if message.contains("2") && message.contains("damaged")),
            "{read:?}"
        );
    }
    assert_damage_is_never_served(dir.path(), 2, "x").await;
}

#[tokio::test]
async fn data_loss_a_missing_entry_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    three_entries_on_disk(dir.path()).await;
    {
        let db = open_sled(dir.path());
        let log = db.open_tree("log").unwrap();
        assert!(log.remove(2u64.to_be_bytes()).unwrap().is_some());
        db.flush().unwrap();
    }
    assert_damage_is_never_served(dir.path(), 2, "x").await;
}

/// The control for the DATA_LOSS tests: the same log, reopened the same
/// way but undamaged, restarts and serves.
#[tokio::test]
async fn an_intact_log_restarts() {
    let dir = tempfile::tempdir().unwrap();
    three_entries_on_disk(dir.path()).await;
    {
        let db = open_sled(dir.path());
        assert_eq!(db.open_tree("log").unwrap().len(), 3);
    }
    let server = start_when_unlocked(dir.path()).await.expect("restarts");
    let mut client = Client::connect(&format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    assert_eq!(last_seq(&mut client).await, 3);
    let aland = client.entity("ald", "", 0).await.unwrap();
    assert_eq!(aland.attributes.len(), 1);
    assert_eq!(aland.relations.len(), 1);
    drop(client);
    timeout(Duration::from_secs(30), server.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn invalid_argument_other_malformed_requests() {
    let (server, mut client) = small_server().await;
    let before = last_seq(&mut client).await;

    // GetEvent without a selector.
    let error = client
        .raw()
        .get_event(proto::GetEventRequest { selector: None })
        .await
        .unwrap_err();
    assert_bad_field(&error, "selector");
    // An entity type that does not exist.
    let error = client
        .raw()
        .list_entities(proto::ListEntitiesRequest {
            r#type: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["42"]);
    assert_bad_field(&error, "type");
    // A declaration without a type.
    let error = client
        .append(
            vec![event(
                "decl-cadia",
                "declaration",
                "1900",
                vec![common::declare(
                    "cadia",
                    "Cadia",
                    proto::EntityType::Unspecified,
                    &[],
                )],
            )],
            None,
        )
        .await
        .unwrap_err();
    assert_bad_field(&error, "events[0].effects[0].declare.type");
    // An alias that already names another entity.
    let error = client
        .append(
            vec![event(
                "decl-cadia",
                "declaration",
                "1900",
                vec![common::declare(
                    "cadia",
                    "Cadia",
                    proto::EntityType::Country,
                    &["ald"],
                )],
            )],
            None,
        )
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["ald", "aland"]);
    assert_bad_field(&error, "events[0].effects[0].declare.aliases");
    // An event id of the wrong shape.
    let error = client
        .append(vec![event("a b", "statement", "2000", vec![])], None)
        .await
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["a b"]);
    assert_bad_field(&error, "events[0].id");
    // A relation of an entity with itself.
    let error = client
        .append(
            vec![event(
                "self",
                "statement",
                "2000",
                vec![begin("aland", "aland", "alliance")],
            )],
            None,
        )
        .await
        .unwrap_err();
    assert_bad_field(&error, "events[0].effects[0].begin.b");
    // A subscription's kind filter.
    let error = timeout(WAIT, client.subscribe(1, "", "Meeting"))
        .await
        .unwrap()
        .unwrap_err();
    assert_status(&error, Code::InvalidArgument, &["Meeting"]);
    assert_bad_field(&error, "kind");
    assert_unchanged_and_serving(&mut client, before, "probe").await;
    server.stop().await;
}
