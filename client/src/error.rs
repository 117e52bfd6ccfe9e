//! Errors of the client, typed so callers can react without parsing text.

use prost::Message;
use ringkv_proto::v1::{ErrorDetail, error_detail};
use tonic::Code;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is wrong (empty or oversize key, oversize value, ANY on a
    /// read...). Retrying cannot help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The coordinator knew of fewer live replicas than the level requires
    /// and sent nothing.
    #[error("unavailable: required {required} replicas, {alive} alive")]
    Unavailable {
        /// Replicas the level requires.
        required: u32,
        /// Replicas the coordinator knew to be alive.
        alive: u32,
    },
    /// Replicas did not answer the coordinator in time. A write's outcome is
    /// unknown: it may still be applied.
    #[error("timeout: required {required} replica responses, received {received}")]
    Timeout {
        /// Responses the level requires.
        required: u32,
        /// Responses received before the deadline.
        received: u32,
    },
    /// Too many replicas refused (unreachable or failing) for the level to
    /// be met. A write may still have been applied on the others.
    #[error("failed: {message}")]
    Failed {
        /// Responses the level requires.
        required: u32,
        /// Responses received.
        received: u32,
        /// The node's message, with why each replica refused (a full
        /// disk, say).
        message: String,
    },
    /// No credentials, an unknown user or a wrong password (nodes with
    /// authentication on).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The user's role does not allow the request.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The node is working on as many requests as it takes at once and
    /// refused this one without doing anything; retry later or elsewhere.
    #[error("{0}")]
    Overloaded(String),
    /// No answer from the node within the request timeout.
    #[error("no answer within the request timeout: {0}")]
    DeadlineExceeded(String),
    /// No node could be reached.
    #[error("cannot connect to {hosts}: {reason}")]
    Connect {
        /// The addresses tried.
        hosts: String,
        /// The last connection error.
        reason: String,
    },
    /// Any other failure reported by the node or the transport.
    #[error("{code:?}: {message}")]
    Rpc {
        /// The gRPC status code.
        code: Code,
        /// The node's message.
        message: String,
    },
}

impl Error {
    /// True when the same request may succeed if retried (against another
    /// replica, or later).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InvalidArgument(_) | Error::Unauthenticated(_) | Error::PermissionDenied(_) => {
                false
            }
            Error::Overloaded(_) => true,
            Error::Unavailable { .. }
            | Error::Timeout { .. }
            | Error::Failed { .. }
            | Error::DeadlineExceeded(_) => true,
            Error::Connect { .. } => true,
            Error::Rpc { code, .. } => {
                matches!(code, Code::Unavailable | Code::Unknown | Code::Aborted)
            }
        }
    }
}

/// Result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A status's message and the errors that caused it (a transport error's
/// cause says what broke).
fn with_causes(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let detail = ErrorDetail::decode(status.details())
            .ok()
            .and_then(|d| d.kind);
        match (status.code(), detail) {
            (_, Some(error_detail::Kind::Unavailable(count))) => Error::Unavailable {
                required: count.required,
                alive: count.actual,
            },
            (_, Some(error_detail::Kind::Timeout(count))) => Error::Timeout {
                required: count.required,
                received: count.actual,
            },
            (_, Some(error_detail::Kind::Failure(count))) => Error::Failed {
                required: count.required,
                received: count.actual,
                message: status.message().to_owned(),
            },
            (Code::InvalidArgument, None) => Error::InvalidArgument(status.message().to_owned()),
            (Code::Unauthenticated, None) => Error::Unauthenticated(status.message().to_owned()),
            (Code::PermissionDenied, None) => Error::PermissionDenied(status.message().to_owned()),
            (Code::ResourceExhausted, None) if status.message().starts_with("overloaded") => {
                Error::Overloaded(status.message().to_owned())
            }
            (Code::DeadlineExceeded | Code::Cancelled, None) => {
                Error::DeadlineExceeded(status.message().to_owned())
            }
            (code, None) => Error::Rpc {
                code,
                message: with_causes(&status),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_proto::v1::ReplicaCount;

    #[test]
    fn status_details_become_numbers() {
        let detail = ErrorDetail {
            kind: Some(error_detail::Kind::Timeout(ReplicaCount {
                required: 2,
                actual: 1,
            })),
        };
        let status = tonic::Status::with_details(
            Code::DeadlineExceeded,
            "replicas did not answer in time: required 2, received 1",
            detail.encode_to_vec().into(),
        );
        assert!(matches!(
            Error::from(status),
            Error::Timeout {
                required: 2,
                received: 1
            }
        ));
        let plain = Error::from(tonic::Status::invalid_argument("key is empty"));
        assert!(matches!(&plain, Error::InvalidArgument(m) if m == "key is empty"));
        assert!(!plain.is_retryable());
    }
}
