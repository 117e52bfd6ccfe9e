//! How an operation against a store under test failed, for the error
//! counts of a run.

/// What kind of failure an operation met, for error accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Too few replicas (ringkv UNAVAILABLE).
    Unavailable,
    /// No answer in time (client or coordinator deadline).
    Timeout,
    /// Refused at once by a node at its in-flight limit (ringkv
    /// RESOURCE_EXHAUSTED "overloaded").
    Overloaded,
    /// Anything else.
    Other,
}

/// A failed operation.
#[derive(Debug, Clone)]
pub struct DriverError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DriverError {
    pub(crate) fn other(error: impl std::fmt::Display) -> Self {
        DriverError {
            kind: ErrorKind::Other,
            message: error.to_string(),
        }
    }
}

impl From<ringkv_client::Error> for DriverError {
    fn from(error: ringkv_client::Error) -> Self {
        use ringkv_client::Error as E;
        let kind = match &error {
            E::Unavailable { .. } => ErrorKind::Unavailable,
            E::Timeout { .. } | E::DeadlineExceeded(_) => ErrorKind::Timeout,
            E::Overloaded(_) => ErrorKind::Overloaded,
            _ => ErrorKind::Other,
        };
        DriverError {
            kind,
            message: error.to_string(),
        }
    }
}
