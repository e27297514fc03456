//! Serving: the gRPC server with its reflection and health services, the
//! built-in data set, and graceful shutdown.

use crate::engine::{Database, Limits};
use crate::error::Result;
use crate::proto::timeline_service_server::TimelineServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::seed;
use crate::service::Service;
use crate::store::{LogStore, SledStore};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;

/// How a server is set up; the command line fills it in.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Append the built-in data set to an empty log.
    pub seed: bool,
    /// Bytes of sled's page cache.
    pub cache_bytes: u64,
    /// Bytes of entity timelines the index keeps in memory.
    pub timeline_cache_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:50051".parse().expect("a socket address"),
            data_dir: PathBuf::from("./annals-data"),
            seed: true,
            cache_bytes: 256 * 1024 * 1024,
            timeline_cache_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A running server. Dropping it does not stop it; call `shutdown`.
pub struct Server {
    local_addr: SocketAddr,
    db: Database,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
}

impl Server {
    /// Opens the store in `config.data_dir`, seeds it if asked and empty,
    /// and starts serving on `config.listen` (port 0 picks a free port).
    pub async fn start(config: &Config) -> Result<Server> {
        let store = SledStore::open(&config.data_dir, config.cache_bytes)?;
        Server::start_with_store(Arc::new(store), config.listen, config.seed).await
    }

    /// Serves over any log store (tests use `MemoryStore`).
    pub async fn start_with_store(
        store: Arc<dyn LogStore>,
        listen: SocketAddr,
        seed: bool,
    ) -> Result<Server> {
        let db = Database::open(store, Limits::default())?;
        if seed {
            let appended = seed::seed(&db).await?;
            if appended > 0 {
                tracing::info!(events = appended, "appended the built-in data set");
            }
        }
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopping) = watch::channel(false);
        let routes = routes(db.clone(), stopping.clone()).await;
        let mut until_stopped = stopping;
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = until_stopped.wait_for(|stopping| *stopping).await;
                })
                .await
        });
        tracing::info!(%local_addr, last_seq = db.last_seq(), "serving annals.v1.TimelineService");
        Ok(Server {
            local_addr,
            db,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        let served = self.task.await;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.close())
            .await
            .map_err(|error| crate::Error::Storage(format!("closing: {error}")))?;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(crate::Error::Unavailable(format!(
                "serving failed: {error}"
            ))),
            Err(error) => Err(crate::Error::Unavailable(format!(
                "serving task failed: {error}"
            ))),
        }
    }
}

async fn routes(db: Database, stopping: watch::Receiver<bool>) -> tonic::service::Routes {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TimelineServiceServer<Service>>().await;
    let mut draining = stopping.clone();
    tokio::spawn(async move {
        if draining.wait_for(|stopping| *stopping).await.is_ok() {
            health
                .set_not_serving::<TimelineServiceServer<Service>>()
                .await;
        }
    });
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the compiled descriptors are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the compiled descriptors are valid");
    let timeline = TimelineServiceServer::new(Service::new(db, stopping))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(2 * crate::service::MAX_REQUEST_BYTES)
        .max_encoding_message_size(64 * 1024 * 1024);
    tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(timeline)
}

/// Reflection describes every service served: ours, health, and reflection
/// itself, so `buf curl` and grpcurl need no proto files for any of them.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
