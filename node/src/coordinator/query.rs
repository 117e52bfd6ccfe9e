//! Queries: a partition's rows in a range, merged across replicas.
//!
//! 1. The range is the request's `[start, end)` narrowed by its prefix and
//!    by the page token it continues from.
//! 2. `required` live replicas (this node first, as reads) are each asked
//!    for a page of the range: its rows, tombstones included, and the
//!    partition's deletions that overlap it. A replica that fails is
//!    replaced by a spare.
//! 3. The pages are merged: per sort key the last-write-wins winner, then
//!    shadowed by the union of every replica's deletions. A replica's page
//!    that was cut short (`more`) covers the range only up to its last
//!    row, so the merge is trusted only up to the nearest such cut: past
//!    it another replica may hold a newer tombstone for a row this one
//!    returned, or a row this one did not get to.
//! 4. Replicas whose rows or deletions differ from the merge get the
//!    winners written back, and the query waits for those writes (blocking
//!    read repair, as point reads).
//! 5. If the merged rows fill the page, or no replica has more, the page
//!    is done. Otherwise the next round reads on from the cut: rows that
//!    turned out deleted (tombstones another replica held, a partition or
//!    range deletion) never end a page early or hide the rows after them.
//!    This is Cassandra's short-read protection, done by paging.
//!
//! A page token holds the direction and the last sort key returned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::trace::{Trace, millis, note};
use super::{ConsistencyLevel, Coordinator, CoordinatorError, validate_key, validate_sort_key};
use crate::identity::NodeId;
use crate::peer::ReplicaError;
use crate::ring::Token;
use crate::storage::deletions::Deletions;
use crate::storage::{BatchLimit, Cell, Mutation, RowsPage, RowsQuery, WriteMode, key, lww};

/// Rows a page holds when the request names no limit.
pub const DEFAULT_QUERY_LIMIT: usize = 1_000;
/// Most rows a page may hold.
pub const MAX_QUERY_LIMIT: usize = 10_000;
/// Bytes of rows (sort keys and values) a page holds when the request
/// names none, and at most.
pub const DEFAULT_QUERY_BYTES: usize = 1 << 20;
/// Rounds of one page: past this many a page ends with what it has (and a
/// token), so a partition of tombstones costs bounded work per request.
const MAX_ROUNDS: usize = 16;
/// Rows asked of each replica in a round after the first at least, so
/// that a page of few rows over many tombstones does not take a round per
/// tombstone. The first round asks for the page's own limit: most pages
/// meet few tombstones, and rows read past the limit are work thrown away.
const MIN_ROWS_ASKED: usize = 100;

/// A query of one partition's rows.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The partition key.
    pub key: Bytes,
    /// Included.
    pub start: Bytes,
    /// Excluded; `None`: to the last row.
    pub end: Option<Bytes>,
    /// Only sort keys with this prefix.
    pub prefix: Bytes,
    /// Rows in the page; 0: [`DEFAULT_QUERY_LIMIT`].
    pub limit: usize,
    /// Bytes of rows in the page; 0: [`DEFAULT_QUERY_BYTES`].
    pub max_bytes: usize,
    pub reverse: bool,
    /// From the previous page's answer.
    pub page_token: Bytes,
    pub level: ConsistencyLevel,
    pub timeout: Option<Duration>,
    pub trace: Option<Arc<Trace>>,
}

/// A live row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub sort_key: Bytes,
    pub value: Bytes,
    pub timestamp: i64,
    /// When it expires (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
}

/// How many live rows a range holds, counted up to a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    pub count: u64,
    /// The count stopped at the limit.
    pub truncated: bool,
}

/// Rows counted when the request names no limit.
pub const DEFAULT_COUNT_LIMIT: u64 = 1_000_000;

/// A page of rows, and where the next starts (`None`: the range is done).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPage {
    pub rows: Vec<Row>,
    pub page_token: Option<Bytes>,
}

const TOKEN_VERSION: u8 = 1;

