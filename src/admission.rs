//! Keeping the server responsive under load: what a call must get past
//! before the TimelineService works on it, and what it gets when it does
//! not.
//!
//! - **Load shedding.** At most `max_in_flight` calls are worked on at
//!   once. The next one is answered RESOURCE_EXHAUSTED at once rather than
//!   queued: a queue would only add latency to every call behind it, and a
//!   client can back off and retry. A server-streaming call (Subscribe)
//!   counts until its stream starts; open streams have their own cap
//!   (`Service::with_max_subscribers`). The permits handed out are the
//!   `annals_rpc_in_flight` gauge, each call shed `annals_rpc_shed_total`.
//! - **A deadline.** A call that takes longer than `deadline` ends with
//!   DEADLINE_EXCEEDED (a client's own shorter `grpc-timeout` still wins).
//!   An Append whose deadline passes may still have been stored; re-sending
//!   it with the same ids is safe, as always.
//! - **Oversized messages.** tonic refuses a request larger than the
//!   decoding limit with OUT_OF_RANGE; annals answers RESOURCE_EXHAUSTED
//!   for an oversized request, whoever finds it, so that status is
//!   rewritten here.

use crate::metrics::Metrics;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// tonic's message for a request over its decoding limit.
const TOO_LARGE: &str = "Error, decoded message length too large: ";

/// A gRPC service behind a load-shedding concurrency limit and a deadline.
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    deadline: Duration,
    metrics: Metrics,
}

impl<S> Admission<S> {
    pub fn new(
        inner: S,
        max_in_flight: usize,
        deadline: Duration,
        metrics: Metrics,
    ) -> Admission<S> {
        let in_flight = Arc::new(Semaphore::new(max_in_flight));
        metrics.count_in_flight(&in_flight, max_in_flight);
        Admission {
            inner,
            in_flight,
            max_in_flight,
            deadline,
            metrics,
        }
    }
}

impl<S: NamedService> NamedService for Admission<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.metrics.shed();
            let status = Status::resource_exhausted(format!(
                "the server is at its limit of {} calls in flight; retry with backoff",
                self.max_in_flight
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let deadline = self.deadline;
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = match tokio::time::timeout(deadline, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => Status::deadline_exceeded(format!(
                    "the call took longer than the server's deadline of {deadline:?}"
                ))
                .into_http(),
            };
            drop(permit);
            Ok(oversized_as_exhausted(response))
        })
    }
}

/// Rewrites tonic's OUT_OF_RANGE for a too-large request into
/// RESOURCE_EXHAUSTED. The refusal comes before any response message, so
/// it is always in the headers (a trailers-only response).
fn oversized_as_exhausted(mut response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if status.code() != Code::OutOfRange {
        return response;
    }
    let Some(sizes) = status.message().strip_prefix(TOO_LARGE) else {
        return response;
    };
    let rewritten =
        Status::resource_exhausted(format!("the request message is too large: {sizes}"));
    if rewritten.add_header(response.headers_mut()).is_err() {
        return response;
    }
    response
}
