//! CountEvents and ListEvents' dyad and label filters over gRPC: what the
//! counts are, as of which seq, and what bad requests get.

mod common;

use annals::proto;
use common::TestServer;
use std::collections::BTreeMap;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A coded report of `a` and `b` on `day`, with labels.
fn report(id: &str, day: &str, a: &str, b: &str, labels: &[(&str, &str)]) -> proto::Event {
    let mut event = common::event(id, "consult", day, Vec::new());
    event.participants = [(a, "subject"), (b, "target")]
        .into_iter()
        .map(|(entity, role)| proto::Participant {
            entity: entity.into(),
            role: role.into(),
        })
        .collect();
    event.labels = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    event
}

fn counts(response: &proto::CountEventsResponse) -> Vec<(String, u64, f64)> {
    response
        .buckets
        .iter()
        .map(|bucket| (bucket.start.clone(), bucket.count, bucket.mean))
        .collect()
}

fn request(entity: &str, counterpart: &str, bucket: proto::Bucket) -> proto::CountEventsRequest {
    proto::CountEventsRequest {
        entity: entity.into(),
        counterpart: counterpart.into(),
        bucket: bucket as i32,
        from: "2018".into(),
        to: "2019".into(),
        ..Default::default()
    }
}

fn assert_bad_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries google.rpc.BadRequest");
    assert!(
        details.field_violations.iter().any(|v| v.field == field),
        "{field} in {details:?}"
    );
}

