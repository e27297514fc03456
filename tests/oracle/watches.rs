//! Standing queries against the replay: a WatchRelations or WatchEntity
//! from seq 1 over a random history sends exactly the answers at the seqs
//! where the naive replay's answer changed, and nothing at the others.

use crate::history::{history, Rng, ENTITIES};
use crate::replay::Replay;
use annals::client::Client;
use annals::engine::{Database, Limits};
use annals::proto;
use annals::server::{Config, Server};
use annals::store::{LogStore, MemoryStore};
use annals::time::query_instant;
use std::sync::Arc;
use std::time::Duration;
use tonic::Streaming;

/// What a watch answers, in one shape for both kinds: the entity (for
/// WatchEntity), attributes (for WatchEntity) and relations.
type Answer = (
    Option<proto::Entity>,
    Vec<proto::Attribute>,
    Vec<proto::Relation>,
);

enum Watching {
    Relations(Streaming<proto::WatchRelationsResponse>),
    Entity(Streaming<proto::WatchEntityResponse>),
}

impl Watching {
    /// The next message: its seq, event id and answer.
    async fn next(&mut self, context: &str) -> (u64, String, Answer) {
        let within = Duration::from_secs(20);
        match self {
            Watching::Relations(stream) => {
                let message = tokio::time::timeout(within, stream.message())
                    .await
                    .unwrap_or_else(|_| panic!("{context}: an answer did not come"))
                    .unwrap()
                    .unwrap();
                let answer = (None, Vec::new(), message.relations);
                (message.seq, message.event_id, answer)
            }
            Watching::Entity(stream) => {
                let message = tokio::time::timeout(within, stream.message())
                    .await
                    .unwrap_or_else(|_| panic!("{context}: an answer did not come"))
                    .unwrap()
                    .unwrap();
                let answer = message.answer.unwrap();
                let answer = (answer.entity, answer.attributes, answer.relations);
                (message.seq, message.event_id, answer)
            }
        }
    }
}

fn check_watches(seed: u64, events: usize, watches: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut rng = Rng(seed);
    runtime.block_on(async {
        let db = Database::open(store.clone(), Limits::default()).unwrap();
        for batch in history(&mut rng, events) {
            db.append(batch, None)
                .await
                .expect("generated histories are valid");
        }
        db.close();
    });
    runtime.block_on(async {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            seed: false,
            ..Config::default()
        };
        let server = Server::start_on_store(store.clone(), &config)
            .await
            .unwrap();
        let mut client = Client::connect(&format!("http://{}", server.local_addr()))
            .await
            .unwrap();
        for number in 0..watches {
            // The log as it is now (earlier watches' markers included).
            let replay = Replay::new(store.as_ref());
            let last = server.database().last_seq();
            let entity = rng.pick(&ENTITIES);
            let at_text = if rng.below(6) == 0 {
                String::new()
            } else {
                rng.time()
            };
            let at = query_instant(&at_text).unwrap();
            let whole = rng.below(2) == 0;
            let context = format!(
                "seed {seed}, watch {number} ({}): {entity} at {at_text:?}",
                if whole { "entity" } else { "relations" }
            );
            // The replay's answer at every seq, kept where it changed (the
            // entity's declaration as GetEntity answers it).
            let mut expected: Vec<(u64, Answer)> = Vec::new();
            for seq in 1..=last {
                let relations = replay.relations(Some(entity), at, seq);
                let answer = if whole {
                    let declared = client.entity(entity, "", seq).await.ok();
                    let attributes = replay.attributes(entity, at, seq);
                    (
                        declared.and_then(|found| found.entity),
                        attributes,
                        relations,
                    )
                } else {
                    (None, Vec::new(), relations)
                };
                if expected
                    .last()
                    .is_none_or(|(_, previous)| *previous != answer)
                {
                    expected.push((seq, answer));
                }
            }
            let mut watch = if whole {
                Watching::Entity(
                    client
                        .watch_entity(entity, &at_text, 1)
                        .await
                        .unwrap_or_else(|status| panic!("{context}: {status:?}")),
                )
            } else {
                Watching::Relations(
                    client
                        .watch_relations(entity, "", "", &at_text, 1)
                        .await
                        .unwrap_or_else(|status| panic!("{context}: {status:?}")),
                )
            };
            for (position, (seq, answer)) in expected.iter().enumerate() {
                let (message_seq, event_id, received) = watch.next(&context).await;
                if message_seq != *seq {
                    let entry = store.get(*seq).unwrap();
                    eprintln!("{context}: the entry at {seq}: {entry:?}");
                }
                assert_eq!(message_seq, *seq, "{context}: answer {position}'s seq");
                assert_eq!(&received, answer, "{context}: answer at seq {seq}");
                if position > 0 {
                    assert_eq!(event_id, replay.id(*seq), "{context}");
                }
            }
            // Nothing more came in between: an append that changes the
            // answer is the very next message.
            let sentinel = format!("sentinel-{number}");
            let marker = proto::Event {
                id: format!("marker-{number}"),
                kind: "marker".into(),
                occurred: Some(proto::TimeSpan {
                    start: "0900".into(),
                    end: String::new(),
                }),
                effects: vec![
                    effect(proto::effect::Change::Declare(proto::Declare {
                        id: sentinel.clone(),
                        name: sentinel.clone(),
                        r#type: proto::EntityType::Other as i32,
                        aliases: Vec::new(),
                    })),
                    effect(proto::effect::Change::Begin(proto::BeginRelation {
                        a: entity.to_string(),
                        b: sentinel.clone(),
                        kind: "marked".into(),
                        directed: false,
                    })),
                ],
                ..Default::default()
            };
            let appended = client.append(vec![marker], None).await.unwrap();
            let (seq, event_id, _) = watch.next(&context).await;
            assert_eq!(seq, appended.last_seq, "{context}: no answer between");
            assert_eq!(event_id, format!("marker-{number}"));
        }
        server.shutdown().await.unwrap();
    });
}

fn effect(change: proto::effect::Change) -> proto::Effect {
    proto::Effect {
        at: String::new(),
        change: Some(change),
    }
}

#[test]
fn watched_answers_change_exactly_where_the_replay_changes() {
    for seed in [3_u64, 17, 101, 4242] {
        check_watches(seed, 60, 6);
    }
}
