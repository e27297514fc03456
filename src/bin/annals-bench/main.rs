//! `annals-bench`: the benchmark of annals on the synthetic workload
//! `tl-synth-v1` (bench/WORKLOAD.md), over real gRPC on loopback against a
//! real `annals serve` process.
//!
//! For each size N it loads the workload through Append, stops and reopens
//! the server, checks a sample of answers against a naive replay (the
//! oracle), then times Q1–Q4 at 1 and 8 clients and durable appends, and
//! writes a JSON result file plus a markdown table. `gen` writes the
//! workload's CSV (byte-identical to gen_workload.py) and `pg-checks` the
//! PostgreSQL side's correctness sample; see bench/postgres/run.sh.

mod chart;
mod check;
mod cluster;
mod counting;
mod cpu;
mod drive;
mod gdelt;
mod gdelt_places;
mod gdelt_tables;
mod measure;
mod oracle;
mod pgreport;
mod process;
mod questions;
mod report;
mod trends;
mod trends_gate;
mod trends_measure;
mod trends_pg;
mod trends_report;
mod watches;
mod workload;

use clap::{Args, Parser, Subcommand};
use measure::Stats;
use oracle::Oracle;
use process::{ServerProcess, WorkDir};
use questions::Question;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::Generator;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The clients decode answers of thousands of strings on the same two cores
/// as the server; mimalloc (as in the server) keeps that from weighing on
/// what is measured, as pgbench's result handling does not either.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per Append while loading, and per batch in the batch-append test.
const BATCH: usize = 1000;
/// Seed of the query parameters (the workload's seed is fixed by the spec).
const PARAMS_SEED: u64 = 0x5EED_0FA7_7A15;

