//! Crash safety: the real `annals serve` binary is killed with SIGKILL at
//! random moments while concurrent clients append single events and
//! batches. After every kill: `annals verify` finds the store sound (log
//! checksums, seqs, every derived tree agrees with the log); after every
//! restart: every acknowledged event is there with the same seq and content,
//! seqs have no gaps, no batch is partly there, and re-sending the batches
//! that got no answer (idempotent retries) creates no duplicates. The
//! server runs with tiny memtables, so it flushes and compacts its derived
//! trees all the time and the kills land among those too; and as sled is
//! made durable only every half second behind the journal, most kills take
//! acknowledged entries from sled, which the next open must give back from
//! the log's tail.
//!
//! 50 kills by default; `ANNALS_CRASH_CYCLES=500 cargo test --test crash`
//! soaks longer.

mod common;

use annals::client::Client;
use annals::proto;
use common::{declarations, ServeProcess as Serve, BINARY};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ENTITIES: [&str; 4] = ["crash-a", "crash-b", "crash-c", "crash-d"];
const APPENDERS: usize = 4;
/// Tiny memtables: the server flushes and compacts its derived trees all
/// the time, so kills land in those too.
const SERVE_ARGS: &[&str] = &["--no-seed", "--index-buffer-kib", "16"];

/// SplitMix64, seeded per run from the clock: every run kills at other moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

/// What the clients were told, and what they sent without an answer.
#[derive(Default)]
struct Ledger {
    /// id → the acknowledged entry.
    acknowledged: HashMap<String, proto::LogEntry>,
    /// Every batch ever sent, by the ids it holds.
    batches: Vec<Vec<proto::Event>>,
    /// Batches sent without an answer, to re-send after the restart.
    unanswered: Vec<Vec<proto::Event>>,
}

fn change(rng: &mut Rng) -> proto::Effect {
    use proto::effect::Change;
    let a = ENTITIES[rng.below(4) as usize];
    let b =
        ENTITIES[(ENTITIES.iter().position(|x| *x == a).unwrap() + 1 + rng.below(3) as usize) % 4];
    let change = match rng.below(3) {
        0 => Change::Begin(proto::BeginRelation {
            a: a.into(),
            b: b.into(),
            kind: "ally".into(),
            directed: false,
        }),
        1 => Change::End(proto::EndRelation {
            a: a.into(),
            b: b.into(),
            kind: "ally".into(),
            directed: false,
        }),
        _ => Change::Set(proto::SetAttribute {
            entity: a.into(),
            key: "status".into(),
            value: format!("v{}", rng.below(10)),
        }),
    };
    proto::Effect {
        at: String::new(),
        change: Some(change),
    }
}

fn batch(rng: &mut Rng, prefix: &str) -> Vec<proto::Event> {
    let size = if rng.below(2) == 0 {
        1
    } else {
        2 + rng.below(40)
    };
    (0..size)
        .map(|i| proto::Event {
            id: format!("{prefix}-{i}"),
            kind: "crash_test".into(),
            occurred: Some(proto::TimeSpan {
                start: format!(
                    "{}-{:02}-{:02}",
                    1950 + rng.below(70),
                    1 + rng.below(12),
                    1 + rng.below(28)
                ),
                end: String::new(),
            }),
            summary: format!("event {i} of batch {prefix}"),
            participants: vec![proto::Participant {
                entity: ENTITIES[rng.below(4) as usize].into(),
                role: "subject".into(),
            }],
            effects: (0..rng.below(3)).map(|_| change(rng)).collect(),
            ..Default::default()
        })
        .collect()
}

/// Checks the log against the ledger after a restart.
async fn check(client: &mut Client, ledger: &Ledger, cycle: usize) {
    let mut log: BTreeMap<u64, proto::LogEntry> = BTreeMap::new();
    let mut from = 1;
    loop {
        let page = client
            .read_log(from, 1000, false)
            .await
            .expect("the log reads back");
        for entry in page.entries {
            log.insert(entry.seq, entry);
        }
        if page.next_seq == 0 {
            break;
        }
        from = page.next_seq;
    }
    let seqs: Vec<u64> = log.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "cycle {cycle}: seqs have gaps"
    );
    let mut by_id: HashMap<&str, &proto::LogEntry> = HashMap::new();
    for entry in log.values() {
        let id = entry.event.as_ref().unwrap().id.as_str();
        assert!(
            by_id.insert(id, entry).is_none(),
            "cycle {cycle}: {id} is in the log twice"
        );
    }
    for (id, acknowledged) in &ledger.acknowledged {
        let stored = by_id.get(id.as_str()).unwrap_or_else(|| {
            panic!(
                "cycle {cycle}: acknowledged {id} (seq {}) is lost",
                acknowledged.seq
            )
        });
        assert_eq!(stored.seq, acknowledged.seq, "cycle {cycle}: {id} moved");
        assert_eq!(
            stored.event, acknowledged.event,
            "cycle {cycle}: {id} changed"
        );
        assert_eq!(
            stored.recorded_at, acknowledged.recorded_at,
            "cycle {cycle}: {id} was re-recorded"
        );
    }
    for batch in &ledger.batches {
        let present = batch
            .iter()
            .filter(|event| by_id.contains_key(event.id.as_str()))
            .count();
        assert!(
            present == 0 || present == batch.len(),
            "cycle {cycle}: batch {} is partly stored ({present} of {})",
            batch[0].id,
            batch.len()
        );
    }
}

