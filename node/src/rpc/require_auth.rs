//! The client API's gRPC services behind a credential check: a tower
//! layer that asks the [`Authenticator`] about each request's user and
//! the [`Permission`] its method needs (the check itself is `auth`'s).

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use tonic::body::Body;

use crate::auth::{Authenticator, Caller, Permission, Refusal, basic_credentials, permission_for};

use super::around::{Answer, Around, Grpc, Wrapped};
use crate::rpc::net::ConnectionInfo;

/// A gRPC service whose requests must carry the credentials of a user
/// whose role allows the method; with no authenticator, every request
/// passes (authentication off).
pub type RequireAuth<S> = Wrapped<S, Credentials>;

/// The check of [`RequireAuth`].
#[derive(Clone)]
pub struct Credentials {
    auth: Option<Arc<Authenticator>>,
}

impl<S> RequireAuth<S> {
    pub fn new(inner: S, auth: Option<Arc<Authenticator>>) -> Self {
        Wrapped::with_check(inner, Credentials { auth })
    }
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

impl Around for Credentials {
    fn around<S: Grpc>(&self, mut request: http::Request<Body>, mut inner: S) -> Answer {
        let Some(auth) = self.auth.clone() else {
            return Box::pin(inner.call(request));
        };
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
