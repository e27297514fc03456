//! The metrics as a scrape sees them: a `Database` over the in-memory
//! store, its TimelineService behind `Metered` (and `Admission`), called
//! in-process through the generated client.

use super::rpc::METHODS;
use super::*;
use crate::admission::Admission;
use crate::engine::Limits;
use crate::proto::timeline_service_client::TimelineServiceClient;
use crate::proto::timeline_service_server::TimelineServiceServer;
use crate::proto::{self, effect::Change};
use crate::service::Service;
use crate::store::MemoryStore;
use http_body::Body as _;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Bytes, Context, Poll, Service as _};
use tonic::server::NamedService;
use tonic::Code;

type Client = TimelineServiceClient<Metered<Admission<TimelineServiceServer<Service>>>>;

/// A database and a client of its metered service, allowing
/// `max_in_flight` calls at once.
fn serve(max_in_flight: usize) -> (Database, Client, watch::Sender<bool>) {
    let db = Database::open(Arc::new(MemoryStore::new()), Limits::default()).unwrap();
    let (stop, stopping) = watch::channel(false);
    let service = TimelineServiceServer::new(Service::new(db.clone(), stopping));
    let admitted = Admission::new(
        service,
        max_in_flight,
        Duration::from_secs(10),
        db.metrics().clone(),
    );
    let client = TimelineServiceClient::new(Metered::new(admitted, db.metrics().clone()));
    (db, client, stop)
}

fn event(id: &str, change: Change) -> proto::Event {
    proto::Event {
        id: id.into(),
        kind: "note".into(),
        occurred: Some(proto::TimeSpan {
            start: "2000".into(),
            end: String::new(),
        }),
        effects: vec![proto::Effect {
            at: String::new(),
            change: Some(change),
        }],
        ..Default::default()
    }
}

/// Two events: the entity "x" declared, and an attribute of it set.
fn two_events() -> Vec<proto::Event> {
    let declare = Change::Declare(proto::Declare {
        id: "x".into(),
        name: "X".into(),
        r#type: proto::EntityType::Country as i32,
        aliases: Vec::new(),
    });
    let set = Change::Set(proto::SetAttribute {
        entity: "x".into(),
        key: "capital".into(),
        value: "Y".into(),
    });
    vec![event("declared", declare), event("set", set)]
}

