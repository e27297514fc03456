//! Serving: the gRPC server with its reflection and health services, the
//! built-in data set, and graceful shutdown.

use crate::admission::Admission;
use crate::auth::{self, RequireRole, Tokens};
use crate::cluster::{self, LogConfig, Stream};
use crate::console::Console;
use crate::engine::{Database, Limits};
use crate::error::Result;
use crate::metrics::Metered;
use crate::proto::timeline_service_server::TimelineServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::seed;
use crate::service::Service;
use crate::store::{LogStore, SledStore};
use crate::tls::TlsIdentity;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::codec::CompressionEncoding;

/// Where the console (page, JSON gateway, pictures, `/metrics`,
/// `/healthz`) is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Http {
    /// On the gRPC listener: HTTP/1.1 beside HTTP/2 (the default).
    #[default]
    Shared,
    /// On a listener of its own, with the same TLS.
    Own(SocketAddr),
    /// Not at all.
    Off,
}

/// How a server is set up; the command line fills it in.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The console's listener (`--http`).
    pub http: Http,
    pub data_dir: PathBuf,
    /// Append the built-in data set to an empty log.
    pub seed: bool,
    /// Bytes of sled's page cache.
    pub cache_bytes: u64,
    /// Bytes of entity timelines the index keeps in memory.
    pub timeline_cache_bytes: usize,
    /// Bytes of event runs (an entity's or a dyad's events) kept in memory.
    pub event_cache_bytes: usize,
    /// Bytes of each derived tree's memtable before fjall flushes it.
    pub index_buffer_bytes: usize,
    /// Who may call what (`--auth-tokens`). Without tokens every call is
    /// open, which `check_exposure` allows on loopback only.
    pub auth: Option<Arc<Tokens>>,
    /// Reflection asks for a (reader) token too; health never does.
    pub reflection_requires_auth: bool,
    /// Serve a non-loopback address without tokens all the same.
    pub insecure: bool,
    /// Serve TLS with this certificate and key.
    pub tls: Option<TlsIdentity>,
    /// Load shedding, deadlines and caps.
    pub limits: ServerLimits,
    /// Cluster mode: the log on a JetStream stream, `data_dir` this node's
    /// view of it (`--log`). `None`: the log is `data_dir` alone.
    pub log: Option<LogConfig>,
}

/// What the server takes on at once, and for how long.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// TimelineService calls worked on at once; more are shed with
    /// RESOURCE_EXHAUSTED (see `admission`).
    pub max_in_flight: usize,
    /// How long one TimelineService call may take (DEADLINE_EXCEEDED).
    pub deadline: Duration,
    /// Open Subscribe streams; one more gets RESOURCE_EXHAUSTED.
    pub max_subscribers: usize,
    /// Open WatchEntity and WatchRelations streams; one more gets
    /// RESOURCE_EXHAUSTED.
    pub max_watches: usize,
    /// HTTP/2 streams (calls) one connection may have open at once.
    pub max_streams_per_connection: u32,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            max_in_flight: 512,
            deadline: Duration::from_secs(30),
            max_subscribers: 1024,
            max_watches: 4096,
            max_streams_per_connection: 256,
        }
    }
}