/// The page token that continues after `sort_key`.
fn page_token(reverse: bool, sort_key: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(2 + sort_key.len());
    out.push(TOKEN_VERSION);
    out.push(u8::from(reverse));
    out.extend_from_slice(sort_key);
    Bytes::from(out)
}

/// The sort key a page token continues after.
fn continue_after(token: &Bytes, reverse: bool) -> Result<Option<Bytes>, CoordinatorError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| CoordinatorError::InvalidArgument(format!("bad page token: {why}"));
    match token.as_ref() {
        [TOKEN_VERSION, direction, ..] if *direction == u8::from(reverse) => {
            let after = token.slice(2..);
            validate_sort_key(&after)?;
            Ok(Some(after))
        }
        [TOKEN_VERSION, _, ..] => Err(bad("it continues a query in the other direction")),
        _ => Err(bad("not one this cluster made")),
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`; `None` when there is none (the prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(Bytes::from(end))
}

/// The smaller of two exclusive ends, `None` being "no end".
fn min_end(a: Option<Bytes>, b: Option<Bytes>) -> Option<Bytes> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The range a query still has to read: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    start: Bytes,
    end: Option<Bytes>,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| *end <= self.start)
    }

    /// What is left after the rows up to `cut` were read.
    fn after(&self, cut: &Bytes, reverse: bool) -> Window {
        if reverse {
            Window {
                start: self.start.clone(),
                end: min_end(self.end.clone(), Some(cut.clone())),
            }
        } else {
            // The smallest key greater than `cut`.
            let mut next = cut.to_vec();
            next.push(0);
            Window {
                start: self.start.clone().max(Bytes::from(next)),
                end: self.end.clone(),
            }
        }
    }
}

/// What one round's pages merge into.
#[derive(Debug, Default)]
struct Merged {
    /// The live rows up to the cut, in the query's order.
    rows: Vec<Row>,
    /// The last sort key the merge is sure of; `None`: every page reached
    /// the end of the window.
    cut: Option<Bytes>,
    /// Per replica, the cells it must be sent: rows it lacks or holds an
    /// older version of, and the deletions entry when its differ.
    repairs: Vec<(NodeId, Vec<(Bytes, Cell)>)>,
}

/// Merges replicas' pages of one window (see the module docs).
fn merge(pages: &[(NodeId, RowsPage)], partition: &[u8], reverse: bool, now_ms: i64) -> Merged {
    // The nearest cut of a page that did not reach the window's end.
    let cut = pages
        .iter()
        .filter(|(_, page)| page.more)
        .filter_map(|(_, page)| page.rows.last().map(|(sort, _)| sort.clone()))
        .reduce(|a, b| if reverse { a.max(b) } else { a.min(b) });
    let within = |sort: &Bytes| match &cut {
        None => true,
        Some(cut) if reverse => sort >= cut,
        Some(cut) => sort <= cut,
    };
    let mut deletions = Deletions::default();
    for (_, page) in pages {
        if let Some(theirs) = &page.deletions {
            deletions.merge(theirs);
        }
    }
    let mut winners: BTreeMap<Bytes, Cell> = BTreeMap::new();
    for (_, page) in pages {
        for (sort, cell) in page.rows.iter().filter(|(sort, _)| within(sort)) {
            let merged = match winners.remove(sort) {
                Some(held) => lww::merge(held, cell.clone()),
                None => cell.clone(),
            };
            winners.insert(sort.clone(), merged);
        }
    }
    // What each replica should hold: the winner, unless a deletion shadows
    // it (the deletions entry carries that).
    let mut repairs = Vec::new();
    for (node, page) in pages {
        let held: BTreeMap<&Bytes, &Cell> = page.rows.iter().map(|(s, c)| (s, c)).collect();
        let mut send: Vec<(Bytes, Cell)> = winners
            .iter()
            .filter(|(sort, winner)| {
                !deletions.shadows(sort, *winner) && held.get(*sort) != Some(winner)
            })
            .map(|(sort, winner)| {
                (
                    Bytes::from(key::row_key(partition, sort)),
                    (*winner).clone(),
                )
            })
            .collect();
        if page.deletions.as_ref().unwrap_or(&Deletions::default()) != &deletions
            && let Some(cell) = deletions.to_cell()
        {
            send.push((Bytes::from(key::deletions_key(partition)), cell));
        }
        if !send.is_empty() {
            repairs.push((*node, send));
        }
    }
    let mut rows: Vec<Row> = winners
        .into_iter()
        .filter(|(sort, winner)| !deletions.shadows(sort, winner) && winner.is_live_ms(now_ms))
        .map(|(sort_key, winner)| Row {
            sort_key,
            expires_at_ms: winner.expires_at_ms(),
            value: winner.value,
            timestamp: winner.timestamp,
        })
        .collect();
    if reverse {
        rows.reverse();
    }
    Merged { rows, cut, repairs }
}

type Ask = BoxFuture<'static, (NodeId, Result<RowsPage, ReplicaError>)>;

impl Coordinator {
    /// A page of the rows of `request.key` in its range.
    pub async fn query(&self, request: QueryRequest) -> Result<QueryPage, CoordinatorError> {
        validate_key(&request.key)?;
        for bound in [
            Some(&request.start),
            request.end.as_ref(),
            Some(&request.prefix),
        ]
        .into_iter()
        .flatten()
        {
            validate_sort_key(bound)?;
        }
        if request.level == ConsistencyLevel::Any {
            return Err(CoordinatorError::InvalidArgument(
                "consistency level ANY is for writes only; queries need at least ONE".into(),
            ));
        }
        let limit = match request.limit {
            0 => DEFAULT_QUERY_LIMIT,
            n if n > MAX_QUERY_LIMIT => {
                return Err(CoordinatorError::InvalidArgument(format!(
                    "a query asks for {n} rows; the limit is {MAX_QUERY_LIMIT} a page"
                )));
            }
            n => n,
        };
        let max_bytes = match request.max_bytes {
            0 => DEFAULT_QUERY_BYTES,
            n => n.min(DEFAULT_QUERY_BYTES),
        };
        let after = continue_after(&request.page_token, request.reverse)?;
        let mut window = Window {
            start: request.start.clone().max(request.prefix.clone()),
            end: min_end(request.end.clone(), prefix_end(&request.prefix)),
        };
        if let Some(after) = &after {
            window = window.after(after, request.reverse);
        }

        let view = self.view.load_full();
        let token = Token::of(&request.key);
        let trace = request.trace.clone();
        let local = view.local();
        let plan = self
            .plan(&view, token, request.level, false)
            .inspect_err(|error| note(&trace, local, || format!("not sent: {error}")))?;
        let required = plan.required;
        let order = self.read_order(&view, plan.alive);
        let timeout = request.timeout.map_or(self.settings.read_timeout, |t| {
            t.min(self.settings.read_timeout)
        });
        let deadline = Instant::now() + timeout;
        note(&trace, local, || {
            format!(
                "querying at {} (token {}): {} live replicas, {required} required",
                request.level,
                token.0,
                order.len()
            )
        });

        let mut page = QueryPage::default();
        let mut bytes = 0usize;
        for round in 0..MAX_ROUNDS {
            if window.is_empty() {
                return Ok(page);
            }
            let wanted = limit - page.rows.len();
            let query = RowsQuery {
                partition: request.key.clone(),
                start: window.start.clone(),
                end: window.end.clone(),
                reverse: request.reverse,
                limit: BatchLimit {
                    entries: if round == 0 {
                        wanted
                    } else {
                        wanted.clamp(MIN_ROWS_ASKED, MAX_QUERY_LIMIT)
                    },
                    bytes: max_bytes - bytes.min(max_bytes),
                },
            };
            let pages = self
                .gather(token, &query, (&order, required), deadline, &trace)
                .await?;
            let merged = merge(
                &pages,
                &request.key,
                request.reverse,
                self.clock.wall().millis(),
            );
            note(&trace, local, || {
                format!(
                    "round {}: {} live rows merged from {} replicas; {}",
                    round + 1,
                    merged.rows.len(),
                    pages.len(),
                    match &merged.cut {
                        Some(_) => "a replica has more",
                        None => "the range is done",
                    }
                )
            });
            self.repair_rows(
                token,
                merged.repairs,
                pages.len(),
                (required, deadline),
                &trace,
            )
            .await?;
            for row in merged.rows {
                let size = row.sort_key.len() + row.value.len();
                if page.rows.len() == limit || (!page.rows.is_empty() && bytes + size > max_bytes) {
                    page.page_token = page
                        .rows
                        .last()
                        .map(|last| page_token(request.reverse, &last.sort_key));
                    return Ok(page);
                }
                bytes += size;
                page.rows.push(row);
            }
            let Some(cut) = merged.cut else {
                return Ok(page);
            };
            if page.rows.len() == limit {
                page.page_token = Some(page_token(request.reverse, &cut));
                return Ok(page);
            }
            window = window.after(&cut, request.reverse);
            if round + 1 == MAX_ROUNDS {
                // Bounded work: the rest comes with the next page.
                page.page_token = Some(page_token(request.reverse, &cut));
            }
        }
        Ok(page)
    }

    /// Counts the live rows of `request`'s range (its limit, page token and
    /// byte cap ignored), up to `limit` (0: [`DEFAULT_COUNT_LIMIT`]), page
    /// by page within the request's one timeout.
    pub async fn count(
        &self,
        mut request: QueryRequest,
        limit: u64,
    ) -> Result<RowCount, CoordinatorError> {
        let limit = if limit == 0 {
            DEFAULT_COUNT_LIMIT
        } else {
            limit
        };
        let timeout = request.timeout.map_or(self.settings.read_timeout, |t| {
            t.min(self.settings.read_timeout)
        });
        let deadline = Instant::now() + timeout;
        request.limit = MAX_QUERY_LIMIT;
        request.max_bytes = DEFAULT_QUERY_BYTES;
        request.page_token = Bytes::new();
        let mut count = 0u64;
        loop {
            request.timeout = Some(deadline.saturating_duration_since(Instant::now()));
            if request.timeout == Some(Duration::ZERO) {
                return Err(CoordinatorError::Timeout {
                    required: 1,
                    received: 0,
                });
            }
            let page = self.query(request.clone()).await?;
            count += page.rows.len() as u64;
            if count >= limit {
                return Ok(RowCount {
                    count: limit,
                    truncated: page.page_token.is_some() || count > limit,
                });
            }
            match page.page_token {
                Some(token) => request.page_token = token,
                None => {
                    return Ok(RowCount {
                        count,
                        truncated: false,
                    });
                }
            }
        }
    }

    /// Pages of `query` from `required` replicas of `order`, spares asked
    /// for replicas that fail.
    async fn gather(
        &self,
        token: Token,
        query: &RowsQuery,
        (order, required): (&[NodeId], usize),
        deadline: Instant,
        trace: &Option<Arc<Trace>>,
    ) -> Result<Vec<(NodeId, RowsPage)>, CoordinatorError> {
        let ask = |node: NodeId| -> Ask {
            note(trace, node, || "asked for a page of rows".into());
            let request = self.transport.query(node, token, query.clone());
            let trace = trace.clone();
            Box::pin(async move {
                let sent = Instant::now();
                let answer = request.await;
                note(&trace, node, || match &answer {
                    Ok(page) => format!(
                        "answered {} rows{} in {}",
                        page.rows.len(),
                        if page.more { " and more" } else { "" },
                        millis(sent.elapsed())
                    ),
                    Err(error) => format!("failed: {error}"),
                });
                (node, answer)
            })
        };
        let mut spares = order.iter().skip(required);
        let mut pending: FuturesUnordered<Ask> =
            order.iter().take(required).map(|node| ask(*node)).collect();
        let mut pages = Vec::with_capacity(required);
        let mut reasons = Vec::new();
        while pages.len() < required {
            let Ok(next) = tokio::time::timeout_at(deadline, pending.next()).await else {
                return Err(CoordinatorError::Timeout {
                    required,
                    received: pages.len(),
                });
            };
            match next {
                Some((node, Ok(page))) => pages.push((node, page)),
                Some((node, Err(error))) => {
                    reasons.push(format!("{node}: {error}"));
                    if let Some(spare) = spares.next() {
                        pending.push(ask(*spare));
                    }
                }
                None => {
                    return Err(CoordinatorError::Failed {
                        required,
                        received: pages.len(),
                        reasons,
                    });
                }
            }
        }
        Ok(pages)
    }

    /// Writes each replica the rows and deletions it lacked and waits for
    /// them (blocking read repair): to each replica as few mutations as
    /// the internode batch bounds allow, so that rows a partition batch
    /// wrote together land together (a repair of part of a partition can
    /// still bring a replica part of a batch whose other rows lie outside
    /// the page: Cassandra's CASSANDRA-14593 too).
    async fn repair_rows(
        &self,
        token: Token,
        repairs: Vec<(NodeId, Vec<(Bytes, Cell)>)>,
        received: usize,
        (required, deadline): (usize, Instant),
        trace: &Option<Arc<Trace>>,
    ) -> Result<(), CoordinatorError> {
        if repairs.is_empty() {
            return Ok(());
        }
        let cells: usize = repairs.iter().map(|(_, cells)| cells.len()).sum();
        note(trace, self.view.load().local(), || {
            format!(
                "read repair: {cells} rows or deletions to {} replicas",
                repairs.len()
            )
        });
        metrics::counter!(crate::metrics::READ_REPAIRS, "kind" => "blocking")
            .increment(cells as u64);
        let writes: FuturesUnordered<_> = repairs
            .into_iter()
            .flat_map(|(node, cells)| {
                in_batches(cells).into_iter().map(move |cells| {
                    let mutation = Mutation::new(token, cells);
                    self.transport
                        .write_reporting(node, mutation, WriteMode::repair())
                })
            })
            .collect();
        let outcomes: Vec<_> = tokio::time::timeout_at(deadline, writes.collect())
            .await
            .map_err(|_| CoordinatorError::Timeout { required, received })?;
        if outcomes.iter().any(Result::is_err) {
            return Err(CoordinatorError::Timeout { required, received });
        }
        Ok(())
    }
}

/// `cells` cut into runs an internode batch takes (see `BatchLimit`).
fn in_batches(cells: Vec<(Bytes, Cell)>) -> Vec<Vec<(Bytes, Cell)>> {
    let limit = BatchLimit::default();
    let mut runs: Vec<Vec<(Bytes, Cell)>> = Vec::new();
    let mut bytes = 0;
    for (row, cell) in cells {
        let size = row.len() + cell.value.len();
        match runs.last_mut() {
            Some(run) if limit.admits(run.len(), bytes, size) => {
                bytes += size;
                run.push((row, cell));
            }
            _ => {
                bytes = size;
                runs.push(vec![(row, cell)]);
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_go_in_as_few_bounded_batches_as_they_fit() {
        let cell = |n: usize| Cell::live(1, Bytes::from(vec![0; n]), None);
        let rows = |n: usize, size: usize| {
            (0..n)
                .map(|i| (Bytes::from(format!("r{i}")), cell(size)))
                .collect::<Vec<_>>()
        };
        assert_eq!(in_batches(rows(3, 10)).len(), 1);
        let many = in_batches(rows(1_200, 10));
        assert_eq!(
            many.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        let big = in_batches(rows(3, 700 << 10));
        assert_eq!(big.len(), 3, "one value over half the byte bound each");
        assert!(in_batches(Vec::new()).is_empty());
    }

    fn node(n: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(n))
    }

    fn live(ts: i64) -> Cell {
        Cell::live(ts, Bytes::from(format!("v{ts}")), None)
    }

    fn page(rows: &[(&'static str, Cell)], more: bool) -> RowsPage {
        RowsPage {
            deletions: None,
            rows: rows
                .iter()
                .map(|(s, c)| (Bytes::from_static(s.as_bytes()), c.clone()))
                .collect(),
            more,
        }
    }

    fn sorts(merged: &Merged) -> Vec<&[u8]> {
        merged.rows.iter().map(|r| r.sort_key.as_ref()).collect()
    }

    #[test]
    fn prefixes_end_where_their_strings_do() {
        assert_eq!(prefix_end(b"ab"), Some(Bytes::from_static(b"ac")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn page_tokens_continue_after_their_row_in_their_direction() {
        let token = page_token(false, b"t5");
        assert_eq!(
            continue_after(&token, false).expect("ok"),
            Some(Bytes::from_static(b"t5"))
        );
        assert!(continue_after(&token, true).is_err(), "other direction");
        assert!(continue_after(&Bytes::from_static(b"\x09x"), false).is_err());
        let window = Window {
            start: Bytes::new(),
            end: None,
        };
        let next = window.after(&Bytes::from_static(b"t5"), false);
        assert!(next.start.as_ref() > b"t5".as_slice());
        assert!(
            next.start.as_ref() < b"t50".as_slice(),
            "t50 is still to come"
        );
        let back = window.after(&Bytes::from_static(b"t5"), true);
        assert_eq!(back.end, Some(Bytes::from_static(b"t5")));
    }

    /// Replica 1 stopped at t3 (it has more); replica 2 returned all. The
    /// merge is sure only up to t3: t4 waits for the next round, whatever
    /// replica 1 may hold for it.
    #[test]
    fn a_page_cut_short_bounds_the_merge() {
        let pages = vec![
            (node(1), page(&[("t1", live(1)), ("t3", live(1))], true)),
            (
                node(2),
                page(&[("t1", live(1)), ("t2", live(2)), ("t4", live(1))], false),
            ),
        ];
        let merged = merge(&pages, b"p", false, 0);
        assert_eq!(sorts(&merged), [b"t1".as_slice(), b"t2", b"t3"]);
        assert_eq!(merged.cut, Some(Bytes::from_static(b"t3")));
        // Each replica is sent what it lacked up to the cut.
        let to = |n| {
            merged
                .repairs
                .iter()
                .find(|(held, _)| *held == node(n))
                .map(|(_, cells)| cells.len())
        };
        assert_eq!(to(1), Some(1), "t2");
        assert_eq!(to(2), Some(1), "t3");
    }

    /// A newer tombstone on one replica hides the row another returned,
    /// and a range deletion one replica holds hides rows of every replica.
    #[test]
    fn tombstones_and_deletions_of_any_replica_win() {
        use crate::storage::deletions::Deletion;
        let mut deleting = page(&[("t1", Cell::tombstone(5, 0))], false);
        deleting.deletions = Some(Deletions::of_range(
            Bytes::from_static(b"t5"),
            None,
            Deletion {
                timestamp: 9,
                deleted_at: 0,
            },
        ));
        let pages = vec![
            (node(1), deleting),
            (
                node(2),
                page(
                    &[
                        ("t1", live(4)),
                        ("t2", live(4)),
                        ("t6", live(8)),
                        ("t7", live(10)),
                    ],
                    false,
                ),
            ),
        ];
        let merged = merge(&pages, b"p", true, 0);
        // Reversed; t1 deleted, t6 under the range deletion at 9, t7 newer.
        assert_eq!(sorts(&merged), [b"t7".as_slice(), b"t2"]);
        let repairs: BTreeMap<NodeId, usize> = merged
            .repairs
            .iter()
            .map(|(n, cells)| (*n, cells.len()))
            .collect();
        // Node 2: the t1 tombstone and the deletions entry; node 1: t2, t7.
        assert_eq!(repairs.get(&node(2)), Some(&2));
        assert_eq!(repairs.get(&node(1)), Some(&2));
    }
}
