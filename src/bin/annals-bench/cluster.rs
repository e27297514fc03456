//! `annals-bench --log nats://…`: the workload through a cluster. Two
//! nodes (A and B) over a fresh stream on the given JetStream servers: the
//! load through A, B's answers checked against the oracle, Q1–Q4 on each
//! node, durable appends on A, and the view lag (from A's acknowledgement
//! to B's Subscribe delivering the entry). The stream is deleted at the end.

use crate::measure::{self, Stats};
use crate::oracle::Oracle;
use crate::process::{self, ServerProcess, WorkDir};
use crate::questions::{self, Question};
use crate::workload::Generator;
use crate::{check, Res, RunArgs, BATCH, PARAMS_SEED};
use annals::proto;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Appends timed one by one for the view lag.
const LAG_SAMPLES: usize = 300;

pub async fn run_size(n: u64, args: &RunArgs, log: &str, server_bin: &Path) -> Res<Value> {
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut generator = Generator::default();
    let oracle = Arc::new(Oracle::new(generator.take(n)));
    let work = WorkDir::create(args.work_dir.as_deref(), &format!("cluster-{n}"), args.keep)?;
    let stream = format!("BENCH_{n}_{}", std::process::id());
    let extra = vec![
        "--log".to_string(),
        log.to_string(),
        "--stream".to_string(),
        stream.clone(),
    ];
    let start = |name: &str| {
        ServerProcess::start_with(
            server_bin,
            &work.path().join(name),
            &work.path().join(format!("{name}.log")),
            &extra,
        )
    };
    let (a, b) = (start("a")?, start("b")?);
    let outcome = measure_cluster(n, args, seconds, &oracle, generator, &a, &b, work.path()).await;
    drop((a, b));
    if let Err(error) = delete_stream(log, &stream).await {
        eprintln!("could not delete the stream {stream}: {error}");
    }
    let mut size = outcome?;
    size["stream"] = json!(stream);
    Ok(size)
}

#[allow(clippy::too_many_arguments)]
async fn measure_cluster(
    n: u64,
    args: &RunArgs,
    seconds: Duration,
    oracle: &Arc<Oracle>,
    generator: Generator,
    a: &ServerProcess,
    b: &ServerProcess,
    work: &Path,
) -> Res<Value> {
    let load = measure::load(a.address(), oracle.clone(), BATCH).await?;
    eprintln!(
        "loaded {n} events through node A in {:.2} s ({:.0} events/s)",
        load.seconds,
        n as f64 / load.seconds
    );
    let caught_up = Instant::now();
    while measure::last_seq(b.address()).await? < n + 1 {
        if caught_up.elapsed() > Duration::from_secs(3600) {
            return Err("node B did not catch up within an hour".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "node B held all of it {:.2} s after the load ended",
        caught_up.elapsed().as_secs_f64()
    );
    let gate = check::gate(b.address(), oracle, args.checks, PARAMS_SEED ^ n).await?;
    if gate.failed > 0 {
        for problem in &gate.problems {
            eprintln!("WRONG ANSWER: {problem}");
        }
        return Err(format!("N = {n}: {} of node B's answers are wrong", gate.failed).into());
    }
    eprintln!("{} of node B's answers equal the oracle's", gate.checked);

    let mut queries = Vec::new();
    for (node, server) in [("A", a), ("B", b)] {
        for question in [Question::Q1, Question::Q2, Question::Q3, Question::Q4] {
            for clients in [1, args.clients] {
                let mut rounds = Vec::new();
                for round in 0..args.rounds {
                    let seed = PARAMS_SEED ^ ((round as u64) << 32) ^ n;
                    rounds.push(
                        measure::queries(server.address(), question, clients, seconds, n, seed)
                            .await?,
                    );
                }
                let median = Stats::median(&rounds);
                eprintln!(
                    "node {node} {:3} {clients:2} clients: {:>9.0} calls/s  p50 {:>8.0} µs",
                    question.name(),
                    median.calls_per_s,
                    median.p50_us
                );
                queries.push(json!({
                    "node": node,
                    "question": question.name(),
                    "clients": clients,
                    "median": median.to_json(),
                }));
            }
        }
    }

    let generator = Arc::new(Mutex::new(generator));
    let mut appends = Vec::new();
    if !args.no_appends {
        for (kind, clients) in [
            ("single", 1usize),
            ("single", 16),
            ("single", 64),
            ("batch_1000", 1),
        ] {
            let mut rounds = Vec::new();
            for _ in 0..args.rounds {
                rounds.push(if kind == "single" {
                    measure::single_appends(a.address(), clients, seconds, generator.clone())
                        .await?
                } else {
                    measure::batch_appends(a.address(), BATCH, seconds, generator.clone()).await?
                });
            }
            let median = Stats::median(&rounds);
            eprintln!(
                "append on A {kind:10} {clients:2} clients: {:>9.0} calls/s {:>9.0} events/s  p50 {:>8.0} µs  p99 {:>8.0} µs",
                median.calls_per_s, median.items_per_s, median.p50_us, median.p99_us
            );
            appends.push(json!({"kind": kind, "clients": clients, "median": median.to_json()}));
        }
    }
    let lag = view_lag(a.address(), b.address(), &generator).await?;
    eprintln!(
        "view lag A → B over {LAG_SAMPLES} appends: p50 {:.0} µs, p99 {:.0} µs",
        lag.0, lag.1
    );
    let disk = process::disk_bytes(&work.join("a"))?;
    Ok(json!({
        "n": n,
        "load": {
            "seconds": measure::round3(load.seconds),
            "events_per_s": measure::round3(n as f64 / load.seconds),
            "batch": BATCH,
        },
        "view_bytes_per_event": measure::round3(disk as f64 / n as f64),
        "gate": {"checked": gate.checked, "failed": gate.failed},
        "queries": queries,
        "appends": appends,
        "view_lag_us": {"p50": measure::round3(lag.0), "p99": measure::round3(lag.1), "samples": LAG_SAMPLES},
        "rss_kib": {"a": a.memory().peak_rss_kib, "b": b.memory().peak_rss_kib},
    }))
}

/// p50 and p99 (µs) of the time from an Append's answer on `a` to `b`'s
/// Subscribe delivering that entry, one append at a time.
async fn view_lag(a: &str, b: &str, generator: &Arc<Mutex<Generator>>) -> Res<(f64, f64)> {
    let mut writer = questions::connect(a).await?;
    let mut reader = questions::connect(b).await?;
    let from = measure::last_seq(b).await? + 1;
    let mut followed = reader
        .subscribe(proto::SubscribeRequest {
            from_seq: from,
            entity: String::new(),
            kind: String::new(),
        })
        .await?
        .into_inner();
    let mut lags = Vec::with_capacity(LAG_SAMPLES);
    for _ in 0..LAG_SAMPLES {
        let event = generator
            .lock()
            .expect("generator lock")
            .next_event()
            .to_proto();
        let request = proto::AppendRequest {
            events: vec![event],
            expected_last_seq: None,
            omit_events: true,
        };
        let seq = writer.append(request).await?.into_inner().last_seq;
        let acknowledged = Instant::now();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), followed.message())
                .await
                .map_err(|_| "node B's subscription stalled for 30 s")??
                .ok_or("node B's subscription ended")?;
            if message.entry.is_some_and(|entry| entry.seq >= seq) {
                break;
            }
        }
        lags.push(acknowledged.elapsed().as_secs_f64() * 1e6);
    }
    lags.sort_by(f64::total_cmp);
    let at = |quantile: f64| lags[((lags.len() - 1) as f64 * quantile).round() as usize];
    Ok((at(0.5), at(0.99)))
}

