//! [`Client`]: connects to a node and runs reads and writes through it.

use std::time::Duration;

use bytes::Bytes;
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use ringkv_proto::v1::key_value_client::KeyValueClient;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::options::{ReadOptions, WriteOptions};
use crate::{Consistency, DEFAULT_PORT};

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
    /// Default time a request may take.
    pub request_timeout: Duration,
    /// Default consistency level.
    pub consistency: Consistency,
}

impl ClientConfig {
    /// Defaults (QUORUM, 5 s to connect, 10 s per request) for these hosts.
    pub fn new<S: Into<String>>(hosts: impl IntoIterator<Item = S>) -> Self {
        Self {
            hosts: hosts.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            consistency: Consistency::Quorum,
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
}

/// A connection to a ringkv cluster. Cheap to clone; clones share the
/// connection.
#[derive(Debug, Clone)]
pub struct Client {
    kv: KeyValueClient<Channel>,
    admin: AdminClient<Channel>,
    config: ClientConfig,
    host: String,
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

async fn open_channel(host: &str, connect_timeout: Duration) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(endpoint_uri(host))
        .map_err(|e| format!("bad address {host:?}: {}", describe(&e)))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(format!("{host}: {}", describe(&error))),
        Err(_) => Err(format!("{host}: connection timed out")),
    }
}

impl Client {
    /// Connects to the first of `config.hosts` that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.hosts.is_empty() {
            return Err(Error::Connect {
                hosts: String::new(),
                reason: "no host given".into(),
            });
        }
        let mut reasons = Vec::new();
        for host in &config.hosts {
            match open_channel(host, config.connect_timeout).await {
                Ok(channel) => {
                    let host = host.clone();
                    return Ok(Self::over(channel, config, host));
                }
                Err(reason) => reasons.push(reason),
            }
        }
        Err(Error::Connect {
            hosts: config.hosts.join(", "),
            reason: reasons.join("; "),
        })
    }

    fn over(channel: Channel, config: ClientConfig, host: String) -> Client {
        Client {
            kv: KeyValueClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            admin: AdminClient::new(channel),
            config,
            host,
        }
    }

    /// The host this client is connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Wraps a message with the deadline: the coordinator gets `timeout`,
    /// the transport a little more.
    fn request<T>(&self, message: T, timeout: Option<Duration>) -> (Request<T>, u32) {
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        let mut request = Request::new(message);
        request.set_timeout(timeout + DEADLINE_MARGIN);
        let ms = u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        (request, ms)
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
        let message = pb::GetRequest {
            key: key.into(),
            consistency: options
                .consistency
                .unwrap_or(self.config.consistency)
                .to_proto(),
            timeout_ms: 0,
        };
        let (mut request, ms) = self.request(message, options.timeout);
        request.get_mut().timeout_ms = ms;
        let response = self.kv.clone().get(request).await?.into_inner();
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
        let message = pb::PutRequest {
            key: key.into(),
            value: value.into(),
            consistency: options
                .consistency
                .unwrap_or(self.config.consistency)
                .to_proto(),
            ttl_seconds,
            timestamp_micros: options.timestamp_micros,
            timeout_ms: 0,
        };
        let (mut request, ms) = self.request(message, options.timeout);
        request.get_mut().timeout_ms = ms;
        Ok(self
            .kv
            .clone()
            .put(request)
            .await?
            .into_inner()
            .timestamp_micros)
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
        let message = pb::DeleteRequest {
            key: key.into(),
            consistency: options
                .consistency
                .unwrap_or(self.config.consistency)
                .to_proto(),
            timestamp_micros: options.timestamp_micros,
            timeout_ms: 0,
        };
        let (mut request, ms) = self.request(message, options.timeout);
        request.get_mut().timeout_ms = ms;
        Ok(self
            .kv
            .clone()
            .delete(request)
            .await?
            .into_inner()
            .timestamp_micros)
    }

    /// Identity and version of the connected node.
    pub async fn node_info(&self) -> Result<NodeInfo> {
        let (request, _) = self.request(pb::NodeInfoRequest {}, None);
        let info = self.admin.clone().node_info(request).await?.into_inner();
        Ok(NodeInfo {
            id: info.node_id,
            name: info.node_name,
            version: info.version,
            uptime_seconds: info.uptime_seconds,
            replication_factor: info.replication_factor,
        })
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
