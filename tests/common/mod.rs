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
