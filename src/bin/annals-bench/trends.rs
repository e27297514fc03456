//! `annals-bench trends`: the trends benchmark ("Real event data", Speed) on
//! GDELT-shaped data (`gdelt.rs`). For each size N it writes an N-row GDELT
//! 2.0 export, imports it end to end with the real `annals import` into a
//! fresh server, reads the log back and appends it again, 1,000 events per
//! Append, into a second fresh server (the rate the import is held to),
//! checks CountEvents and ListEvents for the busiest dyad against the
//! generator's truth, and times them at 1 and C clients. Results go to a
//! JSON file and a markdown table; `bench/postgres/trends.sh` adds the
//! PostgreSQL side to both (`trends_report.rs`).

use crate::measure::{round3, Stats};
use crate::process::{self, ServerProcess, WorkDir};
use crate::trends_measure::{self as timing, Call};
use crate::{cpu, gdelt, report, Res};
use annals::proto;
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct TrendsArgs {
    /// Rows of the generated GDELT file, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<u64>,
    /// Seconds per measurement (default 4; 0.5 when every size is at most
    /// 10,000: a smoke run).
    #[arg(long)]
    seconds: Option<f64>,
    /// Interleaved rounds; each figure is the median (default 3; 1 for a
    /// smoke run).
    #[arg(long)]
    rounds: Option<usize>,
    /// Concurrent clients for the second measurement of each query.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// The JSON result file; the markdown goes next to it (.md). Default:
    /// bench/results/trends.json (smoke: bench/results/trends-smoke.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The annals binary (server and importer); default: `annals` next to
    /// this executable.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where the files and data dirs go (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work dir.
    #[arg(long)]
    keep: bool,
    /// Before each timed phase, wait up to this many seconds for other
    /// processes to leave the CPUs alone (default 600; 0 for a smoke run).
    #[arg(long)]
    quiet_wait: Option<f64>,
    /// What server build this is (default: `git describe`).
    #[arg(long)]
    label: Option<String>,
}

/// Months whose first ListEvents page is kept in the results, for the
/// PostgreSQL side's check.
pub const LIST_MONTHS: [u64; 6] = [0, 29, 59, 74, 103, 119];
/// The label filter of the filtered queries.
const ROOT: (&str, &str) = ("cameo_root", "04");
const VALUE: &str = "goldstein";
const SEED: u64 = 0x7E4D_5EED;

/// The timed queries: name, what it is, and whether it runs at C clients.
const QUERIES: [(&str, &str, bool); 6] = [
    ("count", "CountEvents dyad by month, 2015-2024", true),
    (
        "count_goldstein",
        "CountEvents dyad by month, value_label goldstein",
        true,
    ),
    (
        "count_root04_goldstein",
        "CountEvents dyad by month, cameo_root=04, value_label goldstein",
        true,
    ),
    (
        "count_goldstein_reversed",
        "count_goldstein with entity and counterpart swapped",
        false,
    ),
    (
        "list_root04",
        "ListEvents dyad, one month (random), cameo_root=04, first 100",
        true,
    ),
    (
        "floor",
        "grpc.health.v1.Health/Check: a call that reads nothing (PostgreSQL: SELECT 1)",
        true,
    ),
];

fn call(name: &str, dyad: &[String; 2]) -> Call {
    let count = |entity: &str, counterpart: &str, value: &str, root: bool| {
        Call::Count(proto::CountEventsRequest {
            entity: entity.to_string(),
            counterpart: counterpart.to_string(),
            labels: root
                .then(|| (ROOT.0.to_string(), ROOT.1.to_string()))
                .into_iter()
                .collect(),
            from: "2015".into(),
            to: "2024".into(),
            bucket: proto::Bucket::Month as i32,
            value_label: value.to_string(),
            ..Default::default()
        })
    };
    let [a, b] = dyad;
    match name {
        "count" => count(a, b, "", false),
        "count_goldstein" => count(a, b, VALUE, false),
        "count_root04_goldstein" => count(a, b, VALUE, true),
        "count_goldstein_reversed" => count(b, a, VALUE, false),
        "floor" => Call::Floor,
        _ => Call::ListMonth(proto::ListEventsRequest {
            entity: a.clone(),
            counterpart: b.clone(),
            labels: [(ROOT.0.to_string(), ROOT.1.to_string())].into(),
            page_size: 100,
            ..Default::default()
        }),
    }
}

