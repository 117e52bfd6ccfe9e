//! [`Client`]: routes each request to a replica of its key, retries what is
//! safe to retry, and keeps its picture of the ring fresh.
//!
//! Routing: the client fetches the ring (`Admin.Ring`) from the node it
//! first connected to, computes each key's token (the same murmur3
//! partitioner as the nodes) and sends the request to one of the key's live
//! replicas, rotating among them. The replica coordinates, which saves the
//! hop a non-replica coordinator would make. Other nodes, then the
//! configured hosts, are fallbacks. The ring is refreshed every few seconds
//! and at once when a node stops answering.
//!
//! Retries: reads, and writes that carry a timestamp, are idempotent — the
//! same write applied twice is the same write — so after a timeout, an
//! unavailable coordinator or a broken connection they are retried on the
//! next candidate, after an exponential backoff with jitter. By default the
//! client stamps every write with its own monotonic microsecond clock (as
//! Cassandra drivers do), which makes every write idempotent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use ringkv_proto::v1::key_value_client::KeyValueClient;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::cluster::{ClusterStatus, Endpoints, MemberInfo, RepairProgress, RingInfo};
use crate::error::{Error, Result};
use crate::options::{ReadOptions, WriteOptions};
use crate::retry::Backoff;
use crate::{Consistency, DEFAULT_PORT};

/// How much longer than the coordinator's own deadline the client waits, so
/// that a coordinator timeout arrives as a typed [`Error::Timeout`] rather
/// than as the client giving up.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// How long a host that failed at the transport level is passed over.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// Least time between two ring refreshes.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(500);

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Nodes to connect to, as `host:port` (port 7400 if left out); tried in
    /// order until one answers.
    pub hosts: Vec<String>,
    /// How long to wait for a connection to one host.
    pub connect_timeout: Duration,
    /// Default time a request may take (per attempt).
    pub request_timeout: Duration,
    /// Default consistency level.
    pub consistency: Consistency,
    /// Retries of an idempotent request after a retryable error.
    pub max_retries: u32,
    /// Wait between retries.
    pub backoff: Backoff,
    /// Send each request to a replica of its key.
    pub token_aware: bool,
    /// How often to refresh the ring.
    pub topology_refresh: Duration,
    /// Stamp writes with the client's clock (makes them idempotent).
    pub client_timestamps: bool,
}

impl ClientConfig {
    /// Defaults for these hosts: QUORUM, 5 s to connect, 10 s per request,
    /// 3 retries, token-aware, client timestamps.
    pub fn new<S: Into<String>>(hosts: impl IntoIterator<Item = S>) -> Self {
        Self {
            hosts: hosts.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            consistency: Consistency::Quorum,
            max_retries: 3,
            backoff: Backoff::default(),
            token_aware: true,
            topology_refresh: Duration::from_secs(5),
            client_timestamps: true,
        }
    }
}

/// A live value read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value's bytes.
    pub value: Bytes,
    /// Its write timestamp, microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// When it expires (Unix seconds), if it has a TTL.
    pub expires_at: Option<i64>,
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Permanent node id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ringkv version of the node.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// Replicas per key in the node's cluster.
    pub replication_factor: u32,
    /// The node's rack.
    pub rack: String,
    /// The node's cluster.
    pub cluster_name: String,
}

/// A connection to a ringkv cluster. Cheap to clone; clones share
/// connections and the ring.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// The host first connected to; admin calls go there.
    home: String,
    channels: Mutex<HashMap<String, Channel>>,
    routes: RwLock<Arc<Routes>>,
    refresh: Arc<Notify>,
    last_refresh: Mutex<Option<Instant>>,
    down_until: Mutex<HashMap<String, Instant>>,
    last_timestamp: AtomicI64,
    rotation: AtomicUsize,
}

/// The ring as the client routes with it, computed once per refresh so
/// that choosing hosts for a request copies no strings.
#[derive(Debug, Default)]
struct Routes {
    ring: Option<Arc<RingInfo>>,
    /// For each range of `ring`, the addresses of its live replicas.
    replicas: Vec<Vec<Arc<str>>>,
    /// Live NORMAL members, then the host first connected to and the
    /// configured hosts: where to go when the replicas do not answer.
    fallbacks: Vec<Arc<str>>,
}

