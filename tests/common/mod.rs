//! Shared by the integration tests: a real server on 127.0.0.1:0 over a
//! fresh sled store in a temporary directory, and a client for it.
#![allow(dead_code)]

use annals::client::Client;
use annals::proto;
use annals::server::{Config, Server};
use std::time::Duration;

/// A running server, its data directory, and how to reach it. Call
/// `stop` at the end of a test; the directory is removed on drop.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with the built-in data set.
    pub async fn seeded() -> TestServer {
        TestServer::start(true).await
    }

    /// A server with an empty log.
    pub async fn empty() -> TestServer {
        TestServer::start(false).await
    }

    pub async fn start(seed: bool) -> TestServer {
        TestServer::configured(seed, |_| {}).await
    }

    /// A server whose `Config` a test adjusts (auth, TLS, limits).
    pub async fn configured(seed: bool, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            seed,
            cache_bytes: 16 * 1024 * 1024,
            timeline_cache_bytes: 16 * 1024 * 1024,
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::start(&config).await.expect("the server starts");
        TestServer { server, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    pub async fn client(&self) -> Client {
        tokio::time::timeout(Duration::from_secs(10), Client::connect(&self.url()))
            .await
            .expect("connects in time")
            .expect("connects")
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connects")
    }

    pub async fn stop(self) {
        tokio::time::timeout(Duration::from_secs(30), self.server.shutdown())
            .await
            .expect("shuts down in time")
            .expect("shuts down cleanly");
    }
}

/// An event with a kind, a start and effects; other fields empty.
pub fn event(id: &str, kind: &str, start: &str, effects: Vec<proto::Effect>) -> proto::Event {
    proto::Event {
        id: id.to_string(),
        kind: kind.to_string(),
        occurred: Some(proto::TimeSpan {
            start: start.to_string(),
            end: String::new(),
        }),
        summary: format!("{kind} {id}"),
        effects,
        ..Default::default()
    }
}

pub fn declare(
    id: &str,
    name: &str,
    entity_type: proto::EntityType,
    aliases: &[&str],
) -> proto::Effect {
    effect(proto::effect::Change::Declare(proto::Declare {
        id: id.to_string(),
        name: name.to_string(),
        r#type: entity_type as i32,
        aliases: aliases.iter().map(|alias| alias.to_string()).collect(),
    }))
}

pub fn begin(a: &str, b: &str, kind: &str) -> proto::Effect {
    effect(proto::effect::Change::Begin(proto::BeginRelation {
        a: a.to_string(),
        b: b.to_string(),
        kind: kind.to_string(),
        directed: false,
    }))
}

pub fn end(a: &str, b: &str, kind: &str) -> proto::Effect {
    effect(proto::effect::Change::End(proto::EndRelation {
        a: a.to_string(),
        b: b.to_string(),
        kind: kind.to_string(),
        directed: false,
    }))
}

pub fn set(entity: &str, key: &str, value: &str) -> proto::Effect {
    effect(proto::effect::Change::Set(proto::SetAttribute {
        entity: entity.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    }))
}

pub fn effect(change: proto::effect::Change) -> proto::Effect {
    proto::Effect {
        at: String::new(),
        change: Some(change),
    }
}

/// The same effect at an explicit valid time.
pub fn at(time: &str, mut effect: proto::Effect) -> proto::Effect {
    effect.at = time.to_string();
    effect
}

/// Two countries, `aland` and `borduria`, declared in one event.
pub fn two_countries(id: &str) -> proto::Event {
    event(
        id,
        "declaration",
        "1900",
        vec![
            declare("aland", "Aland", proto::EntityType::Country, &["ALD"]),
            declare("borduria", "Borduria", proto::EntityType::Country, &["BRD"]),
        ],
    )
}

/// The last seq of the log, as ReadLog reports it.
pub async fn last_seq(client: &mut Client) -> u64 {
    client
        .read_log(0, 1, false)
        .await
        .expect("ReadLog answers")
        .last_seq
}

/// GetEvent by seq.
pub async fn get_by_seq(client: &mut Client, seq: u64) -> Result<proto::LogEntry, tonic::Status> {
    let request = proto::GetEventRequest {
        selector: Some(proto::get_event_request::Selector::Seq(seq)),
    };
    Ok(client
        .raw()
        .get_event(request)
        .await?
        .into_inner()
        .entry
        .expect("GetEvent answers with an entry"))
}

/// One event, dated 1900, declaring each of `entities` as a country.
pub fn declarations(id: &str, entities: &[&str]) -> proto::Event {
    let effects = entities
        .iter()
        .map(|entity| {
            declare(
                entity,
                &entity.to_uppercase(),
                proto::EntityType::Country,
                &[],
            )
        })
        .collect();
    event(id, "declaration", "1900", effects)
}

/// The `annals` binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_annals");

/// An `annals serve` process on a free loopback port; killed on drop if
/// the test did not stop it.
pub struct ServeProcess {
    child: std::process::Child,
    pub address: String,
}

/// The address an `annals serve` says it listens on ("annals listening on
/// ADDRESS" on its stdout), once it says it; its stdout is read to the end
/// by a thread of its own.
pub fn announced(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("annals listening on ") {
                let _ = sender.send(address.to_string());
            }
        }
    });
    receiver
}

impl ServeProcess {
    /// Starts `annals serve --listen 127.0.0.1:0 --data-dir DIR` plus
    /// `extra` arguments, and waits until it says where it listens.
    pub fn start(data_dir: &std::path::Path, extra: &[&str]) -> ServeProcess {
        use std::process::{Command, Stdio};
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("ANNALS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("annals serve starts");
        let address = announced(child.stdout.take().unwrap())
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        ServeProcess { child, address }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// SIGKILL: no chance to flush or drain.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status (within a deadline).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens sled in `dir` directly, retrying while the server's lock lingers.
pub fn open_sled(dir: &std::path::Path) -> sled::Db {
    let mut last = None;
    for _ in 0..50 {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(error) => {
                last = Some(error);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    panic!("sled does not open {dir:?}: {last:?}");
}
