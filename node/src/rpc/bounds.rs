//! Bounds on what a peer may ask of this node.
//!
//! The internode API is for other nodes, but anything that reaches its port
//! can send it requests, and a buggy peer can send nonsense. Every request
//! is checked here before it touches the store or allocates in proportion
//! to a number it names; a request that breaks a bound gets
//! `INVALID_ARGUMENT` naming the bound, and the node goes on serving.
//!
//! 1. **Batches** (`WriteBatch`, `ReadBatch`): at most
//!    [`MAX_BATCH_ENTRIES`] entries and [`MAX_BATCH_BYTES`] bytes (keys
//!    and cells), except that one entry may go alone; every key is checked
//!    as a row key whose partition key is checked as a client's key. A key named twice is looked up once, and a write
//!    batch keeps the last-write-wins winner of its cells.
//! 2. **Cells** (`Write`, `WriteBatch`) are checked as a client's write:
//!    a timestamp that is not negative and not more than
//!    `max_clock_skew_ms` ahead of this node's clock (a cell stamped
//!    `i64::MAX` could never be overwritten), a value within
//!    `max_value_size`, a deletion time or expiry that is not negative and
//!    not further ahead than a client could set it.
//! 3. **Merkle trees** (`MerkleNodes`): the range lies inside one range of
//!    the ring this node knows (before or after a change in progress);
//!    `leaves` is the shape this node uses for that range; at most one
//!    index per tree node. Only trees of whole ring ranges are cached: a
//!    part of one (a peer whose ring differs for a moment) is hashed for
//!    that answer alone, so no peer can push the node's own trees out.
//! 4. **Leaf digests** (`LeafDigests`): the range is no wider than one leaf
//!    of the ring range holding it, so one answer holds one leaf's keys,
//!    never the keyspace. (`StreamRange` pages through any range, a page
//!    of at most one batch at a time: topology changes stream merged runs
//!    of ring ranges.)
//! 5. **Callers**: with internode TLS, a caller must present a certificate
//!    carrying `internode_tls_server_name` (a node's, not a client's of the
//!    same CA); see `PeerService::admit`.
//!
//! CAVEATS: the ring checks use this node's view; for a moment after a
//! topology change a peer whose view differs may be refused a comparison
//! (its repair lists the range as failed and the next run covers it).
//! Messages are decoded before these checks. Requests of keys and ranges
//! only are held to 2 MiB before decoding (`rpc::limit::BodyLimit`), but a
//! `Write` or `WriteBatch` may take memory in proportion to the service's
//! message limit (tens of MiB, which empty entries decode into many small
//! objects); the in-flight limit counts requests, not bytes. Without internode TLS, anyone reaching the port can still
//! read and write any key through it, one bounded request at a time.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use ringkv_proto::internal::v2 as pbi;
use tonic::Status;

use super::convert;
use crate::clock::{SkewLimit, Timestamp};
use crate::coordinator::{
    MAX_SORT_KEY_SIZE, MAX_TTL_SECONDS, validate_key, validate_row_key, validate_sort_key,
};
use crate::membership::ClusterView;
use crate::peer::MerkleTree;
use crate::peer::tree::LEAVES_PER_RANGE;
use crate::ring::{Ring, Token, TokenRange};
use crate::storage::Cell;
use crate::storage::batch::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};
use crate::storage::deletions::merge_entry;
use crate::storage::{BatchLimit, Mutation, RowsQuery};

/// The limits a peer's requests are held to.
#[derive(Debug, Clone, Copy)]
pub struct PeerBounds {
    pub max_value_size: usize,
    pub max_clock_skew: SkewLimit,
}

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// Bytes a key and its cell take in a batch.
fn entry_bytes(key: &[u8], cell: &pbi::Cell) -> usize {
    key.len().saturating_add(cell.value.len())
}

/// Checks a batch's length and bytes before anything else is looked at.
fn batch_size(what: &str, count: usize, bytes: usize) -> Result<(), Status> {
    if count > MAX_BATCH_ENTRIES {
        return Err(invalid(format!(
            "{what} has {count} entries; the limit is {MAX_BATCH_ENTRIES}"
        )));
    }
    if count > 1 && bytes > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "{what} holds {bytes} bytes in {count} entries; the limit is {MAX_BATCH_BYTES} bytes (one larger entry may go alone)"
        )));
    }
    Ok(())
}

