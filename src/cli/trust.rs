//! `serve`'s flags for access control, TLS and limits.

use crate::server::{Config, ServerLimits};
use clap::Args;
use std::path::PathBuf;

/// `serve`'s flags for access control, TLS and limits.
#[derive(Args, Debug)]
pub struct TrustArgs {
    /// File of `TOKEN ROLE` lines (roles: reader, writer, admin); every
    /// TimelineService call then needs `authorization: Bearer TOKEN`.
    #[arg(long, env = "ANNALS_AUTH_TOKENS")]
    auth_tokens: Option<PathBuf>,
    /// Reflection needs a token too (health never does).
    #[arg(
        long,
        env = "ANNALS_REFLECTION_REQUIRES_AUTH",
        requires = "auth_tokens"
    )]
    reflection_requires_auth: bool,
    /// Serve a non-loopback --listen address without --auth-tokens.
    #[arg(long, env = "ANNALS_INSECURE")]
    insecure: bool,
    /// PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, env = "ANNALS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ANNALS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TimelineService calls worked on at once; more are refused at once
    /// with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "ANNALS_MAX_IN_FLIGHT",
        default_value_t = ServerLimits::default().max_in_flight as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    max_in_flight: u32,
    /// Seconds one call may take before DEADLINE_EXCEEDED.
    #[arg(
        long,
        env = "ANNALS_DEADLINE_SECS",
        default_value_t = ServerLimits::default().deadline.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    deadline_secs: u64,
    /// Subscribe streams open at once; one more gets RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "ANNALS_MAX_SUBSCRIBERS",
        default_value_t = ServerLimits::default().max_subscribers as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    max_subscribers: u32,
    /// WatchEntity and WatchRelations streams open at once; one more gets
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "ANNALS_MAX_WATCHES",
        default_value_t = ServerLimits::default().max_watches as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    max_watches: u32,
    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(
        long,
        env = "ANNALS_MAX_STREAMS_PER_CONNECTION",
        default_value_t = ServerLimits::default().max_streams_per_connection,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    max_streams_per_connection: u32,
}

impl TrustArgs {
    /// Reads the token file and TLS files into `config`; a malformed
    /// file stops `serve` before it opens the store.
    pub fn apply(self, mut config: Config) -> crate::Result<Config> {
        if let Some(path) = &self.auth_tokens {
            config.auth = Some(std::sync::Arc::new(crate::auth::Tokens::load(path)?));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(crate::tls::TlsIdentity::load(cert, key)?);
        }
        config.reflection_requires_auth = self.reflection_requires_auth;
        config.insecure = self.insecure;
        config.limits = ServerLimits {
            max_in_flight: self.max_in_flight as usize,
            deadline: std::time::Duration::from_secs(self.deadline_secs),
            max_subscribers: self.max_subscribers as usize,
            max_watches: self.max_watches as usize,
            max_streams_per_connection: self.max_streams_per_connection,
        };
        config.check_exposure()?;
        Ok(config)
    }
}