async fn delete_stream(log: &str, stream: &str) -> Res<()> {
    let config = annals::cluster::LogConfig::parse(log, stream, 1)?;
    let addresses: Vec<async_nats::ServerAddr> = config
        .servers
        .iter()
        .map(|server| server.parse())
        .collect::<Result<_, _>>()?;
    let client = async_nats::connect(addresses).await?;
    async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await?;
    Ok(())
}

/// A cluster run's tables.
pub fn markdown(result: &Value) -> String {
    let mut text = format!(
        "# annals-bench through a cluster ({})\n\n`{}` at {}, {}\n\nTwo annals nodes (A, B) and the JetStream servers share this machine.\n",
        result["settings"]["log"].as_str().unwrap_or(""),
        result["command"].as_str().unwrap_or(""),
        result["git_commit"].as_str().unwrap_or("?"),
        result["started_at"].as_str().unwrap_or(""),
    );
    let figure = |value: &Value| {
        value
            .as_f64()
            .map_or("–".to_string(), |v| format!("{v:.0}"))
    };
    for size in result["sizes"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n## N = {}\n\nload through A: {} events/s; B's answers checked: {} ({} wrong); view on disk {} bytes/event; view lag A → B p50 {} µs, p99 {} µs\n\n",
            size["n"],
            figure(&size["load"]["events_per_s"]),
            size["gate"]["checked"],
            size["gate"]["failed"],
            figure(&size["view_bytes_per_event"]),
            figure(&size["view_lag_us"]["p50"]),
            figure(&size["view_lag_us"]["p99"]),
        ));
        text.push_str("| node | question | clients | calls/s | p50 µs | p99 µs |\n|---|---|---:|---:|---:|---:|\n");
        for query in size["queries"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                query["node"].as_str().unwrap_or(""),
                query["question"].as_str().unwrap_or(""),
                query["clients"],
                figure(&query["median"]["calls_per_s"]),
                figure(&query["median"]["p50_us"]),
                figure(&query["median"]["p99_us"]),
            ));
        }
        text.push_str("\n| append on A | clients | calls/s | events/s | p50 µs | p99 µs |\n|---|---:|---:|---:|---:|---:|\n");
        for append in size["appends"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                append["kind"].as_str().unwrap_or(""),
                append["clients"],
                figure(&append["median"]["calls_per_s"]),
                figure(&append["median"]["items_per_s"]),
                figure(&append["median"]["p50_us"]),
                figure(&append["median"]["p99_us"]),
            ));
        }
    }
    text
}
