//! Timed phases: loading, queries at C concurrent clients, durable appends.
//!
//! Every client has its own connection (its own HTTP/2 channel) and issues
//! calls back to back with fresh random parameters until the deadline,
//! recording each call's latency; `drive.rs` runs them as pgbench's `-j`
//! does.

use crate::counting::Counter;
use crate::drive::{drive, Client};
use crate::oracle::Oracle;
use crate::questions::{self, Grpc, Params, Question};
use crate::workload::{declaration_event, Generator, SplitMix64};
use crate::Res;
use annals::proto;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Throughput and latency of one measurement.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub calls: u64,
    pub seconds: f64,
    pub calls_per_s: f64,
    /// Items per second (events for appends; = calls for queries).
    pub items_per_s: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Stats {
    pub fn from_latencies(mut latencies_ns: Vec<u64>, seconds: f64, items: u64) -> Stats {
        latencies_ns.sort_unstable();
        let calls = latencies_ns.len() as u64;
        // Nearest rank.
        let rank = |q: f64| -> f64 {
            if latencies_ns.is_empty() {
                return 0.0;
            }
            let index =
                ((q * latencies_ns.len() as f64).ceil() as usize).clamp(1, latencies_ns.len());
            latencies_ns[index - 1] as f64 / 1000.0
        };
        let mean_us = if calls == 0 {
            0.0
        } else {
            latencies_ns.iter().sum::<u64>() as f64 / calls as f64 / 1000.0
        };
        Stats {
            calls,
            seconds,
            calls_per_s: calls as f64 / seconds,
            items_per_s: items as f64 / seconds,
            mean_us,
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: latencies_ns.last().map_or(0.0, |&ns| ns as f64 / 1000.0),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "calls": self.calls,
            "seconds": round3(self.seconds),
            "calls_per_s": round3(self.calls_per_s),
            "items_per_s": round3(self.items_per_s),
            "mean_us": round3(self.mean_us),
            "p50_us": round3(self.p50_us),
            "p99_us": round3(self.p99_us),
            "max_us": round3(self.max_us),
        })
    }

    /// The per-metric median of several rounds.
    pub fn median(rounds: &[Stats]) -> Stats {
        let median = |metric: fn(&Stats) -> f64| {
            let mut values: Vec<f64> = rounds.iter().map(metric).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(0.0)
        };
        Stats {
            calls: median(|s| s.calls as f64) as u64,
            seconds: median(|s| s.seconds),
            calls_per_s: median(|s| s.calls_per_s),
            items_per_s: median(|s| s.items_per_s),
            mean_us: median(|s| s.mean_us),
            p50_us: median(|s| s.p50_us),
            p99_us: median(|s| s.p99_us),
            max_us: median(|s| s.max_us),
        }
    }
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// What loading the workload took.
#[derive(Clone, Debug, Default)]
pub struct Load {
    pub seconds: f64,
    pub batches: u64,
}

