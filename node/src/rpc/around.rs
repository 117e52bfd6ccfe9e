//! One tower wrapper for the checks the APIs make around each gRPC call
//! (the in-flight limit, the credential check): a check is an [`Around`],
//! and [`Wrapped`] holds the service and does the tower part once.
//!
//! The tower part: `poll_ready` asks the inner service; `call` takes the
//! service that was made ready and leaves a clone in its place (tower's
//! rule for services whose calls outlive `&mut self`), then hands it to
//! the check, which calls it or answers without it.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;

/// The answer to one call.
pub type Answer = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

/// A gRPC service as a check sees it.
pub trait Grpc:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S> Grpc for S where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// What a wrapper does around one call of the service.
pub trait Around {
    /// Answers `request`, calling `inner` (ready) or not.
    fn around<S: Grpc>(&self, request: http::Request<Body>, inner: S) -> Answer;
}

/// A gRPC service with a check around each call.
#[derive(Clone)]
pub struct Wrapped<S, A> {
    inner: S,
    check: A,
}

impl<S, A> Wrapped<S, A> {
    pub fn with_check(inner: S, check: A) -> Self {
        Self { inner, check }
    }
}

impl<S: NamedService, A> NamedService for Wrapped<S, A> {
    const NAME: &'static str = S::NAME;
}

impl<S, A> tower::Service<http::Request<Body>> for Wrapped<S, A>
where
    S: Grpc + Clone,
    A: Around,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Answer {
        // The clone takes the place of the service that was made ready.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        self.check.around(request, ready)
    }
}