impl Config {
    /// Refuses to serve a non-loopback address without tokens, unless
    /// `insecure` says to.
    pub fn check_exposure(&self) -> Result<()> {
        let mut exposed = vec![("listen", self.listen)];
        if let Http::Own(address) = self.http {
            exposed.push(("http", address));
        }
        for (field, address) in exposed {
            let loopback = address.ip().to_canonical().is_loopback();
            if loopback || self.auth.is_some() || self.insecure {
                continue;
            }
            return Err(crate::Error::invalid(
                field,
                format!(
                    "{address} is not a loopback address and no --auth-tokens are given: anyone who can reach it could read and append; \
                     give --auth-tokens FILE (and --tls-cert/--tls-key), or --insecure to serve it open all the same"
                ),
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:50051".parse().expect("a socket address"),
            http: Http::Shared,
            data_dir: PathBuf::from("./annals-data"),
            seed: true,
            cache_bytes: 256 * 1024 * 1024,
            timeline_cache_bytes: 1024 * 1024 * 1024,
            event_cache_bytes: 256 * 1024 * 1024,
            index_buffer_bytes: crate::store::DERIVED_BUFFER_BYTES,
            auth: None,
            reflection_requires_auth: false,
            insecure: false,
            tls: None,
            limits: ServerLimits::default(),
            log: None,
        }
    }
}

/// A running server. Dropping it does not stop it; call `shutdown`.
pub struct Server {
    local_addr: SocketAddr,
    /// Where the console is served, if anywhere.
    console_addr: Option<SocketAddr>,
    db: Database,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
}

impl Server {
    /// Opens the store in `config.data_dir`, seeds it if asked and empty,
    /// and starts serving on `config.listen` (port 0 picks a free port).
    pub async fn start(config: &Config) -> Result<Server> {
        config.check_exposure()?;
        // Unusable TLS files stop the start before the store is opened.
        http_server(config)?;
        let stream = match &config.log {
            Some(log) => Some(Stream::connect(log).await?),
            None => None,
        };
        let store = SledStore::open_with(
            &config.data_dir,
            config.cache_bytes,
            config.index_buffer_bytes,
        )?;
        Server::start_with(Arc::new(store), config, stream).await
    }

    /// Serves over any log store as `config` says (its store fields unused).
    pub async fn start_on_store(store: Arc<dyn LogStore>, config: &Config) -> Result<Server> {
        Server::start_with(store, config, None).await
    }

    /// Serves `store` alone, or (cluster mode) as a view of `stream`.
    async fn start_with(
        store: Arc<dyn LogStore>,
        config: &Config,
        stream: Option<Stream>,
    ) -> Result<Server> {
        config.check_exposure()?;
        let mut http = http_server(config)?;
        let limits = Limits {
            timeline_cache_bytes: config.timeline_cache_bytes,
            event_cache_bytes: config.event_cache_bytes,
            ..Limits::default()
        };
        // Opening reads the derived trees (and catches them up if the log
        // is ahead): blocking work, kept off the async workers.
        let sequencer = stream.clone();
        let db = tokio::task::spawn_blocking(move || match sequencer {
            Some(stream) => Database::open_replicated(store, limits, Arc::new(stream)),
            None => Database::open(store, limits),
        })
        .await
        .map_err(|error| crate::Error::Storage(format!("opening: {error}")))??;
        let (stop, stopping) = watch::channel(false);
        let mut readiness = None;
        // A cluster seeds only an empty stream: nodes joining a stream that
        // holds a log never add the data set to it.
        let mut seed = config.seed;
        if let Some(stream) = &stream {
            let (caught_up, caught_up_now) = watch::channel(false);
            tokio::spawn(cluster::follow(
                db.clone(),
                stream.clone(),
                caught_up,
                stopping.clone(),
            ));
            readiness = Some((stream.clone(), caught_up_now));
            seed = seed && stream.last_position().await? == 0;
        }
        if seed {
            let appended = seed::seed(&db).await?;
            if appended > 0 {
                tracing::info!(events = appended, "appended the built-in data set");
            }
        }
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let grpc = routes(db.clone(), stopping.clone(), config, readiness)
            .await
            .into_axum_router();
        let console = Console::new(grpc.clone(), db.clone(), config.auth.clone()).router();
        let mut tasks = Vec::new();
        let (routes, console_addr) = match config.http {
            Http::Shared => (grpc.merge(console), Some(local_addr)),
            Http::Own(address) => {
                let listener = TcpListener::bind(address).await?;
                let console_addr = listener.local_addr()?;
                let server = http_server(config)?.accept_http1(true);
                tasks.push(serve(server, listener, console, stopping.clone()));
                (grpc, Some(console_addr))
            }
            Http::Off => (grpc, None),
        };
        http = http.accept_http1(config.http == Http::Shared);
        tasks.push(serve(http, listener, routes, stopping));
        tracing::info!(
            %local_addr,
            console = ?console_addr,
            last_seq = db.last_seq(),
            tls = config.tls.is_some(),
            auth = config.auth.is_some(),
            "serving annals.v1.TimelineService"
        );
        Ok(Server {
            local_addr,
            console_addr,
            db,
            stop,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the console is served: the gRPC address unless `--http` moved
    /// it; `None` with `--http off`.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<()> {
        signal.await;
        self.shutdown().await
    }

    /// Stops taking connections, lets in-flight calls finish (subscriptions
    /// end with UNAVAILABLE), then stops the writer and flushes the log.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        let mut served = Vec::new();
        for task in self.tasks {
            served.push(task.await);
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.close())
            .await
            .map_err(|error| crate::Error::Storage(format!("closing: {error}")))?;
        for outcome in served {
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    return Err(crate::Error::Unavailable(format!(
                        "serving failed: {error}"
                    )))
                }
                Err(error) => {
                    return Err(crate::Error::Unavailable(format!(
                        "serving task failed: {error}"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Serves `routes` on `listener` until `stopping` turns true.
fn serve(
    server: tonic::transport::Server,
    listener: TcpListener,
    routes: axum::Router,
    mut stopping: watch::Receiver<bool>,
) -> JoinHandle<std::result::Result<(), tonic::transport::Error>> {
    // Small gRPC frames must not wait for Nagle's algorithm (it costs a
    // delayed-ACK timeout, ~40 ms, per call); tonic sets TCP_NODELAY only
    // on listeners it binds itself.
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::warn!(%error, "could not set TCP_NODELAY");
            }
        })
    });
    let mut server = server;
    tokio::spawn(async move {
        server
            .add_routes(tonic::service::Routes::from(routes))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            })
            .await
    })
}

/// The HTTP/2 server as `config` sets it up: TLS, stream and header
/// limits, keepalives that find dead peers (a vanished subscriber).
fn http_server(config: &Config) -> Result<tonic::transport::Server> {
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(config.limits.max_streams_per_connection)
        .http2_max_header_list_size(64 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)));
    if let Some(tls) = &config.tls {
        let tls_config = tonic::transport::ServerTlsConfig::new().identity(tls.identity());
        builder = builder.tls_config(tls_config).map_err(|error| {
            crate::Error::invalid(
                "tls",
                format!(
                    "the certificate or key is unusable: {}",
                    crate::error::chain(&error)
                ),
            )
        })?;
    }
    Ok(builder)
}

