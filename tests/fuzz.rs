//! Fuzzing, driven by proptest and bounded: 256 cases per property by
//! default, `PROPTEST_CASES=N` for more (or fewer).
//!
//! - `ValidTime::parse` never panics; what it accepts denotes a span
//!   (earliest ≤ latest) within years 0001–9999 and round-trips as text;
//!   calendar dates are accepted exactly when they exist.
//! - `Event::from_proto` never panics on random, near-valid events.
//! - A running server takes random Appends and queries without crashing,
//!   and answers each with OK or a proper status (never INTERNAL/UNKNOWN).

mod common;

use annals::model::Event;
use annals::proto::{self, effect::Change};
use annals::time::ValidTime;
use chrono::NaiveDate;
use common::TestServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::time::Duration;
use tonic::Code;

/// 0001-01-01T00:00:00Z and the last microsecond of 9999, in microseconds.
const FIRST_INSTANT: i64 = -62_135_596_800_000_000;
const LAST_INSTANT: i64 = 253_402_300_799_999_999;

/// Text that looks like a valid time, often is, and often is just off.
fn near_time() -> impl Strategy<Value = String> {
    let year = prop_oneof![
        Just(0u32),
        1u32..=9999,
        Just(9999u32),
        Just(10_000u32),
        Just(1950u32),
        Just(2024u32)
    ];
    let structured = (year, 0u32..=13, 0u32..=32, 0u32..=25, 0u32..=61, 0u32..=61, 0usize..6)
        .prop_map(|(year, month, day, hour, minute, second, shape)| match shape {
            0 => format!("{year:04}"),
            1 => format!("{year:04}-{month:02}"),
            2 => format!("{year:04}-{month:02}-{day:02}"),
            3 => format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
            4 => format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.123456789+09:00"),
            _ => format!("{year}-{month}-{day}"),
        });
    prop_oneof![
        4 => structured,
        2 => "[0-9]{1,5}(-[0-9]{1,2}(-[0-9]{1,2}([Tt ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,12})?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?)?)?",
        1 => "[0-9T:+\\-Z. ]{0,30}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn check_time(text: &str) -> Result<(), TestCaseError> {
    let Ok(time) = ValidTime::parse(text) else {
        return Ok(());
    };
    prop_assert!(time.earliest() <= time.latest(), "{text:?}: {time:?}");
    prop_assert!(
        FIRST_INSTANT <= time.earliest() && time.latest() <= LAST_INSTANT,
        "{text:?} is outside years 0001–9999: {time:?}"
    );
    prop_assert_eq!(time.text(), text);
    prop_assert_eq!(ValidTime::parse(&time.to_string()), Ok(time.clone()));
    Ok(())
}

proptest! {
    #[test]
    fn valid_time_parse_never_panics_and_what_it_accepts_is_a_span(text in near_time()) {
        check_time(&text)?;
    }

    #[test]
    fn valid_time_parse_of_any_string_never_panics(text in any::<String>()) {
        check_time(&text)?;
    }

    #[test]
    fn calendar_dates_are_accepted_exactly_when_they_exist(
        year in 0i32..=10_000,
        month in 0u32..=13,
        day in 0u32..=32,
    ) {
        let text = format!("{year:04}-{month:02}-{day:02}");
        let exists = (1..=9999).contains(&year)
            && NaiveDate::from_ymd_opt(year, month, day).is_some();
        prop_assert_eq!(ValidTime::parse(&text).is_ok(), exists, "{}", text);
        check_time(&text)?;
    }

    #[test]
    fn event_from_proto_never_panics(event in near_event()) {
        if let Ok(parsed) = Event::from_proto(&event) {
            // Deterministic: the same wire event validates the same way.
            prop_assert!(Event::from_proto(&event).is_ok());
            let _ = parsed;
        }
    }
}

/// Entity names: known ids and aliases, plausible new ones, and junk.
fn entity_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "china", "north-korea", "russia", "united-states", "kim-jong-un", "DPRK", "prk",
            "North Korea", "pyongyang",
        ])
        .prop_map(str::to_string),
        2 => "[a-z]{1,8}(-[a-z0-9]{1,6}){0,2}",
        1 => "[A-Za-z_ \\-]{0,12}",
        1 => any::<String>().prop_map(|text| text.chars().take(20).collect()),
        1 => Just(String::new()),
    ]
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "meeting", "statement", "summit", "declaration", "alliance", "at_war",
            "diplomatic_relations", "leader", "capital", "host", "guest",
        ])
        .prop_map(str::to_string),
        2 => "[a-z][a-z_]{0,15}",
        1 => "[A-Za-z0-9 _\\-]{0,12}",
        1 => any::<String>().prop_map(|text| text.chars().take(16).collect()),
    ]
}

