//! A client that is not the project's own code: Python's grpcio, finding
//! the API through server reflection (v1alpha) alone
//! (`tests/python/article_client.py`), checks the article's answers.
//!
//! Needs a Python with `grpcio` and `grpcio-reflection`: `ANNALS_PYTHON`,
//! or `python3` on `PATH`. Without one the test prints that it skipped,
//! unless `ANNALS_REQUIRE_PYTHON=1` (set by `.ci/run`), which makes it a
//! failure.

mod common;

use common::TestServer;
use std::path::PathBuf;
use std::process::Command;

/// A Python that has grpcio and its reflection client, or why not.
fn python() -> Option<PathBuf> {
    let required = std::env::var("ANNALS_REQUIRE_PYTHON").is_ok_and(|value| value == "1");
    let candidate = std::env::var_os("ANNALS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let probe = Command::new(&candidate)
        .args([
            "-c",
            "import grpc, grpc_reflection.v1alpha.proto_reflection_descriptor_database",
        ])
        .output();
    let why = match probe {
        Err(error) => format!("{} cannot run: {error}", candidate.display()),
        Ok(output) if !output.status.success() => format!(
            "{} lacks grpcio or grpcio-reflection ({})",
            candidate.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ),
        Ok(_) => return Some(candidate),
    };
    if required {
        panic!("ANNALS_REQUIRE_PYTHON=1 but {why} (set ANNALS_PYTHON)");
    }
    eprintln!(
        "skipped: {why}; `pip install grpcio grpcio-reflection` and set ANNALS_PYTHON to run it"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_finds_the_api_by_reflection_and_gets_the_articles_answers() {
    let Some(python) = python() else {
        return;
    };
    let server = TestServer::seeded().await;
    let address = server.server.local_addr().to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/article_client.py"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(address)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("answers right"), "{stdout}");
}
