//! How every timed phase runs its clients: as pgbench's `-j` runs its
//! own, shared among at most one thread per core, each thread with its own
//! single-threaded runtime. A call and its reply stay on one thread, so the
//! client pays no hand-over between workers that the other side of a
//! comparison does not pay either. Every connection is made before the
//! clock starts; each client then calls back to back until the deadline.

use crate::Res;
use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One client's calls: made one after the other on its own connection.
pub trait Client: 'static {
    /// Makes one call; returns the items it answered or appended.
    fn call(&mut self) -> impl Future<Output = Result<u64, String>>;
}

/// What the clients did, together.
pub struct Driven {
    /// Per call, nanoseconds.
    pub latencies: Vec<u64>,
    pub items: u64,
    /// From the start to the end of the last client's last call.
    pub seconds: f64,
}

/// Runs `clients` clients for `duration`. `connect(index)` makes client
/// `index` on the thread that runs it. `started` is told the instant the
/// clock starts (to read a CPU clock at the same time).
pub fn drive<C, Connect, Connecting>(
    clients: usize,
    duration: Duration,
    connect: Connect,
    started: impl FnOnce(),
) -> Res<Driven>
where
    C: Client,
    Connect: Fn(usize) -> Connecting + Send + Sync + 'static,
    Connecting: Future<Output = Res<C>>,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = clients.clamp(1, cores);
    let connect = std::sync::Arc::new(connect);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut threads = Vec::with_capacity(jobs);
    for job in 0..jobs {
        let share: Vec<usize> = (0..clients).filter(|index| index % jobs == job).collect();
        let (connect, ready, start) = (connect.clone(), ready_tx.clone(), start_rx.clone());
        threads.push(std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run_share(share, duration, connect, ready, start))
        }));
    }
    drop(ready_tx);
    for _ in 0..jobs {
        ready_rx
            .recv()
            .map_err(|_| "a client thread ended before it connected")??;
    }
    started();
    let clock = Instant::now();
    let _ = start_tx.send(Some(clock));
    let (mut latencies, mut items) = (Vec::new(), 0);
    for thread in threads {
        let (more, counted) = thread.join().map_err(|_| "a client thread panicked")??;
        latencies.extend(more);
        items += counted;
    }
    Ok(Driven {
        latencies,
        items,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// One thread's clients: connected, then (once told the start) calling
/// until the deadline.
async fn run_share<C, Connect, Connecting>(
    share: Vec<usize>,
    duration: Duration,
    connect: std::sync::Arc<Connect>,
    ready: mpsc::Sender<Result<(), String>>,
    mut start: watch::Receiver<Option<Instant>>,
) -> Result<(Vec<u64>, u64), String>
where
    C: Client,
    Connect: Fn(usize) -> Connecting,
    Connecting: Future<Output = Res<C>>,
{
    let mut clients = Vec::with_capacity(share.len());
    for index in share {
        match connect(index).await {
            Ok(client) => clients.push(client),
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return Err(error.to_string());
            }
        }
    }
    let _ = ready.send(Ok(()));
    let started = loop {
        if let Some(started) = *start.borrow_and_update() {
            break started;
        }
        start
            .changed()
            .await
            .map_err(|_| "the clock never started")?;
    };
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        tasks.spawn_local(async move {
            let mut latencies = Vec::with_capacity(1 << 12);
            let mut items = 0u64;
            while Instant::now() < deadline {
                let call = Instant::now();
                items += client.call().await?;
                latencies.push(call.elapsed().as_nanos() as u64);
            }
            Ok::<_, String>((latencies, items))
        });
    }
    let (mut latencies, mut items) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (more, counted) = done.map_err(|error| error.to_string())??;
        latencies.extend(more);
        items += counted;
    }
    Ok((latencies, items))
}
