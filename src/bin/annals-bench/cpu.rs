//! CPU time, from /proc: of a process, of the whole machine, and of what
//! this benchmark runs (itself, its servers and importer), so that the
//! trends benchmark can tell how much of the two cores something else took
//! while it measured (another build on the machine, say), and wait for the
//! machine to be quiet before it measures.

use std::time::{Duration, Instant};

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// The numeric fields of /proc/PID/stat after the command name (which may
/// hold spaces), from the state on: `[state, ppid, …, utime (11), stime,
/// cutime, cstime, …]`.
fn stat_fields(pid: &str) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn ticks(fields: &[String], indexes: std::ops::Range<usize>) -> f64 {
    indexes
        .filter_map(|index| fields.get(index)?.parse::<f64>().ok())
        .sum::<f64>()
        / TICKS
}

/// CPU time (user + system) of a process so far.
pub fn process_seconds(pid: &str) -> f64 {
    ticks(&stat_fields(pid), 11..13)
}

/// CPU time the machine has been busy so far (every state but idle and
/// iowait), from /proc/stat.
pub fn machine_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (fields.iter().sum::<f64>() - idle) / TICKS
}

/// CPU time of this process and of its children, live (with their own
/// reaped children) or reaped.
pub fn own_seconds() -> f64 {
    let me = std::process::id().to_string();
    let mut total = ticks(&stat_fields("self"), 11..15);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let fields = stat_fields(pid);
        if fields.get(1) == Some(&me) {
            total += ticks(&fields, 11..15);
        }
    }
    total
}

/// CPU time since a start, of the machine and of this benchmark.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    machine: f64,
    own: f64,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            machine: machine_seconds(),
            own: own_seconds(),
        }
    }

    /// CPU time the machine spent since the start.
    pub fn machine(&self) -> f64 {
        machine_seconds() - self.machine
    }

    /// CPU time spent since the start by processes this benchmark did not
    /// start (and by the kernel's own threads).
    pub fn others(&self) -> f64 {
        (self.machine() - (own_seconds() - self.own)).max(0.0)
    }
}

/// Waits, up to `limit`, until other processes took less than a tenth of a
/// core over a second. Returns how long it waited.
pub fn wait_quiet(limit: Duration) -> Duration {
    let started = Instant::now();
    let mut told = false;
    while started.elapsed() < limit {
        let clock = Clock::start();
        std::thread::sleep(Duration::from_secs(1));
        let others = clock.others();
        if others < 0.1 {
            break;
        }
        if !told {
            eprintln!("waiting for the machine to be quiet (others use {others:.2} cores)");
            told = true;
        }
    }
    if told {
        eprintln!("waited {:.0} s", started.elapsed().as_secs_f64());
    }
    started.elapsed()
}
