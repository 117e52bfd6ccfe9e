//! The Garage K2V driver: items of one bucket over K2V's HTTP API, each
//! request signed with AWS SigV4 (service `k2v`).
//!
//! Target: `k2v://KEY_ID:SECRET@host:port[,host:port...]/BUCKET[?region=R]`
//! (region `garage` unless given). A benchmark key is a K2V partition key
//! with the fixed sort key `v`, so keys spread over Garage's ring as
//! ringkv's do. Workers take the nodes in turn; any node coordinates.
//!
//! Rows (`--rows-per-partition`) are K2V items by partition and sort key:
//! a range read is one `ReadBatch` (`POST /BUCKET?search`) with a start,
//! limit and direction, a batch of rows one `InsertBatch` (`POST
//! /BUCKET`).
//!
//! K2V keeps concurrent values side by side unless a write names the
//! causality token of what it replaces. An insert of a new key is one
//! `PUT`; an update or delete first reads the item's token, as a K2V
//! application overwriting a value must, so it costs two round trips.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{DriverError, ErrorKind};

/// The header K2V carries causality tokens in.
const TOKEN: &str = "x-garage-causality-token";
/// The sort key of every benchmark item.
const SORT_KEY: &str = "v";
/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What every worker shares: where the nodes are and how to sign.
struct Endpoints {
    nodes: Vec<String>,
    bucket: String,
    region: String,
    identity: Identity,
    next: AtomicUsize,
}

/// A K2V client on one node (each worker its own, in turn).
#[derive(Clone)]
pub struct K2v {
    endpoints: Arc<Endpoints>,
    node: usize,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// One answer: status, causality token and body.
struct Answer {
    status: StatusCode,
    token: Option<String>,
    body: Bytes,
}

impl K2v {
    /// Parses `rest` (the target after `k2v://`) and checks that the
    /// first node answers a signed read.
    pub async fn connect(rest: &str) -> Result<K2v, String> {
        let usage = "expected k2v://KEY_ID:SECRET@host:port[,host:port...]/BUCKET[?region=R]";
        let (credentials, rest) = rest
            .rsplit_once('@')
            .ok_or_else(|| format!("bad k2v target: no credentials; {usage}"))?;
        let (key_id, secret) = credentials
            .split_once(':')
            .ok_or_else(|| format!("bad k2v target: credentials are KEY_ID:SECRET; {usage}"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (nodes, bucket) = rest
            .split_once('/')
            .ok_or_else(|| format!("bad k2v target: no bucket; {usage}"))?;
        let mut region = "garage".to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("region", value)) if !value.is_empty() => region = value.to_owned(),
                _ => return Err(format!("bad k2v target option {pair:?}; {usage}")),
            }
        }
        let nodes: Vec<String> = nodes.split(',').map(str::to_owned).collect();
        if bucket.is_empty() || nodes.iter().any(String::is_empty) {
            return Err(format!("bad k2v target: empty node or bucket; {usage}"));
        }
        let identity = Credentials::new(key_id, secret, None, None, "ringkv-bench").into();
        let driver = K2v {
            endpoints: Arc::new(Endpoints {
                nodes,
                bucket: bucket.to_owned(),
                region,
                identity,
                next: AtomicUsize::new(0),
            }),
            node: 0,
            http: Client::builder(TokioExecutor::new()).build_http(),
        };
        // A read of a key no benchmark writes: 404 proves the node, the
        // bucket and the credentials.
        match driver.get("ringkv-bench-probe").await {
            Ok(_) => Ok(driver),
            Err(error) => Err(format!(
                "cannot use K2V at {}: {}",
                driver.node(),
                error.message
            )),
        }
    }

    /// The same endpoints, on the next node in turn.
    pub fn for_worker(&self) -> K2v {
        let count = self.endpoints.nodes.len();
        K2v {
            endpoints: self.endpoints.clone(),
            node: self.endpoints.next.fetch_add(1, Ordering::Relaxed) % count,
            http: self.http.clone(),
        }
    }

    fn node(&self) -> &str {
        &self.endpoints.nodes[self.node]
    }