#[derive(Parser, Debug)]
#[command(
    name = "annals-bench",
    about = "Benchmark annals on the tl-synth-v1 workload over gRPC on loopback",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write entities.csv and events.csv of the first N events (as gen_workload.py does).
    Gen {
        #[arg(long)]
        n: u64,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Write a psql script of random Q1–Q4 instances and the rows the oracle expects.
    PgChecks {
        #[arg(long)]
        n: u64,
        /// Instances per question (Q1-hot: a tenth as many).
        #[arg(long, default_value_t = 400)]
        queries: usize,
        /// Where q1.sql … q4.sql are.
        #[arg(long, default_value = "bench/postgres")]
        sql_dir: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Summarise bench/postgres/run.sh's measurements (and compare with annals).
    PgReport {
        /// The TSV run.sh writes.
        #[arg(long)]
        tsv: PathBuf,
        /// The JSON result file; the markdown goes next to it (.md).
        #[arg(long, default_value = "bench/results/postgres.json")]
        out: PathBuf,
        /// An annals-bench result file to compare with.
        #[arg(long)]
        annals: Option<PathBuf>,
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// What was measured (version, transport, settings).
        #[arg(long, default_value = "PostgreSQL")]
        server: String,
        #[arg(long, default_value = "bench/postgres/run.sh")]
        command: String,
    },
    /// The trends benchmark on GDELT-shaped data: import, batch append,
    /// CountEvents and ListEvents (PostgreSQL: bench/postgres/trends.sh).
    Trends(trends::TrendsArgs),
    /// Write the trends benchmark's GDELT-shaped export of N rows.
    GdeltGen {
        #[arg(long)]
        n: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the checks trends.sh must pass: annals's answers and their SQL.
    TrendsExpected {
        #[arg(long, default_value = "bench/results/trends.json")]
        results: PathBuf,
        #[arg(long)]
        n: u64,
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// What 1,000 open watches cost appends, and how soon a change reaches
    /// its watcher.
    Watches(watches::WatchesArgs),
    /// Merge trends.sh's pgbench measurements into the trends results.
    TrendsReport {
        #[arg(long)]
        tsv: PathBuf,
        #[arg(long, default_value = "bench/results/trends.json")]
        results: PathBuf,
        /// Seconds per pgbench run.
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
        #[arg(long, default_value = "PostgreSQL")]
        server: String,
        #[arg(long, default_value = "bench/postgres/trends.sh")]
        command: String,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Workload sizes N (events), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Interleaved rounds; each figure is the median over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The JSON result file; the markdown table goes next to it (.md).
    /// Default: bench/results/latest.json (smoke: bench/results/smoke.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The annals binary; default: `annals` next to this executable.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// A tiny, fast run of everything: N=2000, 0.3 s per measurement, 1 round.
    #[arg(long)]
    smoke: bool,
    /// Load and check the answers, time no queries.
    #[arg(long)]
    check_only: bool,
    /// Skip the append measurements.
    #[arg(long)]
    no_appends: bool,
    /// Random instances checked per question before timing.
    #[arg(long, default_value_t = 300)]
    checks: usize,
    /// Concurrent clients for the query measurements (besides 1).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Where the servers' data dirs go (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the data dirs.
    #[arg(long)]
    keep: bool,
    /// Serve this data dir (one size only) and keep it: one that holds the
    /// size's events already is reused without loading (for profiling;
    /// the load figures are then missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// What server build this is, for the report (default: `git describe`
    /// of the current directory).
    #[arg(long)]
    label: Option<String>,
    /// Run through a cluster: two nodes over a fresh stream on these
    /// JetStream servers (nats://HOST:PORT,…); results in
    /// bench/results/cluster.json unless --out says otherwise.
    #[arg(long)]
    log: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Gen { n, out_dir }) => workload::write_csv(n, &out_dir).map_err(Into::into),
        Some(Command::PgChecks {
            n,
            queries,
            sql_dir,
            out_dir,
        }) => {
            let oracle = Oracle::new(Generator::default().take(n));
            check::write_pg_checks(&oracle, queries, PARAMS_SEED ^ 0x9057, &sql_dir, &out_dir)
        }
        Some(Command::PgReport {
            tsv,
            out,
            annals,
            seconds,
            rounds,
            server,
            command,
        }) => pgreport::run(&pgreport::Options {
            tsv: &tsv,
            out: &out,
            annals: annals.as_deref(),
            seconds,
            rounds,
            server: &server,
            command: &command,
        }),
        Some(Command::Trends(args)) => trends::run(args),
        Some(Command::Watches(args)) => watches::run(args),
        Some(Command::GdeltGen { n, out }) => gdelt::command(n, &out),
        Some(Command::TrendsExpected {
            results,
            n,
            out_dir,
        }) => trends_pg::expected(&results, n, &out_dir),
        Some(Command::TrendsReport {
            tsv,
            results,
            seconds,
            server,
            command,
        }) => trends_pg::merge(&tsv, &results, seconds, &server, &command),
        None => run(cli.run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("annals-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: RunArgs) -> Res<()> {
    if args.smoke {
        args.sizes = vec![2000];
        args.seconds = 0.3;
        args.rounds = 1;
    }
    if args.sizes.is_empty() || args.sizes.contains(&0) || args.rounds == 0 || args.seconds <= 0.0 {
        return Err("need positive --sizes, --rounds and --seconds".into());
    }
    if args.data_dir.is_some() && args.sizes.len() != 1 {
        return Err("--data-dir serves one size: give one --sizes".into());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.log.is_some() {
            "bench/results/cluster.json"
        } else if args.smoke {
            "bench/results/smoke.json"
        } else {
            "bench/results/latest.json"
        })
    });
    let server_bin = server_binary(args.server_bin.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let command = command_line();
    let mut result = json!({
        "benchmark": "annals-bench",
        "workload": "tl-synth-v1",
        "command": command,
        "started_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "server_bin": server_bin.display().to_string(),
        "git_commit": args.label.clone().map_or_else(git_commit, Value::from),
        "machine": report::machine(),
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "checks_per_question": args.checks,
            "clients": [1, args.clients],
            "append_clients": [1, 16, 64],
            "batch": BATCH,
            "check_only": args.check_only,
            "log": args.log,
        },
        "sizes": [],
    });
    for &n in &args.sizes {
        eprintln!("== N = {n}");
        let size = match &args.log {
            Some(log) => runtime.block_on(cluster::run_size(n, &args, log, &server_bin))?,
            None => runtime.block_on(run_size(n, &args, &server_bin))?,
        };
        result["sizes"].as_array_mut().expect("an array").push(size);
        write_results(&out, &result)?;
    }
    println!("{}", markdown(&result));
    eprintln!(
        "wrote {} and {}",
        out.display(),
        out.with_extension("md").display()
    );
    Ok(())
}

fn git_commit() -> Value {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or(Value::Null, |output| {
            json!(String::from_utf8_lossy(&output.stdout).trim())
        })
}

fn write_results(out: &Path, result: &Value) -> Res<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(result)? + "\n")?;
    std::fs::write(out.with_extension("md"), markdown(result))?;
    Ok(())
}

/// The markdown of a result file: a cluster run's own tables, or the
/// single-node report.
fn markdown(result: &Value) -> String {
    if result["settings"]["log"].is_string() {
        cluster::markdown(result)
    } else {
        report::markdown(result)
    }
}

async fn run_size(n: u64, args: &RunArgs, server_bin: &Path) -> Res<Value> {
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut generator = Generator::default();
    let oracle = Arc::new(Oracle::new(generator.take(n)));
    let work = WorkDir::create(args.work_dir.as_deref(), &n.to_string(), args.keep)?;
    let (data_dir, log) = match &args.data_dir {
        Some(dir) => (dir.clone(), dir.with_extension("log")),
        None => (work.path().join("data"), work.path().join("server.log")),
    };

    // Load (unless the data dir given holds the events already).
    let server = ServerProcess::start(server_bin, &data_dir, &log)?;
    let held = measure::last_seq(server.address()).await?;
    let load = if args.data_dir.is_some() && held == n + 1 {
        eprintln!("reusing {} ({held} entries)", data_dir.display());
        measure::Load {
            seconds: f64::NAN,
            batches: 0,
        }
    } else {
        let load = measure::load(server.address(), oracle.clone(), BATCH).await?;
        eprintln!(
            "loaded {n} events in {:.2} s ({:.0} events/s)",
            load.seconds,
            n as f64 / load.seconds
        );
        load
    };
    let shutdown = server.stop()?;
    let disk_bytes = process::disk_bytes(&data_dir)?;

    // Reopen: from starting the process to its first answer.
    let reopening = Instant::now();
    let server = ServerProcess::start(server_bin, &data_dir, &log)?;
    measure::first_answer(server.address()).await?;
    let reopen = reopening.elapsed();
    eprintln!(
        "{:.0} bytes on disk per event; reopened in {:.2} s",
        disk_bytes as f64 / (n + 1) as f64,
        reopen.as_secs_f64()
    );

    // The gate.
    let gate = check::gate(server.address(), &oracle, args.checks, PARAMS_SEED ^ n).await?;
    if gate.failed > 0 {
        for problem in &gate.problems {
            eprintln!("WRONG ANSWER: {problem}");
        }
        return Err(format!(
            "N = {n}: {} of {} answers differ from the oracle; nothing was timed",
            gate.failed, gate.checked
        )
        .into());
    }
    eprintln!(
        "{} answers ({} relations, attributes and events) equal the oracle's",
        gate.checked, gate.items
    );
    let answer_sizes: Vec<String> = gate
        .per_question
        .iter()
        .map(|(name, asked, items)| format!("{name} {:.1}", *items as f64 / (*asked).max(1) as f64))
        .collect();
    eprintln!("mean items per answer: {}", answer_sizes.join(", "));

    let mut size = json!({
        "n": n,
        "load": {
            "seconds": measure::round3(load.seconds),
            "events_per_s": measure::round3(n as f64 / load.seconds),
            "batches": load.batches,
            "batch": BATCH,
        },
        "disk_bytes": disk_bytes,
        "bytes_per_event": measure::round3(disk_bytes as f64 / n as f64),
        "shutdown_seconds": measure::round3(shutdown.as_secs_f64()),
        "reopen_seconds": measure::round3(reopen.as_secs_f64()),
        "gate": {
            "checked": gate.checked,
            "items": gate.items,
            "failed": gate.failed,
            "items_per_answer": gate
                .per_question
                .iter()
                .map(|(name, asked, items)| (name.to_string(), json!(measure::round3(*items as f64 / (*asked).max(1) as f64))))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        },
    });
    if args.check_only {
        let memory = server.memory();
        size["rss_kib"] = json!(memory.rss_kib);
        size["peak_rss_kib"] = json!(memory.peak_rss_kib);
        server.stop()?;
        return Ok(size);
    }

    // The data dir into the page cache, as PostgreSQL's side prewarms its
    // tables: timings then compare the engines, not the disk.
    let warming = Instant::now();
    let warmed = process::prewarm(&data_dir)?;
    eprintln!(
        "prewarmed {} MB in {:.1} s",
        warmed >> 20,
        warming.elapsed().as_secs_f64()
    );

    // Queries: every round does every measurement, then the next round.
    let mut plan: Vec<(Question, usize)> = Vec::new();
    for question in [Question::Q1, Question::Q2, Question::Q3, Question::Q4] {
        plan.push((question, 1));
        plan.push((question, args.clients));
    }
    plan.push((Question::Q1Hot, 1));
    let mut rounds: Vec<Vec<Stats>> = vec![Vec::new(); plan.len()];
    for round in 0..args.rounds {
        for (index, &(question, clients)) in plan.iter().enumerate() {
            let seed = PARAMS_SEED ^ ((round as u64) << 32) ^ ((index as u64) << 40) ^ n;
            let stats =
                measure::queries(server.address(), question, clients, seconds, n, seed).await?;
            eprintln!(
                "round {} {:7} {:2} clients: {:>9.0} calls/s  p50 {:>8.0} µs  p99 {:>8.0} µs",
                round + 1,
                question.name(),
                clients,
                stats.calls_per_s,
                stats.p50_us,
                stats.p99_us
            );
            rounds[index].push(stats);
        }
    }
    let queries: Vec<Value> = plan
        .iter()
        .zip(&rounds)
        .map(|(&(question, clients), rounds)| {
            json!({
                "question": question.name(),
                "description": question.describe(),
                "clients": clients,
                "median": Stats::median(rounds).to_json(),
                "rounds": rounds.iter().map(Stats::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    size["queries"] = json!(queries);
    let memory = server.memory();
    size["rss_kib"] = json!(memory.rss_kib);
    size["peak_rss_kib"] = json!(memory.peak_rss_kib);

    // Durable appends, continuing the workload stream past N.
    if !args.no_appends {
        let generator = Arc::new(Mutex::new(generator));
        let plan = [
            ("single", 1usize),
            ("single", 16),
            ("single", 64),
            ("batch_1000", 1),
        ];
        let mut rounds: Vec<Vec<Stats>> = vec![Vec::new(); plan.len()];
        for round in 0..args.rounds {
            for (index, &(kind, clients)) in plan.iter().enumerate() {
                let stats = if kind == "single" {
                    measure::single_appends(server.address(), clients, seconds, generator.clone())
                        .await?
                } else {
                    measure::batch_appends(server.address(), BATCH, seconds, generator.clone())
                        .await?
                };
                eprintln!(
                    "round {} append {kind:10} {clients:2} clients: {:>9.0} calls/s {:>9.0} events/s  p50 {:>8.0} µs  p99 {:>8.0} µs",
                    round + 1,
                    stats.calls_per_s,
                    stats.items_per_s,
                    stats.p50_us,
                    stats.p99_us
                );
                rounds[index].push(stats);
            }
        }
        let appends: Vec<Value> = plan
            .iter()
            .zip(&rounds)
            .map(|(&(kind, clients), rounds)| {
                json!({
                    "kind": kind,
                    "clients": clients,
                    "median": Stats::median(rounds).to_json(),
                    "rounds": rounds.iter().map(Stats::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        size["appends"] = json!(appends);
    }
    server.stop()?;
    Ok(size)
}

/// The `annals` binary to run: the one given, else the one beside this
/// executable; it must exist.
pub fn server_binary(given: Option<&Path>) -> Res<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("annals"),
    };
    if !path.is_file() {
        return Err(format!(
            "no annals binary at {} (build it: cargo build --release --bin annals, or pass --server-bin)",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// This run's command line, as the results record it.
pub fn command_line() -> String {
    std::iter::once("annals-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}
