//! `annals-bench watches`: what open standing queries cost appends, and how
//! soon a change reaches its watcher. Loads N workload events into a fresh
//! server, measures single-event appends at 16 clients and 1,000-event
//! batches, opens one WatchEntity per workload entity (at a random valid
//! day, each stream drained by the benchmark), measures the appends again,
//! then times 200 appends of an event about one watched entity, each from
//! the Append's answer to the watcher's message.

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

async fn measure_watches(args: &WatchesArgs, server_bin: &std::path::Path) -> Res<()> {
    let seconds = Duration::from_secs_f64(args.seconds);
    let work = WorkDir::create(None, "watches", false)?;
    let server = ServerProcess::start(
        server_bin,
        &work.path().join("data"),
        &work.path().join("server.log"),
    )?;
    let mut generator = Generator::default();
    let oracle = Arc::new(Oracle::new(generator.take(args.n)));
    let load = measure::load(server.address(), oracle, BATCH).await?;
    eprintln!("loaded {} events in {:.1} s", args.n, load.seconds);
    let generator = Arc::new(Mutex::new(generator));
    let appends = |label: &'static str| {
        let generator = generator.clone();
        let address = server.address().to_string();
        async move {
            let (mut singles, mut batches) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                singles
                    .push(measure::single_appends(&address, 16, seconds, generator.clone()).await?);
                batches.push(
                    measure::batch_appends(&address, BATCH, seconds, generator.clone()).await?,
                );
            }
            let (single, batch) = (Stats::median(&singles), Stats::median(&batches));
            eprintln!(
                "{label}: single appends at 16 clients {:.0}/s (p50 {:.0} µs), 1,000-event batches {:.0} events/s",
                single.calls_per_s, single.p50_us, batch.items_per_s
            );
            Res::Ok((single, batch))
        }
    };
    let (single_before, batch_before) = appends("without watches").await?;

    // One watch per entity, each drained as a client would.
    let received = Arc::new(AtomicU64::new(0));
    let received_bytes = Arc::new(AtomicU64::new(0));
    let mut rng = SplitMix64::new(0x03A7_C0E5);
    let mut drains = Vec::new();
    for id in 1..=ENTITIES {
        let at = valid_date(rng.below(u64::from(VALID_DAYS)) as u32);
        let mut client = questions::connect(server.address()).await?;
        let mut stream = client
            .watch_entity(proto::WatchEntityRequest {
                id: entity_name(id),
                at,
                from_seq: 0,
            })
            .await?
            .into_inner();
        let (received, received_bytes) = (received.clone(), received_bytes.clone());
        drains.push(tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                received.fetch_add(1, Ordering::Relaxed);
                received_bytes.fetch_add(message.encoded_len() as u64, Ordering::Relaxed);
            }
        }));
    }
    let opened = received.load(Ordering::Relaxed);
    let opened_bytes = received_bytes.load(Ordering::Relaxed);
    eprintln!("{ENTITIES} watches open ({opened} first answers)");
    let (single_with, batch_with) = appends("with the watches").await?;
    let changes = received.load(Ordering::Relaxed) - opened;
    let change_bytes = received_bytes.load(Ordering::Relaxed) - opened_bytes;

    // A change reaching its watcher: events about one entity, dated today
    // (so that each changes the answer of a watch at "now").
    let mut writer = questions::connect(server.address()).await?;
    let mut reader = questions::connect(server.address()).await?;
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
        "a change reached its watcher {p50:.0} µs (p50) / {p99:.0} µs (p99) after the Append's answer; single append p50 {:.0} µs",
        single_with.p50_us
    );
    for drain in drains {
        drain.abort();
    }
    server.stop()?;
    let result = json!({
        "benchmark": "annals-bench watches",
        "command": crate::command_line(),
        "n": args.n,
        "watches": ENTITIES,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "single_16_clients": {"without": single_before.to_json(), "with": single_with.to_json(),
            "ratio": measure::round3(single_with.calls_per_s / single_before.calls_per_s)},
        "batches_1000": {"without": batch_before.to_json(), "with": batch_with.to_json(),
            "ratio": measure::round3(batch_with.items_per_s / batch_before.items_per_s)},
        "watch_messages_during_appends": changes,
        "watch_message_bytes_during_appends": change_bytes,
        "first_answer_bytes": opened_bytes,
        "change_to_watcher_us": {"p50": measure::round3(p50), "p99": measure::round3(p99)},
    });
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
