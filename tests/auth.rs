//! Access control as a client meets it: bearer tokens with roles on the
//! TimelineService, health always open, reflection open unless asked
//! otherwise; `serve` refusing malformed token files and open public
//! addresses; the CLI's `--token`; and no token ever in the server's log.

mod common;

use annals::auth::Tokens;
use annals::client::{Client, ClientOptions};
use annals::proto;
use annals::server::Config;
use common::{two_countries, TestServer};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const BINARY: &str = env!("CARGO_BIN_EXE_annals");

const READER: &str = "reader-6f1c2a9e4b7d";
const WRITER: &str = "writer-0d8e3b5a1c64";
const ADMIN: &str = "admin-93a7c1e5f2b8";

fn token_file() -> String {
    format!(
        "# annals tokens: TOKEN ROLE\n\n{READER} reader\n{WRITER}   writer\n\n# operators\n{ADMIN}\tadmin\n"
    )
}

async fn guarded(reflection_requires_auth: bool) -> TestServer {
    let tokens = Arc::new(Tokens::parse(&token_file()).expect("a valid token file"));
    TestServer::configured(true, move |config| {
        config.auth = Some(tokens);
        config.reflection_requires_auth = reflection_requires_auth;
    })
    .await
}

async fn client_with(server: &TestServer, token: Option<&str>) -> Client {
    let options = ClientOptions {
        token: token.map(str::to_string),
        ..ClientOptions::default()
    };
    timeout(WAIT, Client::connect_with(&server.url(), options))
        .await
        .expect("connects in time")
        .expect("connects")
}

async fn last_seq(client: &mut Client) -> Result<u64, tonic::Status> {
    Ok(timeout(WAIT, client.read_log(0, 1, true))
        .await
        .expect("answers in time")?
        .last_seq)
}

async fn entity(client: &mut Client) -> Result<proto::GetEntityResponse, tonic::Status> {
    timeout(WAIT, client.entity("china", "1962-01-01", 0))
        .await
        .expect("answers in time")
}

async fn append(client: &mut Client, id: &str) -> Result<proto::AppendResponse, tonic::Status> {
    timeout(WAIT, client.append(vec![two_countries(id)], None))
        .await
        .expect("answers in time")
}

#[tokio::test]
async fn every_call_needs_a_known_token_and_append_needs_a_writer() {
    let server = guarded(false).await;
    let mut reader = client_with(&server, Some(READER)).await;
    let before = last_seq(&mut reader).await.expect("a reader reads the log");
    assert!(before > 0, "the data set is seeded");

    // No token, or one the server does not know: UNAUTHENTICATED, for
    // queries, appends and subscriptions alike.
    for token in [
        None,
        Some("not-a-known-token"),
        Some(&READER[..READER.len() - 1]),
    ] {
        let mut client = client_with(&server, token).await;
        let status = entity(&mut client).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
        let status = append(&mut client, "anonymous").await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
        let status = timeout(WAIT, client.subscribe(1, "", ""))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
        if token.is_none() {
            assert!(status.message().contains("Bearer"), "{status:?}");
        }
    }

    // A reader queries and subscribes, but may not append.
    entity(&mut reader).await.expect("a reader queries");
    let mut stream = timeout(WAIT, reader.subscribe(1, "", ""))
        .await
        .unwrap()
        .expect("a reader subscribes");
    let first = timeout(WAIT, stream.message())
        .await
        .expect("the stream answers in time")
        .expect("an entry")
        .expect("an entry");
    assert_eq!(first.entry.map(|entry| entry.seq), Some(1));
    drop(stream);
    let denied = append(&mut reader, "by-a-reader").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("writer role"),
        "the message says what is needed: {denied:?}"
    );
    assert_eq!(
        last_seq(&mut reader).await.unwrap(),
        before,
        "nothing stored"
    );

    // Writers and admins append.
    let mut writer = client_with(&server, Some(WRITER)).await;
    let stored = append(&mut writer, "by-a-writer")
        .await
        .expect("a writer appends");
    assert_eq!(stored.last_seq, before + 1);
    let mut admin = client_with(&server, Some(ADMIN)).await;
    let stored = timeout(
        WAIT,
        admin.append(
            vec![common::event(
                "by-an-admin",
                "statement",
                "1901",
                vec![common::set("aland", "capital", "Mariehamn")],
            )],
            None,
        ),
    )
    .await
    .unwrap()
    .expect("an admin appends");
    assert_eq!(stored.last_seq, before + 2);
    entity(&mut admin).await.expect("an admin queries");
    server.stop().await;
}

