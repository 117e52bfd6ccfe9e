//! Connections to nodes: addresses, channels, and telling transport
//! failures from answers.

use std::time::Duration;

use ringkv_proto::v1::key_value_client::KeyValueClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::DEFAULT_PORT;
use crate::error::Result;
use crate::tls::TlsOptions;

/// `host:port` → `http://host:port` (`https` with TLS), adding the
/// default port if missing.
pub(crate) fn endpoint_uri(host: &str, tls: bool) -> String {
    let bare = host
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let scheme = if tls { "https" } else { "http" };
    let has_port = bare
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        format!("{scheme}://{bare}")
    } else {
        format!("{scheme}://{bare}:{DEFAULT_PORT}")
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

pub(crate) fn endpoint(
    host: &str,
    connect_timeout: Duration,
    tls: Option<&TlsOptions>,
) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(endpoint_uri(host, tls.is_some()))
        .map(|e| e.connect_timeout(connect_timeout).tcp_nodelay(true))
        .map_err(|e| format!("bad address {host:?}: {}", describe(&e)))?;
    match tls {
        None => Ok(endpoint),
        Some(tls) => endpoint
            .tls_config(tls.config())
            .map_err(|e| format!("TLS settings for {host:?}: {}", describe(&e))),
    }
}

pub(crate) async fn open_channel(
    host: &str,
    connect_timeout: Duration,
    tls: Option<&TlsOptions>,
) -> Result<Channel, String> {
    let endpoint = endpoint(host, connect_timeout, tls)?;
    match tokio::time::timeout(connect_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(error)) => Err(format!("{host}: {}", describe(&error))),
        Err(_) => Err(format!("{host}: connection timed out")),
    }
}

/// True for failures of the connection rather than answers of a node: the
/// request should move to another host.
pub(crate) fn is_transport_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.details().is_empty()
}

pub(crate) fn kv_client(channel: Channel) -> KeyValueClient<Channel> {
    KeyValueClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_uris() {
        assert_eq!(
            endpoint_uri("127.0.0.1:7500", false),
            "http://127.0.0.1:7500"
        );
        assert_eq!(endpoint_uri("localhost", false), "http://localhost:7400");
        assert_eq!(endpoint_uri("http://db1:7400", false), "http://db1:7400");
        assert_eq!(endpoint_uri("[::1]:7401", false), "http://[::1]:7401");
        assert_eq!(endpoint_uri("db1", true), "https://db1:7400");
        assert_eq!(endpoint_uri("https://db1:7401", true), "https://db1:7401");
    }
}
