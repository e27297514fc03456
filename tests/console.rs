//! The console over HTTP/1.1, as a browser or `curl` reaches it: the page
//! on the gRPC port, the JSON gateway answering what gRPC answers, the
//! pictures drawn from the API's answers, /metrics and /healthz, `--http`.

mod common;

use annals::auth::Tokens;
use annals::server::Http;
use common::TestServer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP/1.1 answer: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("{error}: {}", self.body))
    }
}

/// One HTTP/1.1 request on a connection of its own.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("answers in time")
    .unwrap();
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

async fn api(address: SocketAddr, method: &str, body: &str) -> Answer {
    let path = format!("/api/annals.v1.TimelineService/{method}");
    http(
        address,
        "POST",
        &path,
        &[("content-type", "application/json")],
        body,
    )
    .await
}

#[tokio::test]
async fn the_page_and_grpc_share_one_port() {
    let server = TestServer::seeded().await;
    let address = server.server.local_addr();
    assert_eq!(server.server.console_addr(), Some(address));
    let page = http(address, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
    assert!(page.body.contains("/console.js"));
    for asset in ["/console.js", "/console.css"] {
        let answer = http(address, "GET", asset, &[], "").await;
        assert_eq!(answer.status, 200, "{asset}");
        assert!(
            !answer.body.contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }
    // And gRPC on the same port, as before.
    let mut client = server.client().await;
    assert!(client.entity("DPRK", "1951-06-01", 0).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn the_gateway_answers_what_grpc_answers() {
    let server = TestServer::seeded().await;
    let address = server.server.local_addr();
    let answer = api(
        address,
        "ListRelations",
        r#"{"entity":"DPRK","at":"1951-06-01"}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    let mut client = server.client().await;
    let relations = client
        .relations("DPRK", "", "", "1951-06-01", 0)
        .await
        .unwrap();
    let listed = json["relations"].as_array().unwrap();
    assert_eq!(listed.len(), relations.len());
    for (json, relation) in listed.iter().zip(&relations) {
        assert_eq!(json["kind"], relation.kind.as_str());
        assert_eq!(json["b"], relation.b.as_str());
        assert_eq!(json["certain"], relation.certain);
        assert_eq!(json["event_id"], relation.event_id.as_str());
    }

    let missing = api(address, "GetEntity", r#"{"id":"nobody"}"#).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "NOT_FOUND");
    let bad = api(address, "GetEntity", r#"{"id":"china","colour":"red"}"#).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["code"], "INVALID_ARGUMENT");
    let streaming = api(address, "Subscribe", "{}").await;
    assert_eq!(streaming.status, 501);
    let unknown = api(address, "DropEverything", "{}").await;
    assert_eq!(unknown.status, 404);

    // A body a page elsewhere could send without a preflight is refused,
    // and stores nothing.
    let before = common::last_seq(&mut client).await;
    let event = r#"{"events":[{"id":"csrf-1","kind":"meeting","occurred":{"start":"2024"}}]}"#;
    let forged = http(
        address,
        "POST",
        "/api/annals.v1.TimelineService/Append",
        &[("content-type", "text/plain")],
        event,
    )
    .await;
    assert_eq!(forged.status, 400);
    assert_eq!(common::last_seq(&mut client).await, before);
    server.stop().await;
}

/// Every drawn part of North Korea's timeline, checked against what the
/// API answers at an instant inside it: hatched exactly where `certain` is
/// false.
#[tokio::test]
async fn the_timeline_is_hatched_exactly_where_the_api_is_uncertain() {
    let server = TestServer::seeded().await;
    let address = server.server.local_addr();
    let answer = http(address, "GET", "/draw/timeline?entity=north-korea", &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("image/svg+xml"));
    let document = roxmltree::Document::parse(&answer.body).expect("well-formed SVG");
    let intervals: Vec<_> = document
        .descendants()
        .filter(|node| node.attribute("class") == Some("interval"))
        .collect();
    let find = |kind: &str, counterpart: &str| {
        intervals
            .iter()
            .find(|node| {
                node.attribute("data-kind") == Some(kind)
                    && node.attribute("data-counterpart") == Some(counterpart)
            })
            .unwrap_or_else(|| panic!("no {kind} with {counterpart}"))
    };
    assert!(find("alliance", "china")
        .attribute("data-from")
        .unwrap()
        .starts_with("1961"));
    assert_eq!(
        find("co_belligerent", "china").attribute("data-to"),
        Some("1953-07-27")
    );

    let mut client = server.client().await;
    let mut checked = 0;
    for interval in intervals
        .iter()
        .filter(|node| node.attribute("data-row") == Some("relation"))
    {
        let kind = interval.attribute("data-kind").unwrap();
        let counterpart = interval.attribute("data-counterpart").unwrap();
        for part in interval
            .children()
            .filter(|node| node.tag_name().name() == "rect")
        {
            let instant = |name| {
                annals::time::ValidTime::parse(part.attribute(name).unwrap())
                    .unwrap()
                    .earliest()
            };
            let (start, end) = (instant("data-start"), instant("data-end"));
            let middle = annals::time::format_instant(start + (end - start) / 2);
            let relations = client
                .relations("north-korea", counterpart, kind, &middle, 0)
                .await
                .unwrap();
            let hatched = part.attribute("class") == Some("possible");
            match relations.first() {
                // Possibly begun, or still held: certain only on solid parts.
                Some(relation) => assert_eq!(
                    relation.certain, !hatched,
                    "{kind} with {counterpart} at {middle}"
                ),
                // Possibly ended already: only ever hatched.
                None => assert!(
                    hatched,
                    "{kind} with {counterpart} at {middle} is drawn solid but not held"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "checked {checked} parts");
    server.stop().await;
}

#[tokio::test]
async fn the_graph_draws_the_relations_active_at_its_instant() {
    let server = TestServer::seeded().await;
    let address = server.server.local_addr();
    let mut client = server.client().await;
    for at in ["1951-06-01", "1954-06-01"] {
        let answer = http(address, "GET", &format!("/draw/graph?at={at}"), &[], "").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let document = roxmltree::Document::parse(&answer.body).expect("well-formed SVG");
        let mut drawn: Vec<(String, String, String)> = document
            .descendants()
            .filter(|node| node.attribute("class") == Some("edge"))
            .map(|node| {
                let field = |name| node.attribute(name).unwrap().to_string();
                (field("data-a"), field("data-b"), field("data-kind"))
            })
            .collect();
        let mut listed: Vec<(String, String, String)> = client
            .relations("", "", "", at, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|relation| (relation.a, relation.b, relation.kind))
            .collect();
        drawn.sort();
        listed.sort();
        assert_eq!(drawn, listed, "at {at}");
        let co_belligerent = drawn.iter().any(|(_, _, kind)| kind == "co_belligerent");
        assert_eq!(
            co_belligerent,
            at == "1951-06-01",
            "co_belligerent appears and ends"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_and_health_answer_over_http() {
    let server = TestServer::seeded().await;
    let address = server.server.local_addr();
    let health = http(address, "GET", "/healthz", &[], "").await;
    assert_eq!((health.status, health.body.trim()), (200, "SERVING"));
    assert_eq!(
        api(address, "GetEntity", r#"{"id":"china"}"#).await.status,
        200
    );
    let metrics = http(address, "GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(
        metrics
            .body
            .contains(r#"annals_rpc_calls_total{method="GetEntity",code="OK"} 1"#),
        "{}",
        metrics.body
    );
    let mut client = server.client().await;
    let last = common::last_seq(&mut client).await;
    assert!(metrics
        .body
        .contains(&format!("annals_log_last_seq {last}")));
    assert!(metrics.body.trim_end().ends_with("# EOF"));
    server.stop().await;
}

#[tokio::test]
async fn http_moves_the_console_or_turns_it_off() {
    let own = TestServer::configured(true, |config| {
        config.http = Http::Own("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let grpc = own.server.local_addr();
    let console = own.server.console_addr().expect("a console address");
    assert_ne!(console, grpc);
    assert_eq!(http(console, "GET", "/", &[], "").await.status, 200);
    assert_eq!(http(console, "GET", "/healthz", &[], "").await.status, 200);
    assert!(own.client().await.entity("china", "", 0).await.is_ok());
    own.stop().await;

    let off = TestServer::configured(true, |config| config.http = Http::Off).await;
    assert_eq!(off.server.console_addr(), None);
    // HTTP/1.1 is not spoken there at all: the connection ends unanswered
    // or with an error, never with the page.
    let address = off.server.local_addr();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await;
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"));
    off.stop().await;
}

#[tokio::test]
async fn with_tokens_the_console_asks_for_one() {
    let tokens = Arc::new(Tokens::parse("reader-token reader\n").unwrap());
    let server = TestServer::configured(true, |config| config.auth = Some(tokens)).await;
    let address = server.server.local_addr();
    // The page itself is open (it holds no data); what it reads is not.
    assert_eq!(http(address, "GET", "/", &[], "").await.status, 200);
    assert_eq!(http(address, "GET", "/healthz", &[], "").await.status, 200);
    let open = api(address, "GetEntity", r#"{"id":"china"}"#).await;
    assert_eq!(
        (open.status, open.json()["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    assert_eq!(http(address, "GET", "/metrics", &[], "").await.status, 401);
    assert_eq!(
        http(address, "GET", "/draw/timeline?entity=china", &[], "")
            .await
            .status,
        401
    );
    let bearer = [
        ("authorization", "Bearer reader-token"),
        ("content-type", "application/json"),
    ];
    let path = "/api/annals.v1.TimelineService/GetEntity";
    assert_eq!(
        http(address, "POST", path, &bearer, r#"{"id":"china"}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        http(address, "GET", "/metrics", &bearer, "").await.status,
        200
    );
    let append =
        r#"{"events":[{"id":"reader-append","kind":"meeting","occurred":{"start":"2024"}}]}"#;
    let refused = http(
        address,
        "POST",
        "/api/annals.v1.TimelineService/Append",
        &bearer,
        append,
    )
    .await;
    assert_eq!(refused.status, 403);
    server.stop().await;
}
