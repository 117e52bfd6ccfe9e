//! From the one `Config` to the settings each module takes: the unit
//! conversions, the caps and the derived values live here, next to their
//! tests, instead of inside the wiring.

use std::time::Duration;

use super::{Config, MAX_KEY_SIZE};
use crate::clock::SkewLimit;
use crate::clock::WallClock;
use crate::coordinator::{CoordinatorSettings, Limits};
use crate::hints::ReplaySettings;
use crate::identity::NodeId;
use crate::membership::GossipSettings;
use crate::membership::join::JoinSettings;
use crate::resp::{ParseLimits, RespSettings};
use crate::rpc::accept::PortLimits;
use crate::rpc::bounds::PeerBounds;
use crate::rpc::gossip_mac::GossipKey;
use crate::rpc::limit::ApiLimits;
use crate::rpc::tls::TlsFiles;
use crate::storage::batch::MAX_BATCH_BYTES;
use crate::streaming::StreamSettings;

/// Arguments of one RESP command (an `MSET` of 32,767 pairs).
const RESP_MAX_ARGS: usize = 65_536;
/// Room above the largest key and value for the rest of a request.
const MESSAGE_OVERHEAD: usize = 64 * 1024;
/// Beyond the coordinator's own timeout: a request's arrival and its
/// credential check (Argon2 on a cache miss).
const REQUEST_DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// Gossip rounds a joining node waits, after first contact, for the ring to
/// reach it before it picks tokens.
const SETTLE_ROUNDS: u32 = 4;

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A secret given inline or as a file (trailing newlines removed), not
/// both; `None` when neither is set.
fn secret_setting(
    inline: &str,
    file: &std::path::Path,
    invalid: impl Fn(String) -> super::ConfigError,
) -> Result<Option<Vec<u8>>, super::ConfigError> {
    match (inline.is_empty(), file.as_os_str().is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err(invalid("set the value or its file, not both".into())),
        (false, true) => Ok(Some(inline.as_bytes().to_vec())),
        (true, false) => {
            let mut bytes = std::fs::read(file)
                .map_err(|error| invalid(format!("cannot read {}: {error}", file.display())))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Ok(Some(bytes))
        }
    }
}

/// One value per TCP port that has connection bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports<T> {
    pub client: T,
    pub peer: T,
    pub http: T,
}

impl Config {
    /// How long a call to a peer may take (`internode_timeout_ms`).
    pub fn internode_timeout(&self) -> Duration {
        millis(self.internode_timeout_ms)
    }

    /// Gossip's settings for node `node_id`, reached at `advertise`, its
    /// generation taken from `wall`.
    pub fn gossip_settings(
        &self,
        node_id: NodeId,
        advertise: std::net::SocketAddr,
        wall: WallClock,
    ) -> GossipSettings {
        GossipSettings {
            node_id,
            cluster_name: self.cluster_name.clone(),
            listen: self.listen_gossip,
            advertise,
            seeds: self.seeds.clone(),
            interval: millis(self.gossip_interval_ms),
            phi_convict_threshold: self.phi_convict_threshold,
            dead_node_grace: millis(self.gossip_dead_node_grace_ms),
            replication_factor: self.replication_factor as usize,
            wall,
        }
    }

