//! The `annals serve` child process and the scratch directory it writes to.
//!
//! Both clean up after themselves on drop, so an error (or a panic) anywhere
//! in the benchmark never leaves a server running or a data dir behind.

use crate::Res;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A scratch directory, removed on drop unless kept.
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// A fresh directory under `parent` (default: the system temp dir).
    pub fn create(parent: Option<&Path>, label: &str, keep: bool) -> Res<WorkDir> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&parent)?;
        for attempt in 0..1000u32 {
            let path = parent.join(format!(
                "annals-bench-{}-{label}-{attempt}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path, keep }),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(format!("cannot create a work directory under {}", parent.display()).into())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Total bytes of the regular files under `path`.
pub fn disk_bytes(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            total += disk_bytes(&entry.path())?;
        } else if file_type.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Reads every file under `path` once, so that the operating system's page
/// cache holds them (as PostgreSQL's side does with `pg_prewarm`). Returns
/// the bytes read.
pub fn prewarm(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut total = 0;
    let mut buffer = vec![0u8; 1 << 20];
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            total += prewarm(&entry.path())?;
        } else if file_type.is_file() {
            let mut file = std::fs::File::open(entry.path())?;
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                total += read as u64;
            }
        }
    }
    Ok(total)
}

/// A running `annals serve`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct ServerProcess {
    child: Child,
    address: String,
}

/// Resident set size of a process, from /proc/PID/status (KiB).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

impl ServerProcess {
    /// Starts `binary serve` on a free loopback port with `data_dir`, and
    /// waits until it says where it listens (the store is open by then).
    pub fn start(binary: &Path, data_dir: &Path, log: &Path) -> Res<ServerProcess> {
        ServerProcess::start_with(binary, data_dir, log, &[])
    }

    /// `start` with more arguments for `serve` (a cluster node's `--log`).
    pub fn start_with(
        binary: &Path,
        data_dir: &Path,
        log: &Path,
        extra: &[String],
    ) -> Res<ServerProcess> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-seed",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("ANNALS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("annals listening on ") {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        let mut server = ServerProcess {
            child,
            address: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            match receiver.recv_timeout(Duration::from_millis(20)) {
                Ok(address) => {
                    server.address = address;
                    return Ok(server);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(format!(
                    "annals serve exited before listening ({status}); see {}",
                    log.display()
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err("annals serve did not start listening within 15 minutes".into());
            }
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_rss_kib: field("VmHWM:"),
        }
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM (drain, flush, exit 0); how long the server took to exit.
    pub fn stop(mut self) -> Res<Duration> {
        let started = Instant::now();
        self.signal("-TERM");
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(format!("annals serve exited with {status} after SIGTERM").into());
                }
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                return Err("annals serve did not exit within 120 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