pub fn run(args: TrendsArgs) -> Res<()> {
    let smoke = args.sizes.iter().all(|&n| n <= 10_000);
    let seconds = args.seconds.unwrap_or(if smoke { 0.5 } else { 4.0 });
    let rounds = args.rounds.unwrap_or(if smoke { 1 } else { 3 });
    let quiet = Duration::from_secs_f64(args.quiet_wait.unwrap_or(if smoke { 0.0 } else { 600.0 }));
    if args.sizes.is_empty() || args.sizes.contains(&0) || rounds == 0 || seconds <= 0.0 {
        return Err("need positive --sizes, --rounds and --seconds".into());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if smoke {
            "bench/results/trends-smoke.json"
        } else {
            "bench/results/trends.json"
        })
    });
    let server_bin = crate::server_binary(args.server_bin.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let command = crate::command_line();
    let started = Instant::now();
    let mut result = json!({
        "benchmark": "annals-bench trends",
        "data": format!("GDELT 2.0-shaped export, generated (gdelt.rs, seed {:#x})", gdelt::SEED),
        "command": command,
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "server_bin": server_bin.display().to_string(),
        "git_commit": args.label.clone().map_or_else(crate::git_commit, Value::from),
        "machine": report::machine(),
        "settings": {
            "seconds": seconds,
            "rounds": rounds,
            "clients": [1, args.clients],
            "batch": timing::BATCH,
            "quiet_wait_s": quiet.as_secs_f64(),
            "server": "annals serve --no-seed (no article entities), fresh data dir, loopback",
        },
        "sizes": [],
    });
    for &n in &args.sizes {
        eprintln!("== trends, N = {n}");
        let size = run_size(n, &args, (seconds, rounds, quiet), &server_bin, &runtime)?;
        result["sizes"].as_array_mut().expect("an array").push(size);
        result["seconds"] = json!(round3(started.elapsed().as_secs_f64()));
        crate::trends_report::write(&out, &result)?;
    }
    println!("{}", crate::trends_report::markdown(&result));
    eprintln!(
        "wrote {} and {}",
        out.display(),
        out.with_extension("md").display()
    );
    Ok(())
}

