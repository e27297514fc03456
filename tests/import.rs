//! `annals import` as a user runs it: the binary against a running
//! `annals serve`, on fixtures written in the real formats (tests/fixtures)
//! with their quirks, and on the real samples in `../shared/realdata/`.

mod common;

use annals::client::Client;
use annals::proto;
use common::{ServeProcess as Serve, BINARY};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `annals import --json ARGS` against `serve`.
fn import(serve: &Serve, args: &[&str]) -> (Output, Value) {
    let output = Command::new(BINARY)
        .arg("import")
        .args(args)
        .args(["--json", "--server", &serve.url()])
        .output()
        .expect("the importer runs");
    let summary = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, summary)
}

/// Runs an import that must succeed; returns its summary.
fn imported(serve: &Serve, args: &[&str]) -> Value {
    let (output, summary) = import(serve, args);
    assert!(
        output.status.success(),
        "annals import {args:?}: {}\n{summary}",
        String::from_utf8_lossy(&output.stderr)
    );
    summary
}

fn count(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

async fn client(serve: &Serve) -> Client {
    Client::connect(&serve.url()).await.unwrap()
}

async fn event(client: &mut Client, id: &str) -> proto::Event {
    client.event(id).await.unwrap().event.unwrap()
}

fn participants(event: &proto::Event) -> Vec<(String, String)> {
    event
        .participants
        .iter()
        .map(|p| (p.entity.clone(), p.role.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn ids(client: &mut Client, entity: &str, from: &str, to: &str) -> Vec<String> {
    let query = annals::client::EventQuery {
        entity: entity.into(),
        from: from.into(),
        to: to.into(),
        ..Default::default()
    };
    let entries = client.events(&query).await.unwrap();
    entries
        .into_iter()
        .map(|entry| entry.event.unwrap().id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdelt_rows_become_reports_and_a_second_import_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let file = fixture("gdelt-quirks.export.CSV");
    let file = file.to_str().unwrap();
    let summary = imported(&serve, &[file]);
    assert_eq!(count(&summary, "rows"), 9, "{summary}");
    assert_eq!(count(&summary, "imported"), 6, "{summary}");
    assert_eq!(count(&summary, "skipped"), 3, "{summary}");
    let reasons = &summary["skipped_by_reason"];
    assert_eq!(reasons["wrong number of columns"], 1, "{summary}");
    assert_eq!(reasons["unparseable date"], 1, "{summary}");
    assert_eq!(reasons["blank event code"], 1, "{summary}");
    let named = summary["first_skipped"].to_string();
    assert!(named.contains("gdelt-quirks.export.CSV:5:"), "{named}");
    // cameo-usagov, cameo-prkmil, cameo-gov, cameo-afrreb and the region
    // cameo-afr; the countries are the article's.
    assert_eq!(count(&summary, "declared"), 5, "{summary}");

    let mut client = client(&serve).await;
    let first = event(&mut client, "gdelt-900000001").await;
    assert_eq!(first.kind, "consult");
    assert_eq!(first.occurred.as_ref().unwrap().start, "2018-06-01");
    assert!(first.effects.is_empty(), "a coded row is a report");
    assert_eq!(
        participants(&first),
        pairs(&[
            ("united-states", "subject"),
            ("cameo-usagov", "subject"),
            ("north-korea", "target"),
        ])
    );
    assert_eq!(first.labels["goldstein"], "1.9");
    assert_eq!(
        first.labels["avg_tone"], "-2.51256281407035",
        "GDELT's exact text"
    );
    assert_eq!(first.labels["date_added"], "20180601120000");
    assert_eq!(first.source.as_ref().unwrap().url, "http://example.org/a");

    let cited = event(&mut client, "gdelt-900000002").await;
    let source = cited.source.unwrap();
    assert_eq!(source.url, "", "a citation is not a URL");
    assert!(source.document.ends_with(": BBC Monitoring"), "{source:?}");
    // A date GDELT resolved a year before it saw the event is kept.
    let late = event(&mut client, "gdelt-900000003").await;
    assert_eq!(late.occurred.as_ref().unwrap().start, "2017-06-01");
    assert_eq!(participants(&late), pairs(&[("north-korea", "target")]));
    let region = event(&mut client, "gdelt-900000009").await;
    assert!(participants(&region).contains(&("cameo-afr".into(), "subject".into())));

    // PRK, PRKMIL and the alias: one entity.
    assert_eq!(
        ids(&mut client, "PRK", "2018-06-01", "2018-06-01").await,
        ["gdelt-900000001", "gdelt-900000002"]
    );

    let again = imported(&serve, &[file]);
    assert_eq!(count(&again, "imported"), 0, "{again}");
    assert_eq!(count(&again, "already_present"), 6, "{again}");
    assert_eq!(count(&again, "declared"), 0, "{again}");
    serve.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icews_rows_keep_their_quirks() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let file = fixture("icews-quirks.tab");
    let summary = imported(&serve, &[file.to_str().unwrap()]);
    assert_eq!(
        count(&summary, "rows"),
        8,
        "the header is not a row: {summary}"
    );
    assert_eq!(count(&summary, "imported"), 6, "{summary}");
    assert_eq!(
        count(&summary, "already_present"),
        1,
        "a repeated row: {summary}"
    );
    assert_eq!(summary["skipped_by_reason"]["blank event code"], 1);
    // police-india, citizen-india, ukraine (Kim Jong-un, Xi Jinping,
    // Russia, India and the Koreas are the article's).
    assert_eq!(count(&summary, "declared"), 3, "{summary}");

    let mut client = client(&serve).await;
    // M/D/YYYY, and the same Event ID with another date: two events.
    let praise = event(&mut client, "icews-1003-20180602").await;
    assert_eq!(praise.occurred.as_ref().unwrap().start, "2018-06-02");
    assert_eq!(
        participants(&praise),
        pairs(&[
            ("north-korea", "subject"),
            ("kim-jong-un", "subject"),
            ("china", "target"),
            ("xi-jinping", "target"),
        ])
    );
    assert_eq!(praise.labels["source_sectors"], "Executive,Government");
    assert_eq!(praise.labels["target_sectors"], "Executive,Government");
    let earlier = event(&mut client, "icews-1003-20130201").await;
    assert_eq!(earlier.labels["story_id"], "4002");
    // NA is no label; quoted sectors are read without their quotes.
    let police = event(&mut client, "icews-1006-20180602").await;
    assert!(!police.labels.contains_key("geo_lat"));
    assert_eq!(police.labels["source_sectors"], "Government,Police");
    assert_eq!(
        participants(&police),
        pairs(&[
            ("india", "subject"),
            ("police-india", "subject"),
            ("india", "target"),
            ("citizen-india", "target"),
        ])
    );
    // "Russia" with country "Russian Federation" is the article's russia.
    let accuse = event(&mut client, "icews-1007-20180602").await;
    assert_eq!(
        participants(&accuse),
        pairs(&[("russia", "subject"), ("ukraine", "target")])
    );
    // A mirror pair is two events.
    assert_eq!(
        ids(&mut client, "north-korea", "2018-06-01", "2018-06-01").await,
        ["icews-1001-20180601", "icews-1002-20180601"]
    );
    serve.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_row_is_reported_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let original = fixture("gdelt-quirks.export.CSV");
    imported(&serve, &[original.to_str().unwrap()]);

    let text = std::fs::read_to_string(&original).unwrap();
    let changed = dir.path().join("recoded.export.CSV");
    std::fs::write(&changed, text.replacen("\t1.9\t", "\t2.2\t", 1)).unwrap();
    let (output, summary) = import(&serve, &[changed.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "a conflict is a failure: {summary}"
    );
    assert_eq!(count(&summary, "conflicts"), 1, "{summary}");
    assert_eq!(count(&summary, "already_present"), 5, "{summary}");
    let problem = summary["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("recoded.export.CSV:1") && problem.contains("gdelt-900000001"),
        "{problem}"
    );
    let mut client = client(&serve).await;
    let stored = event(&mut client, "gdelt-900000001").await;
    assert_eq!(stored.labels["goldstein"], "1.9", "the first content stays");
    serve.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_another_format_fails_at_once_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let mut client = client(&serve).await;
    let before = common::last_seq(&mut client).await;
    let file = fixture("gdelt-quirks.export.CSV");
    let (output, _) = import(&serve, &["--format", "icews", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not an ICEWS events file") && stderr.contains("looks like a GDELT 2.0"),
        "{stderr}"
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some notes\n").unwrap();
    let (output, _) = import(&serve, &[text.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("neither tab-separated nor JSON"));
    assert_eq!(common::last_seq(&mut client).await, before);

    // A first row that is malformed tells no format; asked for one, the
    // importer reads on and skips it.
    let gdelt = std::fs::read_to_string(file).unwrap();
    let malformed = gdelt.lines().nth(4).unwrap();
    let shuffled = dir.path().join("malformed-first.export.CSV");
    std::fs::write(&shuffled, format!("{malformed}\n{gdelt}")).unwrap();
    let (output, _) = import(&serve, &[shuffled.to_str().unwrap()]);
    assert!(!output.status.success(), "auto cannot tell");
    let summary = imported(&serve, &["--format", "gdelt", shuffled.to_str().unwrap()]);
    assert_eq!(count(&summary, "imported"), 6, "{summary}");
    assert_eq!(count(&summary, "skipped"), 4, "{summary}");
    serve.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_and_gzip_files_read_like_plain_ones_and_a_dry_run_sends_nothing() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(fixture("icews-quirks.tab")).unwrap();
    let gz = dir.path().join("events.tab.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(&text).unwrap();
    encoder.finish().unwrap();
    let gdelt = std::fs::read(fixture("gdelt-quirks.export.CSV")).unwrap();
    let zipped = dir.path().join("20180601000000.export.CSV.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
    writer
        .start_file(
            "20180601000000.export.CSV",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    writer.write_all(&gdelt).unwrap();
    writer.finish().unwrap();

    let serve = Serve::start(&dir.path().join("data"), &[]);
    let mut client = client(&serve).await;
    let before = common::last_seq(&mut client).await;
    let dry = imported(
        &serve,
        &[
            "--dry-run",
            "--cameo-root",
            "19",
            gz.to_str().unwrap(),
            zipped.to_str().unwrap(),
        ],
    );
    assert_eq!(count(&dry, "rows"), 17, "{dry}");
    // One ICEWS row and one GDELT row are of root 19.
    assert_eq!(count(&dry, "imported"), 2, "{dry}");
    assert_eq!(count(&dry, "filtered"), 11, "{dry}");
    assert_eq!(
        common::last_seq(&mut client).await,
        before,
        "a dry run sends nothing"
    );

    let summary = imported(
        &serve,
        &[
            "--country",
            "CHN",
            "--from",
            "2018-06",
            gz.to_str().unwrap(),
            zipped.to_str().unwrap(),
        ],
    );
    // China on a side, from June 2018: one ICEWS row, one GDELT row.
    assert_eq!(count(&summary, "imported"), 2, "{summary}");
    assert_eq!(
        ids(&mut client, "china", "2018", "2018").await,
        ["icews-1003-20180602", "gdelt-900000008"]
    );
    serve.terminate();
}

/// A GDELT file of `rows` rows made from the fixture's first row, with
/// new ids.
fn many_rows(dir: &Path, rows: u64) -> PathBuf {
    let text = std::fs::read_to_string(fixture("gdelt-quirks.export.CSV")).unwrap();
    let first = text.lines().next().unwrap();
    let mut lines = String::new();
    for n in 0..rows {
        lines.push_str(&first.replacen("900000001", &(800_000_000 + n).to_string(), 1));
        lines.push('\n');
    }
    let path = dir.join("many.export.CSV");
    std::fs::write(&path, lines).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_the_server_walks_away_from_is_finished_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 3000;
    let file = many_rows(dir.path(), rows);
    let file = file.to_str().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[]);
    let url = serve.url();
    let importer = Command::new(BINARY)
        .args(["import", "--json", "--batch", "10", "--server", &url, file])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some batches are in, then take the server away.
    let mut client = client(&serve).await;
    let seeded = common::last_seq(&mut client).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while common::last_seq(&mut client).await < seeded + 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    serve.kill();
    let output = importer.wait_with_output().unwrap();
    assert!(!output.status.success(), "the server went away");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the import stopped after"), "{stderr}");
    let interrupted: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(interrupted["stopped"].is_string(), "{interrupted}");

    let serve = Serve::start(&data, &[]);
    let summary = imported(&serve, &[file]);
    assert_eq!(count(&summary, "rows"), rows);
    assert_eq!(
        count(&summary, "imported") + count(&summary, "already_present"),
        rows,
        "{summary}"
    );
    assert!(count(&summary, "already_present") >= 190, "{summary}");
    // Every row once: the day's count is the file's.
    let mut client = Client::connect(&serve.url()).await.unwrap();
    let counted = client
        .count_events(proto::CountEventsRequest {
            entity: "cameo-usagov".into(),
            from: "2018-06-01".into(),
            to: "2018-06-01".into(),
            bucket: proto::Bucket::Day as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(counted.total, rows);
    serve.terminate();
}

/// `../shared/realdata/`, or `None` (with the reason printed) when it is
/// absent and `ANNALS_REQUIRE_SHARED=1` does not demand it.
fn real_samples() -> Option<PathBuf> {
    let shared = std::env::var_os("ANNALS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let dir = shared.join("realdata");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("ANNALS_REQUIRE_SHARED").is_ok_and(|value| value == "1") {
        panic!("ANNALS_REQUIRE_SHARED=1 but {} is missing", dir.display());
    }
    eprintln!("skipped: {} not found (the real samples)", dir.display());
    None
}

/// Rows of a tab-separated file, split on tabs only.
fn table(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// Per day, the rows whose `columns` name both `a` and `b`, and the mean
/// of `value` over them: an independent reading of a sample.
fn dyad_days(
    rows: &[Vec<String>],
    columns: &[usize],
    a: &str,
    b: &str,
    day: impl Fn(&[String]) -> String,
    value: usize,
) -> Vec<(String, u64, f64)> {
    let mut days: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    for row in rows {
        let named = |who: &str| columns.iter().any(|&column| row[column] == who);
        if named(a) && named(b) {
            let entry = days.entry(day(row)).or_default();
            entry.0 += 1;
            entry.1 += row[value].parse::<f64>().unwrap();
        }
    }
    days.into_iter()
        .map(|(day, (count, sum))| (day, count, sum / count as f64))
        .collect()
}

/// The day counts of a dyad among the events of one data set.
async fn trend(client: &mut Client, dataset: &str, a: &str, b: &str) -> Vec<(String, u64, f64)> {
    let response = client
        .count_events(proto::CountEventsRequest {
            entity: a.into(),
            counterpart: b.into(),
            labels: [("dataset".to_string(), dataset.to_string())].into(),
            bucket: proto::Bucket::Day as i32,
            value_label: "goldstein".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    response
        .buckets
        .into_iter()
        .map(|bucket| (bucket.start, bucket.count, bucket.mean))
        .collect()
}

fn assert_close(got: &[(String, u64, f64)], want: &[(String, u64, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?} against {want:?}");
    for (got, want) in got.iter().zip(want) {
        assert_eq!((&got.0, got.1), (&want.0, want.1));
        assert!((got.2 - want.2).abs() < 1e-9, "{got:?} against {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_samples_import_whole_and_count_as_the_files_say() {
    let Some(samples) = real_samples() else {
        return;
    };
    let icews_file = samples.join("icews_events.2018.sample.tab");
    let gdelt_file = samples.join("gdelt2_20150218230000.export.CSV");
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);

    let icews = imported(&serve, &[icews_file.to_str().unwrap()]);
    assert_eq!(count(&icews, "rows"), 3705, "{icews}");
    assert_eq!(count(&icews, "imported"), 3705, "{icews}");
    assert_eq!(count(&icews, "skipped"), 0, "{icews}");
    let gdelt = imported(&serve, &[gdelt_file.to_str().unwrap()]);
    assert_eq!(count(&gdelt, "rows"), 2271, "{gdelt}");
    assert_eq!(count(&gdelt, "imported"), 2271, "{gdelt}");
    assert_eq!(count(&gdelt, "skipped"), 0, "{gdelt}");

    let mut client = client(&serve).await;
    // ICEWS: a dyad is named by either side's name or country.
    let rows = table(&icews_file);
    let rows = &rows[1..];
    let day = |row: &[String]| row[1].clone();
    for (a, b, id_a, id_b) in [
        (
            "North Korea",
            "United States",
            "north-korea",
            "united-states",
        ),
        ("China", "United States", "china", "united-states"),
        ("South Korea", "North Korea", "south-korea", "north-korea"),
    ] {
        let want = dyad_days(rows, &[2, 4, 8, 10], a, b, day, 7);
        assert!(!want.is_empty(), "{a}-{b} is in the sample");
        assert_close(&trend(&mut client, "icews", id_a, id_b).await, &want);
    }
    // GDELT: by the sides' country codes.
    let rows = table(&gdelt_file);
    let day = |row: &[String]| format!("{}-{}-{}", &row[1][..4], &row[1][4..6], &row[1][6..]);
    for (a, b, id_a, id_b) in [
        ("USA", "RUS", "united-states", "russia"),
        ("USA", "IRN", "united-states", "iran"),
    ] {
        let want = dyad_days(&rows, &[5, 7, 15, 17], a, b, day, 30);
        assert!(!want.is_empty(), "{a}-{b} is in the sample");
        assert_close(&trend(&mut client, "gdelt2", id_a, id_b).await, &want);
    }
    serve.terminate();
}

/// Every entity a server has, with the event that declared it.
async fn entities(serve: &Serve) -> Vec<proto::Entity> {
    let mut client = client(serve).await;
    client
        .entities(proto::EntityType::Unspecified, "", 0)
        .await
        .unwrap()
}

/// In the log, every entity an event names is declared at a lower seq (so
/// the log replays in any batching).
async fn assert_declared_first(serve: &Serve) {
    let mut client = client(serve).await;
    let mut declared = std::collections::HashSet::new();
    let mut next = 1;
    while next > 0 {
        let page = client.read_log(next, 1000, false).await.unwrap();
        for entry in page.entries {
            let event = entry.event.unwrap();
            for effect in &event.effects {
                if let Some(proto::effect::Change::Declare(declare)) = &effect.change {
                    declared.insert(declare.id.clone());
                }
            }
            for participant in &event.participants {
                assert!(
                    declared.contains(&participant.entity),
                    "seq {} names {} before its declaration",
                    entry.seq,
                    participant.entity
                );
            }
        }
        next = page.next_seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_imported_in_either_order_declare_the_same_entities() {
    let files: Vec<PathBuf> = match real_samples() {
        Some(samples) => vec![
            samples.join("gdelt2_20150218230000.export.CSV"),
            samples.join("icews_events.2018.sample.tab"),
        ],
        None => vec![
            fixture("gdelt-quirks.export.CSV"),
            fixture("icews-quirks.tab"),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for (name, order) in [("forward", [0, 1]), ("backward", [1, 0])] {
        let serve = Serve::start(&dir.path().join(name), &[]);
        for file in order {
            imported(&serve, &[files[file].to_str().unwrap()]);
        }
        seen.push(entities(&serve).await);
        assert_declared_first(&serve).await;
        serve.terminate();
    }
    assert!(seen[0].len() > 60, "the article's and the files' entities");
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_of_events_import_like_append() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &["--no-seed"]);
    let article = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/article.jsonl");
    let article = article.to_str().unwrap();
    // The founding years first (their events declare what later ones name).
    let summary = imported(&serve, &["--to", "1949", article]);
    let first = count(&summary, "imported");
    assert!(first >= 3, "{summary}");
    assert_eq!(first + count(&summary, "filtered"), 49, "{summary}");
    let summary = imported(&serve, &["--format", "jsonl", article]);
    assert_eq!(count(&summary, "rows"), 49, "{summary}");
    assert_eq!(count(&summary, "already_present"), first, "{summary}");
    assert_eq!(count(&summary, "imported"), 49 - first, "{summary}");
    serve.terminate();
}