/// Appends the declaration, then the workload in batches of `batch` events
/// on one connection, one batch at a time. Building the requests happens on
/// another thread, ahead of the calls.
pub async fn load(address: &str, oracle: Arc<Oracle>, batch: usize) -> Res<Load> {
    let mut client = questions::connect(address).await?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<proto::Event>>(4);
    let producer = {
        let oracle = oracle.clone();
        std::thread::spawn(move || {
            for chunk in oracle.events().chunks(batch) {
                let events = chunk.iter().map(|event| event.to_proto()).collect();
                if sender.blocking_send(events).is_err() {
                    return;
                }
            }
        })
    };
    let started = Instant::now();
    let declared = client
        .append(proto::AppendRequest {
            events: vec![declaration_event()],
            expected_last_seq: Some(0),
            omit_events: false,
        })
        .await
        .map_err(|status| format!("appending the declaration: {status}"))?
        .into_inner();
    if declared.last_seq != 1 {
        return Err(format!(
            "the declaration got seq {}, not 1 (is the data dir empty?)",
            declared.last_seq
        )
        .into());
    }
    let mut batches = 0;
    let mut last_seq = 1;
    while let Some(events) = receiver.recv().await {
        let count = events.len() as u64;
        let response = client
            .append(proto::AppendRequest {
                events,
                expected_last_seq: Some(last_seq),
                omit_events: false,
            })
            .await
            .map_err(|status| format!("appending batch {batches}: {status}"))?
            .into_inner();
        last_seq += count;
        if response.last_seq != last_seq {
            return Err(format!(
                "after batch {batches} the log ends at {}, expected {last_seq}",
                response.last_seq
            )
            .into());
        }
        batches += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    producer
        .join()
        .map_err(|_| "the request builder panicked")?;
    Ok(Load { seconds, batches })
}

/// Time from starting the server process to its first correct answer.
/// The last seq of a server that may still be starting.
pub async fn last_seq(address: &str) -> Res<u64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut client) = questions::connect(address).await {
            let request = annals::proto::ReadLogRequest {
                from_seq: 0,
                limit: 1,
                reverse: true,
            };
            if let Ok(page) = client.read_log(request).await {
                return Ok(page.into_inner().last_seq);
            }
        }
        if Instant::now() > deadline {
            return Err("the server never answered".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn first_answer(address: &str) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(mut client) = questions::connect(address).await {
            if let Ok(state) = questions::entity_state(&mut client, "country-001", "").await {
                if state
                    .entity
                    .is_some_and(|entity| entity.id == "country-001")
                {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err("the reopened server never answered".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A client asking one question with fresh parameters each call.
struct Asker {
    client: Counter,
    question: Question,
    n: u64,
    rng: SplitMix64,
}

impl Client for Asker {
    async fn call(&mut self) -> Result<u64, String> {
        let params = Params::draw(self.question, self.n, &mut self.rng);
        self.client
            .ask(self.question, &params)
            .await
            .map_err(|status| format!("{} {params:?}: {status}", self.question.name()))?;
        Ok(1)
    }
}

/// `clients` clients asking `question` with fresh parameters for
/// `duration` (`drive.rs`).
pub async fn queries(
    address: &str,
    question: Question,
    clients: usize,
    duration: Duration,
    n: u64,
    seed: u64,
) -> Res<Stats> {
    let address = address.to_string();
    let connect = move |index: usize| {
        let address = address.clone();
        async move {
            Ok(Asker {
                client: Counter::new(questions::channel(&address).await?),
                question,
                n,
                rng: SplitMix64::new(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            })
        }
    };
    drive_to_stats(clients, duration, connect).await
}

/// `drive.rs` off the async workers, its calls as `Stats`.
async fn drive_to_stats<C, Connect, Connecting>(
    clients: usize,
    duration: Duration,
    connect: Connect,
) -> Res<Stats>
where
    C: Client,
    Connect: Fn(usize) -> Connecting + Send + Sync + 'static,
    Connecting: std::future::Future<Output = Res<C>>,
{
    let driven =
        tokio::task::spawn_blocking(move || drive(clients, duration, connect, || {})).await??;
    Ok(Stats::from_latencies(
        driven.latencies,
        driven.seconds,
        driven.items,
    ))
}

/// A client appending one new event per call.
struct Appender {
    client: Grpc,
    generator: Arc<Mutex<Generator>>,
}

impl Client for Appender {
    async fn call(&mut self) -> Result<u64, String> {
        let event = self
            .generator
            .lock()
            .expect("not poisoned")
            .next_event()
            .to_proto();
        let response = self
            .client
            .append(proto::AppendRequest {
                events: vec![event],
                expected_last_seq: None,
                omit_events: false,
            })
            .await
            .map_err(|status| format!("single append: {status}"))?
            .into_inner();
        if response.entries.len() != 1 {
            return Err(format!(
                "an append of one event returned {} entries",
                response.entries.len()
            ));
        }
        Ok(1)
    }
}

/// `clients` clients appending one new event per call for `duration`; the
/// events continue the workload stream past N (new ids, declared entities).
pub async fn single_appends(
    address: &str,
    clients: usize,
    duration: Duration,
    generator: Arc<Mutex<Generator>>,
) -> Res<Stats> {
    let address = address.to_string();
    let connect = move |_| {
        let (address, generator) = (address.clone(), generator.clone());
        async move {
            Ok(Appender {
                client: questions::connect(&address).await?,
                generator,
            })
        }
    };
    drive_to_stats(clients, duration, connect).await
}

/// Batches of `batch` new events, one at a time, for `duration` (at least
/// one batch).
pub async fn batch_appends(
    address: &str,
    batch: usize,
    duration: Duration,
    generator: Arc<Mutex<Generator>>,
) -> Res<Stats> {
    let mut client = questions::connect(address).await?;
    let deadline = Instant::now() + duration;
    let mut latencies = Vec::new();
    let mut events_appended = 0u64;
    loop {
        let events: Vec<proto::Event> = {
            let mut generator = generator.lock().expect("not poisoned");
            (0..batch)
                .map(|_| generator.next_event().to_proto())
                .collect()
        };
        let call = Instant::now();
        let response = client
            .append(proto::AppendRequest {
                events,
                expected_last_seq: None,
                omit_events: false,
            })
            .await
            .map_err(|status| format!("batch append: {status}"))?
            .into_inner();
        latencies.push(call.elapsed().as_nanos() as u64);
        if response.entries.len() != batch {
            return Err(format!(
                "a batch of {batch} returned {} entries",
                response.entries.len()
            )
            .into());
        }
        events_appended += batch as u64;
        if Instant::now() >= deadline {
            break;
        }
    }
    // Sequential calls: the time spent in calls, not in building requests.
    let seconds = latencies.iter().sum::<u64>() as f64 / 1e9;
    Ok(Stats::from_latencies(latencies, seconds, events_appended))
}