fn run_size(
    n: u64,
    args: &TrendsArgs,
    (seconds, rounds, quiet): (f64, usize, Duration),
    server_bin: &Path,
    runtime: &tokio::runtime::Runtime,
) -> Res<Value> {
    let work = WorkDir::create(args.work_dir.as_deref(), &format!("trends-{n}"), args.keep)?;
    let mut phases = serde_json::Map::new();
    let mut phase = |name: &str, since: Instant| {
        let took = since.elapsed().as_secs_f64();
        phases.insert(name.to_string(), json!(round3(took)));
        took
    };

    let file = work.path().join(format!("gdelt-{n}.export.CSV"));
    let clock = Instant::now();
    let generated = gdelt::write(n, &file)?;
    phase("generate_s", clock);
    let busiest = generated
        .top
        .first()
        .ok_or("no row names two countries")?
        .clone();
    let dyad = busiest.ids.clone();
    eprintln!(
        "wrote {} rows ({} MB) in {:.1} s; busiest dyad {}-{} ({} rows)",
        n,
        generated.bytes >> 20,
        generated.seconds,
        dyad[0],
        dyad[1],
        busiest.rows
    );

    // The import, end to end.
    let data = work.path().join("import-data");
    let log = work.path().join("import-server.log");
    let server = ServerProcess::start(server_bin, &data, &log)?;
    let mut waited = cpu::wait_quiet(quiet);
    let clock = Instant::now();
    let imported = timing::import(
        server_bin,
        server.address(),
        &file,
        &work.path().join("import-client.log"),
    )?;
    phase("import_s", clock);
    let summary = &imported.summary;
    let count = |key| timing::summary_count(summary, key);
    if count("rows") != n || count("imported") != n || count("skipped") != 0 {
        return Err(format!("the import did not take every row: {summary}").into());
    }
    let declared = count("declared");
    let import_events = n + declared;
    let import_server_rss = server.memory();
    eprintln!(
        "imported {n} rows (+{declared} declarations) in {:.2} s: {:.0} rows/s, {:.0} events/s; importer peak RSS {} MiB; CPU: importer {:.1} s, machine {:.1} s",
        imported.seconds,
        n as f64 / imported.seconds,
        import_events as f64 / imported.seconds,
        imported.peak_rss_kib >> 10,
        imported.cpu_seconds,
        imported.machine_cpu_seconds
    );

    // The same events again, 1,000 per Append, into a fresh server.
    let clock = Instant::now();
    let dump = work.path().join("log.bin");
    let dumped = runtime.block_on(timing::dump_log(server.address(), &dump))?;
    phase("read_back_s", clock);
    server.stop()?;
    if dumped.events != import_events || dumped.declarations != declared {
        return Err(format!(
            "the log holds {} events ({} declarations); the import said {import_events} ({declared})",
            dumped.events, dumped.declarations
        )
        .into());
    }
    let replay_data = work.path().join("replay-data");
    let replay_server =
        ServerProcess::start(server_bin, &replay_data, &work.path().join("replay.log"))?;
    waited += cpu::wait_quiet(quiet);
    let clock = Instant::now();
    let replayed = runtime.block_on(timing::replay(replay_server.address(), &dump))?;
    phase("batch_append_s", clock);
    replay_server.stop()?;
    std::fs::remove_dir_all(&replay_data)?;
    std::fs::remove_file(&dump)?;
    let import_rate = import_events as f64 / imported.seconds;
    let batch_rate = replayed.events as f64 / replayed.seconds;
    eprintln!(
        "batch append: {} events in {} batches, {:.2} s: {:.0} events/s (CPU: client {:.1} s, machine {:.1} s); import / batch append = {:.3}",
        replayed.events,
        replayed.batches,
        replayed.seconds,
        batch_rate,
        replayed.cpu_seconds,
        replayed.machine_cpu_seconds,
        import_rate / batch_rate
    );

    // The gate, then the queries, on the imported data reopened and prewarmed.
    let server = ServerProcess::start(server_bin, &data, &log)?;
    let clock = Instant::now();
    let gate = runtime.block_on(crate::trends_gate::check(
        server.address(),
        &dyad,
        &generated.truth,
    ))?;
    phase("gate_s", clock);
    if !gate.problems.is_empty() {
        for problem in &gate.problems {
            eprintln!("WRONG ANSWER: {problem}");
        }
        return Err(format!(
            "N = {n}: {} of {} answers differ from the generator's; nothing was timed",
            gate.problems.len(),
            gate.checked
        )
        .into());
    }
    eprintln!("{} answers equal the generator's", gate.checked);
    process::prewarm(&data)?;

    let clock = Instant::now();
    let mut plan: Vec<(&str, usize)> = Vec::new();
    for (name, _, concurrent) in QUERIES {
        plan.push((name, 1));
        if concurrent && args.clients > 1 {
            plan.push((name, args.clients));
        }
    }
    let duration = Duration::from_secs_f64(seconds);
    let mut measured: Vec<Vec<Stats>> = vec![Vec::new(); plan.len()];
    let mut others: Vec<Vec<f64>> = vec![Vec::new(); plan.len()];
    let waited_before = waited;
    for round in 0..rounds {
        for (index, &(name, clients)) in plan.iter().enumerate() {
            let seed = SEED ^ n ^ ((round as u64) << 32) ^ ((index as u64) << 40);
            waited += cpu::wait_quiet(quiet);
            let (stats, others_cpu) = timing::timed(
                server.address(),
                &call(name, &dyad),
                clients,
                duration,
                seed,
            )?;
            eprintln!(
                "round {} {name:25} {clients:2} clients: {:>8.1} calls/s  p50 {:>9.0} µs  p99 {:>9.0} µs  (others {:.2} cores)",
                round + 1,
                stats.calls_per_s,
                stats.p50_us,
                stats.p99_us,
                others_cpu / stats.seconds
            );
            measured[index].push(stats);
            others[index].push(round3(others_cpu));
        }
    }
    let queries_s = clock.elapsed().saturating_sub(waited - waited_before);
    phases.insert("queries_s".into(), json!(round3(queries_s.as_secs_f64())));
    phases.insert(
        "waiting_for_quiet_s".into(),
        json!(round3(waited.as_secs_f64())),
    );
    let memory = server.memory();
    server.stop()?;
    let queries: Vec<Value> = plan
        .iter()
        .zip(measured.iter().zip(&others))
        .map(|(&(name, clients), (rounds, others))| {
            let description = QUERIES.iter().find(|q| q.0 == name).map_or("", |q| q.1);
            json!({
                "query": name,
                "description": description,
                "clients": clients,
                "median": Stats::median(rounds).to_json(),
                "rounds": rounds.iter().map(Stats::to_json).collect::<Vec<_>>(),
                "others_cpu_s": others,
            })
        })
        .collect();
    let dyad_json =
        |dyad: &gdelt::Dyad| json!({"codes": dyad.codes, "ids": dyad.ids, "rows": dyad.rows});
    Ok(json!({
        "n": n,
        "file": {
            "rows": generated.rows,
            "bytes": generated.bytes,
            "sha256": generated.sha256,
            "seconds": round3(generated.seconds),
        },
        "dyad": dyad_json(&busiest),
        "top_dyads": generated.top.iter().map(dyad_json).collect::<Vec<_>>(),
        "import": {
            "command": format!("annals import {} --json --server http://127.0.0.1:PORT", file.file_name().unwrap_or_default().to_string_lossy()),
            "seconds": round3(imported.seconds),
            "rows_per_s": round3(n as f64 / imported.seconds),
            "events": import_events,
            "declared": declared,
            "events_per_s": round3(import_rate),
            "peak_rss_kib": imported.peak_rss_kib,
            "client_cpu_s": round3(imported.cpu_seconds),
            "machine_cpu_s": round3(imported.machine_cpu_seconds),
            "others_cpu_s": round3(imported.others_cpu_seconds),
            "server_peak_rss_kib": import_server_rss.peak_rss_kib,
            "summary": summary,
        },
        "batch_append": {
            "events": replayed.events,
            "declarations": dumped.declarations,
            "batches": replayed.batches,
            "seconds": round3(replayed.seconds),
            "call_seconds": round3(replayed.call_seconds),
            "client_cpu_s": round3(replayed.cpu_seconds),
            "machine_cpu_s": round3(replayed.machine_cpu_seconds),
            "others_cpu_s": round3(replayed.others_cpu_seconds),
            "events_per_s": round3(batch_rate),
        },
        "import_vs_batch_append": round3(import_rate / batch_rate),
        "gate": {"checked": gate.checked, "failed": 0},
        "expected": gate.expected,
        "queries": queries,
        "server_rss_kib": memory.rss_kib,
        "server_peak_rss_kib": memory.peak_rss_kib,
        "phases": phases,
    }))
}
