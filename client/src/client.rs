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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use ringkv_proto::v1::key_value_client::KeyValueClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::Consistency;
use crate::cluster::RingInfo;
use crate::connection::{endpoint, is_transport_failure, kv_client, open_channel};
use crate::error::{Error, Result};
use crate::options::{ReadOptions, WriteOptions};
use crate::retry::Backoff;
use crate::routing::Router;
use crate::tls::TlsOptions;
use crate::trace::{TraceCollector, capture};

/// How much longer than the coordinator's own deadline the client waits, so
/// that a coordinator timeout arrives as a typed [`Error::Timeout`] rather
/// than as the client giving up.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

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
    /// TLS to the nodes; `None`: plaintext.
    pub tls: Option<TlsOptions>,
    /// User name and password, for nodes with authentication on.
    pub credentials: Option<Credentials>,
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `authorization: Basic ...`, as every request carries it.
    fn header(&self) -> Result<MetadataValue<Ascii>> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        format!("Basic {encoded}")
            .parse()
            .map_err(|_| Error::InvalidArgument("the credentials cannot be sent".into()))
    }
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
            tls: None,
            credentials: None,
        }
    }

    /// Authenticates as `user` with `password`.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Connects over TLS with `tls`.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A live value read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value's bytes.
    pub value: Bytes,
    /// Its write timestamp, microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// When it expires (Unix seconds, rounded up), if it has a TTL.
    pub expires_at: Option<i64>,
    /// When it expires, to the millisecond (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
}

/// A connection to a ringkv cluster. Cheap to clone; clones share
/// connections and the ring.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) channels: Mutex<HashMap<String, Channel>>,
    /// Where requests go; its home host is where admin calls go.
    pub(crate) router: Arc<Router>,
    pub(crate) last_timestamp: AtomicI64,
    /// The `authorization` header of every request, if any.
    pub(crate) authorization: Option<MetadataValue<Ascii>>,
    /// The task that keeps the ring fresh (token-aware clients): owned
    /// here, stopped when the last handle of the client goes.
    pub(crate) refresher: std::sync::OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(refresher) = self.refresher.get() {
            refresher.abort();
        }
    }
}

