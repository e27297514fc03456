//! AttributeHistory: every value an attribute held, with the events that
//! set and ended it, as known at any seq.

mod common;

use annals::proto;
use common::{event, set, two_countries, TestServer};

#[tokio::test]
async fn attribute_history_lists_each_value_with_its_events() {
    let server = TestServer::empty().await;
    let mut client = server.client().await;
    client
        .append(vec![two_countries("decl")], None)
        .await
        .unwrap();
    let events = vec![
        event(
            "e1",
            "election",
            "1948",
            vec![set("aland", "leader", "Ana")],
        ),
        event(
            "e2",
            "election",
            "1950-05",
            vec![set("aland", "leader", "Ana")],
        ),
        event(
            "e3",
            "election",
            "1994-07-08",
            vec![set("aland", "leader", "Ben")],
        ),
        event("e4", "coup", "2000", vec![set("aland", "leader", "")]),
        event(
            "e5",
            "founding",
            "1948",
            vec![set("aland", "capital", "Alby")],
        ),
    ];
    client.append(events, None).await.unwrap();
    let before_correction = common::last_seq(&mut client).await;
    let mut correction = event("e3-fix", "correction", "1994-07-08", vec![]);
    correction.corrects = "e3".into();
    client.append(vec![correction], None).await.unwrap();

    let row = |interval: &proto::AttributeInterval| {
        (
            interval.key.clone(),
            interval.value.clone(),
            interval.from.clone(),
            interval.to.clone(),
            interval.set_by.clone(),
            interval.ended_by.clone(),
        )
    };
    let text = |parts: [&str; 6]| parts.map(str::to_string).into();
    let then: Vec<_> = client
        .attribute_history("ALD", "", before_correction)
        .await
        .unwrap()
        .iter()
        .map(row)
        .collect();
    assert_eq!(
        then,
        vec![
            text(["leader", "Ana", "1948", "1994-07-08", "e1", "e3"]),
            text(["capital", "Alby", "1948", "", "e5", ""]),
            text(["leader", "Ben", "1994-07-08", "2000", "e3", "e4"]),
        ],
        "setting the same value again changes nothing; an unset ends the interval"
    );
    // The correction withdrew e3: Ana held until the coup.
    let now: Vec<_> = client
        .attribute_history("aland", "leader", 0)
        .await
        .unwrap()
        .iter()
        .map(row)
        .collect();
    assert_eq!(
        now,
        vec![text(["leader", "Ana", "1948", "2000", "e1", "e4"])]
    );

    let missing = client
        .attribute_history("nowhere", "", 0)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad_key = client
        .attribute_history("aland", "Not A Key", 0)
        .await
        .unwrap_err();
    assert_eq!(bad_key.code(), tonic::Code::InvalidArgument);
    let no_entity = client.attribute_history("", "", 0).await.unwrap_err();
    assert_eq!(no_entity.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}
