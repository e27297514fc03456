//! Operations on a data directory, as an operator runs them with the
//! `annals` binary: verify (on sound and on deliberately damaged stores),
//! rebuild-indexes, and a backup by export restored by import.

mod common;

use annals::client::{Client, EventQuery};
use annals::proto;
use annals::store::{LogStore, SledStore, Tree, Write};
use common::{at, begin, end, event, open_sled, set, TestServer};
use std::path::Path;
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_annals");

fn annals(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("annals runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn verify(dir: &Path) -> Output {
    annals(&["verify", "--data-dir", dir.to_str().unwrap()])
}

/// A seeded store with a few more events, among them a correction; the
/// server is stopped and the directory returned.
async fn populated_store() -> tempfile::TempDir {
    let server = TestServer::seeded().await;
    let mut client = server.client().await;
    client
        .append(
            vec![
                event(
                    "ops-1",
                    "treaty_signed",
                    "2024-06",
                    vec![begin("china", "russia", "alliance")],
                ),
                event(
                    "ops-2",
                    "statement",
                    "2024-07-01",
                    vec![set("north-korea", "border_status", "open")],
                ),
                event(
                    "ops-3",
                    "correction",
                    "2024-06-20",
                    vec![at("2024-06-20", begin("china", "russia", "alliance"))],
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let mut correction = event(
        "ops-4",
        "correction",
        "2024-07-02",
        vec![set("north-korea", "border_status", "partially_open")],
    );
    correction.corrects = "ops-2".into();
    client.append(vec![correction], None).await.unwrap();
    client
        .append(
            vec![event(
                "ops-5",
                "treaty_ended",
                "2024-08",
                vec![end("china", "russia", "alliance")],
            )],
            None,
        )
        .await
        .unwrap();
    let dir = server.dir;
    server.server.shutdown().await.unwrap();
    dir
}

/// Writes wrong values into the derived trees of a stopped store, as a bug
/// in the indexing code would.
fn mislead(dir: &Path, writes: &[Write]) {
    let store = SledStore::open(dir, 8 << 20).unwrap();
    store.write_derived(writes.to_vec()).unwrap();
    store.checkpoint().unwrap();
}

/// Every table file of the derived trees of a stopped store.
fn table_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for item in std::fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path
                .parent()
                .is_some_and(|parent| parent.ends_with("tables"))
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&dir.join("derived"), &mut found);
    found
}

/// Flips one byte a third of the way into every table file of the derived
/// trees of a stopped store.
fn damage_tables(dir: &Path) -> usize {
    let tables = table_files(dir);
    for path in &tables {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 3;
        bytes[middle] ^= 0x20;
        std::fs::write(path, bytes).unwrap();
    }
    tables.len()
}

/// An in-process server on `dir` with small caches.
async fn serve(dir: &Path, seed: bool) -> (annals::server::Server, Client) {
    let config = annals::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        seed,
        cache_bytes: 8 << 20,
        timeline_cache_bytes: 8 << 20,
        ..annals::server::Config::default()
    };
    let server = annals::server::Server::start(&config).await.unwrap();
    let client = Client::connect(&format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    (server, client)
}

#[tokio::test]
async fn verify_passes_a_sound_store() {
    let dir = populated_store().await;
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("ok:"), "{}", text(&output));
}

#[tokio::test]
async fn a_damaged_log_entry_is_reported_and_read_as_data_loss() {
    let dir = populated_store().await;
    let db = open_sled(dir.path());
    let log = db.open_tree("log").unwrap();
    let mut value = log.get(7u64.to_be_bytes()).unwrap().unwrap().to_vec();
    let middle = value.len() / 2;
    value[middle] ^= 0x20;
    log.insert(7u64.to_be_bytes(), value).unwrap();
    db.flush().unwrap();
    drop((log, db));

    let output = verify(dir.path());
    assert!(
        !output.status.success(),
        "verify must fail: {}",
        text(&output)
    );
    let report = text(&output);
    assert!(
        report.contains("log entry 7") && report.contains("checksum"),
        "{report}"
    );

    // The server still starts (nothing replays the log) and says DATA_LOSS
    // rather than answering from the damaged entry.
    let (server, mut client) = serve(dir.path(), true).await;
    let request = proto::GetEventRequest {
        selector: Some(proto::get_event_request::Selector::Seq(7)),
    };
    let status = client.raw().get_event(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    let status = client.read_log(1, 100, false).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    // Entries before the damage still read.
    assert_eq!(client.read_log(1, 6, false).await.unwrap().entries.len(), 6);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_indexes_are_reported_and_rebuilt_from_the_log() {
    let dir = populated_store().await;
    mislead(
        dir.path(),
        &[
            (
                Tree::Ids,
                b"article-007".to_vec(),
                3u64.to_be_bytes().to_vec(),
            ),
            (
                Tree::Superseded,
                999u64.to_be_bytes().to_vec(),
                1u64.to_be_bytes().to_vec(),
            ),
        ],
    );
    let output = verify(dir.path());
    assert!(
        !output.status.success(),
        "verify must fail: {}",
        text(&output)
    );
    let report = text(&output);
    assert!(
        report.contains("ids") && report.contains("article-007"),
        "{report}"
    );
    assert!(report.contains("superseded"), "{report}");
    rebuild_and_verify(dir.path());
}

#[tokio::test]
async fn damaged_index_tables_are_reported_and_rebuilt_from_the_log() {
    let dir = populated_store().await;
    assert!(
        damage_tables(dir.path()) > 0,
        "a clean stop writes the index out"
    );
    let output = verify(dir.path());
    assert!(
        !output.status.success(),
        "verify must fail: {}",
        text(&output)
    );
    let report = text(&output);
    assert!(report.contains("damaged"), "{report}");
    rebuild_and_verify(dir.path());
}

fn rebuild_and_verify(dir: &Path) {
    let output = annals(&["rebuild-indexes", "--data-dir", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let output = verify(dir);
    assert!(
        output.status.success(),
        "after a rebuild: {}",
        text(&output)
    );
}

/// Answers that must survive a backup and restore.
async fn answers(client: &mut Client) -> Vec<String> {
    let mut answers = Vec::new();
    for at in ["1951-06-01", "1962-01-01", "2024-06-25", "2024-09-01", ""] {
        answers.push(format!(
            "{:?}",
            client.relations("china", "", "", at, 0).await.unwrap()
        ));
        answers.push(format!(
            "{:?}",
            client.entity("north-korea", at, 0).await.unwrap()
        ));
    }
    answers.push(format!(
        "{:?}",
        client
            .relations("china", "", "", "2024-07-01", 50)
            .await
            .unwrap()
    ));
    answers.push(format!(
        "{:?}",
        client.history("china", "russia", "", 0).await.unwrap()
    ));
    answers.push(format!(
        "{:?}",
        client.events(&EventQuery::default()).await.unwrap()
    ));
    answers.push(format!(
        "{:?}",
        client.diff("1949", "2024-12-31", "", 0).await.unwrap()
    ));
    answers
}

// Multi-threaded: the test blocks on the `annals` processes while the
// in-process server answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_restores_into_an_empty_store_with_identical_answers() {
    let dir = populated_store().await;
    let (original, mut client) = serve(dir.path(), false).await;
    let url = format!("http://{}", original.local_addr());
    let backup = dir.path().join("backup.jsonl");
    let output = annals(&[
        "export",
        "--out",
        backup.to_str().unwrap(),
        "--server",
        &url,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let expected = answers(&mut client).await;
    let log = client.read_log(1, 1000, false).await.unwrap();
    original.shutdown().await.unwrap();

    let restored_dir = tempfile::tempdir().unwrap();
    let output = annals(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored_dir.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("restored {}", log.last_seq)),
        "{}",
        text(&output)
    );

    let (restored, mut client) = serve(restored_dir.path(), false).await;
    assert_eq!(
        client.read_log(1, 1000, false).await.unwrap(),
        log,
        "same seqs, recorded_at and events"
    );
    assert_eq!(answers(&mut client).await, expected);
    restored.shutdown().await.unwrap();

    // Restoring into a store that is not empty changes nothing.
    let output = annals(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored_dir.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(text(&output).contains("empty"), "{}", text(&output));
}

/// A store written before the derived trees moved out of sled (they were
/// sled trees beside `log`, and there was no `derived/`) opens: the old
/// trees are dropped, the index is rebuilt from the log, and the answers are
/// the same.
#[tokio::test]
async fn a_store_with_the_derived_trees_in_sled_is_rebuilt_on_open() {
    let dir = populated_store().await;
    let (server, mut client) = serve(dir.path(), false).await;
    let expected = answers(&mut client).await;
    server.shutdown().await.unwrap();

    // The old layout: derived trees in sled (with stale contents), nothing
    // beside them.
    std::fs::remove_dir_all(dir.path().join("derived")).unwrap();
    {
        let db = open_sled(dir.path());
        for tree in ["ids", "entity_log", "timeline", "meta"] {
            db.open_tree(tree)
                .unwrap()
                .insert(b"stale", b"value")
                .unwrap();
        }
        db.flush().unwrap();
    }

    let (server, mut client) = serve(dir.path(), false).await;
    assert_eq!(answers(&mut client).await, expected);
    server.shutdown().await.unwrap();
    let names = open_sled(dir.path()).tree_names();
    assert!(
        !names.iter().any(|name| name.as_ref() == b"entity_log"),
        "the old trees are gone"
    );
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
}

/// A store written while the derived trees were run files of annals's own
/// (`index/run-LO-HI.idx`, no `derived/`) opens: the runs are dropped, the
/// index is rebuilt from the log in fjall, and the answers are the same.
#[tokio::test]
async fn a_store_with_index_runs_is_rebuilt_on_open() {
    let dir = populated_store().await;
    let (server, mut client) = serve(dir.path(), false).await;
    let expected = answers(&mut client).await;
    server.shutdown().await.unwrap();

    std::fs::remove_dir_all(dir.path().join("derived")).unwrap();
    let runs = dir.path().join("index");
    std::fs::create_dir(&runs).unwrap();
    std::fs::write(runs.join("run-1-1.idx"), b"an index run of the old layout").unwrap();

    let (server, mut client) = serve(dir.path(), false).await;
    assert_eq!(answers(&mut client).await, expected);
    server.shutdown().await.unwrap();
    assert!(!runs.exists(), "the runs are gone");
    assert!(!table_files(dir.path()).is_empty(), "the index is in fjall");
    let output = verify(dir.path());
    assert!(output.status.success(), "{}", text(&output));
}
