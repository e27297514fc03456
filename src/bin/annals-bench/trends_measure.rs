//! The timed phases of the trends benchmark (`trends.rs`): `annals import`
//! as a child process, the log read back and appended again in batches of
//! 1,000 events into a second server, and CountEvents / ListEvents calls
//! at C concurrent clients.
//!
//! As in `measure.rs`, every client has its own HTTP/2 connection and
//! calls back to back until the deadline (`drive.rs`). A ListEvents reply
//! is taken as its entries' wire bytes (prost skips nothing it must
//! allocate for), as pgbench takes rows without converting them: decoding
//! 100 events of 60 labels each would spend the two cores the server needs.

use crate::cpu;
use crate::drive::{drive, Client};
use crate::measure::Stats;
use crate::questions;
use crate::workload::SplitMix64;
use crate::Res;
use annals::proto;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Events per Append when the log is appended again.
pub const BATCH: u32 = 1000;

/// What `annals import` did, and what it took.
pub struct Imported {
    pub seconds: f64,
    /// Its `--json` summary.
    pub summary: Value,
    /// Peak resident set of the import process (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// CPU time (user + system) of the import process.
    pub cpu_seconds: f64,
    /// CPU time the whole machine spent meanwhile (importer and server).
    pub machine_cpu_seconds: f64,
    /// CPU time other processes took meanwhile.
    pub others_cpu_seconds: f64,
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `annals import FILE --json --server http://ADDRESS` to the end,
/// sampling the process's peak RSS every 5 ms. Its stderr goes to `log`.
pub fn import(binary: &Path, address: &str, file: &Path, log: &Path) -> Res<Imported> {
    let stderr = std::fs::File::create(log)?;
    let clock = cpu::Clock::start();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("import")
        .arg(file)
        .arg("--json")
        .arg("--server")
        .arg(format!("http://{address}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let (mut peak_rss_kib, mut cpu_seconds) = (0, 0.0);
    let pid = child.id().to_string();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(child.id()));
        cpu_seconds = cpu::process_seconds(&pid);
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let (machine_cpu_seconds, others_cpu_seconds) = (clock.machine(), clock.others());
    let output = reader
        .join()
        .map_err(|_| "the import's output reader panicked")??;
    if !status.success() {
        return Err(format!(
            "annals import exited with {status}: {output} (see {})",
            log.display()
        )
        .into());
    }
    let summary: Value = serde_json::from_str(&output)
        .map_err(|error| format!("annals import --json printed no JSON ({error}): {output}"))?;
    Ok(Imported {
        seconds,
        summary,
        peak_rss_kib,
        cpu_seconds,
        machine_cpu_seconds,
        others_cpu_seconds,
    })
}

/// The log as read back: entries, and how many were the importer's
/// declarations.
pub struct Dumped {
    pub events: u64,
    pub declarations: u64,
    pub batches: u64,
}

/// Reads the whole log in seq order (ReadLog, pages of 1,000) and writes
/// each page as one AppendRequest (u32 length, little-endian, then the
/// message) expecting the seq before it: a replay gets the same seqs.
pub async fn dump_log(address: &str, path: &Path) -> Res<Dumped> {
    let mut client = questions::connect(address).await?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut dumped = Dumped {
        events: 0,
        declarations: 0,
        batches: 0,
    };
    let mut from_seq = 1;
    loop {
        let page = client
            .read_log(proto::ReadLogRequest {
                from_seq,
                limit: BATCH,
                reverse: false,
            })
            .await
            .map_err(|status| format!("ReadLog from {from_seq}: {status}"))?
            .into_inner();
        if page.entries.is_empty() {
            break;
        }
        let mut events = Vec::with_capacity(page.entries.len());
        for (offset, entry) in page.entries.into_iter().enumerate() {
            if entry.seq != from_seq + offset as u64 {
                return Err(
                    format!("ReadLog gave seq {} at {from_seq} + {offset}", entry.seq).into(),
                );
            }
            let event = entry
                .event
                .ok_or_else(|| format!("log entry {} has no event", entry.seq))?;
            if event.kind == "actor_declared" {
                dumped.declarations += 1;
            }
            events.push(event);
        }
        let count = events.len() as u64;
        // As the importer appends: the answer carries seqs, not the events.
        let request = proto::AppendRequest {
            events,
            expected_last_seq: Some(from_seq - 1),
            omit_events: true,
        };
        let bytes = request.encode_to_vec();
        out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        out.write_all(&bytes)?;
        dumped.events += count;
        dumped.batches += 1;
        if page.next_seq == 0 {
            break;
        }
        from_seq = page.next_seq;
    }
    out.flush()?;
    Ok(dumped)
}

/// What appending the log again took.
pub struct Replayed {
    pub events: u64,
    pub batches: u64,
    /// From the first call to the last answer.
    pub seconds: f64,
    /// The time spent in calls.
    pub call_seconds: f64,
    /// CPU time of this process (the client) meanwhile.
    pub cpu_seconds: f64,
    /// CPU time the whole machine spent meanwhile (client and server).
    pub machine_cpu_seconds: f64,
    /// CPU time other processes took meanwhile.
    pub others_cpu_seconds: f64,
}

/// Appends the batches `dump_log` wrote, one Append at a time on one
/// connection, each expecting the seq before it and asking for no echo of
/// the events (`omit_events`, as `annals import` does). Requests are read
/// and decoded on another thread, ahead of the calls (as `measure::load`).
pub async fn replay(address: &str, path: &Path) -> Res<Replayed> {
    let mut client = questions::connect(address).await?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<proto::AppendRequest>(4);
    let path: PathBuf = path.to_path_buf();
    let producer = std::thread::spawn(move || -> Res<()> {
        let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        let mut length = [0u8; 4];
        let mut bytes = Vec::new();
        loop {
            match input.read_exact(&mut length) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error.into()),
            }
            bytes.resize(u32::from_le_bytes(length) as usize, 0);
            input.read_exact(&mut bytes)?;
            let request = proto::AppendRequest::decode(bytes.as_slice())?;
            if sender.blocking_send(request).is_err() {
                return Ok(());
            }
        }
    });
    let mut replayed = Replayed {
        events: 0,
        batches: 0,
        seconds: 0.0,
        call_seconds: 0.0,
        cpu_seconds: 0.0,
        machine_cpu_seconds: 0.0,
        others_cpu_seconds: 0.0,
    };
    let (own, clock) = (cpu::process_seconds("self"), cpu::Clock::start());
    let started = Instant::now();
    while let Some(request) = receiver.recv().await {
        let count = request.events.len() as u64;
        let expected = request.expected_last_seq.unwrap_or(0) + count;
        let call = Instant::now();
        let response = client
            .append(request)
            .await
            .map_err(|status| format!("appending batch {}: {status}", replayed.batches))?
            .into_inner();
        replayed.call_seconds += call.elapsed().as_secs_f64();
        if response.last_seq != expected {
            return Err(format!(
                "after batch {} the log ends at {}, expected {expected}",
                replayed.batches, response.last_seq
            )
            .into());
        }
        replayed.events += count;
        replayed.batches += 1;
    }
    replayed.seconds = started.elapsed().as_secs_f64();
    replayed.cpu_seconds = cpu::process_seconds("self") - own;
    replayed.machine_cpu_seconds = clock.machine();
    replayed.others_cpu_seconds = clock.others();
    producer
        .join()
        .map_err(|_| "the request reader panicked")??;
    Ok(replayed)
}