impl Client {
    /// Connects to the first of `config.hosts` that answers and learns the
    /// ring from it.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let authorization = config
            .credentials
            .as_ref()
            .map(Credentials::header)
            .transpose()?;
        if config.hosts.is_empty() {
            return Err(Error::Connect {
                hosts: String::new(),
                reason: "no host given".into(),
            });
        }
        let mut reasons = Vec::new();
        let mut first = None;
        for host in &config.hosts {
            match open_channel(host, config.connect_timeout, config.tls.as_ref()).await {
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
        let router = Arc::new(Router::new(&home, &config.hosts));
        let client = Client {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::from([(home, channel)])),
                router: router.clone(),
                last_timestamp: AtomicI64::new(0),
                authorization,
                config,
                refresher: std::sync::OnceLock::new(),
            }),
        };
        if client.inner.config.token_aware {
            // A node too old to describe its ring still serves requests.
            let _ = client.refresh_ring().await;
            let refresher = tokio::spawn(keep_ring_fresh(Arc::downgrade(&client.inner), router));
            let _ = client.inner.refresher.set(refresher.abort_handle());
        }
        Ok(client)
    }

    /// The host this client first connected to.
    pub fn host(&self) -> &str {
        self.inner.router.home()
    }

    /// The ring as last fetched, if any.
    pub fn ring(&self) -> Option<Arc<RingInfo>> {
        self.inner.router.ring()
    }

    /// Fetches the ring from the first host that answers.
    pub(crate) async fn refresh_ring(&self) -> Result<()> {
        let router = &self.inner.router;
        router.refreshing();
        let mut last_error = None;
        for host in router.candidates(None) {
            let channel = self.channel(&host)?;
            let request = self.request(pb::RingRequest {}, self.inner.config.connect_timeout);
            match AdminClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .ring(request)
                .await
            {
                Ok(response) => {
                    router.install(response.into_inner().into());
                    return Ok(());
                }
                Err(status) => {
                    if is_transport_failure(&status) {
                        router.mark_down(&host);
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

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn channel(&self, host: &str) -> Result<Channel> {
        let mut channels = self.inner.channels.lock().map_err(|_| Error::Rpc {
            code: Code::Internal,
            message: "client connection table poisoned".into(),
        })?;
        if let Some(channel) = channels.get(host) {
            return Ok(channel.clone());
        }
        let config = &self.inner.config;
        let channel = endpoint(host, config.connect_timeout, config.tls.as_ref())
            .map_err(|reason| Error::Connect {
                hosts: host.to_owned(),
                reason,
            })?
            .connect_lazy();
        channels.insert(host.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Runs `call` against candidate hosts, retrying per the policy.
    pub(crate) async fn execute<T, F, Fut>(
        &self,
        key: Option<&[u8]>,
        idempotent: bool,
        call: F,
    ) -> Result<T>
    where
        F: Fn(KeyValueClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let hosts = self.inner.router.candidates(key);
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
                self.inner.router.mark_down(host);
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
    /// Sends `message` about the partition `key` through `call` as
    /// [`execute`](Self::execute) does (retried when `idempotent`), within
    /// `timeout`, its trace captured into `trace`; the answer.
    pub(crate) async fn call<M, R, F, Fut>(
        &self,
        key: &Bytes,
        message: M,
        (timeout, idempotent): (Duration, bool),
        trace: Option<&TraceCollector>,
        call: F,
    ) -> Result<R>
    where
        M: Clone,
        F: Fn(KeyValueClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let response = self
            .execute(Some(key), idempotent, |kv| {
                let sent = call(kv, self.request(message.clone(), timeout));
                async move {
                    let outcome = sent.await;
                    capture(trace, &outcome);
                    outcome
                }
            })
            .await?;
        Ok(response.into_inner())
    }

    pub(crate) fn request<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut request = self.untimed(message);
        request.set_timeout(timeout + DEADLINE_MARGIN);
        request
    }

    /// A request with no deadline, carrying the client's credentials.
    pub(crate) fn untimed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(header) = &self.inner.authorization {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        request
    }

    pub(crate) fn timeout_ms(timeout: Duration) -> u32 {
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

    pub(crate) fn write_timestamp(&self, options: &WriteOptions) -> Option<i64> {
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
        self.get_row_with(key, Bytes::new(), options).await
    }

    /// Reads the row `sort_key` of the partition `key` at the default
    /// level; `None` if it has no live value.
    pub async fn get_row(
        &self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
    ) -> Result<Option<Value>> {
        self.get_row_with(key, sort_key, &ReadOptions::default())
            .await
    }

    /// Reads the row `sort_key` of the partition `key` with options.
    pub async fn get_row_with(
        &self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        options: &ReadOptions,
    ) -> Result<Option<Value>> {
        let key = key.into();
        let timeout = options.timeout.unwrap_or(self.inner.config.request_timeout);
        let message = pb::GetRequest {
            key: key.clone(),
            sort_key: sort_key.into(),
            consistency: options
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            timeout_ms: Self::timeout_ms(timeout),
            trace: options.trace.is_some(),
        };
        let trace = options.trace.as_ref();
        let response = self
            .call(
                &key,
                message,
                (timeout, true),
                trace,
                |mut kv, r| async move { kv.get(r).await },
            )
            .await?;
        Ok(response.found.then_some(Value {
            value: response.value,
            timestamp_micros: response.timestamp_micros,
            expires_at: response.expires_at_seconds,
            expires_at_ms: response.expires_at_millis,
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
        self.put_row_with(key, Bytes::new(), value, options).await
    }

    /// Writes the row `sort_key` of the partition `key` at the default
    /// level; returns its write timestamp.
    pub async fn put_row(
        &self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<i64> {
        self.put_row_with(key, sort_key, value, &WriteOptions::default())
            .await
    }

    /// Writes the row `sort_key` of the partition `key` with options;
    /// returns its write timestamp.
    pub async fn put_row_with(
        &self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<i64> {
        let (ttl_seconds, ttl_ms) = ttl_fields(options.ttl)?;
        let key = key.into();
        let timeout = options.timeout.unwrap_or(self.inner.config.request_timeout);
        let timestamp = self.write_timestamp(options);
        let message = pb::PutRequest {
            key: key.clone(),
            sort_key: sort_key.into(),
            value: value.into(),
            consistency: options
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            ttl_seconds,
            ttl_ms,
            timestamp_micros: timestamp,
            timeout_ms: Self::timeout_ms(timeout),
            trace: options.trace.is_some(),
        };
        let (idempotent, trace) = (timestamp.is_some(), options.trace.as_ref());
        let response = self
            .call(
                &key,
                message,
                (timeout, idempotent),
                trace,
                |mut kv, r| async move { kv.put(r).await },
            )
            .await?;
        Ok(response.timestamp_micros)
    }

    /// Deletes a key at the default level; returns the tombstone's timestamp.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<i64> {
        self.delete_with(key, &WriteOptions::default()).await
    }

    /// Deletes a key with options (`ttl` is not allowed).
    pub async fn delete_with(&self, key: impl Into<Bytes>, options: &WriteOptions) -> Result<i64> {
        self.delete_of(key.into(), Deletes::Row(Bytes::new()), options)
            .await
    }

    /// Deletes the row `sort_key` of the partition `key` at the default
    /// level; returns the tombstone's timestamp.
    pub async fn delete_row(
        &self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
    ) -> Result<i64> {
        self.delete_row_with(key, sort_key, &WriteOptions::default())
            .await
    }

    /// Deletes the row `sort_key` of the partition `key` with options.
    pub async fn delete_row_with(
        &self,
        key: impl Into<Bytes>,
        sort_key: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<i64> {
        self.delete_of(key.into(), Deletes::Row(sort_key.into()), options)
            .await
    }

    /// Deletes the rows of the partition `key` whose sort keys lie in
    /// `[start, end)` (`end`: `None` for the end of the partition), with
    /// options; returns the deletion's timestamp. Rows written later with
    /// a newer timestamp are not affected.
    pub async fn delete_rows_with(
        &self,
        key: impl Into<Bytes>,
        start: impl Into<Bytes>,
        end: Option<Bytes>,
        options: &WriteOptions,
    ) -> Result<i64> {
        let rows = Deletes::Rows {
            start: start.into(),
            end,
        };
        self.delete_of(key.into(), rows, options).await
    }

    /// Deletes every row of the partition `key` (a partition deletion),
    /// with options; returns the deletion's timestamp.
    pub async fn delete_partition_with(
        &self,
        key: impl Into<Bytes>,
        options: &WriteOptions,
    ) -> Result<i64> {
        self.delete_of(key.into(), Deletes::Partition, options)
            .await
    }

    async fn delete_of(&self, key: Bytes, what: Deletes, options: &WriteOptions) -> Result<i64> {
        if options.ttl.is_some() {
            return Err(Error::InvalidArgument("a delete cannot carry a ttl".into()));
        }
        let timeout = options.timeout.unwrap_or(self.inner.config.request_timeout);
        let timestamp = self.write_timestamp(options);
        let (sort_key, rows, partition) = match what {
            Deletes::Row(sort_key) => (sort_key, None, false),
            Deletes::Rows { start, end } => {
                (Bytes::new(), Some(pb::RowRange { start, end }), false)
            }
            Deletes::Partition => (Bytes::new(), None, true),
        };
        let message = pb::DeleteRequest {
            key: key.clone(),
            sort_key,
            rows,
            partition,
            consistency: options
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            timestamp_micros: timestamp,
            timeout_ms: Self::timeout_ms(timeout),
            trace: options.trace.is_some(),
        };
        let (idempotent, trace) = (timestamp.is_some(), options.trace.as_ref());
        let response = self
            .call(
                &key,
                message,
                (timeout, idempotent),
                trace,
                |mut kv, r| async move { kv.delete(r).await },
            )
            .await?;
        Ok(response.timestamp_micros)
    }
}

/// A ttl as the API carries it, `(ttl_seconds, ttl_ms)`: the seconds
/// rounded up (what a server that knows no milliseconds reads) and the
/// milliseconds (what the others prefer); (0, 0) for none.
pub(crate) fn ttl_fields(ttl: Option<Duration>) -> Result<(u32, u64)> {
    let Some(ttl) = ttl else {
        return Ok((0, 0));
    };
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Err(Error::InvalidArgument(
            "ttl must be at least one millisecond".into(),
        ));
    }
    let seconds = u32::try_from(millis.div_ceil(1000))
        .map_err(|_| Error::InvalidArgument(format!("ttl of {}s is too long", ttl.as_secs())))?;
    Ok((seconds, millis))
}

/// What a delete removes from its partition.
enum Deletes {
    Row(Bytes),
    Rows { start: Bytes, end: Option<Bytes> },
    Partition,
}

/// Refreshes the ring periodically and when a host stops answering, until
/// every clone of the client is gone.
async fn keep_ring_fresh(inner: Weak<Inner>, router: Arc<Router>) {
    loop {
        let Some(period) = inner.upgrade().map(|i| i.config.topology_refresh) else {
            return;
        };
        router.next_refresh(period).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let client = Client { inner: strong };
        if let Err(error) = client.refresh_ring().await {
            tracing::debug!(%error, "ring refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
