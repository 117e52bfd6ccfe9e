//! The client API's gRPC services behind a credential check: a tower
//! layer that asks the [`Authenticator`] about each request's user and
//! the [`Permission`] its method needs (the check itself is `auth`'s).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::auth::{Authenticator, Caller, Permission, Refusal, basic_credentials, permission_for};
use crate::rpc::net::ConnectionInfo;

/// A gRPC service whose requests must carry the credentials of a user
/// whose role allows the method; with no authenticator, every request
/// passes (authentication off).
#[derive(Clone)]
pub struct RequireAuth<S> {
    inner: S,
    auth: Option<Arc<Authenticator>>,
}

impl<S> RequireAuth<S> {
    pub fn new(inner: S, auth: Option<Arc<Authenticator>>) -> Self {
        Self { inner, auth }
    }
}

impl<S: NamedService> NamedService for RequireAuth<S> {
    const NAME: &'static str = S::NAME;
}

/// Answers `status` to a request that is refused, after reading its body.
///
/// The body is read (and dropped) rather than left unread: HTTP/2 counts
/// the DATA frames of a stream answered before its body arrived as framing
/// overhead it never gets back, and after enough such refusals (an
/// overload, a client with a wrong password retrying) it closes the whole
/// connection as abusive (`ENHANCE_YOUR_CALM`, "too_many_data_frames"),
/// failing every request on it. The body is at most the service's message
/// limit, as for a request that is served.
///
/// A client that never ends its body is answered after
/// [`REFUSAL_BODY_WAIT`] all the same.
pub async fn refuse(request: http::Request<Body>, status: Status) -> http::Response<Body> {
    use http_body_util::BodyExt;
    let mut body = request.into_body();
    let drain = async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, drain).await;
    status.into_http()
}

/// Longest wait for the body of a request that is refused.
pub const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(2);

impl<S> tower::Service<http::Request<Body>> for RequireAuth<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
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

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let Some(auth) = self.auth.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // The clone takes the place of the service that was made ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let needed = permission_for(&path);
            let Some((user, password)) =
                basic_credentials(request.headers().get(http::header::AUTHORIZATION))
            else {
                let status = Status::unauthenticated(
                    "authentication is required: give a user name and password",
                );
                return Ok(refuse(request, status).await);
            };
            let source = request
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(|info| info.remote)
                .map(|addr| addr.ip());
            let role = match auth.authenticate(&user, &password, source).await {
                Ok(role) => role,
                Err(Refusal::Unauthenticated(why)) => {
                    return Ok(refuse(request, Status::unauthenticated(why)).await);
                }
                Err(Refusal::Unavailable(why)) => {
                    return Ok(refuse(request, Status::unavailable(why)).await);
                }
            };
            if !role.allows(needed) {
                let what = match needed {
                    Permission::Read => "read",
                    Permission::Write => "write",
                    Permission::Admin => "run cluster commands or manage users",
                };
                let status = Status::permission_denied(format!(
                    "user {user:?} has role {role}, which may not {what} ({})",
                    path.trim_start_matches('/')
                ));
                return Ok(refuse(request, status).await);
            }
            request.extensions_mut().insert(Caller { name: user, role });
            inner.call(request).await
        })
    }
}