/// A ListEvents reply with its entries left as bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct EventsPage {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    entries: Vec<prost::bytes::Bytes>,
    #[prost(string, tag = "2")]
    next_page_token: String,
}

/// One timed call: a CountEvents request, a ListEvents request whose
/// month is drawn per call from 2015-01 … 2024-12, or a health check (what
/// a call costs when the server does nothing).
#[derive(Clone, Debug)]
pub enum Call {
    Count(proto::CountEventsRequest),
    ListMonth(proto::ListEventsRequest),
    Floor,
}

/// `2015-01` + `index` months.
pub fn month(index: u64) -> String {
    format!("{}-{:02}", 2015 + index / 12, index % 12 + 1)
}

/// One benchmark client: its own HTTP/2 connection.
struct Caller {
    grpc: tonic::client::Grpc<Channel>,
}

impl Caller {
    async fn new(address: &str) -> Res<Caller> {
        let grpc = tonic::client::Grpc::new(questions::channel(address).await?)
            .max_decoding_message_size(64 * 1024 * 1024);
        Ok(Caller { grpc })
    }

    /// Makes the call; returns the items of the answer (buckets or events).
    async fn call(&mut self, call: &Call, rng: &mut SplitMix64) -> Result<usize, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        match call {
            Call::Count(request) => {
                let codec = tonic_prost::ProstCodec::<_, proto::CountEventsResponse>::default();
                let path = PathAndQuery::from_static("/annals.v1.TimelineService/CountEvents");
                let reply = self
                    .grpc
                    .unary(tonic::Request::new(request.clone()), path, codec)
                    .await?;
                Ok(reply.into_inner().buckets.len())
            }
            Call::Floor => {
                let codec = tonic_prost::ProstCodec::<_, HealthCheckResponse>::default();
                let path = PathAndQuery::from_static("/grpc.health.v1.Health/Check");
                let reply = self
                    .grpc
                    .unary(
                        tonic::Request::new(HealthCheckRequest::default()),
                        path,
                        codec,
                    )
                    .await?;
                if reply.into_inner().status() != ServingStatus::Serving {
                    return Err(Status::unavailable("the server is not serving"));
                }
                Ok(1)
            }
            Call::ListMonth(request) => {
                let window = month(rng.below(120));
                let request = proto::ListEventsRequest {
                    from: window.clone(),
                    to: window,
                    ..request.clone()
                };
                let codec = tonic_prost::ProstCodec::<_, EventsPage>::default();
                let path = PathAndQuery::from_static("/annals.v1.TimelineService/ListEvents");
                let reply = self
                    .grpc
                    .unary(tonic::Request::new(request), path, codec)
                    .await?;
                Ok(reply.into_inner().entries.len())
            }
        }
    }
}