fn event_id() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        3 => "fuzz-[a-z0-9]{1,12}",
        1 => prop::sample::select(vec!["article-001", "article-002", "article-010"])
            .prop_map(str::to_string),
        1 => any::<String>().prop_map(|text| text.chars().take(24).collect()),
    ]
}

fn change() -> impl Strategy<Value = Option<Change>> {
    prop_oneof![
        (
            entity_name(),
            ".{0,20}",
            -2i32..8,
            prop::collection::vec(entity_name(), 0..3)
        )
            .prop_map(|(id, name, entity_type, aliases)| Some(Change::Declare(
                proto::Declare {
                    id,
                    name,
                    r#type: entity_type,
                    aliases,
                }
            ))),
        (entity_name(), word(), ".{0,20}").prop_map(|(entity, key, value)| Some(Change::Set(
            proto::SetAttribute { entity, key, value }
        ))),
        (entity_name(), entity_name(), word(), any::<bool>()).prop_map(|(a, b, kind, directed)| {
            Some(Change::Begin(proto::BeginRelation {
                a,
                b,
                kind,
                directed,
            }))
        }),
        (entity_name(), entity_name(), word(), any::<bool>()).prop_map(|(a, b, kind, directed)| {
            Some(Change::End(proto::EndRelation {
                a,
                b,
                kind,
                directed,
            }))
        }),
        Just(None),
    ]
}

fn effect() -> impl Strategy<Value = proto::Effect> {
    (
        prop_oneof![3 => Just(String::new()), 1 => near_time()],
        change(),
    )
        .prop_map(|(at, change)| proto::Effect { at, change })
}

fn near_event() -> impl Strategy<Value = proto::Event> {
    let occurred = prop_oneof![
        6 => (near_time(), prop_oneof![2 => Just(String::new()), 1 => near_time()])
            .prop_map(|(start, end)| Some(proto::TimeSpan { start, end })),
        1 => Just(None),
    ];
    let source = prop_oneof![
        2 => Just(None),
        1 => (".{0,20}", prop_oneof![0.0f64..=1.0, any::<f64>()]).prop_map(|(quote, confidence)| {
            Some(proto::Source {
                document: "fuzz".into(),
                quote,
                confidence,
                ..Default::default()
            })
        }),
    ];
    (
        (event_id(), word(), occurred, ".{0,60}"),
        (
            prop::collection::vec((entity_name(), word()), 0..3),
            prop_oneof![2 => Just(String::new()), 1 => entity_name()],
            prop::collection::vec(effect(), 0..5),
        ),
        (
            source,
            prop_oneof![3 => Just(String::new()), 1 => event_id()],
            prop::collection::hash_map(word(), ".{0,10}", 0..3),
        ),
    )
        .prop_map(
            |(
                (id, kind, occurred, summary),
                (participants, location, effects),
                (source, corrects, labels),
            )| proto::Event {
                id,
                kind,
                occurred,
                summary,
                participants: participants
                    .into_iter()
                    .map(|(entity, role)| proto::Participant { entity, role })
                    .collect(),
                location,
                effects,
                source,
                corrects,
                labels: labels.into_iter().collect(),
            },
        )
}

/// A valid date, at year, month or day precision.
fn plain_time() -> impl Strategy<Value = String> {
    (1900u32..2030, 1u32..=12, 1u32..=28, 0usize..3).prop_map(|(year, month, day, shape)| {
        match shape {
            0 => format!("{year}"),
            1 => format!("{year}-{month:02}"),
            _ => format!("{year}-{month:02}-{day:02}"),
        }
    })
}