/// Most rows a replica query answers at once.
pub const MAX_QUERY_ROWS: u32 = 10_000;
/// Most bytes of rows a replica query answers at once (beyond one row).
pub const MAX_QUERY_BYTES: u32 = 4 << 20;

/// A replica query, checked: the partition key and bounds as a client's,
/// the page no larger than [`MAX_QUERY_ROWS`] rows and
/// [`MAX_QUERY_BYTES`] bytes; the partition's token.
pub fn query(request: pbi::ReplicaQueryRequest) -> Result<(Token, RowsQuery), Status> {
    let checked = |error: crate::coordinator::CoordinatorError| invalid(error.to_string());
    validate_key(&request.key).map_err(checked)?;
    // A page that goes on after a row starts just past its sort key: that
    // key with a zero byte appended, one byte over the limit at most.
    if request.start.len() > MAX_SORT_KEY_SIZE + 1 {
        return Err(invalid(format!(
            "a query starts at a sort key of {} bytes; the limit is {MAX_SORT_KEY_SIZE}",
            request.start.len()
        )));
    }
    if let Some(end) = &request.end {
        validate_sort_key(end).map_err(checked)?;
    }
    if request.limit == 0 || request.limit > MAX_QUERY_ROWS {
        return Err(invalid(format!(
            "a query asks for {} rows; between 1 and {MAX_QUERY_ROWS}",
            request.limit
        )));
    }
    if request.max_bytes > MAX_QUERY_BYTES {
        return Err(invalid(format!(
            "a query asks for {} bytes; the limit is {MAX_QUERY_BYTES}",
            request.max_bytes
        )));
    }
    let token = Token::of(&request.key);
    Ok((
        token,
        RowsQuery {
            partition: request.key,
            start: request.start,
            end: request.end,
            reverse: request.reverse,
            limit: BatchLimit {
                entries: request.limit as usize,
                bytes: request.max_bytes as usize,
            },
        },
    ))
}

fn key(key: &[u8]) -> Result<(), Status> {
    validate_row_key(key)
        .map(|_| ())
        .map_err(|error| invalid(error.to_string()))
}

