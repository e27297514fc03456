//! Hostile input: a table of malformed and abusive requests across every
//! RPC, each with the status code it must get and a phrase its message must
//! contain. After each one the log is unchanged and the server still
//! answers a query about a known entity.
//!
//! (Invalid UTF-8 cannot be sent through prost's `String` fields, and
//! tonic refuses it while decoding; it is not in the table.)

mod common;

use annals::proto::timeline_service_client::TimelineServiceClient;
use annals::proto::{self, effect::Change, get_event_request::Selector};
use common::{begin, declare, event, set, TestServer};
use std::time::Duration;
use tokio::time::timeout;
use tonic::transport::Channel;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// One request to one RPC.
enum Call {
    Append(proto::AppendRequest),
    /// Sent without gzip, so the server sees the full size on the wire.
    AppendUncompressed(proto::AppendRequest),
    GetEvent(proto::GetEventRequest),
    ReadLog(proto::ReadLogRequest),
    Subscribe(proto::SubscribeRequest),
    GetEntity(proto::GetEntityRequest),
    ListEntities(proto::ListEntitiesRequest),
    ListRelations(proto::ListRelationsRequest),
    RelationHistory(proto::RelationHistoryRequest),
    ListEvents(proto::ListEventsRequest),
    Diff(proto::DiffRequest),
}

struct Row {
    name: &'static str,
    call: Call,
    code: Code,
    /// A phrase the status message must contain (ignored for OK).
    says: &'static str,
}

fn row(name: &'static str, call: Call, code: Code, says: &'static str) -> Row {
    Row {
        name,
        call,
        code,
        says,
    }
}

fn append(events: Vec<proto::Event>) -> Call {
    Call::Append(proto::AppendRequest {
        events,
        expected_last_seq: None,
        omit_events: false,
    })
}

/// A valid event with its start replaced.
fn starting(start: &str) -> Call {
    append(vec![event(
        "hostile-start",
        "statement",
        start,
        vec![set("china", "motto", "x")],
    )])
}

fn spanning(start: &str, end: &str) -> Call {
    let mut bad = event("hostile-span", "war", start, vec![]);
    bad.occurred.as_mut().unwrap().end = end.to_string();
    append(vec![bad])
}

fn entity_at(id: &str, at: &str, as_of_seq: u64) -> Call {
    Call::GetEntity(proto::GetEntityRequest {
        id: id.to_string(),
        at: at.to_string(),
        as_of_seq,
    })
}

fn events_between(from: &str, to: &str) -> Call {
    Call::ListEvents(proto::ListEventsRequest {
        from: from.to_string(),
        to: to.to_string(),
        ..Default::default()
    })
}

fn entities_page(page_token: &str, page_size: u32) -> Call {
    Call::ListEntities(proto::ListEntitiesRequest {
        page_token: page_token.to_string(),
        page_size,
        ..Default::default()
    })
}

/// What the table needs from the running server.
struct Context {
    last_seq: u64,
    /// A real page token of `entities_page("", 2)`.
    page_token: String,
}

