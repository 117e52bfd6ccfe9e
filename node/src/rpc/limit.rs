//! Overload protection: a bound on the requests a node works on at once,
//! and on the bytes of their bodies.
//!
//! A node that queues whatever arrives grows its memory and its latency
//! without bound under a load it cannot serve, until it is killed or every
//! request times out. Instead each gRPC service is wrapped in [`InFlight`]:
//!
//! 1. the request's body is read first, within `request_body_timeout_ms`
//!    and the service's message limit, each chunk taking its bytes from
//!    the API's byte budget (`max_bytes_in_flight_mb`); a body that does
//!    not arrive in time is answered `DEADLINE_EXCEEDED`, one over the
//!    limit `RESOURCE_EXHAUSTED`, and a budget spent `RESOURCE_EXHAUSTED`
//!    ("overloaded");
//! 2. only then does it take a permit from a semaphore shared by the
//!    services of one API, held until its response is ready; when none is
//!    left it is answered at once with `RESOURCE_EXHAUSTED`
//!    ("overloaded"), costing the node almost nothing.
//!
//! So a stranger who opens streams and never sends their bodies holds no
//! permit, only its own connection's streams (`max_requests_per_connection`)
//! and, for the body timeout, the bytes it did send. Clients back off and
//! retry; the coordinator counts a refusing replica as failed and keeps a
//! hint. Requests already accepted finish normally; a deadline (for the
//! client API's reads and writes) bounds how long one holds its permit.
//!
//! The HTTP endpoints (`/health`, `/metrics`) are a separate server and
//! are never refused.
//!
//! CAVEATS: every method of the services wrapped here takes a unary
//! request (one message), which is what makes reading it whole first
//! right; a client-streaming method would need its own wrapper.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

use super::around::{Answer, Around, Grpc, Wrapped};
use crate::metrics::REQUESTS_REFUSED;

/// What one API (client or internode) admits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Requests worked on at once (`max_requests_in_flight`).
    pub requests: usize,
    /// Bytes of request bodies held at once.
    pub bytes: usize,
    /// Longest wait for a request's body.
    pub body_timeout: Duration,
    /// Requests (HTTP/2 streams) of one gRPC connection. Not capped by
    /// `requests`: a connection that asks for more than the node's permits
    /// gets the excess refused at once, rather than queued in its own
    /// connection.
    pub per_connection: usize,
}

/// The bytes of a gRPC message's framing (compression flag and length).
const GRPC_FRAME_HEADER: usize = 5;

/// The permits of one API, shared by its services.
#[derive(Clone)]
pub struct InFlightLimit {
    permits: Arc<Semaphore>,
    limit: usize,
    /// Bytes of request bodies the API holds at once.
    bytes: Arc<Semaphore>,
    byte_limit: usize,
    /// Longest wait for a request's body.
    body_timeout: Duration,
    /// Which API, for the error and the metric (`client`, `internode`).
    api: &'static str,
    refused: metrics::Counter,
    /// Refusals since the node started, for `NodeStats`.
    refusals: Arc<AtomicU64>,
}

