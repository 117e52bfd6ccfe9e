//! Node configuration: every setting, its default and its meaning.
//!
//! `deploy/ringkv.example.toml` is the commented example; a test keeps it
//! in step with the list below.

#[macro_use]
mod define;
mod load;
mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::rpc::limit::ApiLimits;
pub use load::{ConfigError, NodeArgs, load};
pub use settings::Ports;

use crate::storage::gc::DEFAULT_GC_GRACE_SECONDS;
pub use crate::storage::{DiskFailurePolicy, SyncMode};

/// Default client API port (gRPC `ringkv.v1`).
pub const DEFAULT_CLIENT_PORT: u16 = 7400;
/// Default internode API port (gRPC `ringkv.internal.v2`).
pub const DEFAULT_PEER_PORT: u16 = 7401;
/// Default gossip port (UDP).
pub const DEFAULT_GOSSIP_PORT: u16 = 7402;
/// Default RESP port (the Redis protocol).
pub const DEFAULT_RESP_PORT: u16 = 7479;
/// Default HTTP port (`/metrics`, `/health`).
pub const DEFAULT_HTTP_PORT: u16 = 7480;
pub use crate::coordinator::MAX_KEY_SIZE;
/// The longest `gossip_dead_node_grace_ms`: a year.
pub const MAX_DEAD_NODE_GRACE_MS: u64 = 365 * 24 * 3_600_000;
/// Ceiling for `max_value_size`: gRPC messages beyond this are unwieldy.
pub const MAX_VALUE_SIZE_CEILING: u64 = 512 << 20;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event, for log shippers.
    Json,
}

/// How a node calls replica writes and reads on its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InternodeProtocol {
    /// Length-prefixed protobuf frames, many calls multiplexed on one
    /// connection per peer, with every peer that gossips it serves them;
    /// gRPC with the others.
    Framed,
    /// gRPC (HTTP/2) for every call.
    Grpc,
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