fn rows(context: &Context) -> Vec<Row> {
    use Code::*;
    let last = context.last_seq;
    let mut tampered = context.page_token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let huge = "x".repeat(MIB);

    let mut big_summary = event("hostile-big", "statement", "2000", vec![]);
    big_summary.summary = huge.clone();
    let mut oversize = event("hostile-oversize", "statement", "2000", vec![]);
    oversize.summary = "y".repeat(33 * MIB);
    let mut beyond_handler_limit = event("hostile-17mib", "statement", "2000", vec![]);
    beyond_handler_limit.summary = "z".repeat(17 * MIB);
    let many: Vec<proto::Event> = (0..10_001)
        .map(|index| {
            event(
                &format!("hostile-many-{index}"),
                "statement",
                "2000",
                vec![],
            )
        })
        .collect();
    let mut many_effects = event("hostile-effects", "statement", "2000", vec![]);
    many_effects.effects = (0..20_000)
        .map(|index| set("china", "motto", &index.to_string()))
        .collect();
    let mut typed_99 = declare("atlantis", "Atlantis", proto::EntityType::Country, &[]);
    if let Some(Change::Declare(declaration)) = &mut typed_99.change {
        declaration.r#type = 99;
    }
    let mut corrects_itself = event("hostile-self", "statement", "2000", vec![]);
    corrects_itself.corrects = "hostile-self".into();
    let mut corrects_missing = event("hostile-fix", "statement", "2000", vec![]);
    corrects_missing.corrects = "no-such-event".into();
    let mut out_of_range_confidence = event("hostile-confident", "statement", "2000", vec![]);
    out_of_range_confidence.source = Some(proto::Source {
        confidence: 1.5,
        ..Default::default()
    });
    let mut nan_confidence = out_of_range_confidence.clone();
    nan_confidence.id = "hostile-nan".into();
    nan_confidence.source.as_mut().unwrap().confidence = f64::NAN;
    let mut unknown_participant = event("hostile-who", "meeting", "2000", vec![]);
    unknown_participant.participants = vec![proto::Participant {
        entity: "nobody-at-all".into(),
        role: "guest".into(),
    }];
    let mut unknown_location = event("hostile-where", "meeting", "2000", vec![]);
    unknown_location.location = "nowhere-at-all".into();
    let mut resent = event("article-001", "statement", "2000", vec![]);
    resent.summary = "Not what article-001 says.".into();
    let mut effect_at = set("china", "motto", "x");
    effect_at.at = "1950-02-30".into();

    vec![
        // ------------------------------------------------ Append: times
        row(
            "start 0000",
            starting("0000"),
            InvalidArgument,
            "occurred.start",
        ),
        row(
            "start 10000",
            starting("10000"),
            InvalidArgument,
            "occurred.start",
        ),
        row(
            "start 2023-02-29",
            starting("2023-02-29"),
            InvalidArgument,
            "occurred.start",
        ),
        row(
            "start hour 25",
            starting("1950-06-25T25:00Z"),
            InvalidArgument,
            "occurred.start",
        ),
        row(
            "start month 13",
            starting("2024-13"),
            InvalidArgument,
            "occurred.start",
        ),
        row(
            "start a word",
            starting("yesterday"),
            InvalidArgument,
            "occurred.start",
        ),
        row(
            "start padded",
            starting(" 1950"),
            InvalidArgument,
            "occurred.start",
        ),
        row("start empty", starting(""), InvalidArgument, "occurred"),
        row(
            "start a megabyte",
            starting(&huge),
            ResourceExhausted,
            "an event holds at most",
        ),
        row(
            "end before start",
            spanning("1953-07-27", "1950-06-25"),
            InvalidArgument,
            "end",
        ),
        row(
            "end unparseable",
            spanning("1950", "1953-02-30"),
            InvalidArgument,
            "occurred.end",
        ),
        row(
            "effect at 1950-02-30",
            append(vec![event(
                "hostile-at",
                "statement",
                "1950",
                vec![effect_at],
            )]),
            InvalidArgument,
            "effects[0].at",
        ),
        // ------------------------------------------------ Append: sizes
        row(
            "summary of 1 MiB",
            append(vec![big_summary]),
            ResourceExhausted,
            "bytes",
        ),
        row(
            "20,000 effects in one event",
            append(vec![many_effects]),
            ResourceExhausted,
            "bytes",
        ),
        row(
            "10,001 events in one batch",
            append(many),
            ResourceExhausted,
            "10000",
        ),
        row(
            "17 MiB request (under the decoding limit)",
            Call::AppendUncompressed(proto::AppendRequest {
                events: vec![beyond_handler_limit],
                expected_last_seq: None,
                omit_events: false,
            }),
            ResourceExhausted,
            "bytes",
        ),
        row(
            "33 MiB request, uncompressed",
            Call::AppendUncompressed(proto::AppendRequest {
                events: vec![oversize.clone()],
                expected_last_seq: None,
                omit_events: false,
            }),
            ResourceExhausted,
            "too large",
        ),
        row(
            "33 MiB request, gzipped small",
            append(vec![oversize]),
            ResourceExhausted,
            "size limit",
        ),
        row("empty batch", append(vec![]), InvalidArgument, "events"),
        // ------------------------------------------------ Append: ids, kinds, enums
        row(
            "duplicate ids in one batch",
            append(vec![
                event("hostile-twin", "statement", "2000", vec![]),
                event("hostile-twin", "statement", "2001", vec![]),
            ]),
            InvalidArgument,
            "hostile-twin",
        ),
        row(
            "empty kind",
            append(vec![event("hostile-kindless", "", "2000", vec![])]),
            InvalidArgument,
            "kind",
        ),
        row(
            "kind not lower_snake_case",
            append(vec![event("hostile-kind", "Missile-Test", "2000", vec![])]),
            InvalidArgument,
            "kind",
        ),
        row(
            "entity id not kebab-case",
            append(vec![event(
                "hostile-kebab",
                "declaration",
                "2000",
                vec![declare(
                    "North_Korea",
                    "North Korea",
                    proto::EntityType::Country,
                    &[],
                )],
            )]),
            InvalidArgument,
            "kebab-case",
        ),
        row(
            "empty entity id",
            append(vec![event(
                "hostile-empty-entity",
                "declaration",
                "2000",
                vec![declare("", "Nameless", proto::EntityType::Country, &[])],
            )]),
            InvalidArgument,
            "effects[0]",
        ),
        row(
            "event id with a NUL byte",
            append(vec![event("hostile\0nul", "statement", "2000", vec![])]),
            InvalidArgument,
            "id",
        ),
        row(
            "entity type 99",
            append(vec![event(
                "hostile-type",
                "declaration",
                "2000",
                vec![typed_99],
            )]),
            InvalidArgument,
            "type",
        ),
        row(
            "effect without a change",
            append(vec![event(
                "hostile-empty-effect",
                "statement",
                "2000",
                vec![proto::Effect {
                    at: String::new(),
                    change: None,
                }],
            )]),
            InvalidArgument,
            "effects[0]",
        ),
        row(
            "relation kind not snake_case",
            append(vec![event(
                "hostile-relation-kind",
                "statement",
                "2000",
                vec![begin("china", "russia", "Best Friends")],
            )]),
            InvalidArgument,
            "kind",
        ),
        row(
            "confidence 1.5",
            append(vec![out_of_range_confidence]),
            InvalidArgument,
            "confidence",
        ),
        row(
            "confidence NaN",
            append(vec![nan_confidence]),
            InvalidArgument,
            "confidence",
        ),
        // ------------------------------------------------ Append: the log's context
        row(
            "undeclared entity",
            append(vec![event(
                "hostile-undeclared",
                "statement",
                "2000",
                vec![set("atlantis", "capital", "Poseidonis")],
            )]),
            InvalidArgument,
            "atlantis",
        ),
        row(
            "unknown participant",
            append(vec![unknown_participant]),
            InvalidArgument,
            "nobody-at-all",
        ),
        row(
            "unknown location",
            append(vec![unknown_location]),
            InvalidArgument,
            "nowhere-at-all",
        ),
        row(
            "correction of itself",
            append(vec![corrects_itself]),
            InvalidArgument,
            "itself",
        ),
        row(
            "correction of a missing event",
            append(vec![corrects_missing]),
            InvalidArgument,
            "no-such-event",
        ),
        row(
            "alias collision with north-korea",
            append(vec![event(
                "hostile-alias",
                "declaration",
                "2000",
                vec![declare(
                    "not-korea",
                    "Not Korea",
                    proto::EntityType::Country,
                    &["DPRK"],
                )],
            )]),
            InvalidArgument,
            "already names the entity \"north-korea\"",
        ),
        row(
            "re-sent id, other content",
            append(vec![resent]),
            AlreadyExists,
            "article-001",
        ),
        row(
            "stale expected_last_seq",
            Call::Append(proto::AppendRequest {
                events: vec![event("hostile-stale", "statement", "2000", vec![])],
                expected_last_seq: Some(1),
                omit_events: false,
            }),
            FailedPrecondition,
            "last seq",
        ),
        row(
            "expected_last_seq u64::MAX",
            Call::Append(proto::AppendRequest {
                events: vec![event("hostile-future", "statement", "2000", vec![])],
                expected_last_seq: Some(u64::MAX),
                omit_events: false,
            }),
            FailedPrecondition,
            "last seq",
        ),
        // ------------------------------------------------ GetEvent
        row(
            "GetEvent seq u64::MAX",
            Call::GetEvent(proto::GetEventRequest {
                selector: Some(Selector::Seq(u64::MAX)),
            }),
            NotFound,
            "seq",
        ),
        row(
            "GetEvent seq 0",
            Call::GetEvent(proto::GetEventRequest {
                selector: Some(Selector::Seq(0)),
            }),
            NotFound,
            "seq",
        ),
        row(
            "GetEvent unknown id",
            Call::GetEvent(proto::GetEventRequest {
                selector: Some(Selector::Id("no-such-event".into())),
            }),
            NotFound,
            "no-such-event",
        ),
        row(
            "GetEvent id of a megabyte",
            Call::GetEvent(proto::GetEventRequest {
                selector: Some(Selector::Id(huge.clone())),
            }),
            NotFound,
            "no event",
        ),
        row(
            "GetEvent without a selector",
            Call::GetEvent(proto::GetEventRequest { selector: None }),
            InvalidArgument,
            "selector",
        ),
        // ------------------------------------------------ ReadLog
        row(
            "ReadLog from u64::MAX",
            Call::ReadLog(proto::ReadLogRequest {
                from_seq: u64::MAX,
                limit: 10,
                reverse: false,
            }),
            Ok,
            "",
        ),
        row(
            "ReadLog reverse from u64::MAX, limit u32::MAX",
            Call::ReadLog(proto::ReadLogRequest {
                from_seq: u64::MAX,
                limit: u32::MAX,
                reverse: true,
            }),
            Ok,
            "",
        ),
        // ------------------------------------------------ Subscribe
        row(
            "Subscribe from u64::MAX",
            Call::Subscribe(proto::SubscribeRequest {
                from_seq: u64::MAX,
                ..Default::default()
            }),
            Ok,
            "",
        ),
        row(
            "Subscribe to an unknown entity",
            Call::Subscribe(proto::SubscribeRequest {
                entity: "atlantis".into(),
                ..Default::default()
            }),
            NotFound,
            "atlantis",
        ),
        row(
            "Subscribe to a bad kind",
            Call::Subscribe(proto::SubscribeRequest {
                kind: "Not A Kind".into(),
                ..Default::default()
            }),
            InvalidArgument,
            "kind",
        ),
        // ------------------------------------------------ GetEntity
        row(
            "GetEntity unknown",
            entity_at("atlantis", "", 0),
            NotFound,
            "atlantis",
        ),
        row(
            "GetEntity empty id",
            entity_at("", "", 0),
            InvalidArgument,
            "id",
        ),
        row(
            "GetEntity id of a megabyte",
            entity_at(&huge, "", 0),
            NotFound,
            "no entity",
        ),
        row(
            "GetEntity at 2023-02-29",
            entity_at("china", "2023-02-29", 0),
            InvalidArgument,
            "at",
        ),
        row(
            "GetEntity at 0000",
            entity_at("china", "0000", 0),
            InvalidArgument,
            "at",
        ),
        row(
            "GetEntity at 10000",
            entity_at("china", "10000", 0),
            InvalidArgument,
            "at",
        ),
        row(
            "GetEntity as_of_seq beyond the end",
            entity_at("china", "", last + 1),
            InvalidArgument,
            "as_of_seq",
        ),
        row(
            "GetEntity as_of_seq u64::MAX",
            entity_at("china", "", u64::MAX),
            InvalidArgument,
            "as_of_seq",
        ),
        // ------------------------------------------------ ListEntities
        row(
            "ListEntities type 99",
            Call::ListEntities(proto::ListEntitiesRequest {
                r#type: 99,
                ..Default::default()
            }),
            InvalidArgument,
            "type",
        ),
        row(
            "bogus page token",
            entities_page("garbage!", 2),
            InvalidArgument,
            "page_token",
        ),
        row(
            "tampered page token",
            entities_page(&tampered, 2),
            InvalidArgument,
            "page_token",
        ),
        row(
            "page token of another query",
            Call::ListEntities(proto::ListEntitiesRequest {
                query: "north".into(),
                page_token: context.page_token.clone(),
                page_size: 2,
                ..Default::default()
            }),
            InvalidArgument,
            "page_token",
        ),
        row(
            "page token of another RPC",
            Call::ListEvents(proto::ListEventsRequest {
                page_token: context.page_token.clone(),
                ..Default::default()
            }),
            InvalidArgument,
            "page_token",
        ),
        row("page size u32::MAX", entities_page("", u32::MAX), Ok, ""),
        row(
            "ListEntities as_of_seq u64::MAX",
            Call::ListEntities(proto::ListEntitiesRequest {
                as_of_seq: u64::MAX,
                ..Default::default()
            }),
            InvalidArgument,
            "as_of_seq",
        ),
        // ------------------------------------------------ ListRelations
        row(
            "ListRelations unknown counterpart",
            Call::ListRelations(proto::ListRelationsRequest {
                entity: "china".into(),
                counterpart: "atlantis".into(),
                ..Default::default()
            }),
            NotFound,
            "counterpart",
        ),
        row(
            "ListRelations at 10000",
            Call::ListRelations(proto::ListRelationsRequest {
                at: "10000".into(),
                ..Default::default()
            }),
            InvalidArgument,
            "at",
        ),
        row(
            "ListRelations bad kind",
            Call::ListRelations(proto::ListRelationsRequest {
                kind: "BAD KIND".into(),
                ..Default::default()
            }),
            InvalidArgument,
            "kind",
        ),
        row(
            "ListRelations page size u32::MAX",
            Call::ListRelations(proto::ListRelationsRequest {
                page_size: u32::MAX,
                ..Default::default()
            }),
            Ok,
            "",
        ),
        // ------------------------------------------------ RelationHistory
        row(
            "RelationHistory without a",
            Call::RelationHistory(proto::RelationHistoryRequest::default()),
            InvalidArgument,
            "a",
        ),
        row(
            "RelationHistory unknown b",
            Call::RelationHistory(proto::RelationHistoryRequest {
                a: "china".into(),
                b: "atlantis".into(),
                ..Default::default()
            }),
            NotFound,
            "atlantis",
        ),
        row(
            "RelationHistory as_of_seq beyond the end",
            Call::RelationHistory(proto::RelationHistoryRequest {
                a: "china".into(),
                as_of_seq: last + 1,
                ..Default::default()
            }),
            InvalidArgument,
            "as_of_seq",
        ),
        // ------------------------------------------------ ListEvents
        row(
            "ListEvents to before from",
            events_between("2024", "1950"),
            InvalidArgument,
            "before",
        ),
        row(
            "ListEvents from hour 25",
            events_between("1950-06-25T25:00Z", ""),
            InvalidArgument,
            "from",
        ),
        row(
            "ListEvents to 2023-02-29",
            events_between("", "2023-02-29"),
            InvalidArgument,
            "to",
        ),
        row(
            "ListEvents page size u32::MAX",
            Call::ListEvents(proto::ListEventsRequest {
                page_size: u32::MAX,
                ..Default::default()
            }),
            Ok,
            "",
        ),
        row(
            "ListEvents as_of_seq beyond the end",
            Call::ListEvents(proto::ListEventsRequest {
                as_of_seq: last + 1,
                ..Default::default()
            }),
            InvalidArgument,
            "as_of_seq",
        ),
        // ------------------------------------------------ Diff
        row(
            "Diff to before from",
            Call::Diff(proto::DiffRequest {
                from: "2021".into(),
                to: "2019".into(),
                ..Default::default()
            }),
            InvalidArgument,
            "before",
        ),
        row(
            "Diff from 0000",
            Call::Diff(proto::DiffRequest {
                from: "0000".into(),
                to: "2019".into(),
                ..Default::default()
            }),
            InvalidArgument,
            "from",
        ),
        row(
            "Diff unknown entity",
            Call::Diff(proto::DiffRequest {
                to: "2019".into(),
                entity: "atlantis".into(),
                ..Default::default()
            }),
            NotFound,
            "atlantis",
        ),
    ]
}