    /// The files and switches the TLS of the node's ports is built from.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            internode: self.internode_tls,
            client: self.client_tls,
            client_require_cert: self.client_tls_require_cert,
            resp: self.resp_enabled,
            cert: self.tls_cert_file.clone(),
            key: self.tls_key_file.clone(),
            ca: self.tls_ca_file.clone(),
            server_name: self.internode_tls_server_name.clone(),
        }
    }

    /// Largest value accepted, in bytes.
    pub fn max_value_bytes(&self) -> usize {
        usize::try_from(self.max_value_size).unwrap_or(usize::MAX)
    }

    /// Largest gRPC message a service accepts. A value over the limit must
    /// reach validation (INVALID_ARGUMENT naming the limit), so the
    /// transport accepts somewhat more than the largest valid request; and
    /// internode batches of several cells reach `MAX_BATCH_BYTES`.
    pub fn max_message_bytes(&self) -> usize {
        self.max_value_bytes()
            .saturating_add(MAX_KEY_SIZE)
            .saturating_add(MESSAGE_OVERHEAD)
            .saturating_mul(2)
            .max(2 * MAX_BATCH_BYTES + MESSAGE_OVERHEAD)
    }

    /// The RESP port. An argument may be up to twice the largest key or
    /// value, so one somewhat over the limit still reaches the coordinator
    /// and is refused naming it; a command may be as large as the largest
    /// gRPC message.
    pub fn resp_settings(&self, node_name: &str) -> RespSettings {
        RespSettings {
            limits: ParseLimits {
                max_args: RESP_MAX_ARGS,
                max_bulk: self.max_value_bytes().max(MAX_KEY_SIZE).saturating_mul(2),
                max_command: self.max_message_bytes(),
            },
            max_clients: usize::try_from(self.resp_max_clients).unwrap_or(usize::MAX),
            port: self.listen_resp.port(),
            node_name: node_name.to_owned(),
            cluster_name: self.cluster_name.clone(),
            replication_factor: self.replication_factor,
            handshake_timeout: millis(self.tls_handshake_timeout_ms),
        }
    }

    /// The read and write paths.
    pub fn coordinator_settings(&self) -> CoordinatorSettings {
        CoordinatorSettings {
            replication_factor: self.replication_factor as usize,
            write_timeout: millis(self.write_timeout_ms),
            read_timeout: millis(self.read_timeout_ms),
            limits: Limits {
                max_value_size: self.max_value_bytes(),
                max_clock_skew: SkewLimit::from_millis(self.max_clock_skew_ms),
            },
            read_repair_chance: self.read_repair_chance,
        }
    }

    /// What the internode API accepts from peers: cells as a client's
    /// writes, with twice the clock skew: a coordinator's clock follows the
    /// client timestamps it accepts (up to `max_clock_skew_ms` ahead of its
    /// own wall clock), and the replica's wall clock may lag the
    /// coordinator's as much again.
    pub fn peer_bounds(&self) -> PeerBounds {
        PeerBounds {
            max_value_size: self.max_value_bytes(),
            max_clock_skew: SkewLimit::from_millis(self.max_clock_skew_ms).doubled(),
        }
    }

    /// The name peers' certificates must carry when internode TLS is on.
    pub fn internode_peer_name(&self) -> Option<String> {
        self.internode_tls
            .then(|| self.internode_tls_server_name.clone())
    }

    /// The settings every node of a cluster should share, as gossiped
    /// (`keys::SETTINGS`) and compared by `ringkv describecluster`.
    pub fn shared_settings(&self) -> String {
        format!(
            "replication_factor={};gc_grace_seconds={};internode_tls={};authentication={}",
            self.replication_factor, self.gc_grace_seconds, self.internode_tls, self.authentication
        )
    }

    /// What the client API admits at once.
    pub fn client_api_limits(&self) -> ApiLimits {
        self.api_limits(self.max_requests_in_flight, self.max_bytes_in_flight_mb)
    }

    /// What the internode API admits at once.
    pub fn peer_api_limits(&self) -> ApiLimits {
        self.api_limits(
            self.max_peer_requests_in_flight,
            self.max_peer_bytes_in_flight_mb,
        )
    }

    /// The connection bounds of the client API, internode and HTTP ports.
    pub fn port_limits(&self) -> Ports<PortLimits> {
        let port = |max: u64| PortLimits {
            max_connections: usize::try_from(max).unwrap_or(usize::MAX),
            silence: millis(self.connection_idle_timeout_ms),
            handshake: millis(self.tls_handshake_timeout_ms),
        };
        Ports {
            client: port(self.max_client_connections),
            peer: port(self.max_peer_connections),
            http: port(self.max_http_connections),
        }
    }

    /// How often a gRPC server pings a connection: three times per
    /// `connection_idle_timeout_ms`, so that a live client never falls
    /// silent.
    pub fn server_ping_interval(&self) -> Duration {
        millis(self.connection_idle_timeout_ms / 3).max(Duration::from_millis(1))
    }

    fn api_limits(&self, requests: u64, mb: u64) -> ApiLimits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        ApiLimits {
            requests: size(requests),
            bytes: size(mb.saturating_mul(1 << 20)),
            body_timeout: millis(self.request_body_timeout_ms),
            per_connection: size(self.max_requests_per_connection),
        }
    }

    /// Hint replay. The window never exceeds gc_grace: a hint replayed
    /// after the tombstones it could be shadowed by were purged would bring
    /// a deleted value back.
    pub fn replay_settings(&self) -> ReplaySettings {
        ReplaySettings {
            window: millis(self.max_hint_window_ms).min(Duration::from_secs(self.gc_grace_seconds)),
            throttle_bytes_per_second: self.hint_replay_throttle_kb.saturating_mul(1024),
        }
    }

    /// Most bytes of hints held for one target.
    pub fn hint_capacity_bytes(&self) -> u64 {
        self.max_hints_per_node_mb.saturating_mul(1 << 20)
    }

    /// Choosing tokens on a first start; `is_seed` when this node is one of
    /// its own seeds (or has none).
    pub fn join_settings(&self, is_seed: bool) -> JoinSettings {
        let interval = millis(self.gossip_interval_ms);
        JoinSettings {
            num_tokens: self.num_tokens as usize,
            rack: self.rack.clone(),
            replication_factor: self.replication_factor,
            is_seed,
            settle: interval * SETTLE_ROUNDS,
            ring_delay: millis(self.ring_delay_ms),
            timeout: millis(self.join_timeout_ms),
            interval,
        }
    }

    /// The pause between two anti-entropy runs; `None` when off.
    pub fn anti_entropy_interval(&self) -> Option<Duration> {
        (self.anti_entropy_interval_ms > 0).then(|| millis(self.anti_entropy_interval_ms))
    }

    /// Topology changes and their streams.
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            throughput_bytes_per_second: self.stream_throughput_mb.saturating_mul(1 << 20),
            allow_inconsistent_source: self.allow_inconsistent_source,
            agreement_timeout: millis(self.join_timeout_ms),
            drain: millis(self.write_timeout_ms),
            cleanup_settle: millis(self.write_timeout_ms.max(self.read_timeout_ms))
                + millis(self.gossip_interval_ms) * 2,
            replication_factor: self.replication_factor as usize,
        }
    }

    /// The dead node to replace on a first start (`--replace`).
    pub fn replaces(&self) -> Result<Option<crate::identity::NodeId>, super::ConfigError> {
        if self.replace.is_empty() {
            return Ok(None);
        }
        self.replace
            .parse()
            .map(Some)
            .map_err(|_| super::ConfigError::Invalid {
                field: "replace",
                reason: format!(
                    "{:?} is not a node id (ringkv status lists them)",
                    self.replace
                ),
            })
    }

    /// The key gossip is authenticated with, from `gossip_secret` or
    /// `gossip_secret_file` (not both); `None`: unauthenticated.
    pub fn gossip_key(&self) -> Result<Option<GossipKey>, super::ConfigError> {
        let invalid = |reason: String| super::ConfigError::Invalid {
            field: "gossip_secret",
            reason,
        };
        match secret_setting(&self.gossip_secret, &self.gossip_secret_file, invalid)? {
            None => Ok(None),
            Some(secret) => GossipKey::new(&secret).map(Some).map_err(invalid),
        }
    }

    /// The first admin's password, from `auth_admin_password` or its
    /// file; `None` when neither is set.
    pub fn admin_password(&self) -> Result<Option<String>, super::ConfigError> {
        let invalid = |reason: String| super::ConfigError::Invalid {
            field: "auth_admin_password",
            reason,
        };
        let secret = secret_setting(
            &self.auth_admin_password,
            &self.auth_admin_password_file,
            invalid,
        )?;
        secret
            .map(|bytes| {
                let password = String::from_utf8(bytes)
                    .map_err(|_| invalid("the password is not UTF-8".into()))?;
                crate::auth::users::validate_password(&password)
                    .map_err(|error| invalid(error.to_string()))?;
                Ok(password)
            })
            .transpose()
    }

    /// How long a verified password is remembered.
    pub fn auth_cache(&self) -> Duration {
        millis(self.auth_cache_ms)
    }

    /// Longest a client read or write may take from arrival to answer:
    /// the longer of the coordinator's timeouts, plus room for the request
    /// to arrive and its credentials to be checked.
    pub fn client_request_deadline(&self) -> Duration {
        millis(self.read_timeout_ms.max(self.write_timeout_ms)) + REQUEST_DEADLINE_MARGIN
    }

    /// How long each shutdown step may take.
    pub fn shutdown_grace(&self) -> Duration {
        millis(self.shutdown_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_window_never_exceeds_gc_grace() {
        let mut config = Config {
            max_hint_window_ms: 3 * 3600 * 1000,
            gc_grace_seconds: 864_000,
            ..Config::default()
        };
        assert_eq!(
            config.replay_settings().window,
            Duration::from_secs(3 * 3600)
        );
        config.gc_grace_seconds = 60;
        assert_eq!(config.replay_settings().window, Duration::from_secs(60));
        config.gc_grace_seconds = 0;
        assert_eq!(config.replay_settings().window, Duration::ZERO);
    }

    #[test]
    fn settle_is_four_gossip_rounds_and_the_join_copies_the_rest() {
        let config = Config {
            gossip_interval_ms: 250,
            num_tokens: 16,
            ring_delay_ms: 7,
            join_timeout_ms: 9,
            ..Config::default()
        };
        let join = config.join_settings(true);
        assert_eq!(join.settle, Duration::from_secs(1));
        assert_eq!(join.interval, Duration::from_millis(250));
        assert_eq!(join.num_tokens, 16);
        assert_eq!(join.ring_delay, Duration::from_millis(7));
        assert_eq!(join.timeout, Duration::from_millis(9));
        assert!(join.is_seed);
    }

    #[test]
    fn messages_fit_the_largest_value_and_the_largest_batch() {
        let small = Config {
            max_value_size: 1,
            ..Config::default()
        };
        assert!(small.max_message_bytes() >= 2 * MAX_BATCH_BYTES);
        let big = Config {
            max_value_size: 64 << 20,
            ..Config::default()
        };
        assert!(big.max_message_bytes() > (64 << 20) + MAX_KEY_SIZE);
        let huge = Config {
            max_value_size: u64::MAX,
            ..Config::default()
        };
        assert_eq!(huge.max_message_bytes(), usize::MAX, "saturates");
    }

    #[test]
    fn the_gossip_secret_comes_from_the_setting_or_a_file_and_is_long_enough() {
        assert!(Config::default().gossip_key().expect("none").is_none());
        let set = Config {
            gossip_secret: "0123456789abcdef".into(),
            ..Config::default()
        };
        assert!(set.gossip_key().expect("valid").is_some());
        let short = Config {
            gossip_secret: "tiny".into(),
            ..Config::default()
        };
        let error = short.gossip_key().expect_err("too short").to_string();
        assert!(error.contains("at least 16"), "{error}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef\n").expect("write");
        let from_file = Config {
            gossip_secret_file: path.clone(),
            ..Config::default()
        };
        assert!(from_file.gossip_key().expect("valid").is_some());
        let both = Config {
            gossip_secret_file: path,
            ..set
        };
        assert!(both.gossip_key().is_err());
        let missing = Config {
            gossip_secret_file: dir.path().join("nope"),
            ..Config::default()
        };
        let error = missing.gossip_key().expect_err("missing").to_string();
        assert!(error.contains("cannot read"), "{error}");
    }

    #[test]
    fn unit_conversions() {
        let config = Config {
            write_timeout_ms: 1500,
            read_timeout_ms: 700,
            replication_factor: 5,
            read_repair_chance: 0.25,
            hint_replay_throttle_kb: 2,
            max_hints_per_node_mb: 3,
            anti_entropy_interval_ms: 0,
            shutdown_timeout_ms: 40,
            ..Config::default()
        };
        let coordinator = config.coordinator_settings();
        assert_eq!(coordinator.write_timeout, Duration::from_millis(1500));
        assert_eq!(coordinator.read_timeout, Duration::from_millis(700));
        assert_eq!(coordinator.replication_factor, 5);
        assert_eq!(coordinator.read_repair_chance, 0.25);
        assert_eq!(
            coordinator.limits.max_clock_skew,
            SkewLimit::from_millis(60_000)
        );
        let off = Config {
            max_clock_skew_ms: 0,
            ..Config::default()
        };
        assert_eq!(off.peer_bounds().max_clock_skew, SkewLimit::off());
        let (client, peer) = (config.client_api_limits(), config.peer_api_limits());
        assert_eq!((client.requests, peer.requests), (1024, 4096));
        assert_eq!((client.bytes, peer.bytes), (256 << 20, 256 << 20));
        assert_eq!(client.body_timeout, Duration::from_secs(10));
        assert_eq!((client.per_connection, peer.per_connection), (256, 256));
        let ports = config.port_limits();
        assert_eq!(
            (
                ports.client.max_connections,
                ports.peer.max_connections,
                ports.http.max_connections
            ),
            (1024, 1024, 64)
        );
        assert_eq!(ports.http.silence, Duration::from_secs(60));
        assert_eq!(ports.client.handshake, Duration::from_secs(10));
        assert_eq!(config.server_ping_interval(), Duration::from_secs(20));
        assert_eq!(config.replay_settings().throttle_bytes_per_second, 2048);
        assert_eq!(config.hint_capacity_bytes(), 3 << 20);
        assert_eq!(config.anti_entropy_interval(), None);
        assert_eq!(config.shutdown_grace(), Duration::from_millis(40));
        let on = Config {
            anti_entropy_interval_ms: 5,
            ..Config::default()
        };
        assert_eq!(on.anti_entropy_interval(), Some(Duration::from_millis(5)));
    }
}
