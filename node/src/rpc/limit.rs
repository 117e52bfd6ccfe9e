//! Overload protection: a bound on the requests a node works on at once.
//!
//! A node that queues whatever arrives grows its memory and its latency
//! without bound under a load it cannot serve, until it is killed or every
//! request times out. Instead each gRPC service is wrapped in [`InFlight`]:
//! a request takes a permit from a semaphore shared by the services of one
//! API, holds it until its response is ready, and when none is left it is
//! answered at once with `RESOURCE_EXHAUSTED` ("overloaded"), costing the
//! node almost nothing. Clients back off and retry; the coordinator counts
//! a refusing replica as failed and keeps a hint. Requests already
//! accepted finish normally; a deadline (for the client API's reads and
//! writes) keeps a client that never ends its request from holding a
//! permit forever.
//!
//! The HTTP endpoints (`/health`, `/metrics`) are a separate server and
//! are never refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::metrics::REQUESTS_REFUSED;

/// The permits of one API, shared by its services.
#[derive(Clone)]
pub struct InFlightLimit {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Which API, for the error and the metric (`client`, `internode`).
    api: &'static str,
    refused: metrics::Counter,
    /// Refusals since the node started, for `NodeStats`.
    refusals: Arc<std::sync::atomic::AtomicU64>,
}

impl InFlightLimit {
    /// At most `limit` requests of `api` at once.
    pub fn new(api: &'static str, limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            api,
            refused: metrics::counter!(REQUESTS_REFUSED, "api" => api, "reason" => "overloaded"),
            refusals: Arc::default(),
        }
    }

    /// Wraps a service in this limit.
    pub fn wrap<S>(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            limit: self.clone(),
            deadline: None,
        }
    }

    /// Wraps a service in this limit; a request not answered within
    /// `deadline` (a client that never ends its body, say) is answered
    /// `DEADLINE_EXCEEDED` and gives its permit back.
    pub fn wrap_with_deadline<S>(&self, inner: S, deadline: Duration) -> InFlight<S> {
        InFlight {
            inner,
            limit: self.clone(),
            deadline: Some(deadline),
        }
    }

    /// Requests this limit admits at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn count_refusal(&self) {
        self.refused.increment(1);
        self.refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests refused since the node started.
    pub fn refused(&self) -> u64 {
        self.refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests being worked on now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// A permit for one request, or (counted as refused) why there is
    /// none. For front doors that are not gRPC services (the RESP port).
    pub fn try_acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        self.try_acquire_many(1)
    }

    /// Permits for a request that makes `n` requests of its own (a
    /// multi-key command), or why there are none.
    pub fn try_acquire_many(&self, n: usize) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        if n > self.limit {
            self.count_refusal();
            return Err(format!(
                "one command of {n} keys is more than this node's {} {} requests at once (max_requests_in_flight); send fewer keys per command",
                self.limit, self.api
            ));
        }
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        self.permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| self.refusal())
    }

    /// Counts a refusal and says why.
    pub fn refusal(&self) -> String {
        self.count_refusal();
        format!(
            "this node is working on {} {} requests, its limit (max_{}requests_in_flight); retry later or elsewhere",
            self.limit,
            self.api,
            if self.api == "internode" { "peer_" } else { "" },
        )
    }

    fn overloaded(&self) -> Status {
        Status::resource_exhausted(format!("overloaded: {}", self.refusal()))
    }
}

/// A gRPC service whose requests take a permit of an [`InFlightLimit`].
#[derive(Clone)]
pub struct InFlight<S> {
    inner: S,
    limit: InFlightLimit,
    deadline: Option<Duration>,
}