    /// Reads an item; one of its values if a concurrent write left several.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, DriverError> {
        Ok(self.read(key, SORT_KEY).await?.map(|(value, _)| value))
    }

    /// Reads the item `sort` of `partition`.
    pub async fn get_row(&self, partition: &str, sort: &str) -> Result<Option<Bytes>, DriverError> {
        Ok(self.read(partition, sort).await?.map(|(value, _)| value))
    }

    /// Overwrites the item `sort` of `partition` (reads its token first).
    pub async fn put_row(
        &self,
        partition: &str,
        sort: &str,
        value: &Bytes,
    ) -> Result<(), DriverError> {
        let token = self.read(partition, sort).await?.map(|(_, token)| token);
        let path = self.item_path(partition, sort);
        self.write_to(Method::PUT, &path, token.as_deref(), value.clone())
            .await
    }

    /// Writes a new item `sort` of `partition` (nothing to supersede).
    pub async fn insert_row(
        &self,
        partition: &str,
        sort: &str,
        value: &Bytes,
    ) -> Result<(), DriverError> {
        let path = self.item_path(partition, sort);
        self.write_to(Method::PUT, &path, None, value.clone()).await
    }

    /// Deletes the item `sort` of `partition` (reads its token first).
    pub async fn delete_row(&self, partition: &str, sort: &str) -> Result<(), DriverError> {
        match self.read(partition, sort).await? {
            Some((_, token)) => {
                let path = self.item_path(partition, sort);
                self.write_to(Method::DELETE, &path, Some(&token), Bytes::new())
                    .await
            }
            None => Ok(()),
        }
    }

    /// Up to `limit` items of `partition` from `start` (reversed: from the
    /// last), in one `ReadBatch`; how many it returned.
    pub async fn range(
        &self,
        partition: &str,
        start: Option<&str>,
        limit: u32,
        reverse: bool,
    ) -> Result<u64, DriverError> {
        let query = serde_json::json!([{
            "partitionKey": partition,
            "start": start,
            "limit": limit,
            "reverse": reverse,
        }]);
        let body = Bytes::from(serde_json::to_vec(&query).map_err(DriverError::other)?);
        let path = format!("{}?search", self.bucket_path());
        let answer = self
            .send_to(Method::POST, &path, None, "application/json", body)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(failure(&answer));
        }
        let results: Vec<serde_json::Value> =
            serde_json::from_slice(&answer.body).map_err(DriverError::other)?;
        Ok(results
            .first()
            .and_then(|result| result["items"].as_array())
            .map_or(0, |items| items.len() as u64))
    }

    /// Writes new items of `partition` in one `InsertBatch`.
    pub async fn insert_batch(
        &self,
        partition: &str,
        rows: &[(String, Bytes)],
    ) -> Result<(), DriverError> {
        use base64::Engine as _;
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(sort, value)| {
                serde_json::json!({
                    "pk": partition,
                    "sk": sort,
                    "ct": null,
                    "v": base64::engine::general_purpose::STANDARD.encode(value),
                })
            })
            .collect();
        let body = Bytes::from(serde_json::to_vec(&items).map_err(DriverError::other)?);
        let path = self.bucket_path();
        self.write_to(Method::POST, &path, None, body).await
    }

    /// Writes a new item (no earlier value to supersede).
    pub async fn insert(&self, key: &str, value: &Bytes) -> Result<(), DriverError> {
        self.insert_row(key, SORT_KEY, value).await
    }

    /// Overwrites an item: reads its causality token, then writes.
    pub async fn put(&self, key: &str, value: &Bytes) -> Result<(), DriverError> {
        self.put_row(key, SORT_KEY, value).await
    }

    /// Deletes an item: reads its causality token, then deletes.
    pub async fn delete(&self, key: &str) -> Result<(), DriverError> {
        self.delete_row(key, SORT_KEY).await
    }

    /// `/BUCKET`.
    fn bucket_path(&self) -> String {
        format!("/{}", utf8_percent_encode(&self.endpoints.bucket, SEGMENT))
    }

    /// `/BUCKET/PARTITION?sort_key=SORT`.
    fn item_path(&self, partition: &str, sort: &str) -> String {
        format!(
            "{}/{}?sort_key={}",
            self.bucket_path(),
            utf8_percent_encode(partition, SEGMENT),
            utf8_percent_encode(sort, SEGMENT)
        )
    }

    /// The item's value and causality token, `None` if absent or deleted.
    async fn read(
        &self,
        partition: &str,
        sort: &str,
    ) -> Result<Option<(Bytes, String)>, DriverError> {
        let path = self.item_path(partition, sort);
        let answer = self
            .send_to(
                Method::GET,
                &path,
                None,
                "application/octet-stream",
                Bytes::new(),
            )
            .await?;
        match answer.status {
            StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => Ok(None),
            StatusCode::OK => {
                let token = required_token(&answer)?;
                Ok(Some((answer.body, token)))
            }
            // Several concurrent values: K2V returns them only as JSON.
            StatusCode::CONFLICT => {
                let answer = self
                    .send_to(Method::GET, &path, None, "application/json", Bytes::new())
                    .await?;
                if answer.status != StatusCode::OK {
                    return Err(failure(&answer));
                }
                let token = required_token(&answer)?;
                Ok(first_json_value(&answer.body)?.map(|value| (value, token)))
            }
            _ => Err(failure(&answer)),
        }
    }

    async fn write_to(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Bytes,
    ) -> Result<(), DriverError> {
        let answer = self.send_to(method, path, token, "*/*", body).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(failure(&answer))
        }
    }

    /// Signs and sends one request to `path` (with its query).
    async fn send_to(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        accept: &str,
        body: Bytes,
    ) -> Result<Answer, DriverError> {
        let endpoints = &self.endpoints;
        let uri = format!("http://{}{path}", self.node());
        let mut headers = vec![("accept", accept)];
        if let Some(token) = token {
            headers.push((TOKEN, token));
        }
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&endpoints.identity)
            .region(&endpoints.region)
            .name("k2v")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(DriverError::other)?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            &uri,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(DriverError::other)?;
        let (instructions, _) = sign(signable, &params)
            .map_err(DriverError::other)?
            .into_parts();
        let mut builder = Request::builder().method(method).uri(&uri);
        for (name, value) in &headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Full::new(body)).map_err(DriverError::other)?;
        instructions.apply_to_request_http1x(&mut request);
        let response = self.http.request(request).await.map_err(|e| DriverError {
            kind: if e.is_connect() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Other
            },
            message: format!("K2V request to {}: {e}", self.node()),
        })?;
        let status = response.status();
        let token = response
            .headers()
            .get(TOKEN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(DriverError::other)?
            .to_bytes();
        Ok(Answer {
            status,
            token,
            body,
        })
    }
}