/// A client making one timed call again and again.
struct Timed {
    caller: Caller,
    call: Call,
    rng: SplitMix64,
}

impl Client for Timed {
    async fn call(&mut self) -> Result<u64, String> {
        let items = self
            .caller
            .call(&self.call, &mut self.rng)
            .await
            .map_err(|status| format!("{:?}: {status}", self.call))?;
        Ok(items as u64)
    }
}

/// `clients` clients making `call` back to back for `duration`
/// (`drive.rs`); items per second counts the buckets or events answered.
/// Also returns the CPU time other processes took meanwhile.
pub fn timed(
    address: &str,
    call: &Call,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> Res<(Stats, f64)> {
    let (address, call) = (address.to_string(), call.clone());
    let connect = move |index: usize| {
        let (address, call) = (address.clone(), call.clone());
        async move {
            Ok(Timed {
                caller: Caller::new(&address).await?,
                call,
                rng: SplitMix64::new(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            })
        }
    };
    let mut clock = None;
    let driven = drive(clients, duration, connect, || {
        clock = Some(cpu::Clock::start())
    })?;
    let others = clock.map_or(0.0, |clock| clock.others());
    Ok((
        Stats::from_latencies(driven.latencies, driven.seconds, driven.items),
        others,
    ))
}

/// Counts per label of the import summary, for the report.
pub fn summary_count(summary: &Value, key: &str) -> u64 {
    summary[key].as_u64().unwrap_or(0)
}

/// The months of a count's answer, as `month|count|sum` lines (the sum to
/// a tenth, as PostgreSQL's side prints it), with how many events carried
/// the value.
pub fn count_lines(response: &proto::CountEventsResponse) -> (Vec<String>, HashMap<String, u64>) {
    let mut valued = HashMap::new();
    let lines = response
        .buckets
        .iter()
        .map(|bucket| {
            valued.insert(bucket.start.clone(), bucket.valued);
            format!("{}|{}|{}", bucket.start, bucket.count, tenths(bucket.sum))
        })
        .collect();
    (lines, valued)
}

/// A sum of one-decimal values, to a tenth: `-3.0`, `0.0`, `12.5`.
pub fn tenths(value: f64) -> String {
    let tenths = (value * 10.0).round() as i64;
    let sign = if tenths < 0 { "-" } else { "" };
    format!("{sign}{}.{}", tenths.abs() / 10, tenths.abs() % 10)
}