impl Routes {
    fn new(ring: Option<Arc<RingInfo>>, home: &str, hosts: &[String]) -> Routes {
        let mut fallbacks: Vec<Arc<str>> = Vec::new();
        let mut add = |host: &str| {
            if !host.is_empty() && !fallbacks.iter().any(|h| &**h == host) {
                fallbacks.push(Arc::from(host));
            }
        };
        let mut replicas = Vec::new();
        if let Some(ring) = &ring {
            for member in ring.members.iter().filter(|m| m.up && m.state == "NORMAL") {
                add(&member.client_addr);
            }
            let address = |i: &usize| {
                ring.members
                    .get(*i)
                    .filter(|m| m.up && !m.client_addr.is_empty())
                    .map(|m| Arc::<str>::from(m.client_addr.as_str()))
            };
            replicas = ring
                .ranges
                .iter()
                .map(|range| range.replicas.iter().filter_map(address).collect())
                .collect();
        }
        add(home);
        for host in hosts {
            add(host);
        }
        Routes {
            ring,
            replicas,
            fallbacks,
        }
    }
}

/// `host:port` → `http://host:port`, adding the default port if missing.
fn endpoint_uri(host: &str) -> String {
    let bare = host.trim_start_matches("http://");
    let has_port = bare
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        format!("http://{bare}")
    } else {
        format!("http://{bare}:{DEFAULT_PORT}")
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn endpoint(host: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    Endpoint::from_shared(endpoint_uri(host))
        .map(|e| e.connect_timeout(connect_timeout).tcp_nodelay(true))
        .map_err(|e| format!("bad address {host:?}: {}", describe(&e)))
}

async fn open_channel(host: &str, connect_timeout: Duration) -> Result<Channel, String> {
    let endpoint = endpoint(host, connect_timeout)?;
    match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(format!("{host}: {}", describe(&error))),
        Err(_) => Err(format!("{host}: connection timed out")),
    }
}

/// True for failures of the connection rather than answers of a node: the
/// request should move to another host.
fn is_transport_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.details().is_empty()
}

