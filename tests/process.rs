//! The `annals` binary as a user runs it: `serve` in one process, the
//! client subcommands in others, SIGTERM to stop, and a restart.

mod common;

use common::{ServeProcess as Serve, BINARY};
use std::process::Command;

/// Runs a client subcommand against `serve`; returns its stdout.
fn run(serve: &Serve, args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .args(["--server", &serve.address])
        .output()
        .expect("the client runs");
    assert!(
        output.status.success(),
        "annals {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn last_seq(serve: &Serve) -> u64 {
    let log: serde_json::Value =
        serde_json::from_str(&run(serve, &["log", "--limit", "1", "--json"])).unwrap();
    log["last_seq"].as_str().unwrap().parse().unwrap()
}

#[test]
fn serve_answers_the_cli_then_stops_on_sigterm_and_restarts_without_reseeding() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);

    let relations = run(&serve, &["relations", "north-korea", "--at", "1951-06-01"]);
    assert!(
        relations.starts_with("RELATION"),
        "an aligned table: {relations}"
    );
    assert!(relations.contains("co_belligerent") && relations.contains("china -- north-korea"));

    let entity = run(&serve, &["entity", "DPRK", "--at", "2021-01-01"]);
    assert!(
        entity.contains("border_status") && entity.contains("closed"),
        "{entity}"
    );

    let history = run(&serve, &["history", "china", "north-korea"]);
    assert!(
        history.contains("co_belligerent") && history.contains("1953-07-27"),
        "{history}"
    );

    let events = run(
        &serve,
        &[
            "events",
            "--entity",
            "kim-jong-un",
            "--from",
            "2023-09",
            "--to",
            "2023-09",
        ],
    );
    assert!(
        events.contains("summit") && events.contains("2023-09-13"),
        "{events}"
    );

    let diff = run(
        &serve,
        &[
            "diff",
            "--entity",
            "north-korea",
            "--from",
            "2019-12-31",
            "--to",
            "2021-01-01",
        ],
    );
    assert!(
        diff.contains("north-korea.border_status = closed") && diff.contains("2020-01-22"),
        "{diff}"
    );

    let json: serde_json::Value = serde_json::from_str(&run(
        &serve,
        &["relations", "china", "--at", "1962-01-01", "--json"],
    ))
    .unwrap();
    let kinds: Vec<&str> = json["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|relation| relation["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"alliance"), "{json}");

    let seeded = last_seq(&serve);
    assert!(seeded > 0);
    let log = run(&serve, &["log", "--limit", "3"]);
    assert_eq!(
        log.lines().count(),
        1 + 3 + 1,
        "header, three rows, a 'more' line: {log}"
    );

    // append FILE, then tail sees it.
    let file = dir.path().join("new.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"id":"cli-1","kind":"declaration","occurred":{"start":"2024"},"effects":[{"declare":{"id":"mongolia","name":"Mongolia","type":"ENTITY_TYPE_COUNTRY"}}]}"#,
            "\n",
            r#"{"id":"cli-2","kind":"treaty_signed","occurred":{"start":"2024-06"},"effects":[{"begin":{"a":"china","b":"mongolia","kind":"alliance"}}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let appended = run(&serve, &["append", file.to_str().unwrap()]);
    assert!(appended.contains("appended 2 events"), "{appended}");
    assert_eq!(last_seq(&serve), seeded + 2);
    let from = (seeded + 1).to_string();
    let tail = run(&serve, &["tail", "--from", &from, "--count", "2"]);
    assert!(tail.contains("cli-1") && tail.contains("cli-2"), "{tail}");
    let possible = run(&serve, &["relations", "mongolia", "--at", "2024-06-15"]);
    assert!(
        possible.contains("possible"),
        "a change dated 2024-06 is not certain mid-month: {possible}"
    );

    let status = serve.terminate();
    assert!(
        status.success(),
        "SIGTERM drains and exits 0, not {status:?}"
    );

    let serve = Serve::start(dir.path(), &[]);
    assert_eq!(
        last_seq(&serve),
        seeded + 2,
        "a restart keeps everything and seeds nothing"
    );
    assert!(serve.terminate().success());
}

#[test]
fn a_bad_request_prints_the_reason_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let output = Command::new(BINARY)
        .args(["entity", "atlantis", "--server", &serve.address])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("atlantis"),
        "{stderr}"
    );
    let output = Command::new(BINARY)
        .args([
            "relations",
            "china",
            "--at",
            "1950-13",
            "--server",
            &serve.address,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at:"));
    assert!(serve.terminate().success());
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    // `annals entity DPRK --at 2021-01-01 | head -0`: the reader is gone
    // before the first line is written.
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    for args in [
        &["entity", "DPRK", "--at", "2021-01-01"][..],
        &["events", "--entity", "north-korea"][..],
        &["entity", "DPRK", "--json"][..],
    ] {
        let mut child = Command::new(BINARY)
            .args(args)
            .args(["--server", &serve.address])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "annals {args:?}: {stderr}");
        assert!(stderr.is_empty(), "annals {args:?} printed: {stderr}");
    }
    assert!(serve.terminate().success());
}

#[test]
fn the_console_pictures_are_drawn_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let timeline = dir.path().join("north-korea.svg");
    let path = timeline.to_str().unwrap();
    run(
        &serve,
        &[
            "timeline", "DPRK", "--svg", path, "--from", "1945", "--to", "2025",
        ],
    );
    let text = std::fs::read_to_string(&timeline).unwrap();
    let document = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let war = document
        .descendants()
        .find(|node| {
            node.attribute("class") == Some("interval")
                && node.attribute("data-kind") == Some("co_belligerent")
        })
        .expect("the war with china is drawn");
    assert_eq!(war.attribute("data-to"), Some("1953-07-27"));

    // To stdout with "-": the graph the console draws at that instant.
    let graph = run(&serve, &["graph", "--at", "1951-06-01", "--svg", "-"]);
    let document = roxmltree::Document::parse(&graph).expect("well-formed SVG");
    assert!(document
        .descendants()
        .any(|node| node.attribute("class") == Some("edge")
            && node.attribute("data-kind") == Some("co_belligerent")));
    let trend = run(&serve, &["trend", "china", "north-korea", "--svg", "-"]);
    assert!(roxmltree::Document::parse(&trend).is_ok(), "{trend}");
    assert!(serve.terminate().success());
}