async fn append(client: &mut Client, events: Vec<proto::Event>) {
    client
        .append(proto::AppendRequest {
            events,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn get_entity(id: &str) -> proto::GetEntityRequest {
    proto::GetEntityRequest {
        id: id.into(),
        ..Default::default()
    }
}

/// The value of the sample `name` (with its labels, as rendered) in
/// `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

#[tokio::test]
async fn calls_appends_and_the_log_are_rendered() {
    let (db, mut client, _stop) = serve(16);
    append(&mut client, two_events()).await;
    client.get_entity(get_entity("x")).await.unwrap();
    let refused = client.get_entity(get_entity("")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    // Re-sent: answered OK, nothing stored.
    append(&mut client, two_events()).await;

    let text = render(&db);
    for line in [
        "annals_rpc_calls_total{method=\"GetEntity\",code=\"OK\"} 1\n",
        "annals_rpc_calls_total{method=\"GetEntity\",code=\"INVALID_ARGUMENT\"} 1\n",
        "annals_rpc_calls_total{method=\"Append\",code=\"OK\"} 2\n",
        "annals_rpc_duration_seconds_count{method=\"GetEntity\",code=\"OK\"} 1\n",
        "annals_appends_total 1\n",
        "annals_events_appended_total 2\n",
        "annals_rpc_in_flight 0\n",
        "annals_rpc_shed_total 0\n",
        "# TYPE annals_durable_sync_seconds histogram\n",
        "# UNIT annals_durable_sync_seconds seconds\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    let commits = sample(&text, "annals_group_commit_events_count").unwrap();
    assert!(commits >= 1.0, "{text}");
    assert_eq!(
        sample(&text, "annals_group_commit_events_sum"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "annals_durable_sync_seconds_count"),
        Some(commits)
    );
    assert_eq!(
        sample(&text, "annals_log_last_seq"),
        Some(db.last_seq() as f64)
    );
    assert_eq!(db.last_seq(), 2);
    assert!(text.ends_with("# EOF\n"));
    // A single node has no view lag.
    assert!(!text.contains("annals_view_lag"), "{text}");
    db.close();
}

#[tokio::test]
async fn a_call_over_the_in_flight_limit_is_counted_as_shed() {
    let (db, mut client, _stop) = serve(0);
    let shed = client.get_entity(get_entity("x")).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    let text = render(&db);
    assert!(text.contains("annals_rpc_shed_total 1\n"), "{text}");
    assert!(
        text.contains(
            "annals_rpc_calls_total{method=\"GetEntity\",code=\"RESOURCE_EXHAUSTED\"} 1\n"
        ),
        "{text}"
    );
    db.close();
}

#[tokio::test]
async fn an_open_subscription_is_counted_and_its_end_recorded() {
    let (db, mut client, _stop) = serve(16);
    append(&mut client, two_events()).await;
    let mut stream = client
        .subscribe(proto::SubscribeRequest {
            from_seq: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    let text = render(&db);
    assert!(
        text.contains("annals_subscriptions_open{kind=\"subscribe\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("annals_subscriptions_open{kind=\"watch\"} 0\n"),
        "{text}"
    );
    // Not ended yet: no status.
    assert!(!text.contains("method=\"Subscribe\""), "{text}");

    // The client goes away before the stream ends.
    drop(stream);
    let cancelled = "annals_rpc_calls_total{method=\"Subscribe\",code=\"CANCELLED\"} 1\n";
    let closed = "annals_subscriptions_open{kind=\"subscribe\"} 0\n";
    for _ in 0..200 {
        let text = render(&db);
        if text.contains(cancelled) && text.contains(closed) {
            db.close();
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never {cancelled:?} and {closed:?}:\n{}", render(&db));
}

#[tokio::test]
async fn a_repeated_read_is_a_cache_hit() {
    let (db, mut client, _stop) = serve(16);
    append(&mut client, two_events()).await;
    let timeline = db.metrics().timeline_cache();
    let events = db.metrics().event_cache();

    client.get_entity(get_entity("x")).await.unwrap();
    let (hits, misses) = (timeline.hits(), timeline.misses());
    assert!(misses >= 1, "the first read builds the copy");
    client.get_entity(get_entity("x")).await.unwrap();
    assert!(timeline.hits() > hits, "the second read is served by it");
    assert_eq!(timeline.misses(), misses);

    let count = || proto::CountEventsRequest {
        entity: "x".into(),
        ..Default::default()
    };
    client.count_events(count()).await.unwrap();
    let (hits, misses) = (events.hits(), events.misses());
    assert!(misses >= 1, "the first count builds the run");
    client.count_events(count()).await.unwrap();
    assert!(events.hits() > hits, "the second count reads it");

    let text = render(&db);
    let rendered = |labels: &str| sample(&text, &format!("annals_cache_lookups_total{{{labels}}}"));
    assert_eq!(
        rendered("cache=\"timeline\",result=\"hit\""),
        Some(timeline.hits() as f64)
    );
    assert_eq!(
        rendered("cache=\"events\",result=\"miss\""),
        Some(events.misses() as f64)
    );
    db.close();
}

/// A stand-in for the service: answers every call with the response
/// `answer` makes.
#[derive(Clone)]
struct Answering(fn() -> http::Response<Body>);

impl NamedService for Answering {
    const NAME: &'static str = "annals.v1.TimelineService";
}

impl tonic::codegen::Service<http::Request<Body>> for Answering {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        let response = (self.0)();
        Box::pin(async move { Ok(response) })
    }
}

/// A body of the given frames.
struct Frames(VecDeque<http_body::Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// A message, then a `grpc-status` trailer of `code`; no status in the
/// headers.
fn with_trailer(code: Code) -> http::Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", (code as i32).to_string().parse().unwrap());
    let frames = VecDeque::from([
        http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0")),
        http_body::Frame::trailers(trailers),
    ]);
    http::Response::new(Body::new(Frames(frames)))
}

async fn call(metrics: &Metrics, path: &str, answer: fn() -> http::Response<Body>) -> Body {
    let mut metered = Metered::new(Answering(answer), metrics.clone());
    let request = http::Request::builder()
        .uri(format!("http://annals{path}"))
        .body(Body::empty())
        .unwrap();
    metered.call(request).await.unwrap().into_body()
}

/// Reads a body to its end.
async fn read_all(mut body: Body) {
    while std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
        .await
        .is_some()
    {}
}

fn calls(metrics: &Metrics, method: &str, code: &str) -> Option<f64> {
    let text = metrics_text(metrics);
    sample(
        &text,
        &format!("annals_rpc_calls_total{{method=\"{method}\",code=\"{code}\"}}"),
    )
}

fn metrics_text(metrics: &Metrics) -> String {
    let mut text = String::new();
    encode(&mut text, &metrics.inner.registry).unwrap();
    text
}

#[tokio::test]
async fn the_status_comes_from_the_trailer_or_else_the_headers() {
    let metrics = Metrics::new();
    let path = "/annals.v1.TimelineService/GetEvent";

    // OK in the trailer: recorded when the body ends, not before.
    let body = call(&metrics, path, || with_trailer(Code::Ok)).await;
    assert_eq!(calls(&metrics, "GetEvent", "OK"), None);
    read_all(body).await;
    assert_eq!(calls(&metrics, "GetEvent", "OK"), Some(1.0));

    // An error in the trailer is that error, not OK.
    read_all(call(&metrics, path, || with_trailer(Code::NotFound)).await).await;
    assert_eq!(calls(&metrics, "GetEvent", "NOT_FOUND"), Some(1.0));

    // Trailers-only (how tonic sends an error): from the headers, at once.
    let body = call(&metrics, path, || {
        tonic::Status::unauthenticated("no token").into_http()
    })
    .await;
    assert_eq!(calls(&metrics, "GetEvent", "UNAUTHENTICATED"), Some(1.0));
    read_all(body).await;
    assert_eq!(calls(&metrics, "GetEvent", "UNAUTHENTICATED"), Some(1.0));

    // A body dropped before its trailer: the client went away.
    drop(call(&metrics, path, || with_trailer(Code::Ok)).await);
    assert_eq!(calls(&metrics, "GetEvent", "CANCELLED"), Some(1.0));
    assert_eq!(calls(&metrics, "GetEvent", "OK"), Some(1.0));
}

#[tokio::test]
async fn a_path_that_names_no_method_is_one_label_value() {
    let metrics = Metrics::new();
    for path in [
        "/annals.v1.TimelineService/NoSuchMethod",
        "/annals.v1.TimelineService/AnotherOne",
        "/elsewhere/GetEntity",
    ] {
        let answer = || tonic::Status::unimplemented("no such method").into_http();
        read_all(call(&metrics, path, answer).await).await;
    }
    assert_eq!(calls(&metrics, "unknown", "UNIMPLEMENTED"), Some(3.0));
    assert!(!metrics_text(&metrics).contains("NoSuchMethod"));
}

#[test]
fn the_method_labels_are_the_methods_of_the_service() {
    let pool = prost_reflect::DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let service = pool
        .get_service_by_name(<TimelineServiceServer<Service> as NamedService>::NAME)
        .unwrap();
    let mut described: Vec<String> = service.methods().map(|m| m.name().to_string()).collect();
    let mut labelled: Vec<String> = METHODS.iter().map(|m| m.to_string()).collect();
    described.sort();
    labelled.sort();
    assert_eq!(described, labelled);
}