#[tokio::test]
async fn the_raw_metadata_is_a_bearer_token_in_any_case() {
    let server = guarded(false).await;
    let channel = server.channel().await;
    let mut raw = proto::timeline_service_client::TimelineServiceClient::new(channel);
    for (value, expected) in [
        (format!("Bearer {READER}"), Code::Ok),
        (format!("bearer {READER}"), Code::Ok),
        (format!("BEARER  {READER}"), Code::Ok),
        (format!("Basic {READER}"), Code::Unauthenticated),
        (READER.to_string(), Code::Unauthenticated),
        ("Bearer".to_string(), Code::Unauthenticated),
    ] {
        let mut request = tonic::Request::new(proto::ReadLogRequest {
            from_seq: 1,
            limit: 1,
            reverse: false,
        });
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
        let code = match timeout(WAIT, raw.read_log(request)).await.unwrap() {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        assert_eq!(code, expected, "authorization: {value:?}");
    }
    server.stop().await;
}

async fn health_status(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut health = HealthClient::new(channel);
    let response = timeout(
        WAIT,
        health.check(HealthCheckRequest {
            service: "annals.v1.TimelineService".into(),
        }),
    )
    .await
    .expect("health answers in time")?;
    Ok(response.into_inner().status)
}

/// Lists services through reflection v1 and v1alpha, with an optional token.
async fn reflect(
    channel: tonic::transport::Channel,
    token: Option<&str>,
) -> Vec<Result<Vec<String>, Code>> {
    let authorize = |metadata: &mut tonic::metadata::MetadataMap| {
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
    };
    let mut answers = Vec::new();
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel.clone());
        let mut request = tonic::Request::new(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]));
        authorize(request.metadata_mut());
        let answer = async {
            let mut responses = client.server_reflection_info(request).await?.into_inner();
            match responses.message().await?.and_then(|r| r.message_response) {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    Ok(list.service.into_iter().map(|s| s.name).collect())
                }
                other => panic!("v1 ListServices answered {other:?}"),
            }
        };
        let answer: Result<Vec<String>, tonic::Status> = timeout(WAIT, answer).await.unwrap();
        answers.push(answer.map_err(|status| status.code()));
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut client = ServerReflectionClient::new(channel);
        let mut request = tonic::Request::new(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]));
        authorize(request.metadata_mut());
        let answer = async {
            let mut responses = client.server_reflection_info(request).await?.into_inner();
            match responses.message().await?.and_then(|r| r.message_response) {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    Ok(list.service.into_iter().map(|s| s.name).collect())
                }
                other => panic!("v1alpha ListServices answered {other:?}"),
            }
        };
        let answer: Result<Vec<String>, tonic::Status> = timeout(WAIT, answer).await.unwrap();
        answers.push(answer.map_err(|status| status.code()));
    }
    answers
}

#[tokio::test]
async fn health_and_reflection_stay_open_by_default() {
    let server = guarded(false).await;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(
        health_status(server.channel().await).await.unwrap(),
        serving
    );
    for answer in reflect(server.channel().await, None).await {
        let services = answer.expect("reflection needs no token by default");
        assert!(
            services
                .iter()
                .any(|name| name == "annals.v1.TimelineService"),
            "{services:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn reflection_can_require_a_token_while_health_stays_open() {
    let server = guarded(true).await;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(
        health_status(server.channel().await).await.unwrap(),
        serving
    );
    for answer in reflect(server.channel().await, None).await {
        assert_eq!(answer, Err(Code::Unauthenticated));
    }
    for answer in reflect(server.channel().await, Some("unknown")).await {
        assert_eq!(answer, Err(Code::Unauthenticated));
    }
    for answer in reflect(server.channel().await, Some(READER)).await {
        let services = answer.expect("a reader may reflect");
        assert!(services
            .iter()
            .any(|name| name == "annals.v1.TimelineService"));
    }
    server.stop().await;
}

#[tokio::test]
async fn without_tokens_a_server_serves_only_loopback_unless_insecure() {
    let config = |listen: &str, auth: bool, insecure: bool| Config {
        listen: listen.parse().unwrap(),
        auth: auth.then(|| Arc::new(Tokens::parse("t reader").unwrap())),
        insecure,
        ..Config::default()
    };
    for loopback in [
        "127.0.0.1:0",
        "127.8.9.10:50051",
        "[::1]:0",
        "[::ffff:127.0.0.1]:0",
    ] {
        config(loopback, false, false)
            .check_exposure()
            .unwrap_or_else(|error| panic!("{loopback}: {error}"));
    }
    for public in [
        "0.0.0.0:50051",
        "[::]:0",
        "192.0.2.7:50051",
        "[2001:db8::1]:0",
    ] {
        let error = config(public, false, false).check_exposure().unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("not a loopback address") && message.contains("--insecure"),
            "{public}: {message}"
        );
        config(public, true, false).check_exposure().unwrap();
        config(public, false, true).check_exposure().unwrap();
    }

    // Server::start refuses before it opens a store or binds a port.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("never-created");
    let refused = Config {
        data_dir: data_dir.clone(),
        ..config("0.0.0.0:0", false, false)
    };
    let error = timeout(WAIT, annals::server::Server::start(&refused))
        .await
        .unwrap()
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("not a loopback address"),
        "{error}"
    );
    assert!(!data_dir.exists(), "nothing was opened");
}