/// The default budget of request bytes of an API.
pub const DEFAULT_BYTES_IN_FLIGHT: usize = 256 << 20;
/// The default wait for a request's body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl InFlightLimit {
    /// At most `limit` requests of `api` at once (and the default byte
    /// budget and body timeout).
    pub fn new(api: &'static str, limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            bytes: Arc::new(Semaphore::new(DEFAULT_BYTES_IN_FLIGHT)),
            byte_limit: DEFAULT_BYTES_IN_FLIGHT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            api,
            refused: metrics::counter!(REQUESTS_REFUSED, "api" => api, "reason" => "overloaded"),
            refusals: Arc::default(),
        }
    }

    /// The limit of `api` as the configuration sets it.
    pub fn for_api(api: &'static str, limits: &ApiLimits) -> Self {
        Self::new(api, limits.requests).with_bodies(limits.bytes, limits.body_timeout)
    }

    /// At most `bytes` of request bodies held at once, and each body read
    /// within `body_timeout`.
    pub fn with_bodies(mut self, bytes: usize, body_timeout: Duration) -> Self {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        self.bytes = Arc::new(Semaphore::new(bytes));
        self.byte_limit = bytes;
        self.body_timeout = body_timeout;
        self
    }

    /// Wraps a service in this limit; its request bodies may be at most
    /// `max_message` bytes (the service's decoding limit).
    pub fn wrap<S>(&self, inner: S, max_message: usize) -> InFlight<S> {
        let check = Admit {
            limit: self.clone(),
            max_body: max_message.saturating_add(GRPC_FRAME_HEADER),
            deadline: None,
        };
        Wrapped::with_check(inner, check)
    }

    /// As [`InFlightLimit::wrap`]; a request not answered within
    /// `deadline` of its body's arrival is answered `DEADLINE_EXCEEDED`
    /// and gives its permit back.
    pub fn wrap_with_deadline<S>(
        &self,
        inner: S,
        max_message: usize,
        deadline: Duration,
    ) -> InFlight<S> {
        let check = Admit {
            limit: self.clone(),
            max_body: max_message.saturating_add(GRPC_FRAME_HEADER),
            deadline: Some(deadline),
        };
        Wrapped::with_check(inner, check)
    }

    /// Requests this limit admits at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn count_refusal(&self) {
        self.refused.increment(1);
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests refused since the node started.
    pub fn refused(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Requests being worked on now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Bytes of request bodies held now.
    pub fn bytes_in_flight(&self) -> usize {
        self.byte_limit - self.bytes.available_permits()
    }

    /// A permit for one request, or (counted as refused) why there is
    /// none. For front doors that are not gRPC services (the RESP port).
    pub fn try_acquire(&self) -> Result<OwnedSemaphorePermit, String> {
        self.try_acquire_many(1)
    }

    /// Permits for a request that makes `n` requests of its own (a
    /// multi-key command), or why there are none.
    pub fn try_acquire_many(&self, n: usize) -> Result<OwnedSemaphorePermit, String> {
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

    /// `n` bytes of the byte budget for a request body that is already
    /// in memory (a framed internode request), or why there are none.
    pub fn try_acquire_bytes(&self, n: usize) -> Result<Option<OwnedSemaphorePermit>, String> {
        if n == 0 {
            return Ok(None);
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match self.bytes.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(self.byte_refusal()),
        }
    }

    /// Counts a refusal and says why.
    pub fn refusal(&self) -> String {
        self.count_refusal();
        format!(
            "this node is working on {} {} requests, its limit (max_{}requests_in_flight); retry later or elsewhere",
            self.limit,
            self.api,
            self.prefix(),
        )
    }

    /// Counts a refusal for want of bytes and says why.
    fn byte_refusal(&self) -> String {
        self.count_refusal();
        format!(
            "this node holds {} MiB of {} request bodies, its limit (max_{}bytes_in_flight_mb); retry later or elsewhere",
            self.byte_limit >> 20,
            self.api,
            self.prefix(),
        )
    }

    fn prefix(&self) -> &'static str {
        if self.api == "internode" { "peer_" } else { "" }
    }

    fn overloaded(&self) -> Status {
        Status::resource_exhausted(format!("overloaded: {}", self.refusal()))
    }

    /// Step 1: reads a request's body whole, within the body timeout and
    /// `max_body`, taking its bytes from the budget as they arrive.
    async fn read_body(
        &self,
        mut body: Body,
        max_body: usize,
    ) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Status> {
        let read = async {
            let mut held: Option<OwnedSemaphorePermit> = None;
            let mut chunks: Vec<Bytes> = Vec::new();
            let mut len = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|status| {
                    Status::cancelled(format!("the request body failed: {}", status.message()))
                })?;
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: a unary request has none to keep
                };
                len = len.saturating_add(data.len());
                if len > max_body {
                    return Err(Status::resource_exhausted(format!(
                        "the request is over {max_body} bytes, this service's message limit"
                    )));
                }
                match self.try_acquire_bytes(data.len()) {
                    Ok(Some(permit)) => match held.as_mut() {
                        Some(held) => held.merge(permit),
                        None => held = Some(permit),
                    },
                    Ok(None) => {}
                    Err(why) => {
                        return Err(Status::resource_exhausted(format!("overloaded: {why}")));
                    }
                }
                chunks.push(data);
            }
            let bytes = match chunks.len() {
                0 => Bytes::new(),
                1 => chunks.pop().unwrap_or_default(),
                _ => {
                    let mut whole = BytesMut::with_capacity(len);
                    for chunk in chunks {
                        whole.extend_from_slice(&chunk);
                    }
                    whole.freeze()
                }
            };
            Ok((bytes, held))
        };
        match tokio::time::timeout(self.body_timeout, read).await {
            Ok(read) => read,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the request's body did not arrive within {:?} (request_body_timeout_ms)",
                self.body_timeout
            ))),
        }
    }
}