/// `check` against a copy of the ledger (no lock held across the reads).
async fn check_ledger(client: &mut Client, ledger: &Mutex<Ledger>, cycle: usize) {
    let copy = {
        let ledger = ledger.lock().unwrap();
        Ledger {
            acknowledged: ledger.acknowledged.clone(),
            batches: ledger.batches.clone(),
            unanswered: Vec::new(),
        }
    };
    check(client, &copy, cycle).await;
}

/// Runs `annals verify`; says whether opening the store gave sled entries
/// back from the log's tail.
fn verify_offline(dir: &Path, cycle: usize) -> bool {
    let output = Command::new(BINARY)
        .args(["verify", "--data-dir"])
        .arg(dir)
        .output()
        .expect("annals verify runs");
    assert!(
        output.status.success(),
        "cycle {cycle}: verify after SIGKILL failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).contains("given back from the log tail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let cycles: usize = std::env::var("ANNALS_CRASH_CYCLES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(50);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash test seed {seed}, {cycles} kills");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    let serve = Serve::start(dir.path(), SERVE_ARGS);
    let mut client = Client::connect(&serve.url()).await.unwrap();
    let declarations = declarations("crash-entities", &ENTITIES);
    let response = client.append(vec![declarations], None).await.unwrap();
    ledger
        .lock()
        .unwrap()
        .acknowledged
        .insert("crash-entities".into(), response.entries[0].clone());
    let mut serve = Some(serve);
    let mut recovered = 0;

    for cycle in 0..cycles {
        let running = serve
            .take()
            .unwrap_or_else(|| Serve::start(dir.path(), SERVE_ARGS));
        let mut client =
            tokio::time::timeout(Duration::from_secs(30), Client::connect(&running.url()))
                .await
                .expect("connects in time")
                .expect("connects");
        check_ledger(&mut client, &ledger, cycle).await;

        // Re-send what got no answer: stored once, whatever happened before.
        let retries = std::mem::take(&mut ledger.lock().unwrap().unanswered);
        for batch in retries {
            let response = client
                .append(batch.clone(), None)
                .await
                .expect("a retry succeeds");
            let mut ledger = ledger.lock().unwrap();
            for entry in response.entries {
                let id = entry.event.as_ref().unwrap().id.clone();
                ledger.acknowledged.insert(id, entry);
            }
        }
        check_ledger(&mut client, &ledger, cycle).await;

        // Appenders run until the kill.
        let mut appenders = Vec::new();
        for appender in 0..APPENDERS {
            let mut client = client.clone();
            let ledger = Arc::clone(&ledger);
            let mut rng = Rng(seed ^ (((cycle * APPENDERS + appender) as u64 + 1) * 0x9E37));
            appenders.push(tokio::spawn(async move {
                for sent in 0..10_000 {
                    let events = batch(&mut rng, &format!("c{cycle}-a{appender}-b{sent}"));
                    ledger.lock().unwrap().batches.push(events.clone());
                    let call = tokio::time::timeout(
                        Duration::from_secs(10),
                        client.append(events.clone(), None),
                    );
                    match call.await {
                        Ok(Ok(response)) => {
                            let mut ledger = ledger.lock().unwrap();
                            for entry in response.entries {
                                let id = entry.event.as_ref().unwrap().id.clone();
                                ledger.acknowledged.insert(id, entry);
                            }
                        }
                        _ => {
                            ledger.lock().unwrap().unanswered.push(events);
                            return;
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(10 + rng.below(150))).await;
        running.kill();
        for appender in appenders {
            tokio::time::timeout(Duration::from_secs(30), appender)
                .await
                .expect("appenders stop after the kill")
                .unwrap();
        }
        recovered += usize::from(verify_offline(dir.path(), cycle));
    }

    let running = Serve::start(dir.path(), SERVE_ARGS);
    let mut client = Client::connect(&running.url()).await.unwrap();
    check_ledger(&mut client, &ledger, cycles).await;
    let acknowledged = ledger.lock().unwrap().acknowledged.len();
    println!("{acknowledged} acknowledged events survived {cycles} kills");
    assert!(
        acknowledged > cycles,
        "the appenders got real work done between kills"
    );
    running.kill();
    assert!(
        recovered > 0,
        "no kill took acknowledged entries from sled: the log tail went untested"
    );
    // The kills fell among memtables being flushed as tables.
    assert!(
        tables_in(&dir.path().join("derived")) > 0,
        "the server flushed its derived trees to tables"
    );
}

/// How many table files the derived trees hold.
fn tables_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .flatten()
                .map(|item| {
                    let path = item.path();
                    if path.is_dir() {
                        tables_in(&path)
                    } else {
                        usize::from(
                            path.parent()
                                .is_some_and(|parent| parent.ends_with("tables")),
                        )
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
