//! Domain errors → gRPC statuses. The only place that knows both.
//!
//! `Unavailable` and `Timeout` carry their numbers twice: in the message
//! for people ("required 2, alive 1") and as an `ErrorDetail` in the status
//! details for programs.

use prost::Message;
use ringkv_proto::v1::{ErrorDetail, ReplicaCount, error_detail};
use tonic::{Code, Status};

use crate::coordinator::CoordinatorError;
use crate::peer::ReplicaError;
use crate::storage::StorageError;
use crate::streaming::TopologyError;

fn count(required: usize, actual: usize) -> ReplicaCount {
    ReplicaCount {
        required: u32::try_from(required).unwrap_or(u32::MAX),
        actual: u32::try_from(actual).unwrap_or(u32::MAX),
    }
}

fn with_detail(code: Code, message: String, kind: error_detail::Kind) -> Status {
    let detail = ErrorDetail { kind: Some(kind) };
    Status::with_details(code, message, detail.encode_to_vec().into())
}

/// The status a client gets for a coordinator error.
pub fn from_coordinator(error: CoordinatorError) -> Status {
    let message = error.to_string();
    match error {
        CoordinatorError::InvalidArgument(_) => Status::invalid_argument(message),
        CoordinatorError::Unavailable { required, alive } => with_detail(
            Code::Unavailable,
            message,
            error_detail::Kind::Unavailable(count(required, alive)),
        ),
        CoordinatorError::Timeout { required, received } => with_detail(
            Code::DeadlineExceeded,
            message,
            error_detail::Kind::Timeout(count(required, received)),
        ),
        CoordinatorError::Failed {
            required, received, ..
        } => with_detail(
            Code::Aborted,
            message,
            error_detail::Kind::Failure(count(required, received)),
        ),
        CoordinatorError::NotStored { .. } => with_detail(
            Code::Unavailable,
            message,
            error_detail::Kind::Unavailable(count(1, 0)),
        ),
        // Without a detail: the client library moves to another node.
        CoordinatorError::ClockOffset(_) => Status::unavailable(message),
        CoordinatorError::Storage(error) => from_storage(error),
    }
}

/// The status for a refused or failed topology change.
pub fn from_topology(error: TopologyError) -> Status {
    let message = error.to_string();
    match error {
        TopologyError::InProgress(_)
        | TopologyError::TooFewNodes { .. }
        | TopologyError::NodeAlive { .. }
        | TopologyError::Refused(_) => Status::failed_precondition(message),
        TopologyError::UnknownNode(_) => Status::not_found(message),
        TopologyError::NoAgreement { .. }
        | TopologyError::Source(_)
        | TopologyError::Stream { .. } => Status::unavailable(message),
        TopologyError::Storage(error) => from_storage(error),
    }
}

/// How a failed internode call counts for the coordinator.
pub(crate) fn replica_error(status: &tonic::Status) -> ReplicaError {
    match status.code() {
        Code::Unavailable => ReplicaError::Unreachable(status.message().to_owned()),
        Code::DeadlineExceeded | Code::Cancelled => ReplicaError::Timeout,
        Code::InvalidArgument | Code::FailedPrecondition => {
            ReplicaError::Refused(status.message().to_owned())
        }
        _ => ReplicaError::Failed(status.message().to_owned()),
    }
}

/// The status for a local storage failure.
pub fn from_storage(error: StorageError) -> Status {
    match error {
        StorageError::ShuttingDown => Status::unavailable(error.to_string()),
        // Logged once when the disk starts refusing writes, not per request.
        StorageError::Unwritable { .. } => Status::unavailable(error.to_string()),
        StorageError::Refused(_) => Status::failed_precondition(error.to_string()),
        other => {
            tracing::error!(error = %other, "storage failure");
            Status::internal(format!("storage error: {other}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_carries_numbers() {
        let status = from_coordinator(CoordinatorError::Unavailable {
            required: 2,
            alive: 1,
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("required 2, alive 1"));
        let detail = ErrorDetail::decode(status.details()).expect("detail");
        assert_eq!(
            detail.kind,
            Some(error_detail::Kind::Unavailable(ReplicaCount {
                required: 2,
                actual: 1
            }))
        );
    }

    #[test]
    fn timeout_is_deadline_exceeded() {
        let status = from_coordinator(CoordinatorError::Timeout {
            required: 2,
            received: 1,
        });
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("required 2, received 1"));
    }
}