async fn routes(
    db: Database,
    stopping: watch::Receiver<bool>,
    config: &Config,
    readiness: Option<(Stream, watch::Receiver<bool>)>,
) -> tonic::service::Routes {
    let (health, health_service) = tonic_health::server::health_reporter();
    match readiness {
        None => {
            health.set_serving::<TimelineServiceServer<Service>>().await;
            let mut draining = stopping.clone();
            tokio::spawn(async move {
                if draining.wait_for(|stopping| *stopping).await.is_ok() {
                    health
                        .set_not_serving::<TimelineServiceServer<Service>>()
                        .await;
                }
            });
        }
        Some((stream, caught_up)) => {
            tokio::spawn(report_cluster_health(
                health,
                db.clone(),
                stream,
                caught_up,
                stopping.clone(),
            ));
        }
    }
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the compiled descriptors are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the compiled descriptors are valid");
    let metrics = db.metrics().clone();
    let service = Service::new(db, stopping)
        .with_max_subscribers(config.limits.max_subscribers)
        .with_max_watches(config.limits.max_watches)
        .with_view_wait(config.limits.deadline);
    let timeline = TimelineServiceServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(2 * crate::service::MAX_REQUEST_BYTES)
        .max_encoding_message_size(64 * 1024 * 1024);
    let timeline = Admission::new(
        timeline,
        config.limits.max_in_flight,
        config.limits.deadline,
        metrics.clone(),
    );
    // Health stays open: load balancers and orchestrators probe it without
    // credentials. Reflection is open unless asked otherwise.
    let routes = tonic::service::Routes::new(health_service);
    match &config.auth {
        None => routes
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(Metered::new(timeline, metrics)),
        Some(tokens) => {
            let timeline = RequireRole::new(timeline, Arc::clone(tokens), auth::timeline_role);
            let timeline = Metered::new(timeline, metrics);
            if config.reflection_requires_auth {
                let role = auth::reflection_role;
                routes
                    .add_service(RequireRole::new(reflection_v1, Arc::clone(tokens), role))
                    .add_service(RequireRole::new(
                        reflection_v1alpha,
                        Arc::clone(tokens),
                        role,
                    ))
                    .add_service(timeline)
            } else {
                routes
                    .add_service(reflection_v1)
                    .add_service(reflection_v1alpha)
                    .add_service(timeline)
            }
        }
    }
}

/// Cluster mode: SERVING while the view has caught up with the stream, the
/// stream's servers are reachable and the view applies what arrives;
/// NOT_SERVING otherwise, and once the server drains. Checked every 250 ms.
async fn report_cluster_health(
    health: tonic_health::server::HealthReporter,
    db: Database,
    stream: Stream,
    caught_up: watch::Receiver<bool>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut serving = None;
    loop {
        let now = !*stopping.borrow()
            && *caught_up.borrow()
            && stream.client().connection_state() == async_nats::connection::State::Connected
            && !db.has_failed();
        if serving != Some(now) {
            if now {
                health.set_serving::<TimelineServiceServer<Service>>().await;
            } else {
                health
                    .set_not_serving::<TimelineServiceServer<Service>>()
                    .await;
            }
            serving = Some(now);
        }
        if *stopping.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// Reflection describes every service served: ours, health, and reflection
/// itself, so `buf curl` and grpcurl need no proto files for any of them;
/// and the `google.rpc` error details errors carry (`BadRequest` and the
/// rest), so that they print an INVALID_ARGUMENT's field violations.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
