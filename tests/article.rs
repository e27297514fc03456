//! The built-in data set: DESIGN.md's "What the data set must answer",
//! asked over gRPC of a freshly seeded server, and the data set's
//! provenance rules checked line by line.

mod common;

use annals::client::EventQuery;
use annals::proto;
use annals::seed::{article_events, ARTICLE_TEXT};
use common::TestServer;
use std::collections::BTreeSet;

fn kinds(relations: &[proto::Relation]) -> BTreeSet<String> {
    relations
        .iter()
        .map(|relation| relation.kind.clone())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}

#[tokio::test]
async fn the_data_set_answers_what_it_must() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;

    // Relations of china with north-korea across the years.
    let pair_client = client.clone();
    let between = |at: &'static str| {
        let mut client = pair_client.clone();
        async move {
            client
                .relations("china", "north-korea", "", at, 0)
                .await
                .unwrap()
        }
    };
    assert!(between("1949-10-05").await.is_empty());
    assert_eq!(
        kinds(&between("1949-10-06").await),
        set(&["diplomatic_relations"])
    );
    assert_eq!(
        kinds(&between("1951-06-01").await),
        set(&["diplomatic_relations", "co_belligerent"])
    );
    let at_war: BTreeSet<String> = client
        .relations("china", "", "at_war", "1951-06-01", 0)
        .await
        .unwrap()
        .iter()
        .map(|relation| {
            if relation.a == "china" {
                relation.b.clone()
            } else {
                relation.a.clone()
            }
        })
        .collect();
    assert_eq!(at_war, set(&["south-korea", "united-states"]));
    assert_eq!(
        kinds(&between("1953-08-01").await),
        set(&["diplomatic_relations"])
    );
    assert!(client
        .relations("china", "", "at_war", "1953-08-01", 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        kinds(&between("1962-01-01").await),
        set(&["diplomatic_relations", "alliance"])
    );

    // Attributes, by id and by alias.
    let leader = |response: &proto::GetEntityResponse, key: &str| {
        response
            .attributes
            .iter()
            .find(|attribute| attribute.key == key)
            .map(|attribute| attribute.value.clone())
    };
    let north_korea = client.entity("north-korea", "2012-06-01", 0).await.unwrap();
    assert_eq!(
        leader(&north_korea, "leader").as_deref(),
        Some("kim-jong-un")
    );
    let dprk = client.entity("DPRK", "2021-01-01", 0).await.unwrap();
    assert_eq!(dprk.entity.as_ref().unwrap().id, "north-korea");
    assert_eq!(leader(&dprk, "border_status").as_deref(), Some("closed"));

    // Kim Jong-un's September 2023.
    let september = client
        .events(&EventQuery {
            entity: "kim-jong-un".into(),
            from: "2023-09-01".into(),
            to: "2023-09-30".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let summit = september
        .iter()
        .filter_map(|entry| entry.event.as_ref())
        .find(|event| event.kind == "summit")
        .expect("a summit in September 2023");
    assert_eq!(summit.occurred.as_ref().unwrap().start, "2023-09-13");
    assert_eq!(summit.location, "vostochny-cosmodrome");
    let people: BTreeSet<String> = summit
        .participants
        .iter()
        .map(|p| p.entity.clone())
        .collect();
    assert!(people.contains("vladimir-putin") && people.contains("kim-jong-un"));

    // 2024-04-13 in Pyongyang.
    let that_day = client
        .events(&EventQuery {
            from: "2024-04-13".into(),
            to: "2024-04-13".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let meeting = that_day
        .iter()
        .filter_map(|entry| entry.event.as_ref())
        .find(|event| {
            event.kind == "meeting"
                && event.participants.iter().any(|p| p.entity == "zhao-leji")
                && event.participants.iter().any(|p| p.entity == "kim-jong-un")
        })
        .expect("the Zhao–Kim meeting");
    assert_eq!(meeting.location, "pyongyang");
    let quote = &meeting.source.as_ref().unwrap().quote;
    assert!(!quote.is_empty() && ARTICLE_TEXT.contains(quote.as_str()));

    // The border closure, as a Diff.
    let changes = client
        .diff("2019-12-31", "2021-01-01", "north-korea", 0)
        .await
        .unwrap();
    let closure = changes
        .iter()
        .find(|change| change.key == "border_status")
        .expect("border_status changed");
    assert_eq!(closure.kind, proto::ChangeKind::AttributeSet as i32);
    assert_eq!(
        (closure.value.as_str(), closure.at.as_str()),
        ("closed", "2020-01-22")
    );
    let event = client
        .event(&closure.event_id)
        .await
        .unwrap()
        .event
        .unwrap();
    assert_eq!(event.kind, "border_closure");

    server.stop().await;
}

#[test]
fn every_event_is_traceable_to_its_source() {
    let events = article_events();
    assert!(events.len() >= 30, "the article yields a real data set");
    for (position, event) in events.iter().enumerate() {
        assert_eq!(
            event.id,
            format!("article-{:03}", position + 1),
            "stable ids in file order"
        );
        let source = event
            .source
            .as_ref()
            .unwrap_or_else(|| panic!("{} has a source", event.id));
        if !source.quote.is_empty() {
            assert!(
                ARTICLE_TEXT.contains(&source.quote),
                "{}: quote is not in the article",
                event.id
            );
        }
        let basis = event.labels.get("basis").map(String::as_str).unwrap_or("");
        if basis.contains('R') {
            assert!(
                source.url.starts_with("http"),
                "{}: a resolved date carries its source url",
                event.id
            );
        }
        if event.labels.get("undated_claim").map(String::as_str) == Some("true") {
            assert_eq!(
                event.occurred.as_ref().unwrap().start,
                "2024-04-13",
                "{}: an undated claim is dated on the article's own date",
                event.id
            );
        }
    }
    let undated = events
        .iter()
        .filter(|event| event.labels.get("undated_claim").map(String::as_str) == Some("true"))
        .count();
    assert!(
        undated >= 2,
        "the article's undated claims are recorded as reports"
    );
}

#[tokio::test]
async fn a_second_start_appends_nothing() {
    let first = TestServer::seeded().await;
    let seeded = first.server.database().last_seq();
    assert_eq!(seeded as usize, article_events().len());
    let dir = first.dir;
    first.server.shutdown().await.unwrap();

    let config = annals::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        seed: true,
        cache_bytes: 16 * 1024 * 1024,
        timeline_cache_bytes: 16 * 1024 * 1024,
        ..annals::server::Config::default()
    };
    let again = annals::server::Server::start(&config).await.unwrap();
    assert_eq!(again.database().last_seq(), seeded);
    again.shutdown().await.unwrap();
}