define_config! {
    /// Name shown by cluster commands. Empty: `node-` and the first eight
    /// characters of the node id.
    node_name: String = String::new(), "RINGKV_NODE_NAME";

    /// Directory holding the node's RocksDB database and identity. A node
    /// restarted on the same directory keeps its id and data.
    data_dir: PathBuf = PathBuf::from("ringkv-data"), "RINGKV_DATA_DIR";

    /// Address of the client API (gRPC services `ringkv.v1.KeyValue` and
    /// `ringkv.v1.Admin`).
    listen_client: SocketAddr = localhost(DEFAULT_CLIENT_PORT), "RINGKV_LISTEN_CLIENT";

    /// Address of the internode API (gRPC `ringkv.internal.v2.Peer`).
    listen_peer: SocketAddr = localhost(DEFAULT_PEER_PORT), "RINGKV_LISTEN_PEER";

    /// Address for gossip (UDP).
    listen_gossip: SocketAddr = localhost(DEFAULT_GOSSIP_PORT), "RINGKV_LISTEN_GOSSIP";

    /// Address of the RESP port: the Redis protocol, for `redis-cli`,
    /// `redis-benchmark` and Redis client libraries (see `resp_enabled`).
    listen_resp: SocketAddr = localhost(DEFAULT_RESP_PORT), "RINGKV_LISTEN_RESP";

    /// Serve the RESP port. With `client_tls` it speaks TLS too, and with
    /// `authentication` connections must `AUTH` first.
    resp_enabled: bool = true, "RINGKV_RESP_ENABLED", arg(num_args = 0..=1, default_missing_value = "true");

    /// RESP connections at once (Redis's `maxclients`); past it a new
    /// connection is answered "max number of clients reached" and closed.
    resp_max_clients: u64 = 1024, "RINGKV_RESP_MAX_CLIENTS";

    /// Address of the HTTP endpoints `/metrics` (Prometheus) and `/health`.
    listen_http: SocketAddr = localhost(DEFAULT_HTTP_PORT), "RINGKV_LISTEN_HTTP";

    /// IP address or host name other nodes and clients use to reach this
    /// node (with the listen ports). Empty: the listen addresses' IP; must
    /// be set when listening on all interfaces (0.0.0.0).
    broadcast_address: String = String::new(), "RINGKV_BROADCAST_ADDRESS";

    /// Gossip addresses (`host:port`) of seed nodes, comma-separated on the
    /// command line. A new node learns the cluster from them. Empty: this
    /// node starts a cluster of its own.
    seeds: Vec<String> = Vec::new(), "RINGKV_SEEDS", arg(value_delimiter = ',');

    /// Name of the cluster; nodes only gossip with nodes of the same name.
    cluster_name: String = "ringkv".to_owned(), "RINGKV_CLUSTER_NAME";

    /// Secret that authenticates gossip: every gossip datagram carries an
    /// HMAC-SHA256 keyed by it, and datagrams without a valid one are
    /// dropped (counted in `ringkv_gossip_dropped_total`). The same on every
    /// node; at least 16 bytes. Empty: gossip is not authenticated. Prefer
    /// `gossip_secret_file` (or the environment) over the command line.
    gossip_secret: String = String::new(), "RINGKV_GOSSIP_SECRET";

    /// A file whose contents (trailing newline removed) are the gossip
    /// secret. Empty: none.
    gossip_secret_file: PathBuf = PathBuf::new(), "RINGKV_GOSSIP_SECRET_FILE";

    /// Mutual TLS on the internode API: nodes present `tls_cert_file` and
    /// accept only peers whose certificate the cluster CA (`tls_ca_file`)
    /// signed. The same on every node.
    internode_tls: bool = false, "RINGKV_INTERNODE_TLS", arg(num_args = 0..=1, default_missing_value = "true");

    /// TLS on the client API, with `tls_cert_file` as the server
    /// certificate.
    client_tls: bool = false, "RINGKV_CLIENT_TLS", arg(num_args = 0..=1, default_missing_value = "true");

    /// With `client_tls`: clients must present a certificate the cluster CA
    /// signed.
    client_tls_require_cert: bool = false, "RINGKV_CLIENT_TLS_REQUIRE_CERT", arg(num_args = 0..=1, default_missing_value = "true");

    /// This node's certificate (PEM, with its chain), for internode and
    /// client TLS.
    tls_cert_file: PathBuf = PathBuf::new(), "RINGKV_TLS_CERT_FILE";

    /// The private key of `tls_cert_file` (PEM).
    tls_key_file: PathBuf = PathBuf::new(), "RINGKV_TLS_KEY_FILE";

    /// The cluster CA certificate (PEM) that signs node (and client)
    /// certificates.
    tls_ca_file: PathBuf = PathBuf::new(), "RINGKV_TLS_CA_FILE";

    /// The name every node certificate carries and peers check (nodes call
    /// each other by IP address, which certificates need not list).
    internode_tls_server_name: String = "ringkv-node".to_owned(), "RINGKV_INTERNODE_TLS_SERVER_NAME";

    /// Client requests must carry the user name and password of a user
    /// whose role allows them (see `ringkv user`). The same on every node.
    authentication: bool = false, "RINGKV_AUTHENTICATION", arg(num_args = 0..=1, default_missing_value = "true");

    /// With `authentication`: the password of the first admin. A node
    /// started with it creates the user `admin` with this password when no
    /// user `admin` exists. Prefer `auth_admin_password_file` or the
    /// environment to the command line.
    auth_admin_password: String = String::new(), "RINGKV_AUTH_ADMIN_PASSWORD";

    /// A file holding `auth_admin_password` (trailing newline removed).
    auth_admin_password_file: PathBuf = PathBuf::new(), "RINGKV_AUTH_ADMIN_PASSWORD_FILE";

    /// How long a verified password is remembered (milliseconds): a changed
    /// password or role takes effect on every node within this long.
    auth_cache_ms: u64 = 5_000, "RINGKV_AUTH_CACHE_MS";

    /// Failed logins allowed at once per source address and per user name
    /// before further attempts are refused unchecked ("too many failed
    /// logins ..."); then one more per `auth_failure_refill_ms`. A login
    /// that succeeds costs nothing.
    auth_max_failures: u32 = 10, "RINGKV_AUTH_MAX_FAILURES";

    /// How long a source address or user name waits for one more failed
    /// login once it used its `auth_max_failures` (milliseconds).
    auth_failure_refill_ms: u64 = 1_000, "RINGKV_AUTH_FAILURE_REFILL_MS";

    /// Rack of this node. Replicas of a key go to different racks first.
    rack: String = "rack1".to_owned(), "RINGKV_RACK";

    /// Replicas per key (N), the same on every node of a cluster.
    replication_factor: u32 = 3, "RINGKV_REPLICATION_FACTOR";

    /// Tokens (virtual nodes) this node takes on the ring when it first
    /// joins. Later changes have no effect: a node keeps its tokens.
    num_tokens: u32 = 16, "RINGKV_NUM_TOKENS";

    /// Interval between gossip rounds (milliseconds).
    gossip_interval_ms: u64 = 500, "RINGKV_GOSSIP_INTERVAL_MS";

    /// Suspicion level (phi) above which the failure detector marks a node
    /// down. Lower detects faster and errs more often.
    phi_convict_threshold: f64 = 8.0, "RINGKV_PHI_CONVICT_THRESHOLD";

    /// How long gossip keeps the state of a node it has marked down
    /// (milliseconds); for the second half of it the state is no longer
    /// sent to others. The ring does not depend on it: live nodes remember
    /// a dead member and gossip it on for nodes that never heard of it.
    gossip_dead_node_grace_ms: u64 = 3_600_000, "RINGKV_GOSSIP_DEAD_NODE_GRACE_MS";

    /// On its first start, how long a seed waits to hear from other nodes
    /// before it starts a cluster alone (milliseconds).
    ring_delay_ms: u64 = 2_000, "RINGKV_RING_DELAY_MS";

    /// On its first start, how long a node waits to reach a seed, or for
    /// nodes joining at the same time to finish, before giving up
    /// (milliseconds).
    join_timeout_ms: u64 = 60_000, "RINGKV_JOIN_TIMEOUT_MS";

    /// Streaming speed of one range stream of a topology change (join,
    /// replace, decommission, removenode), in MiB per second; 0: no limit.
    stream_throughput_mb: u64 = 64, "RINGKV_STREAM_THROUGHPUT_MB";

    /// A joining node may stream a range from a replica other than the one
    /// giving it up when that one is down. A write acknowledged by a quorum
    /// may then be missing from the new replica until a repair.
    allow_inconsistent_source: bool = false, "RINGKV_ALLOW_INCONSISTENT_SOURCE", arg(num_args = 0..=1, default_missing_value = "true");

    /// On its first start, take the place (tokens and ranges) of this dead
    /// node (its id, from `ringkv status`), streaming its data from the
    /// surviving replicas. Empty: join as a new node.
    replace: String = String::new(), "RINGKV_REPLACE";

    /// How long a coordinator waits for replicas to acknowledge a write
    /// before answering DEADLINE_EXCEEDED (milliseconds).
    write_timeout_ms: u64 = 2_000, "RINGKV_WRITE_TIMEOUT_MS";

    /// How long a coordinator waits for replicas to answer a read
    /// (milliseconds).
    read_timeout_ms: u64 = 5_000, "RINGKV_READ_TIMEOUT_MS";

    /// Deadline of every request one node sends another: hint replay,
    /// repair and streaming batches, Merkle comparisons (milliseconds). A
    /// paused or black-holed peer fails them after this long, and the
    /// connection that carried them, if nothing at all came back on it,
    /// is closed (HTTP/2 keepalive pings do the same for gRPC).
    internode_timeout_ms: u64 = 30_000, "RINGKV_INTERNODE_TIMEOUT_MS";

    /// How this node calls replica writes and reads on its peers: `framed`
    /// (length-prefixed protobuf frames multiplexed on one connection per
    /// peer, with every peer that gossips it serves them: a fraction of
    /// gRPC's CPU per call) or `grpc`. Batches, Merkle comparisons and
    /// range streaming use gRPC either way; the peer port serves both.
    internode_protocol: InternodeProtocol = InternodeProtocol::Framed, "RINGKV_INTERNODE_PROTOCOL";

    /// Largest value accepted, in bytes (default 16 MiB, at most 512 MiB).
    max_value_size: u64 = 16 << 20, "RINGKV_MAX_VALUE_SIZE";

    /// A partition past this size (MiB) is large: writes to it are counted
    /// in `ringkv_large_partition_writes_total` and logged (once a minute),
    /// as Cassandra's large-partition warning. 0 turns the warning off.
    partition_size_warn_mb: u64 = 100, "RINGKV_PARTITION_SIZE_WARN_MB";

    /// Past this size (MiB), writes that put rows into a partition are
    /// refused (deletes still go through). Sizes are RocksDB's estimates
    /// from its table files. 0 (the default): no limit.
    partition_size_max_mb: u64 = 0, "RINGKV_PARTITION_SIZE_MAX_MB";

    /// How far ahead of this node's clock a timestamp from a client or a
    /// peer may be (milliseconds); a write stamped further ahead is refused
    /// with INVALID_ARGUMENT, since it could never be overwritten. 0 turns
    /// the check off.
    max_clock_skew_ms: u64 = 60_000, "RINGKV_MAX_CLOCK_SKEW_MS";

    /// How far this node's clock may be from the majority of its peers'
    /// (milliseconds). Each node reads its live peers' clocks every 2 s;
    /// one further than this from more than half of the clocks it measured
    /// (its own included) refuses to coordinate writes (UNAVAILABLE,
    /// "clock offset: ..."), since the writes it stamped would undo or be
    /// undone by others'. 0 turns the refusal off (offsets are still
    /// exported in `ringkv_clock_offset_seconds`).
    max_clock_offset_ms: u64 = 500, "RINGKV_MAX_CLOCK_OFFSET_MS";

    /// Client API requests (gRPC) this node works on at once; more are
    /// refused at once with RESOURCE_EXHAUSTED ("overloaded"), never queued.
    max_requests_in_flight: u64 = 1024, "RINGKV_MAX_REQUESTS_IN_FLIGHT";

    /// Internode requests this node works on at once; more are refused at
    /// once with RESOURCE_EXHAUSTED (the coordinator counts the replica as
    /// failed and stores a hint).
    max_peer_requests_in_flight: u64 = 4096, "RINGKV_MAX_PEER_REQUESTS_IN_FLIGHT";

    /// Requests one connection to the client API (or the internode API's
    /// gRPC side) may have open at once (its HTTP/2 streams): one
    /// connection's share of the node (a quarter of the default
    /// `max_requests_in_flight`). A client with more waits for a stream of
    /// its own connection.
    max_requests_per_connection: u64 = 256, "RINGKV_MAX_REQUESTS_PER_CONNECTION";

    /// How long a request's body may take to arrive after its headers
    /// (milliseconds). A request takes its `max_requests_in_flight` permit
    /// only once its body is in; one whose body does not arrive in time is
    /// answered DEADLINE_EXCEEDED and its stream closed.
    request_body_timeout_ms: u64 = 10_000, "RINGKV_REQUEST_BODY_TIMEOUT_MS";

    /// Bytes of client request bodies the node holds at once (MiB), from
    /// their arrival until they are answered; a request past it is refused
    /// with RESOURCE_EXHAUSTED ("overloaded").
    max_bytes_in_flight_mb: u64 = 256, "RINGKV_MAX_BYTES_IN_FLIGHT_MB";

    /// The same for internode requests, both protocols (MiB).
    max_peer_bytes_in_flight_mb: u64 = 256, "RINGKV_MAX_PEER_BYTES_IN_FLIGHT_MB";

    /// Connections the client API (gRPC) keeps open at once; past it a new
    /// connection is closed at once (counted in
    /// `ringkv_connections_refused_total{port="client"}`).
    max_client_connections: u64 = 1024, "RINGKV_MAX_CLIENT_CONNECTIONS";

    /// Connections the internode port keeps open at once (both protocols).
    max_peer_connections: u64 = 1024, "RINGKV_MAX_PEER_CONNECTIONS";

    /// Connections the HTTP port (console, `/metrics`, `/health`) keeps
    /// open at once.
    max_http_connections: u64 = 64, "RINGKV_MAX_HTTP_CONNECTIONS";

    /// A client, internode or HTTP connection on which nothing arrives for
    /// this long is closed (milliseconds). The gRPC ports ping their
    /// clients every third of it, so only a dead or stalled peer falls
    /// silent; an idle HTTP/1 connection is closed after it.
    connection_idle_timeout_ms: u64 = 60_000, "RINGKV_CONNECTION_IDLE_TIMEOUT_MS";

    /// Longest TLS handshake on the client, internode and RESP ports
    /// (milliseconds); a connection still handshaking after it is closed.
    tls_handshake_timeout_ms: u64 = 10_000, "RINGKV_TLS_HANDSHAKE_TIMEOUT_MS";

    /// Seconds a tombstone (or an expired value) is kept before compaction
    /// may drop it. Every replica must be repaired within this window or a
    /// delete may come back. Default 10 days.
    gc_grace_seconds: u64 = DEFAULT_GC_GRACE_SECONDS, "RINGKV_GC_GRACE_SECONDS";

    /// When the write-ahead log is fsynced: `always` (before each ack),
    /// `group` (a shared fsync per short window, before the ack) or
    /// `periodic` (every `commitlog_sync_period_ms`, after the ack).
    commitlog_sync: SyncMode = SyncMode::Periodic, "RINGKV_COMMITLOG_SYNC";

    /// Period of the WAL fsync in `periodic` mode (milliseconds).
    commitlog_sync_period_ms: u64 = 1_000, "RINGKV_COMMITLOG_SYNC_PERIOD_MS";

    /// In `group` mode, how long the first waiting write holds the fsync
    /// open for others to join (milliseconds).
    commitlog_sync_group_window_ms: u64 = 2, "RINGKV_COMMITLOG_SYNC_GROUP_WINDOW_MS";

    /// What a local write failing with an I/O error (a full disk, a failing
    /// device) does: `best_effort` keeps serving reads, refuses writes with
    /// an error naming the cause, and resumes writes by itself once the
    /// disk accepts them again; `stop` shuts the node down.
    disk_failure_policy: DiskFailurePolicy = DiskFailurePolicy::BestEffort, "RINGKV_DISK_FAILURE_POLICY";

    /// Store hints for replicas that are down or do not answer a write, and
    /// replay them when the replica is back.
    hinted_handoff_enabled: bool = true, "RINGKV_HINTED_HANDOFF_ENABLED";

    /// Hints older than this are dropped, never to be replayed
    /// (milliseconds; default 3 hours; never more than `gc_grace_seconds`).
    max_hint_window_ms: u64 = 3 * 3600 * 1000, "RINGKV_MAX_HINT_WINDOW_MS";

    /// Most hint data held for any one node (MiB); past it new hints for
    /// that node are dropped, counted and logged.
    max_hints_per_node_mb: u64 = 256, "RINGKV_MAX_HINTS_PER_NODE_MB";

    /// Hint replay speed towards one node (KiB per second).
    hint_replay_throttle_kb: u64 = 4096, "RINGKV_HINT_REPLAY_THROTTLE_KB";

    /// Interval of the background anti-entropy repair of the ranges this
    /// node is primary for (milliseconds; default 10 minutes). 0 turns the
    /// background repair off (`ringkv repair` still works).
    anti_entropy_interval_ms: u64 = 600_000, "RINGKV_ANTI_ENTROPY_INTERVAL_MS";

    /// Chance (0 to 1) that a read whose replicas agreed also compares, in
    /// the background, the live replicas it did not ask, and repairs them.
    read_repair_chance: f64 = 0.1, "RINGKV_READ_REPAIR_CHANCE";

    /// RocksDB block cache size (MiB): data blocks, and the index and
    /// filter blocks of the tables.
    block_cache_mb: u64 = 64, "RINGKV_BLOCK_CACHE_MB";

    /// A whole-key Bloom filter in every memtable, so that a point read
    /// skips the memtables that do not hold its key (ringkv's writes are
    /// merges, so a read looks in every memtable and table level). Off: no
    /// measurable gain on the YCSB mixes (BENCHMARKS.md).
    memtable_bloom: bool = false, "RINGKV_MEMTABLE_BLOOM", arg(num_args = 0..=1, default_missing_value = "true");

    /// A hash index in every data block beside the binary search index,
    /// for point reads inside a block (tables written from then on). Off:
    /// within the noise on the YCSB mixes (BENCHMARKS.md).
    block_hash_index: bool = false, "RINGKV_BLOCK_HASH_INDEX", arg(num_args = 0..=1, default_missing_value = "true");

    /// Most memory RocksDB's memtables (write buffers) take together (MiB);
    /// past it they are flushed, and writes stall until flushes catch up.
    memtable_mb: u64 = 64, "RINGKV_MEMTABLE_MB";

    /// Threads of the node's async runtime (requests, replication,
    /// gossip). 0: one per core available, tokio's default.
    worker_threads: u32 = 0, "RINGKV_WORKER_THREADS";

    /// RocksDB flush and compaction threads. 0: one per core available,
    /// at least 2 and at most 8.
    storage_background_jobs: u32 = 0, "RINGKV_STORAGE_BACKGROUND_JOBS";

    /// On SIGTERM/SIGINT, how long in-flight requests get to finish
    /// (milliseconds) before the node closes its store and exits.
    shutdown_timeout_ms: u64 = 10_000, "RINGKV_SHUTDOWN_TIMEOUT_MS";

    /// Log line format: `human` or `json`.
    log_format: LogFormat = LogFormat::Human, "RINGKV_LOG_FORMAT";

    /// Log filter, as `RUST_LOG` (e.g. `info`, `ringkv_node=debug,info`).
    log_level: String = "info".to_owned(), "RINGKV_LOG_LEVEL";
}

