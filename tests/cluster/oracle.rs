//! The oracle over a cluster: random histories appended round-robin to two
//! nodes (in this process, each with its own view), then every question
//! answered by each node equal to the naive replay of the log.

use crate::compare::compare;
use crate::harness::{nats_server, Nats};
use crate::history::{history, Rng};
use crate::replay::Replay;
use annals::cluster::LogConfig;
use annals::server::{Config, Server};
use annals::store::{LogStore, MemoryStore, StoredEntry};
use std::time::Duration;

async fn node(nats: &Nats, dir: &std::path::Path, stream: &str) -> Server {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        seed: false,
        cache_bytes: 8 * 1024 * 1024,
        timeline_cache_bytes: 64 * 1024,
        event_cache_bytes: 64 * 1024,
        log: Some(LogConfig::parse(&nats.url(), stream, 3).unwrap()),
        ..Config::default()
    };
    Server::start(&config).await.expect("a node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_over_two_nodes_agree_with_the_replay() {
    let Some(binary) = nats_server() else { return };
    let nats = Nats::start(binary);
    nats.ready().await;
    for seed in [7_u64, 8, 9] {
        let dir = tempfile::tempdir().unwrap();
        let stream = format!("ORACLE_{seed}");
        let a = node(&nats, &dir.path().join("a"), &stream).await;
        let b = node(&nats, &dir.path().join("b"), &stream).await;
        let (left, right) = (a.database().clone(), b.database().clone());
        let mut rng = Rng(seed);
        for (number, batch) in history(&mut rng, 40).into_iter().enumerate() {
            let db = if number % 2 == 0 { &left } else { &right };
            db.append(batch, None)
                .await
                .expect("generated histories are valid on any node");
        }
        let last = left.last_seq().max(right.last_seq());
        assert_eq!(left.reach(last, Duration::from_secs(30)).await, last);
        assert_eq!(right.reach(last, Duration::from_secs(30)).await, last);
        let log = left.read_log(1, usize::MAX, false).unwrap();
        assert_eq!(
            log,
            right.read_log(1, usize::MAX, false).unwrap(),
            "seed {seed}"
        );
        let store = MemoryStore::new();
        let entries: Vec<StoredEntry> = log
            .into_iter()
            .map(|entry| {
                let time = entry.recorded_at.unwrap();
                StoredEntry {
                    seq: entry.seq,
                    recorded_at: time.seconds * 1_000_000 + i64::from(time.nanos / 1_000),
                    event: entry.event.unwrap(),
                }
            })
            .collect();
        store.append(&entries, Vec::new()).unwrap();
        let checked = tokio::task::spawn_blocking(move || {
            let replay = Replay::new(&store);
            compare(&left, &replay, &mut Rng(seed ^ 1), 12, seed, "node a");
            compare(&right, &replay, &mut Rng(seed ^ 1), 12, seed, "node b");
        })
        .await;
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        checked.expect("both nodes agree with the replay");
    }
}