#[tokio::test]
async fn a_dyad_is_counted_per_bucket_as_known_at_any_seq() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let first = client
        .append(
            vec![
                report(
                    "r1",
                    "2018-06-01",
                    "north-korea",
                    "united-states",
                    &[("goldstein", "1"), ("cameo_root", "04")],
                ),
                report(
                    "r2",
                    "2018-06-01",
                    "united-states",
                    "north-korea",
                    &[("goldstein", "3"), ("cameo_root", "04")],
                ),
                report(
                    "r3",
                    "2018-06-20",
                    "north-korea",
                    "china",
                    &[("goldstein", "5"), ("cameo_root", "04")],
                ),
                report(
                    "r4",
                    "2018-07-02",
                    "north-korea",
                    "united-states",
                    &[("goldstein", "-10"), ("cameo_root", "19")],
                ),
                report(
                    "r5",
                    "2019-01-01",
                    "north-korea",
                    "united-states",
                    &[("goldstein", "n/a")],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.already_present, [false; 5]);

    let mut by_month = request("DPRK", "united-states", proto::Bucket::Month);
    by_month.value_label = "goldstein".into();
    let response = client.count_events(by_month.clone()).await.unwrap();
    assert_eq!(
        counts(&response),
        [
            ("2018-06".to_string(), 2, 2.0),
            ("2018-07".to_string(), 1, -10.0),
            ("2019-01".to_string(), 1, 0.0),
        ]
    );
    assert_eq!(response.buckets[2].valued, 0, "n/a is not a number");
    assert_eq!(response.total, 4);

    let mut filtered = by_month.clone();
    filtered.labels = BTreeMap::from([("cameo_root".to_string(), "04".to_string())]);
    filtered.bucket = proto::Bucket::Day as i32;
    let response = client.count_events(filtered).await.unwrap();
    assert_eq!(counts(&response), [("2018-06-01".to_string(), 2, 2.0)]);

    // Every counterpart, of one kind (the article's 2019 visit is not a
    // consultation).
    let everyone = client
        .count_events(proto::CountEventsRequest {
            kind: "consult".into(),
            ..request("north-korea", "", proto::Bucket::Year)
        })
        .await
        .unwrap();
    assert_eq!(
        counts(&everyone),
        [("2018".to_string(), 4, 0.0), ("2019".to_string(), 1, 0.0)]
    );

    // A correction withdraws r4 from the count from its seq on; the count
    // as of the seq before still has it.
    let before = first.last_seq;
    let mut correction = report("r4-fixed", "2018-07-02", "north-korea", "china", &[]);
    correction.corrects = "r4".into();
    client.append(vec![correction], None).await.unwrap();
    let now = client.count_events(by_month.clone()).await.unwrap();
    assert_eq!(now.total, 3);
    let then = client
        .count_events(proto::CountEventsRequest {
            as_of_seq: before,
            ..by_month.clone()
        })
        .await
        .unwrap();
    assert_eq!(then.total, 4);
    assert_eq!(then.as_of_seq, before);
    let earlier = client
        .count_events(proto::CountEventsRequest {
            as_of_seq: before - 4,
            ..by_month
        })
        .await
        .unwrap();
    assert_eq!(earlier.total, 1, "as of r1: one event");
    server.stop().await;
}

#[tokio::test]
async fn list_events_filters_a_dyad_and_labels_across_pages() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let events: Vec<_> = (0..7)
        .map(|n| {
            let root = if n % 2 == 0 { "04" } else { "19" };
            let b = if n % 3 == 0 { "china" } else { "united-states" };
            report(
                &format!("p{n}"),
                &format!("2018-06-0{}", n + 1),
                "north-korea",
                b,
                &[("cameo_root", root)],
            )
        })
        .collect();
    client.append(events.clone(), None).await.unwrap();
    let again = client.append(events.clone(), None).await.unwrap();
    assert_eq!(
        again.already_present, [true; 7],
        "a re-sent batch stores nothing"
    );
    // A bulk loader's append: the same entries, without the events.
    let brief = client
        .raw()
        .append(proto::AppendRequest {
            events,
            expected_last_seq: None,
            omit_events: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(brief.entries.iter().all(|entry| entry.event.is_none()));
    let seqs = |entries: &[proto::LogEntry]| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&brief.entries), seqs(&again.entries));
    assert_eq!(brief.already_present, [true; 7]);

    let mut request = proto::ListEventsRequest {
        entity: "north-korea".into(),
        counterpart: "united-states".into(),
        labels: BTreeMap::from([("cameo_root".to_string(), "04".to_string())]),
        from: "2018-06".into(),
        to: "2018-06".into(),
        page_size: 1,
        ..Default::default()
    };
    let mut ids = Vec::new();
    loop {
        let page = client
            .raw()
            .list_events(request.clone())
            .await
            .unwrap()
            .into_inner();
        ids.extend(
            page.entries
                .into_iter()
                .map(|entry| entry.event.unwrap().id),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    // Roots 04 at n = 0, 2, 4, 6; the United States at n = 1, 2, 4, 5.
    assert_eq!(ids, ["p2", "p4"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_count_requests_are_refused_with_their_field() {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    let count = |request: proto::CountEventsRequest| {
        let mut client = client.clone();
        async move { client.count_events(request).await.unwrap_err() }
    };
    let base = request("north-korea", "china", proto::Bucket::Year);
    assert_bad_field(
        &count(proto::CountEventsRequest {
            bucket: 9,
            ..base.clone()
        })
        .await,
        "bucket",
    );
    assert_bad_field(
        &count(proto::CountEventsRequest {
            entity: String::new(),
            ..base.clone()
        })
        .await,
        "counterpart",
    );
    assert_bad_field(
        &count(proto::CountEventsRequest {
            from: "2019-02-30".into(),
            ..base.clone()
        })
        .await,
        "from",
    );
    assert_bad_field(
        &count(proto::CountEventsRequest {
            from: "2020".into(),
            ..base.clone()
        })
        .await,
        "to",
    );
    assert_bad_field(
        &count(proto::CountEventsRequest {
            as_of_seq: 1_000_000,
            ..base.clone()
        })
        .await,
        "as_of_seq",
    );
    assert_bad_field(
        &count(proto::CountEventsRequest {
            value_label: "x".repeat(100),
            ..base.clone()
        })
        .await,
        "value_label",
    );
    let unknown = count(proto::CountEventsRequest {
        counterpart: "atlantis".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("atlantis"), "{unknown:?}");

    // With no entity at all: every event (the article's of 1950).
    let all = client
        .count_events(proto::CountEventsRequest {
            from: "1950".into(),
            to: "1950".into(),
            bucket: proto::Bucket::Unspecified as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.total > 0);
    assert!(
        all.buckets
            .iter()
            .all(|bucket| bucket.start.starts_with("1950-")),
        "months by default"
    );
    let listing = client.raw();
    let refused = listing
        .list_events(proto::ListEventsRequest {
            counterpart: "china".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_bad_field(&refused, "counterpart");
    server.stop().await;
}
