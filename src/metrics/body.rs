//! The response body of a metered call: passes every frame through and
//! ends the call's record at its `grpc-status` trailer, or at an error of
//! the body; dropped before either, the call is recorded as CANCELLED.

use super::rpc::{status_code, Call};
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::{Code, Status};

pub(super) struct MeteredBody {
    inner: Body,
    /// The call, until its end is seen.
    call: Option<Call>,
}

impl MeteredBody {
    pub(super) fn new(inner: Body, call: Call) -> MeteredBody {
        MeteredBody {
            inner,
            call: Some(call),
        }
    }

    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    // Trailers without a grpc-status break the protocol;
                    // clients take them as UNKNOWN.
                    let code = status_code(trailers).unwrap_or(Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            // The end without trailers: no status was sent.
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