/// Runs `annals` to completion (bounded), returning (success, stdout, stderr).
fn annals(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut child = Command::new(BINARY)
        .args(args)
        .env_remove("ANNALS_TOKEN")
        .env_remove("ANNALS_AUTH_TOKENS")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("annals runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("annals {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stdout, stderr)
}

#[test]
fn serve_refuses_malformed_token_files_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let cases = [
        (
            "secret-one reader\nsecret-two root\n",
            "line 2: unknown role",
        ),
        ("# comment\n\nwriter\n", "line 3: missing token"),
        (
            "secret-one reader\nsecret-one writer\n",
            "line 2: duplicate token",
        ),
        ("# only comments\n", "no tokens"),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("tokens.txt");
        std::fs::write(&file, text).unwrap();
        let (ok, _, stderr) = annals(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--auth-tokens",
                file.to_str().unwrap(),
            ],
            &[("ANNALS_LOG", "warn")],
        );
        assert!(!ok, "{text:?} must be refused");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(stderr.contains("tokens.txt"), "names the file: {stderr}");
        assert!(!stderr.contains("secret-"), "never shows a token: {stderr}");
    }
    let (ok, _, stderr) = annals(
        &[
            "serve",
            "--auth-tokens",
            dir.path().join("missing").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && stderr.contains("missing"), "{stderr}");
    assert!(!data_dir.exists(), "serve stopped before opening the store");
}

#[test]
fn serve_refuses_a_public_address_without_tokens_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (ok, _, stderr) = annals(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[("ANNALS_LOG", "warn")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("0.0.0.0:0 is not a loopback address") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "serve stopped before opening the store");
}

/// A `annals serve` process with a token file, its stderr in a file.
struct Serve {
    child: std::process::Child,
    address: String,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let tokens = dir.join("tokens.txt");
        std::fs::write(&tokens, token_file()).unwrap();
        let stderr = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--auth-tokens")
            .arg(&tokens)
            .env("ANNALS_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("annals serve starts");
        let receiver = common::announced(child.stdout.take().unwrap());
        let address = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not say where it listens");
            }
        };
        Serve { child, address }
    }

    fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_cli_sends_its_token_and_the_server_never_logs_one() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let server = serve.address.clone();
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        r#"{"id":"cli-declared","kind":"declaration","occurred":{"start":"1900"},"summary":"Aland.","effects":[{"declare":{"id":"aland","name":"Aland","type":"ENTITY_TYPE_COUNTRY"}}]}"#,
    )
    .unwrap();
    let events = events.to_str().unwrap();

    let (ok, stdout, _) = annals(
        &["entity", "china", "--server", &server, "--token", READER],
        &[],
    );
    assert!(ok && stdout.contains("china"), "{stdout}");
    let (ok, stdout, _) = annals(
        &["log", "--limit", "1", "--server", &server],
        &[("ANNALS_TOKEN", READER)],
    );
    assert!(
        ok && stdout.contains("SEQ"),
        "the token from ANNALS_TOKEN: {stdout}"
    );

    let (ok, _, stderr) = annals(&["entity", "china", "--server", &server], &[]);
    assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
    let (ok, _, stderr) = annals(
        &[
            "entity",
            "china",
            "--server",
            &server,
            "--token",
            "wrong-token-77",
        ],
        &[],
    );
    assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
    let (ok, _, stderr) = annals(
        &["append", events, "--server", &server, "--token", READER],
        &[],
    );
    assert!(!ok && stderr.contains("PermissionDenied"), "{stderr}");
    let (ok, stdout, stderr) = annals(
        &["append", events, "--server", &server, "--token", WRITER],
        &[],
    );
    assert!(
        ok && stdout.contains("appended 1 events"),
        "{stdout}{stderr}"
    );

    assert!(serve.terminate(), "the server stops cleanly");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("serving annals.v1.TimelineService"),
        "debug logging was on: {log}"
    );
    for token in [READER, WRITER, ADMIN, "wrong-token-77"] {
        assert!(!log.contains(token), "the log shows a token: {token}");
    }
}