fn kv_client(channel: Channel) -> KeyValueClient<Channel> {
    KeyValueClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

impl Client {
    /// Connects to the first of `config.hosts` that answers and learns the
    /// ring from it.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.hosts.is_empty() {
            return Err(Error::Connect {
                hosts: String::new(),
                reason: "no host given".into(),
            });
        }
        let mut reasons = Vec::new();
        let mut first = None;
        for host in &config.hosts {
            match open_channel(host, config.connect_timeout).await {
                Ok(channel) => {
                    first = Some((host.clone(), channel));
                    break;
                }
                Err(reason) => reasons.push(reason),
            }
        }
        let Some((home, channel)) = first else {
            return Err(Error::Connect {
                hosts: config.hosts.join(", "),
                reason: reasons.join("; "),
            });
        };
        let refresh = Arc::new(Notify::new());
        let routes = Routes::new(None, &home, &config.hosts);
        let client = Client {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::from([(home.clone(), channel)])),
                home,
                routes: RwLock::new(Arc::new(routes)),
                refresh: refresh.clone(),
                last_refresh: Mutex::new(None),
                down_until: Mutex::new(HashMap::new()),
                last_timestamp: AtomicI64::new(0),
                rotation: AtomicUsize::new(0),
                config,
            }),
        };
        if client.inner.config.token_aware {
            // A node too old to describe its ring still serves requests.
            let _ = client.refresh_ring().await;
            tokio::spawn(keep_ring_fresh(Arc::downgrade(&client.inner), refresh));
        }
        Ok(client)
    }

    /// The host this client first connected to.
    pub fn host(&self) -> &str {
        &self.inner.home
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The ring as last fetched, if any.
    pub fn ring(&self) -> Option<Arc<RingInfo>> {
        self.routes().ring.clone()
    }

    fn routes(&self) -> Arc<Routes> {
        self.inner
            .routes
            .read()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn channel(&self, host: &str) -> Result<Channel> {
        let mut channels = self.inner.channels.lock().map_err(|_| Error::Rpc {
            code: Code::Internal,
            message: "client connection table poisoned".into(),
        })?;
        if let Some(channel) = channels.get(host) {
            return Ok(channel.clone());
        }
        let channel = endpoint(host, self.inner.config.connect_timeout)
            .map_err(|reason| Error::Connect {
                hosts: host.to_owned(),
                reason,
            })?
            .connect_lazy();
        channels.insert(host.to_owned(), channel.clone());
        Ok(channel)
    }

    fn mark_down(&self, host: &str) {
        if let Ok(mut down) = self.inner.down_until.lock() {
            down.insert(host.to_owned(), Instant::now() + DOWN_FOR);
        }
        self.inner.refresh.notify_one();
    }

    /// Hosts to try for a request on `key`, best first: its live replicas
    /// (rotating, to spread the load), then the fallbacks; hosts that failed
    /// in the last moments go last rather than nowhere.
    fn candidates(&self, key: Option<&[u8]>) -> Vec<Arc<str>> {
        let routes = self.routes();
        let mut hosts: Vec<Arc<str>> = Vec::with_capacity(routes.fallbacks.len() + 3);
        if let (Some(ring), Some(key)) = (&routes.ring, key)
            && let Some(range) = ring.range_index(ringkv_proto::partitioner::token_of(key))
            && let Some(replicas) = routes.replicas.get(range)
            && !replicas.is_empty()
        {
            let turn = self.inner.rotation.fetch_add(1, Ordering::Relaxed);
            for i in 0..replicas.len() {
                hosts.push(replicas[(turn + i) % replicas.len()].clone());
            }
        }
        for host in &routes.fallbacks {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        if let Ok(down) = self.inner.down_until.lock()
            && !down.is_empty()
        {
            let now = Instant::now();
            // A stable sort keeps the preference order within each group.
            hosts.sort_by_key(|h| down.get(&**h).is_some_and(|until| *until > now));
        }
        hosts
    }

    /// Runs `call` against candidate hosts, retrying per the policy.
    async fn execute<T, F, Fut>(&self, key: Option<&[u8]>, idempotent: bool, call: F) -> Result<T>
    where
        F: Fn(KeyValueClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let hosts = self.candidates(key);
        let config = &self.inner.config;
        let mut attempt = 0u32;
        loop {
            let host = &hosts[attempt as usize % hosts.len()];
            let outcome = match self.channel(host) {
                Ok(channel) => call(kv_client(channel)).await,
                Err(error) => return Err(error),
            };
            let status = match outcome {
                Ok(value) => return Ok(value),
                Err(status) => status,
            };
            if is_transport_failure(&status) {
                self.mark_down(host);
            }
            let error = Error::from(status);
            if !idempotent || !error.is_retryable() || attempt >= config.max_retries {
                return Err(error);
            }
            tracing::debug!(%host, %error, attempt, "retrying");
            let pause = config.backoff.delay(attempt, &mut rand::rng());
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// Wraps a message with the deadline: the coordinator gets `timeout`,
    /// the transport a little more.
    fn request<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout + DEADLINE_MARGIN);
        request
    }

    fn timeout_ms(timeout: Duration) -> u32 {
        u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// A timestamp greater than every one this client issued before.
    fn next_timestamp(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let previous = self
            .inner
            .last_timestamp
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        now.max(previous + 1)
    }

    fn write_timestamp(&self, options: &WriteOptions) -> Option<i64> {
        options.timestamp_micros.or_else(|| {
            self.inner
                .config
                .client_timestamps
                .then(|| self.next_timestamp())
        })
    }

    /// Reads a key at the default level; `None` if it has no live value.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Value>> {
        self.get_with(key, &ReadOptions::default()).await
    }

    /// Reads a key with options.
    pub async fn get_with(
        &self,
        key: impl Into<Bytes>,
        options: &ReadOptions,
    ) -> Result<Option<Value>> {
        let key = key.into();
        let timeout = options.timeout.unwrap_or(self.inner.config.request_timeout);
        let message = pb::GetRequest {
            key: key.clone(),
            consistency: options
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            timeout_ms: Self::timeout_ms(timeout),
        };
        let response = self
            .execute(Some(&key), true, |mut kv| {
                let request = self.request(message.clone(), timeout);
                async move { kv.get(request).await }
            })
            .await?
            .into_inner();
        Ok(response.found.then_some(Value {
            value: response.value,
            timestamp_micros: response.timestamp_micros,
            expires_at: response.expires_at_seconds,
        }))
    }

    /// Writes a value at the default level; returns its write timestamp.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<i64> {
        self.put_with(key, value, &WriteOptions::default()).await
    }

    /// Writes a value with options; returns its write timestamp.
    pub async fn put_with(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<i64> {
        let ttl_seconds = match options.ttl {
            None => 0,
            Some(ttl) if ttl.as_secs() == 0 => {
                return Err(Error::InvalidArgument(
                    "ttl must be at least one second".into(),
                ));
            }
            Some(ttl) => u32::try_from(ttl.as_secs()).map_err(|_| {
                Error::InvalidArgument(format!("ttl of {}s is too long", ttl.as_secs()))
            })?,
        };
        let key = key.into();
        let timeout = options.timeout.unwrap_or(self.inner.config.request_timeout);
        let timestamp = self.write_timestamp(options);
        let message = pb::PutRequest {
            key: key.clone(),
            value: value.into(),
            consistency: options
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            ttl_seconds,
            timestamp_micros: timestamp,
            timeout_ms: Self::timeout_ms(timeout),
        };
        let response = self
            .execute(Some(&key), timestamp.is_some(), |mut kv| {
                let request = self.request(message.clone(), timeout);
                async move { kv.put(request).await }
            })
            .await?;
        Ok(response.into_inner().timestamp_micros)
    }

    /// Deletes a key at the default level; returns the tombstone's timestamp.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<i64> {
        self.delete_with(key, &WriteOptions::default()).await
    }

    /// Deletes a key with options (`ttl` is not allowed).
    pub async fn delete_with(&self, key: impl Into<Bytes>, options: &WriteOptions) -> Result<i64> {
        if options.ttl.is_some() {
            return Err(Error::InvalidArgument("a delete cannot carry a ttl".into()));
        }
        let key = key.into();
        let timeout = options.timeout.unwrap_or(self.inner.config.request_timeout);
        let timestamp = self.write_timestamp(options);
        let message = pb::DeleteRequest {
            key: key.clone(),
            consistency: options
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            timestamp_micros: timestamp,
            timeout_ms: Self::timeout_ms(timeout),
        };
        let response = self
            .execute(Some(&key), timestamp.is_some(), |mut kv| {
                let request = self.request(message.clone(), timeout);
                async move { kv.delete(request).await }
            })
            .await?;
        Ok(response.into_inner().timestamp_micros)
    }

    fn admin(&self) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel(&self.inner.home)?).max_decoding_message_size(usize::MAX))
    }

    /// Identity and version of the node first connected to.
    pub async fn node_info(&self) -> Result<NodeInfo> {
        let request = self.request(pb::NodeInfoRequest {}, self.inner.config.request_timeout);
        let info = self.admin()?.node_info(request).await?.into_inner();
        Ok(NodeInfo {
            id: info.node_id,
            name: info.node_name,
            version: info.version,
            uptime_seconds: info.uptime_seconds,
            replication_factor: info.replication_factor,
            rack: info.rack,
            cluster_name: info.cluster_name,
        })
    }

    /// The cluster as the node first connected to sees it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let request = self.request(
            pb::ClusterStatusRequest {},
            self.inner.config.request_timeout,
        );
        let status = self.admin()?.cluster_status(request).await?.into_inner();
        Ok(ClusterStatus {
            cluster_name: status.cluster_name,
            replication_factor: status.replication_factor,
            local_node_id: status.local_node_id,
            members: status.members.into_iter().map(MemberInfo::from).collect(),
        })
    }

    /// Token ownership and placement, from the node first connected to.
    pub async fn ring_info(&self) -> Result<RingInfo> {
        let request = self.request(pb::RingRequest {}, self.inner.config.request_timeout);
        Ok(self.admin()?.ring(request).await?.into_inner().into())
    }

    /// The replicas of a key, from the node first connected to.
    pub async fn endpoints(&self, key: impl Into<Bytes>) -> Result<Endpoints> {
        let request = self.request(
            pb::GetEndpointsRequest { key: key.into() },
            self.inner.config.request_timeout,
        );
        let response = self.admin()?.get_endpoints(request).await?.into_inner();
        Ok(Endpoints {
            token: response.token,
            replicas: response
                .replicas
                .into_iter()
                .map(MemberInfo::from)
                .collect(),
        })
    }

    /// Runs an anti-entropy repair on the node first connected to (all its
    /// ranges, or only those it is primary for), calling `on_progress` as
    /// ranges complete. Returns the final summary. No deadline: a repair
    /// takes as long as it takes.
    pub async fn repair(
        &self,
        primary_only: bool,
        mut on_progress: impl FnMut(&RepairProgress),
    ) -> Result<RepairProgress> {
        let mut stream = self
            .admin()?
            .repair(pb::RepairRequest { primary_only })
            .await?
            .into_inner();
        let mut last = RepairProgress::default();
        while let Some(message) = stream.message().await? {
            last = RepairProgress::from(message);
            on_progress(&last);
        }
        if !last.done {
            return Err(Error::Rpc {
                code: Code::Aborted,
                message: "the repair stream ended before the repair finished".into(),
            });
        }
        Ok(last)
    }

    /// Fetches the ring from the first host that answers.
    async fn refresh_ring(&self) -> Result<()> {
        if let Ok(mut last) = self.inner.last_refresh.lock() {
            *last = Some(Instant::now());
        }
        let mut last_error = None;
        for host in self.candidates(None) {
            let channel = self.channel(&host)?;
            let request = self.request(pb::RingRequest {}, self.inner.config.connect_timeout);
            match AdminClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .ring(request)
                .await
            {
                Ok(response) => {
                    let ring: RingInfo = response.into_inner().into();
                    let routes = Routes::new(
                        Some(Arc::new(ring)),
                        &self.inner.home,
                        &self.inner.config.hosts,
                    );
                    if let Ok(mut slot) = self.inner.routes.write() {
                        *slot = Arc::new(routes);
                    }
                    return Ok(());
                }
                Err(status) => {
                    if is_transport_failure(&status) {
                        self.mark_down(&host);
                    }
                    last_error = Some(Error::from(status));
                }
            }
        }
        Err(last_error.unwrap_or(Error::Connect {
            hosts: self.inner.config.hosts.join(", "),
            reason: "no host to ask for the ring".into(),
        }))
    }
}