/// Events that are usually valid: known entities, snake_case words, real
/// dates; so that the fuzz reaches the log's context checks, the writer
/// and the index, not just validation at the edge.
fn plausible_event() -> impl Strategy<Value = proto::Event> {
    let known = || {
        prop::sample::select(vec![
            "china",
            "north-korea",
            "russia",
            "united-states",
            "japan",
            "DPRK",
            "fuzzland",
        ])
        .prop_map(str::to_string)
    };
    let relation = || {
        prop::sample::select(vec![
            "alliance",
            "rivalry",
            "supports",
            "sanctions",
            "at_war",
        ])
        .prop_map(str::to_string)
    };
    let change = prop_oneof![
        (known(), "[a-z][a-z_]{0,8}", "[a-z ]{0,10}").prop_map(|(entity, key, value)| Change::Set(
            proto::SetAttribute { entity, key, value }
        )),
        (known(), known(), relation(), any::<bool>()).prop_map(|(a, b, kind, directed)| {
            Change::Begin(proto::BeginRelation {
                a,
                b,
                kind,
                directed,
            })
        }),
        (known(), known(), relation(), any::<bool>()).prop_map(|(a, b, kind, directed)| {
            Change::End(proto::EndRelation {
                a,
                b,
                kind,
                directed,
            })
        }),
        Just(Change::Declare(proto::Declare {
            id: "fuzzland".into(),
            name: "Fuzzland".into(),
            r#type: proto::EntityType::Country as i32,
            aliases: vec!["FZL".into()],
        })),
    ];
    let effect = (
        prop_oneof![3 => Just(String::new()), 1 => plain_time()],
        change,
    )
        .prop_map(|(at, change)| proto::Effect {
            at,
            change: Some(change),
        });
    (
        prop_oneof![2 => Just(String::new()), 2 => "fuzz-[a-z0-9]{1,6}", 1 => Just("article-001".to_string())],
        prop::sample::select(vec!["statement", "meeting", "treaty_signed"]),
        plain_time(),
        prop_oneof![3 => Just(String::new()), 1 => plain_time()],
        prop::collection::vec(effect, 0..4),
        prop_oneof![4 => Just(String::new()), 1 => Just("article-002".to_string()), 1 => "fuzz-[a-z0-9]{1,6}"],
    )
        .prop_map(|(id, kind, start, end, effects, corrects)| proto::Event {
            id,
            kind: kind.to_string(),
            occurred: Some(proto::TimeSpan { start, end }),
            summary: "A fuzzed event.".into(),
            effects,
            corrects,
            ..Default::default()
        })
}

/// Codes a fuzzed request may get: a proper answer to a bad request.
fn proper(code: Code) -> bool {
    matches!(
        code,
        Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
    )
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_server_survives_random_appends_and_queries() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(TestServer::seeded());
    let client = runtime.block_on(server.client());

    // PROPTEST_CASES, if set, decides how many; 256 otherwise.
    // The server's state carries over from case to case, so a shrunk case
    // would not fail alone: report the case that failed, unshrunk.
    let mut runner = TestRunner::new(Config {
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    });
    let answers = std::cell::RefCell::new(std::collections::BTreeMap::<String, usize>::new());
    let batches =
        prop::collection::vec(prop_oneof![1 => near_event(), 3 => plausible_event()], 1..4);
    let outcome = runner.run(
        &(batches, near_time(), near_time()),
        |(events, from, to)| {
            let mut client = client.clone();
            runtime.block_on(async {
                let appended = tokio::time::timeout(WAIT, client.append(events, None))
                    .await
                    .map_err(|_| TestCaseError::fail("Append did not answer in time"))?;
                let code = appended
                    .as_ref()
                    .map_or_else(|status| status.code(), |_| Code::Ok);
                prop_assert!(proper(code), "Append answered {:?}", appended.err());
                *answers.borrow_mut().entry(format!("{code:?}")).or_default() += 1;

                let queried = tokio::time::timeout(WAIT, client.entity("china", &to, 0))
                    .await
                    .map_err(|_| TestCaseError::fail("GetEntity did not answer in time"))?;
                let code = queried
                    .as_ref()
                    .map_or_else(|status| status.code(), |_| Code::Ok);
                prop_assert!(
                    matches!(code, Code::Ok | Code::InvalidArgument),
                    "GetEntity at {to:?} answered {:?}",
                    queried.err()
                );

                let request = proto::ListEventsRequest {
                    from: from.clone(),
                    to: to.clone(),
                    page_size: 5,
                    ..Default::default()
                };
                let listed = tokio::time::timeout(WAIT, client.raw().list_events(request))
                    .await
                    .map_err(|_| TestCaseError::fail("ListEvents did not answer in time"))?;
                let code = listed
                    .as_ref()
                    .map_or_else(|status| status.code(), |_| Code::Ok);
                prop_assert!(
                    matches!(code, Code::Ok | Code::InvalidArgument),
                    "ListEvents {from:?}..{to:?} answered {:?}",
                    listed.err()
                );

                // Still serving. (Not a known entity: a fuzzed correction
                // may rightly have retracted its declaration.)
                let log = tokio::time::timeout(WAIT, client.read_log(0, 1, true))
                    .await
                    .map_err(|_| TestCaseError::fail("ReadLog did not answer in time"))?;
                prop_assert!(log.is_ok(), "the server stopped serving: {:?}", log.err());
                Ok(())
            })
        },
    );
    runtime.block_on(server.stop());
    eprintln!("Append answers: {:?}", answers.borrow());
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