impl PeerBounds {
    /// Checks a cell from a peer; `now` is this node's wall clock
    /// (microseconds).
    pub fn cell(&self, cell: &Cell, now: Timestamp) -> Result<(), Status> {
        if cell.timestamp < 0 {
            return Err(invalid(format!(
                "cell timestamp {} is negative",
                cell.timestamp
            )));
        }
        self.max_clock_skew
            .check(cell.timestamp, now)
            .map_err(|message| invalid(format!("cell {message}")))?;
        if cell.value.len() > self.max_value_size {
            return Err(invalid(format!(
                "cell value is {} bytes; the limit is max_value_size = {} bytes",
                cell.value.len(),
                self.max_value_size
            )));
        }
        if let Some(when) = cell.local_deletion_time {
            if when < 0 {
                return Err(invalid(format!("cell deletion time {when} is negative")));
            }
            // A tombstone is deleted "now"; a value expires at most a TTL
            // from now. Both may be ahead by the allowed skew.
            if self.max_clock_skew != SkewLimit::off() {
                let now_seconds = now.div_euclid(1_000_000);
                let ttl = if cell.tombstone {
                    0
                } else {
                    i64::from(MAX_TTL_SECONDS)
                };
                let latest = now_seconds
                    .saturating_add(ttl)
                    .saturating_add(self.max_clock_skew.seconds());
                if when > latest {
                    return Err(invalid(format!(
                        "cell deletion time {when} is after {latest}, the latest a write at this node's time may carry (max_clock_skew_ms)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A replica write, checked: every row key of one partition, the
    /// cells as a batch's (see [`write_batch`](Self::write_batch)), and the
    /// same count and byte bounds; the mutation it asks for.
    pub fn mutation(
        &self,
        request: pbi::ReplicaWriteRequest,
        now: Timestamp,
    ) -> Result<Mutation, Status> {
        let checked = |error: crate::coordinator::CoordinatorError| invalid(error.to_string());
        let token = validate_row_key(&request.key).map_err(checked)?;
        let first = request
            .cell
            .ok_or_else(|| invalid("replica write without a cell".into()))?;
        if request.more.is_empty() {
            let cell = convert::cell_from_proto(first);
            self.cell(&cell, now)?;
            return Ok(Mutation::one(token, request.key, cell));
        }
        let bytes = request
            .more
            .iter()
            .fold(entry_bytes(&request.key, &first), |sum, entry| {
                let cell = entry.cell.as_ref().map_or(0, |c| entry_bytes(&[], c));
                sum.saturating_add(entry.key.len()).saturating_add(cell)
            });
        batch_size("replica write", 1 + request.more.len(), bytes)?;
        let partition = crate::storage::key::split_row_key(&request.key)
            .map(|row| row.partition)
            .unwrap_or_default();
        let mut entries = Vec::with_capacity(1 + request.more.len());
        let first = (request.key.clone(), Some(first));
        let more = request
            .more
            .into_iter()
            .map(|entry| (entry.key, entry.cell));
        for (key, cell) in std::iter::once(first).chain(more) {
            validate_row_key(&key).map_err(checked)?;
            let same = crate::storage::key::split_row_key(&key)
                .is_some_and(|row| row.partition == partition);
            if !same {
                return Err(invalid(
                    "a replica write's cells belong to one partition".into(),
                ));
            }
            let cell = cell
                .map(convert::cell_from_proto)
                .ok_or_else(|| invalid("replica write entry without a cell".into()))?;
            self.cell(&cell, now)?;
            entries.push((key, cell));
        }
        Ok(Mutation::new(token, entries))
    }

    /// The cells of a `WriteBatch`, checked, one per key (the
    /// last-write-wins winner of cells naming the same key).
    pub fn write_batch(
        &self,
        entries: Vec<pbi::KeyCell>,
        now: Timestamp,
    ) -> Result<Vec<(Bytes, Cell)>, Status> {
        let bytes = entries.iter().fold(0usize, |sum, entry| {
            let cell = entry.cell.as_ref().map_or(0, |c| entry_bytes(&[], c));
            sum.saturating_add(entry.key.len()).saturating_add(cell)
        });
        batch_size("write batch", entries.len(), bytes)?;
        let mut winners: BTreeMap<Bytes, Cell> = BTreeMap::new();
        for entry in entries {
            key(&entry.key)?;
            let cell = entry
                .cell
                .map(convert::cell_from_proto)
                .ok_or_else(|| invalid("batch entry without a cell".into()))?;
            self.cell(&cell, now)?;
            let merged = match winners.remove(&entry.key) {
                Some(seen) => merge_entry(&entry.key, seen, cell),
                None => cell,
            };
            winners.insert(entry.key, merged);
        }
        Ok(winners.into_iter().collect())
    }
}

/// The keys of a `ReadBatch`, checked, each once, in the order first
/// named; and for each, the position in the request it was first named at
/// (so an answer covering a prefix of the unique keys maps back to a
/// prefix of the request: see [`answered_prefix`]).
pub fn read_batch_keys(keys: Vec<Bytes>) -> Result<(Vec<Bytes>, Vec<usize>), Status> {
    let bytes = keys
        .iter()
        .fold(0usize, |sum, key| sum.saturating_add(key.len()));
    batch_size("read batch", keys.len(), bytes)?;
    let mut seen = HashSet::with_capacity(keys.len());
    let mut unique = Vec::with_capacity(keys.len());
    let mut first_at = Vec::with_capacity(keys.len());
    for (at, k) in keys.into_iter().enumerate() {
        key(&k)?;
        if seen.insert(k.clone()) {
            unique.push(k);
            first_at.push(at);
        }
    }
    Ok((unique, first_at))
}

/// How many keys of the request (a prefix) an answer that looked up the
/// first `answered` unique keys covers: every key before the next unique
/// one repeats one already looked up.
pub fn answered_prefix(first_at: &[usize], answered: usize, asked: usize) -> usize {
    first_at.get(answered).copied().unwrap_or(asked)
}

/// The rings a view knows: the one reads use, and those before and after
/// a change in progress.
fn rings(view: &ClusterView) -> Vec<&Ring> {
    let mut rings = vec![view.ring().as_ref()];
    if let Some(transition) = view.transition() {
        rings.push(transition.old.as_ref());
        rings.push(transition.new.as_ref());
    }
    rings
}

/// The ranges of the known rings that hold all of `range`.
fn enclosing(view: &ClusterView, range: TokenRange) -> Result<Vec<TokenRange>, Status> {
    let rings = rings(view);
    if rings.iter().all(|ring| ring.is_empty()) {
        return Err(Status::unavailable(
            "this node has no ring yet; it is still joining",
        ));
    }
    let holding: Vec<TokenRange> = rings
        .iter()
        .filter_map(|ring| ring.range_holding(range.end))
        .filter(|outer| outer.encloses(&range))
        .collect();
    if holding.is_empty() {
        return Err(invalid(format!(
            "token range {range} is not inside one range of this node's ring"
        )));
    }
    Ok(holding)
}

/// Checks a `MerkleNodes` request; `Ok(true)` when the range is itself a
/// range of a ring this node knows (its tree is worth caching), `Ok(false)`
/// for a part of one.
pub fn merkle_nodes(
    view: &ClusterView,
    range: TokenRange,
    leaves: u32,
    nodes: &[u32],
) -> Result<bool, Status> {
    let is_ring_range = enclosing(view, range)?.contains(&range);
    let shape = MerkleTree::leaf_count_for(range, LEAVES_PER_RANGE);
    if usize::try_from(leaves).ok() != Some(shape) {
        return Err(invalid(format!(
            "leaves = {leaves}; this node's trees of {range} have {shape} leaves"
        )));
    }
    if nodes.len() > 2 * shape {
        return Err(invalid(format!(
            "{} tree nodes asked; a tree of {shape} leaves has {}",
            nodes.len(),
            2 * shape - 1
        )));
    }
    Ok(is_ring_range)
}

/// Checks a `LeafDigests` request.
pub fn leaf_digests(view: &ClusterView, range: TokenRange) -> Result<(), Status> {
    let holding = enclosing(view, range)?;
    let widest = holding
        .iter()
        .map(|outer| MerkleTree::widest_leaf(*outer))
        .max()
        .unwrap_or(0);
    if range.width() > widest {
        return Err(invalid(format!(
            "token range {range} spans {} tokens; leaf digests are for one Merkle leaf, at most {widest} tokens here",
            range.width()
        )));
    }
    Ok(())
}

/// A range from the wire.
pub fn range(msg: Option<pbi::TokenRange>) -> Result<TokenRange, Status> {
    msg.map(|r| TokenRange::new(Token(r.start), Token(r.end)))
        .ok_or_else(|| invalid("token range missing".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeId;
    use crate::membership::Member;
    use tonic::Code;

    const NOW: Timestamp = 1_700_000_000_000_000;
    const NOW_SECONDS: i64 = NOW / 1_000_000;

    fn bounds() -> PeerBounds {
        PeerBounds {
            max_value_size: 1000,
            max_clock_skew: SkewLimit::from_millis(60_000),
        }
    }

    fn refused(result: Result<impl std::fmt::Debug, Status>, naming: &str) {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(naming),
            "{:?} should name {naming:?}",
            status.message()
        );
    }

    /// The row key of the plain key `key`.
    fn row(key: &str) -> Bytes {
        Bytes::from(crate::storage::key::plain_key(key.as_bytes()))
    }

    fn key_cell(key: &str, cell: &Cell) -> pbi::KeyCell {
        pbi::KeyCell {
            key: row(key),
            cell: Some(convert::cell_to_proto(cell)),
        }
    }

    #[test]
    fn cells_are_held_to_what_a_client_may_write() {
        let b = bounds();
        let value = |n: usize| Bytes::from(vec![7u8; n]);
        assert!(b.cell(&Cell::live(NOW, value(1000), None), NOW).is_ok());
        assert!(b.cell(&Cell::tombstone(NOW - 5, NOW_SECONDS), NOW).is_ok());
        let ttl = NOW_SECONDS + i64::from(MAX_TTL_SECONDS);
        assert!(b.cell(&Cell::live(NOW, value(1), Some(ttl)), NOW).is_ok());
        refused(
            b.cell(&Cell::live(i64::MAX, value(1), None), NOW),
            "max_clock_skew_ms",
        );
        refused(b.cell(&Cell::live(-1, value(1), None), NOW), "negative");
        refused(
            b.cell(&Cell::live(NOW, value(1001), None), NOW),
            "max_value_size = 1000",
        );
        refused(
            b.cell(&Cell::tombstone(NOW, NOW_SECONDS + 3600), NOW),
            "deletion time",
        );
        refused(b.cell(&Cell::tombstone(NOW, -4), NOW), "negative");
        refused(
            b.cell(&Cell::live(NOW, value(1), Some(i64::MAX)), NOW),
            "deletion time",
        );
        let off = PeerBounds {
            max_clock_skew: SkewLimit::off(),
            ..b
        };
        assert!(off.cell(&Cell::live(i64::MAX, value(1), None), NOW).is_ok());
    }

    #[test]
    fn write_batches_are_bounded_and_keep_one_winner_per_key() {
        let b = bounds();
        let old = Cell::live(NOW - 10, Bytes::from_static(b"old"), None);
        let new = Cell::live(NOW - 5, Bytes::from_static(b"new"), None);
        let batch = vec![
            key_cell("k", &new),
            key_cell("j", &old),
            key_cell("k", &old),
        ];
        let checked = b.write_batch(batch, NOW).expect("valid");
        assert_eq!(
            checked,
            vec![(row("j"), old.clone()), (row("k"), new.clone())]
        );
        let many = (0..=MAX_BATCH_ENTRIES)
            .map(|i| key_cell(&format!("k{i}"), &old))
            .collect();
        refused(b.write_batch(many, NOW), "limit is 500");
        let big = Cell::live(NOW, Bytes::from(vec![0; 100_000]), None);
        let heavy: Vec<pbi::KeyCell> = (0..MAX_BATCH_BYTES / 100_000 + 1)
            .map(|i| key_cell(&format!("k{i}"), &big))
            .collect();
        refused(
            PeerBounds {
                max_value_size: 1 << 20,
                ..b
            }
            .write_batch(heavy, NOW),
            "1048576 bytes",
        );
        let alone = Cell::live(NOW, Bytes::from(vec![0; 1000]), None);
        assert!(b.write_batch(vec![key_cell("k", &alone)], NOW).is_ok());
        refused(b.write_batch(vec![key_cell("", &old)], NOW), "empty");
        let future = Cell::live(i64::MAX, Bytes::new(), None);
        refused(
            b.write_batch(vec![key_cell("k", &future)], NOW),
            "max_clock_skew_ms",
        );
        refused(
            b.write_batch(
                vec![pbi::KeyCell {
                    key: row("k"),
                    cell: None,
                }],
                NOW,
            ),
            "without a cell",
        );
    }

    #[test]
    fn read_batches_are_bounded_and_each_key_is_looked_up_once() {
        let k = row;
        let (unique, first_at) =
            read_batch_keys(vec![k("a"), k("b"), k("a"), k("c"), k("b")]).expect("valid");
        assert_eq!(unique, vec![k("a"), k("b"), k("c")]);
        assert_eq!(first_at, vec![0, 1, 3]);
        // Answering a and b covers the request up to c; all three, all of it.
        assert_eq!(answered_prefix(&first_at, 2, 5), 3);
        assert_eq!(answered_prefix(&first_at, 3, 5), 5);
        assert_eq!(answered_prefix(&first_at, 0, 5), 0);

        let huge = Bytes::from(crate::storage::key::plain_key(&[b'x'; 64 * 1024]));
        refused(read_batch_keys(vec![huge.clone(); 200]), "bytes");
        refused(
            read_batch_keys(vec![k("a"); MAX_BATCH_ENTRIES + 1]),
            "entries",
        );
        assert!(read_batch_keys(vec![huge]).is_ok(), "one key goes alone");
        refused(
            read_batch_keys(vec![Bytes::from(crate::storage::key::plain_key(
                &[1; 70_000],
            ))]),
            "64 KiB",
        );
    }

    /// A query may start one byte past the longest sort key (a page that
    /// goes on after a row of 64 KiB), no further; its page is bounded.
    #[test]
    fn queries_are_bounded() {
        let request = |start: usize, limit: u32, max_bytes: u32| pbi::ReplicaQueryRequest {
            key: Bytes::from_static(b"p"),
            start: Bytes::from(vec![b's'; start]),
            end: None,
            reverse: false,
            limit,
            max_bytes,
        };
        assert!(query(request(MAX_SORT_KEY_SIZE + 1, 10, 1 << 20)).is_ok());
        refused(
            query(request(MAX_SORT_KEY_SIZE + 2, 10, 1 << 20)),
            "sort key",
        );
        refused(query(request(0, 0, 1 << 20)), "rows");
        refused(query(request(0, MAX_QUERY_ROWS + 1, 1 << 20)), "rows");
        refused(query(request(0, 10, MAX_QUERY_BYTES + 1)), "bytes");
    }

    fn id() -> NodeId {
        NodeId(uuid::Uuid::from_u128(1))
    }

    fn view(tokens: &[i64]) -> ClusterView {
        let member = Member::normal(id(), tokens.iter().map(|&t| Token(t)).collect());
        ClusterView::build(id(), 1, [member], None)
    }

    #[test]
    fn merkle_requests_stay_inside_the_ring_and_its_tree_shape() {
        let v = view(&[-1000, 0, 1 << 40]);
        let range = TokenRange::new(Token(0), Token(1 << 40));
        assert_eq!(merkle_nodes(&v, range, 256, &[1, 2, 3]).ok(), Some(true));
        refused(merkle_nodes(&v, range, u32::MAX, &[1]), "256 leaves");
        refused(merkle_nodes(&v, range, 128, &[1]), "256 leaves");
        refused(merkle_nodes(&v, range, 256, &[1; 513]), "513 tree nodes");
        let whole = TokenRange::new(Token(5), Token(5));
        refused(merkle_nodes(&v, whole, 256, &[1]), "not inside one range");
        let across = TokenRange::new(Token(-5), Token(5));
        refused(merkle_nodes(&v, across, 256, &[1]), "not inside one range");
        // Part of a range (a peer whose ring has a token this one lacks).
        let part = TokenRange::new(Token(10), Token(1 << 30));
        assert_eq!(
            merkle_nodes(&v, part, 256, &[1]).ok(),
            Some(false),
            "not cached"
        );
        // A narrow range has fewer leaves.
        let narrow = TokenRange::new(Token(-1000), Token(-990));
        assert!(merkle_nodes(&v, narrow, 8, &[1]).is_ok());
        refused(merkle_nodes(&v, narrow, 256, &[1]), "8 leaves");

        let empty = ClusterView::build(id(), 1, [], None);
        let status = merkle_nodes(&empty, range, 256, &[1]).expect_err("no ring");
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[test]
    fn leaf_digests_cover_at_most_one_leaf() {
        let v = view(&[0, 1 << 40]);
        let range = TokenRange::new(Token(0), Token(1 << 40));
        let tree = MerkleTree::new(range, LEAVES_PER_RANGE);
        for leaf in [0, 17, 255] {
            assert!(leaf_digests(&v, tree.leaf_range(leaf)).is_ok());
        }
        refused(leaf_digests(&v, range), "one Merkle leaf");
        let whole = TokenRange::new(Token(3), Token(3));
        refused(leaf_digests(&v, whole), "not inside one range");
        // The other range of the ring wraps around it.
        let wrapping = TokenRange::new(Token(1 << 40), Token(0));
        let tree = MerkleTree::new(wrapping, LEAVES_PER_RANGE);
        assert!(leaf_digests(&v, tree.leaf_range(255)).is_ok());
    }

    fn any_cell() -> impl proptest::strategy::Strategy<Value = pbi::Cell> {
        use proptest::prelude::*;
        (
            any::<i64>(),
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(
                |(timestamp_micros, tombstone, local_deletion_time, value)| pbi::Cell {
                    timestamp_micros,
                    tombstone,
                    local_deletion_time,
                    expiry_ms_early: 0,
                    value: Bytes::from(value),
                },
            )
    }

    proptest::proptest! {
        /// Requests from the wire: any content gets an answer or a refusal,
        /// never a panic.
        #[test]
        fn the_validators_never_panic_on_any_request(
            cells in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8), proptest::option::of(any_cell())),
                0..20,
            ),
            keys in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8), 0..20),
            (start, end, leaves) in (proptest::prelude::any::<i64>(), proptest::prelude::any::<i64>(), proptest::prelude::any::<u32>()),
            nodes in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..8),
            now in proptest::prelude::any::<i64>(),
        ) {
            let b = bounds();
            let entries = cells
                .into_iter()
                .map(|(key, cell)| pbi::KeyCell { key: Bytes::from(key), cell })
                .collect();
            let _ = b.write_batch(entries, now);
            let keys: Vec<Bytes> = keys.into_iter().map(Bytes::from).collect();
            if let Ok((unique, first_at)) = read_batch_keys(keys.clone()) {
                for answered in 0..=unique.len() {
                    proptest::prop_assert!(answered_prefix(&first_at, answered, keys.len()) <= keys.len());
                }
            }
            let range = TokenRange::new(Token(start), Token(end));
            let v = view(&[start, end, 0]);
            let _ = merkle_nodes(&v, range, leaves, &nodes);
            let _ = leaf_digests(&v, range);
        }
    }
}
