//! annals: an event-sourced timeline database with a gRPC API.
//!
//! Layers, top to bottom: `service` (tonic handlers: validate, call, convert)
//! → `engine` (the database handle and its single writer) → `query` over
//! `index` (pure point-in-time folds) → `store` (the log on sled, behind a
//! trait). `time` owns valid-time parsing; `model` the validated domain
//! types. `client` is the typed client the CLI uses, for other services too;
//! `import` takes coded event data (GDELT, ICEWS) in through it.
//! `metrics` counts what the server and the writer do, per `Database`, and
//! renders it as OpenMetrics text.

pub mod admission;
pub mod auth;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod console;
pub mod draw;
pub mod engine;
pub mod error;
pub mod import;
pub mod index;
pub mod json;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod page;
pub mod query;
pub mod seed;
pub mod server;
pub mod service;
pub mod store;
pub mod time;
pub mod tls;
pub mod wire;

/// The wire types and the generated tonic client and server.
pub mod proto {
    tonic::include_proto!("annals.v1");

    /// Hand-written, with the generated messages' shape (see `wire`).
    pub use crate::wire::{ListEventsResponse, ListRelationsResponse};

    /// The compiled descriptors of the API (for reflection and JSON).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/annals_descriptor.bin"));
}

pub use error::{Error, Result};