fn required_token(answer: &Answer) -> Result<String, DriverError> {
    answer
        .token
        .clone()
        .ok_or_else(|| DriverError::other("K2V answered an item without a causality token"))
}

/// A non-success answer as an error: 503 is Garage's "quorum not
/// reached", 504 its timeout.
fn failure(answer: &Answer) -> DriverError {
    let kind = match answer.status {
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    };
    let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
    DriverError {
        kind,
        message: format!("K2V answered {}: {}", answer.status, text.trim()),
    }
}

/// The first live value of a JSON answer (a list of base64 strings, null
/// for a deletion).
fn first_json_value(body: &[u8]) -> Result<Option<Bytes>, DriverError> {
    use base64::Engine as _;
    let values: Vec<Option<String>> = serde_json::from_slice(body).map_err(DriverError::other)?;
    match values.into_iter().flatten().next() {
        None => Ok(None),
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(|v| Some(Bytes::from(v)))
            .map_err(DriverError::other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_give_the_first_live_value() {
        assert_eq!(
            first_json_value(br#"[null, "aGVsbG8=", "d29ybGQ="]"#).unwrap(),
            Some(Bytes::from_static(b"hello"))
        );
        assert_eq!(first_json_value(b"[null]").unwrap(), None);
        assert!(first_json_value(b"{").is_err());
        assert!(first_json_value(br#"["***"]"#).is_err());
    }

    #[tokio::test]
    async fn targets_without_credentials_or_bucket_are_refused() {
        for bad in [
            "127.0.0.1:3904/bench",
            "GK1:secret@127.0.0.1:3904",
            "GK1@127.0.0.1:3904/bench",
            "GK1:secret@127.0.0.1:3904/bench?zone=x",
            "GK1:secret@127.0.0.1:3904,/bench",
        ] {
            let error = K2v::connect(bad).await.err().expect(bad);
            assert!(error.contains("bad k2v target"), "{bad}: {error}");
        }
    }
}
