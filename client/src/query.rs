//! Queries of a partition's rows: a page at a time, or as a stream that
//! pages by itself.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use ringkv_proto::v1 as pb;

use crate::client::Client;
use crate::trace::TraceCollector;
use crate::trace::capture;
use crate::{Consistency, Result};

/// Which rows of a partition a query reads, and how. The default reads
/// every row in sort order, a page of 1,000 rows (or 1 MiB) at a time, at
/// the client's level.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// First sort key (included); empty: the first row.
    pub start: Bytes,
    /// Last sort key (excluded); `None`: to the last row.
    pub end: Option<Bytes>,
    /// Only sort keys that start with it.
    pub prefix: Bytes,
    /// Rows a page holds at most; 0: the server's default (1,000; at most
    /// 10,000).
    pub limit: u32,
    /// Bytes of rows a page holds at most; 0: 1 MiB.
    pub max_bytes: u32,
    /// Largest sort key first.
    pub reverse: bool,
    /// Consistency level of each page's read.
    pub consistency: Option<Consistency>,
    /// How long to wait for each page.
    pub timeout: Option<Duration>,
    /// Trace each page's request into this collector.
    pub trace: Option<TraceCollector>,
}

impl Query {
    /// Every row, in sort order.
    pub fn new() -> Self {
        Self::default()
    }

    /// From this sort key (included).
    pub fn from(mut self, start: impl Into<Bytes>) -> Self {
        self.start = start.into();
        self
    }

    /// Up to this sort key (excluded).
    pub fn to(mut self, end: impl Into<Bytes>) -> Self {
        self.end = Some(end.into());
        self
    }

    /// Only sort keys with this prefix.
    pub fn prefix(mut self, prefix: impl Into<Bytes>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Rows a page holds at most.
    pub fn limit(mut self, rows: u32) -> Self {
        self.limit = rows;
        self
    }

    /// Largest sort key first.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// The consistency level of every page's read.
    pub fn consistency(mut self, level: Consistency) -> Self {
        self.consistency = Some(level);
        self
    }
}

/// A live row of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its sort key.
    pub sort_key: Bytes,
    /// Its value.
    pub value: Bytes,
    /// Its write timestamp, microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// When it expires (Unix seconds), if it has a TTL.
    pub expires_at: Option<i64>,
    /// When it expires, to the millisecond (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
}

/// One page of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The rows, in the query's order.
    pub rows: Vec<Row>,
    /// Pass it to [`Client::query_page`] for the next page; `None` when the
    /// range holds no more rows.
    pub next: Option<Bytes>,
}

/// How many live rows a range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    /// The rows counted.
    pub count: u64,
    /// Counting stopped at the limit: there may be more.
    pub truncated: bool,
}

impl Client {
    /// One page of the rows of the partition `key`; `page` is `None` for
    /// the first page and the previous page's `next` after it.
    pub async fn query_page(
        &self,
        key: impl Into<Bytes>,
        query: &Query,
        page: Option<Bytes>,
    ) -> Result<Page> {
        let key = key.into();
        let timeout = query.timeout.unwrap_or(self.inner.config.request_timeout);
        let message = pb::QueryRequest {
            key: key.clone(),
            start: query.start.clone(),
            end: query.end.clone(),
            prefix: query.prefix.clone(),
            limit: query.limit,
            max_bytes: query.max_bytes,
            reverse: query.reverse,
            page_token: page.unwrap_or_default(),
            consistency: query
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            timeout_ms: Self::timeout_ms(timeout),
            trace: query.trace.is_some(),
        };
        let collector = query.trace.as_ref();
        let response = self
            .execute(Some(&key), true, |mut kv| {
                let request = self.request(message.clone(), timeout);
                async move {
                    let outcome = kv.query(request).await;
                    capture(collector, &outcome);
                    outcome
                }
            })
            .await?
            .into_inner();
        Ok(Page {
            rows: response
                .rows
                .into_iter()
                .map(|row| Row {
                    sort_key: row.sort_key,
                    value: row.value,
                    timestamp_micros: row.timestamp_micros,
                    expires_at: row.expires_at_seconds,
                    expires_at_ms: row.expires_at_millis,
                })
                .collect(),
            next: (!response.page_token.is_empty()).then_some(response.page_token),
        })
    }

    /// Every row of the query, page after page, as a stream; it stops at
    /// the first error.
    pub fn query(&self, key: impl Into<Bytes>, query: Query) -> impl Stream<Item = Result<Row>> {
        let key = key.into();
        let client = self.clone();
        // State: the rows of the page being handed out, and where the next
        // page starts (`None` once the last page was read).
        let start = (Vec::new().into_iter(), Some(None::<Bytes>));
        futures::stream::unfold(start, move |(mut rows, mut next)| {
            let (client, key, query) = (client.clone(), key.clone(), query.clone());
            async move {
                loop {
                    if let Some(row) = rows.next() {
                        return Some((Ok(row), (rows, next)));
                    }
                    let page = next.take()?;
                    match client.query_page(key.clone(), &query, page).await {
                        Ok(page) => {
                            rows = page.rows.into_iter();
                            next = page.next.map(Some);
                        }
                        Err(error) => return Some((Err(error), (rows, None))),
                    }
                }
            }
        })
    }

    /// Counts the live rows of the query's range (its limit and direction
    /// do not matter), up to `limit` rows (0: 1,000,000).
    pub async fn count(
        &self,
        key: impl Into<Bytes>,
        query: &Query,
        limit: u64,
    ) -> Result<RowCount> {
        let key = key.into();
        let timeout = query.timeout.unwrap_or(self.inner.config.request_timeout);
        let message = pb::CountRequest {
            key: key.clone(),
            start: query.start.clone(),
            end: query.end.clone(),
            prefix: query.prefix.clone(),
            consistency: query
                .consistency
                .unwrap_or(self.inner.config.consistency)
                .to_proto(),
            timeout_ms: Self::timeout_ms(timeout),
            limit,
        };
        let response = self
            .execute(Some(&key), true, |mut kv| {
                let request = self.request(message.clone(), timeout);
                async move { kv.count(request).await }
            })
            .await?
            .into_inner();
        Ok(RowCount {
            count: response.count,
            truncated: response.truncated,
        })
    }
}