/// Refreshes the ring periodically and on demand, until every clone of the
/// client is gone.
async fn keep_ring_fresh(inner: Weak<Inner>, refresh: Arc<Notify>) {
    loop {
        let Some(period) = inner.upgrade().map(|i| i.config.topology_refresh) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = refresh.notified() => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let recent = strong
            .last_refresh
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|at| at.elapsed() < MIN_REFRESH_GAP);
        if recent {
            tokio::time::sleep(MIN_REFRESH_GAP).await;
        }
        let client = Client { inner: strong };
        if let Err(error) = client.refresh_ring().await {
            tracing::debug!(%error, "ring refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_uris() {
        assert_eq!(endpoint_uri("127.0.0.1:7500"), "http://127.0.0.1:7500");
        assert_eq!(endpoint_uri("localhost"), "http://localhost:7400");
        assert_eq!(endpoint_uri("http://db1:7400"), "http://db1:7400");
        assert_eq!(endpoint_uri("[::1]:7401"), "http://[::1]:7401");
    }

    #[tokio::test]
    async fn connect_failure_names_every_host() {
        let mut config = ClientConfig::new(["127.0.0.1:1", "127.0.0.1:2"]);
        config.connect_timeout = Duration::from_secs(2);
        let err = Client::connect(config)
            .await
            .expect_err("nothing listens there");
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1:1") && text.contains("127.0.0.1:2"),
            "{text}"
        );
        assert!(err.is_retryable());
    }
}