impl Config {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &'static str, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.replication_factor == 0 {
            return invalid("replication_factor", "must be at least 1".into());
        }
        self.replaces()?;
        if !(1..=256).contains(&self.num_tokens) {
            return invalid(
                "num_tokens",
                format!("must be between 1 and 256, got {}", self.num_tokens),
            );
        }
        if !(10..=10_000).contains(&self.gossip_interval_ms) {
            return invalid(
                "gossip_interval_ms",
                format!(
                    "must be between 10 and 10000, got {}",
                    self.gossip_interval_ms
                ),
            );
        }
        if !(1_000..=MAX_DEAD_NODE_GRACE_MS).contains(&self.gossip_dead_node_grace_ms) {
            return invalid(
                "gossip_dead_node_grace_ms",
                format!(
                    "must be between 1000 and {MAX_DEAD_NODE_GRACE_MS} (a year), got {}",
                    self.gossip_dead_node_grace_ms
                ),
            );
        }
        if !(self.phi_convict_threshold > 0.0 && self.phi_convict_threshold.is_finite()) {
            return invalid("phi_convict_threshold", "must be a positive number".into());
        }
        if !(0.0..=1.0).contains(&self.read_repair_chance) {
            return invalid(
                "read_repair_chance",
                format!("must be between 0 and 1, got {}", self.read_repair_chance),
            );
        }
        if self.max_hints_per_node_mb == 0 || self.hint_replay_throttle_kb == 0 {
            return invalid(
                "max_hints_per_node_mb/hint_replay_throttle_kb",
                "must be greater than 0 (set hinted_handoff_enabled = false to turn hints off)"
                    .into(),
            );
        }
        if self.cluster_name.trim().is_empty() {
            return invalid("cluster_name", "must not be empty".into());
        }
        if self.rack.trim().is_empty() {
            return invalid("rack", "must not be empty".into());
        }
        let mut ports = vec![
            ("listen_client", self.listen_client),
            ("listen_peer", self.listen_peer),
            ("listen_http", self.listen_http),
        ];
        if self.resp_enabled {
            ports.push(("listen_resp", self.listen_resp));
            if self.resp_max_clients == 0 {
                return invalid("resp_max_clients", "must be greater than 0".into());
            }
        }
        for (i, (name, addr)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[i + 1..].iter().find(|(_, a)| a == addr) {
                return invalid(
                    "listen addresses",
                    format!("{name} and {other} are both {addr}"),
                );
            }
        }
        if self.write_timeout_ms == 0 || self.read_timeout_ms == 0 || self.internode_timeout_ms == 0
        {
            return invalid(
                "write_timeout_ms/read_timeout_ms/internode_timeout_ms",
                "must be greater than 0".into(),
            );
        }
        if self.max_value_size == 0 || self.max_value_size > MAX_VALUE_SIZE_CEILING {
            return invalid(
                "max_value_size",
                format!(
                    "must be between 1 and {MAX_VALUE_SIZE_CEILING} bytes, got {}",
                    self.max_value_size
                ),
            );
        }
        if self.max_requests_in_flight == 0 || self.max_peer_requests_in_flight == 0 {
            return invalid(
                "max_requests_in_flight/max_peer_requests_in_flight",
                "must be greater than 0".into(),
            );
        }
        for (field, value) in [
            (
                "max_requests_per_connection",
                self.max_requests_per_connection,
            ),
            ("request_body_timeout_ms", self.request_body_timeout_ms),
            ("max_bytes_in_flight_mb", self.max_bytes_in_flight_mb),
            (
                "max_peer_bytes_in_flight_mb",
                self.max_peer_bytes_in_flight_mb,
            ),
            ("max_client_connections", self.max_client_connections),
            ("max_peer_connections", self.max_peer_connections),
            ("max_http_connections", self.max_http_connections),
            (
                "connection_idle_timeout_ms",
                self.connection_idle_timeout_ms,
            ),
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
        ] {
            if value == 0 {
                return invalid(field, "must be greater than 0".into());
            }
        }
        if self.memtable_mb < 4 {
            return invalid("memtable_mb", "must be at least 4".into());
        }
        if self.commitlog_sync_period_ms == 0 {
            return invalid("commitlog_sync_period_ms", "must be greater than 0".into());
        }
        if self.commitlog_sync_group_window_ms > 1_000 {
            return invalid(
                "commitlog_sync_group_window_ms",
                "must be at most 1000".into(),
            );
        }
        self.gossip_key()?;
        self.admin_password()?;
        if self.authentication && !self.internode_tls {
            return invalid(
                "authentication",
                "needs internode_tls: without it anyone who reaches the internode port can read and write the users (and every key) there"
                    .into(),
            );
        }
        crate::rpc::tls::NodeTls::load(&self.tls_files())?;
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid("log_level", error.to_string());
        }
        Ok(())
    }

    /// Bytes of the block cache.
    pub fn block_cache_bytes(&self) -> usize {
        usize::try_from(self.block_cache_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// Bytes all memtables may take.
    pub fn memtable_bytes(&self) -> usize {
        usize::try_from(self.memtable_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}