/// A gRPC service whose requests are read whole and then take a permit of
/// an [`InFlightLimit`].
pub type InFlight<S> = Wrapped<S, Admit>;

/// The check of [`InFlight`].
#[derive(Clone)]
pub struct Admit {
    limit: InFlightLimit,
    /// Largest body accepted: the service's message limit and framing.
    max_body: usize,
    deadline: Option<Duration>,
}

impl Around for Admit {
    fn around<S: Grpc>(&self, request: http::Request<Body>, mut inner: S) -> Answer {
        let (limit, max_body, deadline) = (self.limit.clone(), self.max_body, self.deadline);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (body, bytes) = match limit.read_body(body, max_body).await {
                Ok(read) => read,
                Err(status) => return Ok(status.into_http()),
            };
            // Step 2.
            let Ok(permit) = limit.permits.clone().try_acquire_owned() else {
                return Ok(limit.overloaded().into_http());
            };
            let body = Body::new(http_body_util::Full::new(body));
            let response = inner.call(http::Request::from_parts(parts, body));
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
            drop((permit, bytes));
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
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
        let p = |m: &str| peer_body_limit(&format!("/ringkv.internal.v2.Peer/{m}"));
        for method in [
            "Read",
            "ReadBatch",
            "Query",
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
        let service = limit.wrap(Gate(gate.clone()), 1024);
        let call = |mut service: InFlight<Gate>| async move {
            let response = service.ready().await.expect("ready").call(request(b"x"));
            response.await.expect("answered")
        };
        let first = tokio::spawn(call(service.clone()));
        let second = tokio::spawn(call(service.clone()));
        while limit.in_flight() < 2 {
            tokio::task::yield_now().await;
        }

        let refused = call(service.clone()).await;
        // RESOURCE_EXHAUSTED is gRPC code 8.
        assert_eq!(grpc_status(&refused).as_deref(), Some("8"));

        gate.add_permits(Semaphore::MAX_PERMITS / 2);
        let (a, b) = (first.await.expect("first"), second.await.expect("second"));
        assert!(grpc_status(&a).is_none());
        assert!(grpc_status(&b).is_none());
        assert_eq!(limit.in_flight(), 0, "permits are returned");
        assert_eq!(limit.bytes_in_flight(), 0, "bytes are returned");

        assert!(grpc_status(&call(service).await).is_none());
    }

    fn request(body: &'static [u8]) -> http::Request<Body> {
        http::Request::new(Body::new(http_body_util::Full::new(Bytes::from_static(
            body,
        ))))
    }

    /// A request whose body never comes (a stranger's stream with
    /// HEADERS only), and the sender that keeps it open.
    fn endless_request() -> (
        http::Request<Body>,
        tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, Status>>,
    ) {
        let (send, frames) = tokio::sync::mpsc::channel(1);
        let body =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frames));
        (http::Request::new(Body::new(body)), send)
    }

    /// Regression (hardening II, item 1): streams waiting for their body
    /// took every permit, so one connection stopped every client.
    #[tokio::test(start_paused = true)]
    async fn a_request_whose_body_never_comes_holds_no_permit_and_ends_at_the_body_timeout() {
        let gate = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS / 2));
        let limit = InFlightLimit::new("client", 1).with_bodies(1 << 20, Duration::from_secs(10));
        let mut service = limit.wrap(Gate(gate), 1024);
        let (stalled, _open) = endless_request();
        let stalled = tokio::spawn(service.ready().await.expect("ready").call(stalled));
        tokio::task::yield_now().await;
        assert_eq!(limit.in_flight(), 0, "no permit while the body is awaited");

        let served = service
            .ready()
            .await
            .expect("ready")
            .call(request(b"honest"))
            .await
            .expect("answered");
        assert!(
            grpc_status(&served).is_none(),
            "the node's one permit was free"
        );

        let started = tokio::time::Instant::now();
        let stalled = stalled.await.expect("task").expect("answered");
        // DEADLINE_EXCEEDED is gRPC code 4.
        assert_eq!(grpc_status(&stalled).as_deref(), Some("4"));
        assert!(started.elapsed() >= Duration::from_secs(9));
    }

    /// Regression (hardening II, item 9): bodies are counted against the
    /// byte budget as they arrive, and one over it is refused.
    #[tokio::test]
    async fn bodies_beyond_the_byte_budget_or_the_message_limit_are_refused() {
        let gate = Arc::new(Semaphore::new(0));
        let limit = InFlightLimit::new("internode", 8).with_bodies(10, Duration::from_secs(10));
        let service = limit.wrap(Gate(gate.clone()), 100);
        let call = |mut service: InFlight<Gate>, body: &'static [u8]| async move {
            let response = service.ready().await.expect("ready").call(request(body));
            response.await.expect("answered")
        };
        let held = tokio::spawn(call(service.clone(), b"12345678"));
        while limit.bytes_in_flight() < 8 {
            tokio::task::yield_now().await;
        }
        let refused = call(service.clone(), b"123").await;
        assert_eq!(
            grpc_status(&refused).as_deref(),
            Some("8"),
            "over the budget"
        );
        let small = tokio::spawn(call(service.clone(), b"12"));
        while limit.bytes_in_flight() < 10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        assert!(grpc_status(&held.await.expect("task")).is_none());
        assert!(grpc_status(&small.await.expect("task")).is_none());
        assert_eq!(limit.bytes_in_flight(), 0, "bytes are returned");

        let limit = InFlightLimit::new("client", 8);
        let over = call(limit.wrap(Gate(gate), 2), b"12345678").await;
        assert_eq!(
            grpc_status(&over).as_deref(),
            Some("8"),
            "over the message limit"
        );
        assert_eq!(limit.in_flight(), 0);
    }
}

/// Bodies of internode requests that carry only keys and ranges
/// (`Read`, `ReadBatch`, `Query`, `MerkleNodes`, `LeafDigests`, `StreamRange`):
/// a batch of 500 keys within 1 MiB, or one key of 64 KiB, and framing.
/// Held to this before decoding, so a request that would decode into
/// millions of small objects is cut off at the transport.
pub const KEYS_ONLY_BODY_BYTES: usize = 2 << 20;

/// The body limit of an internode method; `None`: the service's message
/// limit (requests that carry values).
pub fn peer_body_limit(path: &str) -> Option<usize> {
    match path.rsplit('/').next() {
        Some(
            "Read" | "ReadBatch" | "Query" | "MerkleNodes" | "LeafDigests" | "StreamRange"
            | "Clock" | "Samples",
        ) => Some(KEYS_ONLY_BODY_BYTES),
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
