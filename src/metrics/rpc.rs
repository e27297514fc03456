//! `Metered`: the tower wrapper that counts and times every
//! TimelineService call by method and final gRPC status.
//!
//! A call's status is known only at its end. tonic answers an error before
//! any message as a trailers-only response: the status is in the headers,
//! and the call is recorded when they come back. Otherwise the status is
//! the `grpc-status` trailer after the messages, and the response body is
//! wrapped (`body::MeteredBody`) to read it as it goes by; a body dropped
//! before its trailers (the client went away, a stream it cancelled) is
//! recorded as CANCELLED. The duration runs from the request to that end:
//! for a stream, the stream's whole life.

use super::body::MeteredBody;
use super::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::convert::Infallible;
use std::time::Instant;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::Code;

/// The methods of `annals.v1.TimelineService`: the only values the
/// `method` label takes, with `UNKNOWN_METHOD` for any other path (so a
/// client cannot grow the label set).
pub(super) const METHODS: [&str; 14] = [
    "Append",
    "GetEvent",
    "ReadLog",
    "Subscribe",
    "GetEntity",
    "ListEntities",
    "ListRelations",
    "RelationHistory",
    "AttributeHistory",
    "ListEvents",
    "Diff",
    "CountEvents",
    "WatchEntity",
    "WatchRelations",
];

/// The `method` of a call to a path that names no method of the service.
pub(super) const UNKNOWN_METHOD: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

type Durations = Family<RpcLabels, Histogram, fn() -> Histogram>;

/// The per-call metrics.
#[derive(Clone, Debug)]
pub(crate) struct RpcMetrics {
    calls: Family<RpcLabels, Counter>,
    durations: Durations,
}

impl RpcMetrics {
    pub(super) fn register(registry: &mut Registry) -> RpcMetrics {
        let metrics = RpcMetrics {
            calls: Family::default(),
            // 0.5 ms to 16 s; longer calls (streams) in +Inf.
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        };
        registry.register(
            "rpc_calls",
            "TimelineService calls ended, by method and final gRPC status code (calls refused by access control or load shedding included)",
            metrics.calls.clone(),
        );
        registry.register_with_unit(
            "rpc_duration",
            "Time from a TimelineService request to the end of the call, by method and final gRPC status code; for a streaming call (Subscribe, WatchEntity, WatchRelations) the stream's whole life",
            Unit::Seconds,
            metrics.durations.clone(),
        );
        metrics
    }

    fn record(&self, method: &'static str, code: Code, started: Instant) {
        let labels = RpcLabels {
            method,
            code: code_name(code),
        };
        self.calls.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

/// One call under way. Recorded once: with its status by `finish`, or as
/// CANCELLED when dropped before (its response or body abandoned).
pub(super) struct Call {
    rpc: RpcMetrics,
    method: &'static str,
    started: Instant,
    finished: bool,
}

impl Call {
    pub(super) fn finish(mut self, code: Code) {
        self.finished = true;
        self.rpc.record(self.method, code, self.started);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.rpc.record(self.method, Code::Cancelled, self.started);
        }
    }
}

/// A gRPC service whose calls are counted and timed (see the module doc).
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: Metrics) -> Metered<S> {
        Metered { inner, metrics }
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Metered<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>
        + NamedService,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call {
            rpc: self.metrics.rpc().clone(),
            method: method_of(S::NAME, request.uri().path()),
            started: Instant::now(),
            finished: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(watch_status(response, call))
        })
    }
}

/// Records a trailers-only response at once; wraps any other body so
/// that its trailer is read.
fn watch_status(response: http::Response<Body>, call: Call) -> http::Response<Body> {
    if let Some(code) = status_code(response.headers()) {
        call.finish(code);
        return response;
    }
    if http_body::Body::is_end_stream(response.body()) {
        // Neither a status nor a body: no gRPC answer at all.
        call.finish(Code::Unknown);
        return response;
    }
    response.map(|body| Body::new(MeteredBody::new(body, call)))
}

/// The code of a `grpc-status` header or trailer, if there is one.
pub(super) fn status_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The method a request's path names, if it is one of `service`'s.
fn method_of(service: &str, path: &str) -> &'static str {
    let method = path
        .strip_prefix('/')
        .and_then(|path| path.strip_prefix(service))
        .and_then(|path| path.strip_prefix('/'));
    method
        .and_then(|method| METHODS.iter().find(|known| **known == method))
        .copied()
        .unwrap_or(UNKNOWN_METHOD)
}

/// The canonical name of a gRPC status code, as grpc-go and grpcurl print
/// it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
