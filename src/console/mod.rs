//! The console: a web page over the same data, served beside gRPC (by
//! default on the gRPC port itself, HTTP/1.1 and HTTP/2 on one listener).
//!
//! - `/` and its script and style, embedded in the binary (`assets`);
//! - `/api/annals.v1.TimelineService/METHOD`, the JSON gateway the page
//!   reads through (`gateway`);
//! - `/draw/timeline|graph|trend`, the pictures as SVG (`pictures`);
//! - `/metrics` and `/healthz` (`probes`).
//!
//! Everything the page shows comes from the gRPC service, called
//! in-process through the same access control, load shedding and metrics
//! as any client's call (`local`): there is no second query path.

mod assets;
mod gateway;
mod local;
mod pictures;
mod probes;

use crate::auth::Tokens;
use crate::engine::Database;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use std::sync::Arc;

pub use gateway::{MAX_JSON_BYTES, SERVICE};
pub use local::Local;
pub use pictures::bounds;

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    local: Local,
    db: Database,
    /// The server's tokens, for `/metrics`; the API's calls check their own.
    tokens: Option<Arc<Tokens>>,
}

impl FromRef<Console> for Local {
    fn from_ref(console: &Console) -> Local {
        console.local.clone()
    }
}

impl Console {
    /// The console over `grpc`, the server's gRPC routes.
    pub fn new(grpc: axum::Router, db: Database, tokens: Option<Arc<Tokens>>) -> Console {
        Console {
            local: Local::new(grpc),
            db,
            tokens,
        }
    }

    /// The console's routes, to serve beside the gRPC ones or alone.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/", get(assets::page))
            .route("/console.js", get(assets::script))
            .route("/console.css", get(assets::style))
            .route(&format!("/api/{SERVICE}/{{method}}"), post(gateway::call))
            .route("/draw/timeline", get(pictures::timeline))
            .route("/draw/graph", get(pictures::graph))
            .route("/draw/trend", get(pictures::trend))
            .route("/metrics", get(probes::metrics))
            .route("/healthz", get(probes::healthz))
            .layer(DefaultBodyLimit::max(MAX_JSON_BYTES + 1))
            .with_state(self)
    }
}