/// Sends one request; OK or the status.
async fn send(
    client: &mut annals::client::Client,
    plain: &mut TimelineServiceClient<Channel>,
    call: Call,
) -> Result<(), tonic::Status> {
    let raw = client.raw();
    match call {
        Call::Append(request) => raw.append(request).await.map(|_| ()),
        Call::AppendUncompressed(request) => plain.append(request).await.map(|_| ()),
        Call::GetEvent(request) => raw.get_event(request).await.map(|_| ()),
        Call::ReadLog(request) => raw.read_log(request).await.map(|_| ()),
        // A stream that starts is OK; its errors at the start are the call's.
        Call::Subscribe(request) => raw.subscribe(request).await.map(|_| ()),
        Call::GetEntity(request) => raw.get_entity(request).await.map(|_| ()),
        Call::ListEntities(request) => raw.list_entities(request).await.map(|_| ()),
        Call::ListRelations(request) => raw.list_relations(request).await.map(|_| ()),
        Call::RelationHistory(request) => raw.relation_history(request).await.map(|_| ()),
        Call::ListEvents(request) => raw.list_events(request).await.map(|_| ()),
        Call::Diff(request) => raw.diff(request).await.map(|_| ()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_right_status_and_change_nothing() {
    let server = TestServer::seeded().await;
    // The wrapper client, gzipping its requests (the "gzipped" rows).
    let options = annals::client::ClientOptions {
        gzip: true,
        ..Default::default()
    };
    let mut client = annals::client::Client::connect_with(&server.url(), options)
        .await
        .unwrap();
    // The generated client with tonic's defaults but no size limit of its
    // own on what it sends, and no compression.
    let mut plain = TimelineServiceClient::new(server.channel().await);
    let last_seq = client.read_log(0, 1, true).await.unwrap().last_seq;
    let first_page = client
        .raw()
        .list_entities(proto::ListEntitiesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !first_page.next_page_token.is_empty(),
        "the data set has more than 2 entities"
    );
    let context = Context {
        last_seq,
        page_token: first_page.next_page_token,
    };

    let table = rows(&context);
    assert!(table.len() >= 40, "{} rows", table.len());
    let mut failures = Vec::new();
    for Row {
        name,
        call,
        code,
        says,
    } in table
    {
        let outcome = timeout(WAIT, send(&mut client, &mut plain, call))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer in time"));
        let (got, message) = match &outcome {
            Ok(()) => (Code::Ok, String::new()),
            Err(status) => (status.code(), status.message().to_string()),
        };
        let shown: String = message.chars().take(300).collect();
        if got != code || (code != Code::Ok && !message.contains(says)) {
            failures.push(format!(
                "{name}: expected {code:?} saying {says:?}, got {got:?}: {shown}"
            ));
        }
        assert!(
            message.len() <= annals::service::MAX_STATUS_MESSAGE_BYTES,
            "{name}: the message is bounded, not {} bytes",
            message.len()
        );
        assert!(
            !matches!(got, Code::Internal | Code::Unknown),
            "{name}: a hostile request must never be INTERNAL or UNKNOWN: {shown}"
        );

        // Nothing stored, and still serving.
        let now = timeout(WAIT, client.read_log(0, 1, true))
            .await
            .unwrap_or_else(|_| panic!("after {name}: ReadLog in time"))
            .unwrap_or_else(|status| panic!("after {name}: ReadLog: {status:?}"))
            .last_seq;
        assert_eq!(now, last_seq, "after {name}: the log changed");
        let known = timeout(WAIT, client.entity("north-korea", "1962-01-01", 0))
            .await
            .unwrap_or_else(|_| panic!("after {name}: GetEntity in time"))
            .unwrap_or_else(|status| panic!("after {name}: GetEntity: {status:?}"));
        assert_eq!(
            known.entity.map(|entity| entity.id).as_deref(),
            Some("north-korea")
        );
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.stop().await;
}
