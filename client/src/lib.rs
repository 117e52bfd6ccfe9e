//! Async client for ringkv.
//!
//! ```no_run
//! # async fn demo() -> ringkv_client::Result<()> {
//! use ringkv_client::{Client, ClientConfig, Consistency, WriteOptions};
//! use std::time::Duration;
//!
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:7400"])).await?;
//! client.put("greeting", "hello").await?;
//! let options = WriteOptions::default()
//!     .consistency(Consistency::All)
//!     .ttl(Duration::from_secs(60));
//! client.put_with("session:1", "token", &options).await?;
//! if let Some(found) = client.get("greeting").await? {
//!     println!("{:?} written at {}", found.value, found.timestamp_micros);
//! }
//! client.delete("greeting").await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every request takes a consistency level (default QUORUM) and a timeout
//! (default 10 s). Requests go straight to a replica of their key
//! (token-aware routing); idempotent requests are retried on another node
//! with exponential backoff and jitter. Errors are typed ([`Error`]): an
//! invalid argument, too few live replicas (`Unavailable`, with the
//! numbers), replicas too slow (`Timeout`) or failing (`Failed`), or a
//! transport failure.

#![warn(missing_docs)]

mod admin;
mod batch;
pub mod cli;
mod client;
mod cluster;
mod connection;
mod consistency;
mod error;
mod options;
mod query;
mod retry;
mod routing;
mod stats;
mod tls;
mod trace;

pub use admin::NodeInfo;
pub use batch::{Batch, PartitionWrite};
pub use client::{Client, ClientConfig, Credentials, Value};
pub use cluster::{
    ChangeSummary, CleanupSummary, ClusterStatus, Endpoints, FailedRange, MemberInfo, RangeInfo,
    RepairProgress, RingInfo, StreamInfo, Streams,
};
pub use consistency::{Consistency, UnknownConsistency};
pub use error::{Error, Result};
pub use options::{ReadOptions, WriteOptions};
pub use query::{Page, Query, Row, RowCount};
pub use retry::Backoff;
pub use stats::{HintsPending, NodeStats, RepairState, StorageStats, WorkPool, Worker};
pub use tls::TlsOptions;
pub use trace::{RequestTrace, TraceCollector, TraceEvent};

/// Default port of the client API.
pub const DEFAULT_PORT: u16 = 7400;
