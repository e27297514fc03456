//! `annals-bench watches`: what open standing queries cost appends, and how
//! soon a change reaches its watcher. Loads N workload events into a fresh
//! server, measures single-event appends at 16 clients and 1,000-event
//! batches, opens one WatchEntity per workload entity (at a random valid
//! day, each stream drained by the benchmark), measures the appends again,
//! times 200 appends of an event about one watched entity, each from the
//! Append's answer to the watcher's message, then closes the watches and
//! measures the appends once more (the ratio is against the mean of the
//! two measurements without watches, which bracket the one with them).

use crate::measure::{self, Stats};
use crate::oracle::Oracle;
use crate::process::{ServerProcess, WorkDir};
use crate::workload::{entity_name, valid_date, Generator, SplitMix64, ENTITIES, VALID_DAYS};
use crate::{questions, Res, BATCH};
use annals::proto;
use clap::Args;
use prost::Message;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct WatchesArgs {
    /// Workload events loaded first.
    #[arg(long, default_value_t = 100_000)]
    n: u64,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Rounds of each measurement, without and with the watches (medians).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The valid time every watch watches (a random valid day per watch
    /// when absent); e.g. 1900 for watches that no workload event changes.
    #[arg(long)]
    at: Option<String>,
    #[arg(long, default_value = "bench/results/watches.json")]
    out: PathBuf,
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

/// Appends timed to their watcher.
const LATENCY_SAMPLES: usize = 200;

pub fn run(args: WatchesArgs) -> Res<()> {
    let server_bin = crate::server_binary(args.server_bin.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure_watches(&args, &server_bin))
}

/// One WatchEntity per workload entity, each drained as a client would.
struct Watches {
    drains: Vec<tokio::task::JoinHandle<()>>,
    received: Arc<AtomicU64>,
    received_bytes: Arc<AtomicU64>,
}

impl Watches {
    async fn open(address: &str, at: Option<&str>, seed: u64) -> Res<Watches> {
        let received = Arc::new(AtomicU64::new(0));
        let received_bytes = Arc::new(AtomicU64::new(0));
        let mut rng = SplitMix64::new(seed);
        let mut drains = Vec::new();
        for id in 1..=ENTITIES {
            let day = valid_date(rng.below(u64::from(VALID_DAYS)) as u32);
            let mut client = questions::connect(address).await?;
            let mut stream = client
                .watch_entity(proto::WatchEntityRequest {
                    id: entity_name(id),
                    at: at.map_or(day, str::to_string),
                    from_seq: 0,
                })
                .await?
                .into_inner();
            // The first answer, so that every watch is open once this returns.
            let first = stream.message().await?.ok_or("a watch ended at once")?;
            received_bytes.fetch_add(first.encoded_len() as u64, Ordering::Relaxed);
            let (count, bytes) = (received.clone(), received_bytes.clone());
            drains.push(tokio::spawn(async move {
                while let Ok(Some(message)) = stream.message().await {
                    count.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(message.encoded_len() as u64, Ordering::Relaxed);
                }
            }));
        }
        Ok(Watches {
            drains,
            received,
            received_bytes,
        })
    }

    /// Messages and their bytes received so far, first answers' bytes
    /// included.
    fn received(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.received_bytes.load(Ordering::Relaxed),
        )
    }

    /// Closes every watch, and gives the server a moment to end them.
    async fn close(self) {
        for drain in self.drains {
            drain.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn measure_watches(args: &WatchesArgs, server_bin: &std::path::Path) -> Res<()> {
    let seconds = Duration::from_secs_f64(args.seconds);
    let work = WorkDir::create(None, "watches", false)?;
    let server = ServerProcess::start(
        server_bin,
        &work.path().join("data"),
        &work.path().join("server.log"),
    )?;
    let address = server.address().to_string();
    let mut generator = Generator::default();
    let oracle = Arc::new(Oracle::new(generator.take(args.n)));
    let load = measure::load(&address, oracle, BATCH).await?;
    eprintln!("loaded {} events in {:.1} s", args.n, load.seconds);
    let generator = Arc::new(Mutex::new(generator));
    let appends = |label: String| {
        let generator = generator.clone();
        let address = address.clone();
        async move {
            let single = measure::single_appends(&address, 16, seconds, generator.clone()).await?;
            let batch = measure::batch_appends(&address, BATCH, seconds, generator).await?;
            eprintln!(
                "{label}: single appends at 16 clients {:.0}/s (p50 {:.0} µs), 1,000-event batches {:.0} events/s",
                single.calls_per_s, single.p50_us, batch.items_per_s
            );
            Res::Ok((single, batch))
        }
    };

    // Rounds with the watches between rounds without: appends into a
    // longer log (and beside the compactions the last round left) are
    // slower, so each round with them is set against the two around it.
    let mut without = vec![appends("without watches".into()).await?];
    let mut with = Vec::new();
    let (mut single_ratios, mut batch_ratios) = (Vec::new(), Vec::new());
    let (mut changes, mut change_bytes, mut first_bytes) = (0, 0, 0);
    let mut latency = None;
    for round in 0..args.rounds {
        let watches =
            Watches::open(&address, args.at.as_deref(), 0x03A7_C0E5 + round as u64).await?;
        let opened = watches.received();
        first_bytes = opened.1;
        eprintln!("{ENTITIES} watches open");
        with.push(appends(format!("with the watches, round {}", round + 1)).await?);
        let received = watches.received();
        changes += received.0 - opened.0;
        change_bytes += received.1 - opened.1;
        if round + 1 == args.rounds {
            let single_p50 = with.last().map_or(0.0, |(single, _)| single.p50_us);
            latency = Some(change_to_watcher(&address, single_p50).await?);
        }
        watches.close().await;
        without.push(appends("without watches".into()).await?);
        let (before, after, during) = (&without[round], &without[round + 1], &with[round]);
        single_ratios
            .push(during.0.calls_per_s / ((before.0.calls_per_s + after.0.calls_per_s) / 2.0));
        batch_ratios
            .push(during.1.items_per_s / ((before.1.items_per_s + after.1.items_per_s) / 2.0));
    }
    server.stop()?;
    let (p50, p99) = latency.ok_or("no rounds")?;
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let stats = |rounds: &[(Stats, Stats)], batch: bool| {
        let picked: Vec<Stats> = rounds
            .iter()
            .map(|(single, batches)| {
                if batch {
                    batches.clone()
                } else {
                    single.clone()
                }
            })
            .collect();
        Stats::median(&picked).to_json()
    };
    let result = json!({
        "benchmark": "annals-bench watches",
        "command": crate::command_line(),
        "n": args.n,
        "watches": ENTITIES,
        "at": args.at.as_deref().unwrap_or("a random valid day per watch"),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "single_16_clients": {"without": stats(&without, false), "with": stats(&with, false),
            "ratios": single_ratios.iter().map(|ratio| measure::round3(*ratio)).collect::<Vec<_>>(),
            "ratio": measure::round3(median(&mut single_ratios))},
        "batches_1000": {"without": stats(&without, true), "with": stats(&with, true),
            "ratios": batch_ratios.iter().map(|ratio| measure::round3(*ratio)).collect::<Vec<_>>(),
            "ratio": measure::round3(median(&mut batch_ratios))},
        "watch_messages_during_appends": changes,
        "watch_message_bytes_during_appends": change_bytes,
        "first_answer_bytes": first_bytes,
        "change_to_watcher_us": {"p50": measure::round3(p50), "p99": measure::round3(p99)},
    });
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// A change reaching its watcher, with the watches open: events about one
/// entity, dated today (so that each changes the answer of a watch at
/// "now"), each timed from the Append's answer to the watcher's message.
/// Returns the p50 and p99 in µs.
async fn change_to_watcher(address: &str, single_p50_us: f64) -> Res<(f64, f64)> {
    let mut writer = questions::connect(address).await?;
    let mut reader = questions::connect(address).await?;
    let watched = entity_name(1);
    let mut stream = reader
        .watch_entity(proto::WatchEntityRequest {
            id: watched.clone(),
            at: String::new(),
            from_seq: 0,
        })
        .await?
        .into_inner();
    stream.message().await?;
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for number in 0..LATENCY_SAMPLES {
        let event = proto::Event {
            id: format!("watched-{number}"),
            kind: "note".into(),
            occurred: Some(proto::TimeSpan {
                start: "2025-12-31".into(),
                end: String::new(),
            }),
            effects: vec![proto::Effect {
                at: String::new(),
                change: Some(proto::effect::Change::Set(proto::SetAttribute {
                    entity: watched.clone(),
                    key: "bench_counter".into(),
                    value: number.to_string(),
                })),
            }],
            ..Default::default()
        };
        let request = proto::AppendRequest {
            events: vec![event],
            expected_last_seq: None,
            omit_events: true,
        };
        let seq = writer.append(request).await?.into_inner().last_seq;
        let answered = Instant::now();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .map_err(|_| "the watcher heard nothing for 30 s")??
                .ok_or("the watch ended")?;
            if message.seq >= seq {
                break;
            }
        }
        latencies.push(answered.elapsed().as_secs_f64() * 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    eprintln!(
        "a change reached its watcher {p50:.0} µs (p50) / {p99:.0} µs (p99) after the Append's answer; single append p50 {single_p50_us:.0} µs"
    );
    Ok((p50, p99))
}