impl<S: NamedService> NamedService for InFlight<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for InFlight<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.limit.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let response = self.inner.call(request);
                let deadline = self.deadline;
                Box::pin(async move {
                    let response = match deadline {
                        None => response.await,
                        Some(deadline) => match tokio::time::timeout(deadline, response).await {
                            Ok(response) => response,
                            Err(_) => Ok(Status::deadline_exceeded(format!(
                                "the request was not answered within {deadline:?}"
                            ))
                            .into_http()),
                        },
                    };
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                let status = self.limit.overloaded();
                Box::pin(async move { Ok(crate::auth::check::refuse(request, status).await) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    /// A service that answers once the test adds a permit.
    #[derive(Clone)]
    struct Gate(Arc<Semaphore>);

    impl tower::Service<http::Request<Body>> for Gate {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            let gate = self.0.clone();
            Box::pin(async move {
                let _open = gate.acquire().await;
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<String> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn only_requests_of_keys_and_ranges_are_held_to_the_small_body_limit() {
        let p = |m: &str| peer_body_limit(&format!("/ringkv.internal.v1.Peer/{m}"));
        for method in [
            "Read",
            "ReadBatch",
            "MerkleNodes",
            "LeafDigests",
            "StreamRange",
        ] {
            assert_eq!(p(method), Some(KEYS_ONLY_BODY_BYTES), "{method}");
        }
        assert_eq!(p("Write"), None);
        assert_eq!(p("WriteBatch"), None);
        // The largest legitimate batch of keys fits: 1 MiB of keys, or one
        // key of 64 KiB, plus framing.
        const { assert!(KEYS_ONLY_BODY_BYTES > (1 << 20) + 500 * 8 + 64 * 1024) };
    }

    #[tokio::test]
    async fn past_the_limit_requests_are_refused_at_once_and_permits_come_back() {
        let gate = Arc::new(Semaphore::new(0));
        let limit = InFlightLimit::new("client", 2);
        let mut service = limit.wrap(Gate(gate.clone()));
        let request = || http::Request::new(Body::empty());
        let first = service.ready().await.expect("ready").call(request());
        let second = service.ready().await.expect("ready").call(request());
        assert_eq!(limit.in_flight(), 2);

        let refused = service
            .ready()
            .await
            .expect("ready")
            .call(request())
            .await
            .expect("answered");
        // RESOURCE_EXHAUSTED is gRPC code 8.
        assert_eq!(grpc_status(&refused).as_deref(), Some("8"));

        gate.add_permits(Semaphore::MAX_PERMITS / 2);
        let (a, b) = (first.await, second.await);
        assert!(grpc_status(&a.expect("first")).is_none());
        assert!(grpc_status(&b.expect("second")).is_none());
        assert_eq!(limit.in_flight(), 0, "permits are returned");

        let again = service.ready().await.expect("ready").call(request());
        assert!(grpc_status(&again.await.expect("served")).is_none());
    }
}

/// Bodies of internode requests that carry only keys and ranges
/// (`Read`, `ReadBatch`, `MerkleNodes`, `LeafDigests`, `StreamRange`):
/// a batch of 500 keys within 1 MiB, or one key of 64 KiB, and framing.
/// Held to this before decoding, so a request that would decode into
/// millions of small objects is cut off at the transport.
pub const KEYS_ONLY_BODY_BYTES: usize = 2 << 20;

/// The body limit of an internode method; `None`: the service's message
/// limit (requests that carry values).
pub fn peer_body_limit(path: &str) -> Option<usize> {
    match path.rsplit('/').next() {
        Some("Read" | "ReadBatch" | "MerkleNodes" | "LeafDigests" | "StreamRange") => {
            Some(KEYS_ONLY_BODY_BYTES)
        }
        _ => None,
    }
}

/// A gRPC service whose request bodies are held to a byte limit per method
/// before they are decoded.
#[derive(Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit_for: fn(&str) -> Option<usize>,
}

impl<S> BodyLimit<S> {
    pub fn new(inner: S, limit_for: fn(&str) -> Option<usize>) -> Self {
        Self { inner, limit_for }
    }
}

impl<S: NamedService> NamedService for BodyLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for BodyLimit<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match (self.limit_for)(request.uri().path()) {
            None => self.inner.call(request),
            Some(limit) => {
                use http_body_util::BodyExt;
                let (parts, body) = request.into_parts();
                let method = parts
                    .uri
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let body = http_body_util::Limited::new(body, limit).map_err(move |_| {
                    Status::invalid_argument(format!(
                        "{method} request over {limit} bytes (requests of keys and ranges only)"
                    ))
                });
                self.inner
                    .call(http::Request::from_parts(parts, Body::new(body)))
            }
        }
    }
}
