//! The client side of a run, as in Jepsen: a few clients run operations
//! against random nodes through the real client API while faults happen,
//! recording every operation and its outcome; then, once healed, the
//! cluster converges (gossip, hint replay, a full repair through every
//! node) and the clients read back what was acknowledged.
//!
//! Operations (all at QUORUM):
//! - unique-key writes: each key written once; an acknowledged one must
//!   survive;
//! - hot registers: a few keys overwritten by every client;
//! - read-your-writes: write through one node, read through another;
//! - sequential updates: write v1 through one node and, once it is
//!   acknowledged, v2 through another; a read through a third, and the
//!   read-back after healing, must give v2 whatever the two coordinators'
//!   clocks say (checked in runs without crashes, which lose acknowledged
//!   writes on a replica and with them what orders v2 after v1);
//! - deletes: write a key, then delete it; it must stay deleted.
//! - rows: each client writes rows of its own partition (sort keys in
//!   the order it writes them) and deletes ranges of them or the whole
//!   partition; right after an acknowledged row write a query through
//!   another node must return it, right after an acknowledged deletion a
//!   query of its range through another node must return no row older
//!   than it, and after healing a paged query must return exactly the
//!   rows no deletion reached, in order, and none an acknowledged newer
//!   deletion covers.
//! - partition batches: each client writes batches of a few rows to a
//!   partition of its own, every other one also deleting the rows of the
//!   batch before; a query right after an acknowledged batch must return
//!   all of its rows, and after healing every batch, acknowledged or not,
//!   must be there whole or not at all (whole when acknowledged and no
//!   newer acknowledged batch deleted it, gone when one did).
//!
//! In runs with a topology change, cleanups run through the stable nodes
//! at random moments beside it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use ringkv_proto::v1::key_value_client::KeyValueClient;
use tonic::transport::{Channel, Endpoint};

use super::CLIENT_PORT;
use super::scenario::{AFTER_DEATH, CHANGE_AT, Layout, Scenario};

/// When faults start, after the cluster formed (every node serving and
/// seeing the others): simulated times of the fault phase count from then.
pub const FAULTS_FROM: Duration = Duration::from_secs(1);
/// When the fault phase ends, after the cluster formed.
pub const FAULTS_UNTIL: Duration = Duration::from_secs(11);
/// Clients running operations concurrently.
const CLIENTS: usize = 3;
/// Keys of the hot registers.
const HOT_KEYS: usize = 3;
/// Longest a client waits for one answer before counting it unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// After healing, how long gossip and hint replay get before the repair.
const SETTLE: Duration = Duration::from_secs(6);
/// Every request asks for QUORUM.
const QUORUM: i32 = pb::ConsistencyLevel::Quorum as i32;

/// Everything the clients did and saw.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// One line per event: simulated time, then what happened.
    pub events: Vec<String>,
    /// When the cluster formed; the fault phase's times count from then.
    pub formed_at: Option<Duration>,
    /// Set by the clients when the fault phase is over.
    pub faults_over: bool,
    /// Set by the driver once it healed every fault.
    pub healed: bool,
    /// Set by the clients once hints had time to replay; the driver then
    /// checks hinted handoff alone delivered every write, and sets
    /// `handoff_checked`.
    pub check_handoff: bool,
    pub handoff_checked: bool,
    /// Acknowledged unique-key writes.
    pub unique: Vec<(Bytes, Bytes)>,
    /// Every value ever sent to each hot key (acknowledged or not).
    pub hot_sent: BTreeMap<Bytes, BTreeSet<Bytes>>,
    /// The largest acknowledged timestamp of each hot key.
    pub hot_acked: BTreeMap<Bytes, i64>,
    /// Keys whose write and (newer) delete were both acknowledged.
    pub deleted: Vec<Bytes>,
    /// Acknowledged row writes: (partition, sort key, value, timestamp).
    pub rows: Vec<(Bytes, Bytes, Bytes, i64)>,
    /// Every range or partition delete sent (acknowledged or not):
    /// (partition, start, end (`None`: a partition delete, from the first
    /// row), timestamp when acknowledged).
    pub row_deletes: Vec<(Bytes, Bytes, Option<Bytes>, Option<i64>)>,
    /// Every partition batch sent (acknowledged or not).
    pub batches: Vec<BatchSent>,
    /// Sequential updates whose second write was acknowledged, and its
    /// value.
    pub sequential: Vec<(Bytes, Bytes)>,
    /// What reads saw of sequential updates right after them, when it was
    /// not the second write.
    pub sequential_stale: Vec<String>,
    /// Set by the fault driver when a node crashed (losing unsynced
    /// writes).
    pub crashed: bool,
    /// Invariants the clients saw broken.
    pub violations: Vec<String>,
    /// Gated nodes the client let start (churn).
    pub released: BTreeSet<usize>,
    /// Nodes the client asks to restart, or to kill for good (churn);
    /// the simulation's loop takes them.
    pub restart: Vec<usize>,
    pub kill: Vec<usize>,
}

/// A partition batch the workload sent: `rows` rows `{id}-{j}` of
/// `partition`, and with `deletes` a range delete of the rows of the
/// batch `deletes` (the previous one of the same client).
#[derive(Debug, Clone)]
pub struct BatchSent {
    pub partition: Bytes,
    pub id: String,
    pub rows: usize,
    pub deletes: Option<String>,
    /// Its timestamp, when acknowledged.
    pub acked: Option<i64>,
}

impl History {
    pub fn record(&mut self, at: Duration, what: String) {
        self.events
            .push(format!("{:>10.3} {what}", at.as_secs_f64()));
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The clients' connections to every node.
struct Api {
    kv: Vec<KeyValueClient<Channel>>,
    admin: Vec<AdminClient<Channel>>,
    /// Admin clients without the call timeout, for topology changes.
    changes: Vec<AdminClient<Channel>>,
    history: Rc<RefCell<History>>,
}

fn channel(addr: SocketAddr) -> Channel {
    channel_with_timeout(addr, CALL_TIMEOUT)
}

fn channel_with_timeout(addr: SocketAddr, timeout: Duration) -> Channel {
    // The address is only a name for the connector below. Keepalive pings
    // find a connection whose segments a faulty link dropped, as they do
    // between nodes, so the channel reconnects.
    let endpoint = Endpoint::from_static("http://node.sim")
        .timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true);
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_| async move {
        turmoil::net::TcpStream::connect(addr)
            .await
            .map(hyper_util::rt::TokioIo::new)
    }))
}

/// What one call came to.
enum Answer<T> {
    Ok(T),
    /// Refused or failed; for a write, it may still have been applied.
    Failed(String),
}

async fn call<T>(
    request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Answer<T> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(response)) => Answer::Ok(response.into_inner()),
        Ok(Err(status)) => Answer::Failed(format!("{:?}", status.code())),
        Err(_) => Answer::Failed("no answer".into()),
    }
}

impl Api {
    fn record(&self, what: String) {
        self.history.borrow_mut().record(now(), what);
    }

    async fn put(&self, client: usize, node: usize, key: &Bytes, value: &Bytes) -> Option<i64> {
        let mut kv = self.kv[node].clone();
        let request = pb::PutRequest {
            key: key.clone(),
            value: value.clone(),
            consistency: QUORUM,
            ..Default::default()
        };
        let answer = call(kv.put(request)).await;
        let key = String::from_utf8_lossy(key);
        match answer {
            Answer::Ok(put) => {
                self.record(format!(
                    "c{client} put {key} via n{node}: ok ts={}",
                    put.timestamp_micros
                ));
                Some(put.timestamp_micros)
            }
            Answer::Failed(why) => {
                self.record(format!("c{client} put {key} via n{node}: {why}"));
                None
            }
        }
    }

    /// The delete's timestamp when acknowledged.
    async fn delete(&self, client: usize, node: usize, key: &Bytes) -> Option<i64> {
        let mut kv = self.kv[node].clone();
        let request = pb::DeleteRequest {
            key: key.clone(),
            consistency: QUORUM,
            ..Default::default()
        };
        let answer = call(kv.delete(request)).await;
        let key = String::from_utf8_lossy(key);
        match answer {
            Answer::Ok(deleted) => {
                self.record(format!(
                    "c{client} delete {key} via n{node}: ok ts={}",
                    deleted.timestamp_micros
                ));
                Some(deleted.timestamp_micros)
            }
            Answer::Failed(why) => {
                self.record(format!("c{client} delete {key} via n{node}: {why}"));
                None
            }
        }
    }

    /// `Some(found value and its timestamp)` when the read answered.
    async fn get(&self, client: usize, node: usize, key: &Bytes) -> Option<Option<(Bytes, i64)>> {
        let mut kv = self.kv[node].clone();
        let request = pb::GetRequest {
            key: key.clone(),
            consistency: QUORUM,
            ..Default::default()
        };
        let answer = call(kv.get(request)).await;
        let name = String::from_utf8_lossy(key);
        match answer {
            Answer::Ok(got) => {
                let value = got.found.then_some((got.value, got.timestamp_micros));
                let shown = value.as_ref().map_or("not found".into(), |(v, ts)| {
                    format!("{} ts={ts}", String::from_utf8_lossy(v))
                });
                self.record(format!("c{client} get {name} via n{node}: {shown}"));
                Some(value)
            }
            Answer::Failed(why) => {
                self.record(format!("c{client} get {name} via n{node}: {why}"));
                None
            }
        }
    }

    /// A row write at QUORUM; its timestamp when acknowledged.
    async fn put_row(
        &self,
        client: usize,
        node: usize,
        row: (&Bytes, &Bytes),
        value: &Bytes,
    ) -> Option<i64> {
        let mut kv = self.kv[node].clone();
        let request = pb::PutRequest {
            key: row.0.clone(),
            sort_key: row.1.clone(),
            value: value.clone(),
            consistency: QUORUM,
            ..Default::default()
        };
        let answer = call(kv.put(request)).await;
        let name = format!(
            "{}/{}",
            String::from_utf8_lossy(row.0),
            String::from_utf8_lossy(row.1)
        );
        match answer {
            Answer::Ok(put) => {
                self.record(format!(
                    "c{client} put row {name} via n{node}: ok ts={}",
                    put.timestamp_micros
                ));
                Some(put.timestamp_micros)
            }
            Answer::Failed(why) => {
                self.record(format!("c{client} put row {name} via n{node}: {why}"));
                None
            }
        }
    }

    /// A delete of the rows `[start, end)` of `partition` at QUORUM, or
    /// with no `end` of the whole partition; its timestamp when
    /// acknowledged.
    async fn delete_rows(
        &self,
        client: usize,
        node: usize,
        partition: &Bytes,
        (start, end): (&Bytes, Option<&Bytes>),
    ) -> Option<i64> {
        let mut kv = self.kv[node].clone();
        let request = pb::DeleteRequest {
            key: partition.clone(),
            rows: end.map(|end| pb::RowRange {
                start: start.clone(),
                end: Some(end.clone()),
            }),
            partition: end.is_none(),
            consistency: QUORUM,
            ..Default::default()
        };
        let answer = call(kv.delete(request)).await;
        let name = match end {
            Some(end) => format!(
                "rows {} [{}, {})",
                String::from_utf8_lossy(partition),
                String::from_utf8_lossy(start),
                String::from_utf8_lossy(end)
            ),
            None => format!("partition {}", String::from_utf8_lossy(partition)),
        };
        match answer {
            Answer::Ok(deleted) => {
                self.record(format!(
                    "c{client} delete {name} via n{node}: ok ts={}",
                    deleted.timestamp_micros
                ));
                Some(deleted.timestamp_micros)
            }
            Answer::Failed(why) => {
                self.record(format!("c{client} delete {name} via n{node}: {why}"));
                None
            }
        }
    }

    /// A partition batch at QUORUM; its timestamp when acknowledged.
    async fn batch(
        &self,
        client: usize,
        node: usize,
        partition: &Bytes,
        operations: Vec<pb::BatchOperation>,
    ) -> Option<i64> {
        let mut kv = self.kv[node].clone();
        let count = operations.len();
        let request = pb::BatchRequest {
            key: partition.clone(),
            operations,
            consistency: QUORUM,
            ..Default::default()
        };
        let answer = call(kv.batch(request)).await;
        let name = String::from_utf8_lossy(partition);
        match answer {
            Answer::Ok(written) => {
                self.record(format!(
                    "c{client} batch of {count} on {name} via n{node}: ok ts={}",
                    written.timestamp_micros
                ));
                Some(written.timestamp_micros)
            }
            Answer::Failed(why) => {
                self.record(format!(
                    "c{client} batch of {count} on {name} via n{node}: {why}"
                ));
                None
            }
        }
    }

    /// Every row of `partition` from `start` at QUORUM through `node`, a
    /// page of `limit` at a time: (sort key, value, timestamp) in the
    /// order the pages gave them; `None` when a page failed.
    async fn query_all(
        &self,
        node: usize,
        partition: &Bytes,
        start: &Bytes,
        limit: u32,
    ) -> Option<Vec<(Bytes, Bytes, i64)>> {
        let mut rows = Vec::new();
        let mut page_token = Bytes::new();
        for _ in 0..1_000 {
            let mut kv = self.kv[node].clone();
            let request = pb::QueryRequest {
                key: partition.clone(),
                start: start.clone(),
                limit,
                page_token: page_token.clone(),
                consistency: QUORUM,
                ..Default::default()
            };
            match call(kv.query(request)).await {
                Answer::Ok(page) => {
                    rows.extend(
                        page.rows
                            .into_iter()
                            .map(|row| (row.sort_key, row.value, row.timestamp_micros)),
                    );
                    if page.page_token.is_empty() {
                        return Some(rows);
                    }
                    page_token = page.page_token;
                }
                Answer::Failed(why) => {
                    self.record(format!(
                        "query {} via n{node}: {why}",
                        String::from_utf8_lossy(partition)
                    ));
                    return None;
                }
            }
        }
        None
    }

    /// A full repair through `node`, to its end; true when it completed.
    async fn repair(&self, node: usize) -> bool {
        use futures::StreamExt;
        let mut admin = self.admin[node].clone();
        let request = pb::RepairRequest {
            primary_only: false,
        };
        let run = async {
            let mut stream = admin.repair(request).await?.into_inner();
            let mut last = None;
            while let Some(progress) = stream.next().await {
                last = Some(progress?);
            }
            Ok::<_, tonic::Status>(last)
        };
        let outcome = tokio::time::timeout(Duration::from_secs(120), run).await;
        let done = matches!(&outcome, Ok(Ok(Some(p))) if p.done && p.replicas_skipped == 0);
        let shown = match outcome {
            Ok(Ok(Some(p))) => format!(
                "ranges {}/{} keys {} skipped {}",
                p.ranges_done, p.ranges_total, p.keys_streamed, p.replicas_skipped
            ),
            Ok(Ok(None)) => "no progress".into(),
            Ok(Err(status)) => format!("{:?}", status.code()),
            Err(_) => "no answer".into(),
        };
        self.record(format!("repair via n{node}: {shown}"));
        done
    }

    /// A cleanup through `node` (deleting the ranges it does not
    /// replicate), with what it answered recorded.
    async fn cleanup(&self, node: usize) {
        let mut admin = self.admin[node].clone();
        let shown = match call(admin.cleanup(pb::CleanupRequest {})).await {
            Answer::Ok(done) => format!(
                "ok, {} ranges, {} keys deleted",
                done.ranges, done.keys_deleted
            ),
            Answer::Failed(why) => why,
        };
        self.record(format!("cleanup via n{node}: {shown}"));
    }

    /// Polls every `poll` until each of the `nodes` sees all of them up
    /// and NORMAL; false if that has not happened within `limit`.
    async fn ring_formed(&self, nodes: &[usize], limit: Duration, poll: Duration) -> bool {
        let deadline = now() + limit;
        loop {
            let mut all = true;
            for &node in nodes {
                all &= self.nodes_up(node).await == nodes.len();
            }
            if all {
                return true;
            }
            if now() > deadline {
                return false;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Whether node 0 sees node `n{target}` LEFT.
    async fn left(&self, target: usize) -> bool {
        let mut admin = self.admin[0].clone();
        let name = format!("n{target}");
        match call(admin.cluster_status(pb::ClusterStatusRequest {})).await {
            Answer::Ok(status) => status
                .members
                .iter()
                .any(|m| m.name == name && m.state == "LEFT"),
            Answer::Failed(_) => false,
        }
    }

    /// How many nodes `node` sees up and NORMAL, with their tokens.
    async fn nodes_up(&self, node: usize) -> usize {
        let mut admin = self.admin[node].clone();
        match call(admin.cluster_status(pb::ClusterStatusRequest {})).await {
            Answer::Ok(status) => status
                .members
                .iter()
                .filter(|m| m.up && m.state == "NORMAL" && m.tokens > 0)
                .count(),
            Answer::Failed(_) => 0,
        }
    }

    /// An admin call that may take long (a topology change), retried
    /// until it succeeds or `limit` passes; true on success.
    async fn change(&self, what: &str, node: usize, target: usize, limit: Duration) -> bool {
        let deadline = now() + limit;
        loop {
            let mut admin = self.changes[node].clone();
            let answer = match what {
                "decommission" => {
                    tokio::time::timeout(
                        Duration::from_secs(120),
                        admin.decommission(pb::DecommissionRequest {}),
                    )
                    .await
                }
                removal => {
                    let node_id = removal.trim_start_matches("removenode ").to_owned();
                    tokio::time::timeout(
                        Duration::from_secs(120),
                        admin.remove_node(pb::RemoveNodeRequest { node_id }),
                    )
                    .await
                }
            };
            let shown = match &answer {
                Ok(Ok(done)) => format!("ok, {} keys streamed", done.get_ref().keys_streamed),
                Ok(Err(status)) => format!("{:?} {}", status.code(), status.message()),
                Err(_) => "no answer".into(),
            };
            self.record(format!("{what} via n{node}: {shown}"));
            if matches!(answer, Ok(Ok(_))) {
                return true;
            }
            // A removal whose answer was lost, repeated on a node that has
            // restarted since: it no longer lists the node, but says it
            // has left.
            if matches!(&answer, Ok(Err(status)) if status.message().contains("has already left the cluster"))
            {
                self.record(format!("{what}: n{target} has left"));
                return true;
            }
            // An answer lost on the way (a paused link) leaves the change
            // running: done once the node shows LEFT.
            if self.left(target).await {
                self.record(format!("{what}: n{target} shows LEFT"));
                return true;
            }
            if now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// How long churn waits for a step's ring to form.
const CHURN_STEP: Duration = Duration::from_secs(60);
/// Restarts of a node during churn are this far apart.
const CHURN_RESTART_GAP: Duration = Duration::from_millis(1_500);

/// The churn scenario's steps, from the client side (see `scenario`);
/// true once every step is done.
async fn churn(api: &Api, ids: &[String], formed: Duration) -> bool {
    let limit = Duration::from_secs(150);
    let poll = Duration::from_millis(500);
    let step = |what: &str| api.record(format!("churn: {what}"));
    let start = |node: usize| {
        api.history.borrow_mut().released.insert(node);
        step(&format!("n{node} starts"));
    };
    let restart = |node: usize| {
        api.history.borrow_mut().restart.push(node);
        step(&format!("n{node} restarts"));
    };
    tokio::time::sleep((formed + CHANGE_AT).saturating_sub(now())).await;
    start(3);
    if !api.ring_formed(&[0, 1, 2, 3], CHURN_STEP, poll).await {
        return false;
    }
    for _ in 0..3 {
        restart(3);
        tokio::time::sleep(CHURN_RESTART_GAP).await;
    }
    if !api.ring_formed(&[0, 1, 2, 3], CHURN_STEP, poll).await {
        return false;
    }
    start(4);
    if !api.ring_formed(&[0, 1, 2, 3, 4], CHURN_STEP, poll).await
        || !api.change("decommission", 3, 3, limit).await
    {
        return false;
    }
    for _ in 0..2 {
        restart(4);
        tokio::time::sleep(CHURN_RESTART_GAP).await;
    }
    start(5);
    if !api.ring_formed(&[0, 1, 2, 4, 5], CHURN_STEP, poll).await {
        return false;
    }
    api.history.borrow_mut().kill.push(4);
    step("n4 killed for good");
    tokio::time::sleep(AFTER_DEATH).await;
    api.change(&format!("removenode {}", ids[4]), 0, 4, limit)
        .await
}

/// The topology change of the run (see `scenario`), from the client
/// side; true once it is done.
async fn change(
    api: &Api,
    scenario: Scenario,
    layout: &Layout,
    ids: &[String],
    formed: Duration,
) -> bool {
    let limit = Duration::from_secs(150);
    match scenario {
        Scenario::Steady | Scenario::Join | Scenario::Replace => true,
        Scenario::Decommission => {
            tokio::time::sleep((formed + CHANGE_AT).saturating_sub(now())).await;
            api.change("decommission", 3, 3, limit).await
        }
        Scenario::RemoveNode => {
            tokio::time::sleep((formed + CHANGE_AT + AFTER_DEATH).saturating_sub(now())).await;
            let Some((dead, _)) = layout.killed else {
                return false;
            };
            api.change(&format!("removenode {}", ids[dead]), 0, dead, limit)
                .await
        }
        Scenario::Churn => churn(api, ids, formed).await,
    }
}

/// Cleanups through every stable node at random moments while the fault
/// phase lasts and the topology change runs (until `done`): a cleanup
/// must never delete what the change streams in or what is written
/// meanwhile.
async fn cleanups(api: &Api, seed: u64, layout: &Layout, until: Duration, done: &Cell<bool>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc1ea_4eed);
    while now() < until || !done.get() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        let all = (0..layout.stable).map(|node| api.cleanup(node));
        futures::future::join_all(all).await;
    }
}

/// One client's operations during the fault phase (until `until`),
/// through nodes `0..nodes`.
async fn client(
    api: Rc<Api>,
    seed: u64,
    me: usize,
    nodes: usize,
    (until, done): (Duration, Option<&Cell<bool>>),
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(me as u64));
    let mut n = 0u64;
    while now() < until || done.is_some_and(|done| !done.get()) {
        n += 1;
        let node = rng.random_range(0..nodes);
        let roll = rng.random_range(0..100);
        if roll < 10 {
            sequential(&api, &mut rng, (me, n), node, nodes).await;
        } else if roll < 40 {
            let key = Bytes::from(format!("u-{me}-{n}"));
            let value = Bytes::from(format!("v-{me}-{n}"));
            if api.put(me, node, &key, &value).await.is_some() {
                api.history.borrow_mut().unique.push((key, value));
            }
        } else if roll < 65 {
            let key = Bytes::from(format!("h-{}", rng.random_range(0..HOT_KEYS)));
            let value = Bytes::from(format!("c{me}-{n}"));
            api.history
                .borrow_mut()
                .hot_sent
                .entry(key.clone())
                .or_default()
                .insert(value.clone());
            if let Some(ts) = api.put(me, node, &key, &value).await {
                {
                    let mut history = api.history.borrow_mut();
                    let acked = history.hot_acked.entry(key.clone()).or_insert(ts);
                    *acked = (*acked).max(ts);
                }
                // A QUORUM read after a QUORUM write sees it, or a later one.
                let other = rng.random_range(0..nodes);
                if let Some(read) = api.get(me, other, &key).await
                    && read.as_ref().is_none_or(|(_, seen)| *seen < ts)
                {
                    let what = format!(
                        "read-your-writes: {} written at ts {ts} via n{node} at QUORUM, read via n{other} at QUORUM gave {read:?}",
                        String::from_utf8_lossy(&key)
                    );
                    api.history.borrow_mut().violations.push(what);
                }
            }
        } else if roll < 85 {
            let key = Bytes::from(format!("r-{me}-{n}"));
            let value = Bytes::from(format!("v-{me}-{n}"));
            if api.put(me, node, &key, &value).await.is_some() {
                api.history
                    .borrow_mut()
                    .unique
                    .push((key.clone(), value.clone()));
                let other = (node + rng.random_range(1..nodes)) % nodes;
                if let Some(read) = api.get(me, other, &key).await
                    && read.as_ref().map(|(v, _)| v) != Some(&value)
                {
                    let what = format!(
                        "read-your-writes: {} written via n{node} at QUORUM, read via n{other} at QUORUM gave {read:?}",
                        String::from_utf8_lossy(&key)
                    );
                    api.history.borrow_mut().violations.push(what);
                }
            }
        } else if roll >= 92 {
            rows(&api, &mut rng, (me, n), node, nodes).await;
        } else {
            let key = Bytes::from(format!("d-{me}-{n}"));
            let value = Bytes::from(format!("v-{me}-{n}"));
            if let Some(written) = api.put(me, node, &key, &value).await {
                let other = rng.random_range(0..nodes);
                // A delete stamped below the write (its coordinator's clock
                // behind the writer's) loses to it, as LWW says: only a
                // delete that is newer must stay deleted.
                if let Some(deleted) = api.delete(me, other, &key).await
                    && deleted > written
                {
                    api.history.borrow_mut().deleted.push(key);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..150))).await;
    }
}

/// One rows operation on the client's own partition: mostly a row write
/// and a query through another node that must see it; sometimes a delete
/// of the range of the last few rows, or of the whole partition, and a
/// query through another node that must not see what it deleted.
async fn rows(api: &Api, rng: &mut StdRng, (me, n): (usize, u64), node: usize, nodes: usize) {
    let partition = Bytes::from(format!("p-{me}"));
    let sort = Bytes::from(format!("{n:08}"));
    if rng.random_range(0..10) < 3 {
        let start = Bytes::from(format!("{:08}", n.saturating_sub(rng.random_range(1..40))));
        // One delete in five is of the whole partition (no new draw: the
        // seed's other choices stay).
        let (start, end) = if n % 5 == 0 {
            (Bytes::new(), None)
        } else {
            (start, Some(sort.clone()))
        };
        let index = api.history.borrow().row_deletes.len();
        api.history.borrow_mut().row_deletes.push((
            partition.clone(),
            start.clone(),
            end.clone(),
            None,
        ));
        let deleted = api
            .delete_rows(me, node, &partition, (&start, end.as_ref()))
            .await;
        if let Some(entry) = api.history.borrow_mut().row_deletes.get_mut(index) {
            entry.3 = deleted;
        }
        if let Some(deleted) = deleted {
            let other = (node + 1 + (n as usize) % (nodes - 1)) % nodes;
            query_your_deletes(
                api,
                (&partition, &start, end.as_ref()),
                deleted,
                (node, other),
            )
            .await;
        }
        return;
    }
    if n % 3 == 0 {
        // As many draws as a row write: the seed's other choices stay.
        let other = (node + rng.random_range(1..nodes)) % nodes;
        batch(api, (me, n), node, other).await;
        return;
    }
    let value = Bytes::from(format!("v-{me}-{n}"));
    let Some(written) = api.put_row(me, node, (&partition, &sort), &value).await else {
        return;
    };
    api.history
        .borrow_mut()
        .rows
        .push((partition.clone(), sort.clone(), value.clone(), written));
    // A QUORUM query after a QUORUM write sees it: only this client
    // deletes this partition's rows, and none since.
    let other = (node + rng.random_range(1..nodes)) % nodes;
    if let Some(seen) = api.query_all(other, &partition, &sort, 1).await
        && seen.first().map(|(s, v, _)| (s, v)) != Some((&sort, &value))
    {
        let what = format!(
            "query-your-writes: row {}/{} written via n{node} at QUORUM, a query from it via n{other} at QUORUM gave {:?}",
            String::from_utf8_lossy(&partition),
            String::from_utf8_lossy(&sort),
            seen.first()
        );
        api.history.borrow_mut().violations.push(what);
    }
}

/// After a deletion acknowledged at QUORUM at `deleted`, a QUORUM query
/// of its range through `other` gives no row it shadows (none stamped at
/// or before it): the replicas
/// it asks include one that acknowledged the deletion, and the merge
/// applies every replica's deletions to every replica's rows.
async fn query_your_deletes(
    api: &Api,
    (partition, start, end): (&Bytes, &Bytes, Option<&Bytes>),
    deleted: i64,
    (node, other): (usize, usize),
) {
    let Some(seen) = api.query_all(other, partition, start, 50).await else {
        return;
    };
    let survivors: Vec<String> = seen
        .iter()
        // A deletion shadows rows of its own timestamp too (tombstones win
        // ties).
        .filter(|(sort, _, written)| end.is_none_or(|end| sort < end) && *written <= deleted)
        .map(|(sort, _, written)| format!("{}@{written}", String::from_utf8_lossy(sort)))
        .collect();
    if !survivors.is_empty() {
        api.history.borrow_mut().violations.push(format!(
            "query-your-deletes: {} from {:?} to {:?} deleted at ts {deleted} via n{node} at QUORUM, a query via n{other} at QUORUM still gave the older rows {survivors:?}",
            String::from_utf8_lossy(partition),
            String::from_utf8_lossy(start),
            end.map(|end| String::from_utf8_lossy(end).into_owned())
        ));
    }
}

/// The rows of batch `id` of `batch`'s partition.
fn batch_row(id: &str, j: usize) -> Bytes {
    Bytes::from(format!("{id}-{j}"))
}

/// One partition batch of client `me` through `node`, then a query of it
/// through `other` (see the module docs).
async fn batch(api: &Api, (me, n): (usize, u64), node: usize, other: usize) {
    let partition = Bytes::from(format!("b-{me}"));
    let id = format!("{n:08}");
    let rows = 2 + (n % 4) as usize;
    let value = Bytes::from(format!("v-{me}-{n}"));
    // Every other batch deletes the rows of this client's previous one.
    let deletes = if n % 2 == 0 {
        api.history
            .borrow()
            .batches
            .iter()
            .rev()
            .find(|b| b.partition == partition)
            .map(|b| b.id.clone())
    } else {
        None
    };
    let mut operations = Vec::with_capacity(rows + 1);
    if let Some(previous) = &deletes {
        operations.push(pb::BatchOperation {
            operation: Some(pb::batch_operation::Operation::DeleteRows(pb::RowRange {
                start: Bytes::from(format!("{previous}-")),
                end: Some(Bytes::from(format!("{previous}."))),
            })),
        });
    }
    for j in 0..rows {
        operations.push(pb::BatchOperation {
            operation: Some(pb::batch_operation::Operation::Put(pb::RowPut {
                sort_key: batch_row(&id, j),
                value: value.clone(),
                ..Default::default()
            })),
        });
    }
    let index = api.history.borrow().batches.len();
    api.history.borrow_mut().batches.push(BatchSent {
        partition: partition.clone(),
        id: id.clone(),
        rows,
        deletes,
        acked: None,
    });
    let acked = api.batch(me, node, &partition, operations).await;
    if let Some(sent) = api.history.borrow_mut().batches.get_mut(index) {
        sent.acked = acked;
    }
    if acked.is_none() {
        return;
    }
    // Only this client writes this partition, and nothing since: the
    // query from the batch's first row gives exactly its rows.
    let start = batch_row(&id, 0);
    if let Some(seen) = api.query_all(other, &partition, &start, 100).await {
        let whole = seen.len() == rows
            && seen
                .iter()
                .enumerate()
                .all(|(j, (sort, v, _))| *sort == batch_row(&id, j) && *v == value);
        if !whole {
            let sorts: Vec<String> = seen
                .iter()
                .map(|(sort, ..)| String::from_utf8_lossy(sort).into_owned())
                .collect();
            api.history.borrow_mut().violations.push(format!(
                "batches: batch {id} of {} ({rows} rows) acknowledged via n{node} at QUORUM, a query via n{other} at QUORUM gave {sorts:?}",
                String::from_utf8_lossy(&partition)
            ));
        }
    }
}

/// After healing: every batch whole or gone (see the module docs).
async fn read_back_batches(api: &Api, nodes: &[usize]) {
    let batches = api.history.borrow().batches.clone();
    let partitions: BTreeSet<Bytes> = batches.iter().map(|b| b.partition.clone()).collect();
    for (i, partition) in partitions.iter().enumerate() {
        let node = nodes[i % nodes.len()];
        let Some(seen) = api.query_all(node, partition, &Bytes::new(), 9).await else {
            api.history.borrow_mut().violations.push(format!(
                "batches: the query of {} via n{node} failed after healing",
                String::from_utf8_lossy(partition)
            ));
            continue;
        };
        let held: BTreeSet<&Bytes> = seen.iter().map(|(sort, ..)| sort).collect();
        let mine: Vec<&BatchSent> = batches
            .iter()
            .filter(|b| b.partition == *partition)
            .collect();
        let mut violations = Vec::new();
        for (at, sent) in mine.iter().enumerate() {
            let found = (0..sent.rows)
                .filter(|j| held.contains(&batch_row(&sent.id, *j)))
                .count();
            // The batch that deleted this one, if any: the next one.
            let deleter = mine
                .get(at + 1)
                .filter(|next| next.deletes.as_ref() == Some(&sent.id));
            // Its deletion goes at its timestamp - 1 (so it deletes rows
            // written before `at`, strictly); an unacknowledged
            // batch may or may not have landed, at a timestamp unknown.
            let expected = match (sent.acked, deleter) {
                (None, _) => None,
                (Some(_), None) => Some(sent.rows),
                (Some(written), Some(deleter)) => deleter
                    .acked
                    .map(|at| if at > written { 0 } else { sent.rows }),
            };
            let whole_or_none = found == 0 || found == sent.rows;
            if !whole_or_none || expected.is_some_and(|e| e != found) {
                violations.push(format!(
                    "batches: batch {} of {} ({} rows, acknowledged: {:?}, expected: {expected:?}) read back via n{node} with {found} rows",
                    sent.id,
                    String::from_utf8_lossy(partition),
                    sent.rows,
                    sent.acked
                ));
            }
        }
        api.history.borrow_mut().violations.extend(violations);
    }
}

/// After healing: each client's partition read back in pages, against
/// what was acknowledged (see the module docs).
async fn read_back_rows(api: &Api, nodes: &[usize]) {
    let (rows, deletes) = {
        let history = api.history.borrow();
        (history.rows.clone(), history.row_deletes.clone())
    };
    let partitions: BTreeSet<Bytes> = rows.iter().map(|(p, ..)| p.clone()).collect();
    for (i, partition) in partitions.iter().enumerate() {
        let node = nodes[i % nodes.len()];
        let Some(seen) = api.query_all(node, partition, &Bytes::new(), 7).await else {
            api.history.borrow_mut().violations.push(format!(
                "rows: the query of {} via n{node} failed after healing",
                String::from_utf8_lossy(partition)
            ));
            continue;
        };
        let name = |sort: &Bytes| {
            format!(
                "{}/{}",
                String::from_utf8_lossy(partition),
                String::from_utf8_lossy(sort)
            )
        };
        let mut violations = Vec::new();
        if !seen.windows(2).all(|w| w[0].0 < w[1].0) {
            violations.push(format!(
                "rows: a query of {} gave rows out of order or twice",
                String::from_utf8_lossy(partition)
            ));
        }
        let found: BTreeMap<&Bytes, &Bytes> = seen.iter().map(|(s, v, _)| (s, v)).collect();
        let covering = |sort: &Bytes| -> Vec<Option<i64>> {
            deletes
                .iter()
                .filter(|(p, start, end, _)| {
                    p == partition && start <= sort && end.as_ref().is_none_or(|end| sort < end)
                })
                .map(|(.., ts)| *ts)
                .collect()
        };
        for (_, sort, value, written) in rows.iter().filter(|(p, ..)| p == partition) {
            let deletes = covering(sort);
            let deleted_after = deletes.iter().any(|ts| ts.is_some_and(|ts| ts >= *written));
            let ever_deleted = !deletes.is_empty();
            match found.get(sort) {
                Some(held) if deleted_after => violations.push(format!(
                    "rows: resurrected: {} written at {written}, deleted by a newer acknowledged range delete, read back via n{node}: {:?}",
                    name(sort),
                    String::from_utf8_lossy(held)
                )),
                Some(held) if *held != value => violations.push(format!(
                    "rows: {} read back via n{node} as {:?}, written {:?}",
                    name(sort),
                    String::from_utf8_lossy(held),
                    String::from_utf8_lossy(value)
                )),
                None if !ever_deleted => violations.push(format!(
                    "rows: lost row: {} acknowledged at QUORUM, no delete sent for it, missing from a query via n{node} after healing",
                    name(sort)
                )),
                _ => {}
            }
        }
        api.history.borrow_mut().violations.extend(violations);
    }
}

/// One sequential update: v1 through `node`, then, once acknowledged, v2
/// through another node, then a read through any.
async fn sequential(api: &Api, rng: &mut StdRng, (me, n): (usize, u64), node: usize, nodes: usize) {
    let key = Bytes::from(format!("s-{me}-{n}"));
    let (first, second) = (
        Bytes::from(format!("v1-{me}-{n}")),
        Bytes::from(format!("v2-{me}-{n}")),
    );
    let other = (node + rng.random_range(1..nodes)) % nodes;
    if api.put(me, node, &key, &first).await.is_none()
        || api.put(me, other, &key, &second).await.is_none()
    {
        return;
    }
    api.history
        .borrow_mut()
        .sequential
        .push((key.clone(), second.clone()));
    let reader = rng.random_range(0..nodes);
    if let Some(read) = api.get(me, reader, &key).await
        && read.as_ref().map(|(v, _)| v) != Some(&second)
    {
        let what = format!(
            "sequential updates: {} written v1 via n{node}, then v2 via n{other}, both acknowledged at QUORUM; read via n{reader} at QUORUM gave {read:?}",
            String::from_utf8_lossy(&key)
        );
        api.history.borrow_mut().sequential_stale.push(what);
    }
}

/// After healing: waits for every node to see every other, repairs
/// through every node, and reads back what was acknowledged.
async fn converge_and_read_back(api: &Api, nodes: &[usize]) {
    let limit = Duration::from_secs(90);
    if !api
        .ring_formed(nodes, limit, Duration::from_millis(500))
        .await
    {
        api.history
            .borrow_mut()
            .violations
            .push("the healed cluster did not see every node up within 60 s".into());
    }
    tokio::time::sleep(SETTLE).await;
    api.history.borrow_mut().check_handoff = true;
    while !api.history.borrow().handoff_checked {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for &node in nodes {
        if !api.repair(node).await && !api.repair(node).await {
            api.history.borrow_mut().violations.push(format!(
                "the repair through n{node} did not complete once healed"
            ));
        }
    }
    let (unique, deleted, sequential) = {
        let history = api.history.borrow();
        (
            history.unique.clone(),
            history.deleted.clone(),
            history.sequential.clone(),
        )
    };
    for (i, (key, value)) in unique.iter().enumerate() {
        let node = nodes[i % nodes.len()];
        match api.get(0, node, key).await {
            Some(Some((read, _))) if read == value => {}
            read => api.history.borrow_mut().violations.push(format!(
                "lost write: {} acknowledged at QUORUM, read back via n{node} after healing: {read:?}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    for (i, (key, value)) in sequential.iter().enumerate() {
        let node = nodes[i % nodes.len()];
        match api.get(0, node, key).await {
            Some(Some((read, _))) if read == value => {}
            read => api.history.borrow_mut().sequential_stale.push(format!(
                "sequential updates: {} ended at v1, its second write undone: read back via n{node} after healing: {read:?}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    for (i, key) in deleted.iter().enumerate() {
        let node = nodes[i % nodes.len()];
        match api.get(0, node, key).await {
            Some(None) => {}
            read => api.history.borrow_mut().violations.push(format!(
                "resurrected: {} deleted at QUORUM, read back via n{node} after healing: {read:?}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    read_back_rows(api, nodes).await;
    read_back_batches(api, nodes).await;
}

/// The client host of a run: `layout` says which node does what, `ids`
/// are the nodes' ids.
pub async fn run(
    seed: u64,
    scenario: Scenario,
    layout: Layout,
    ids: Vec<String>,
    history: Rc<RefCell<History>>,
) -> turmoil::Result {
    let addrs: Vec<SocketAddr> = (0..layout.hosts)
        .map(|i| SocketAddr::new(turmoil::lookup(format!("n{i}")), CLIENT_PORT))
        .collect();
    let api = Rc::new(Api {
        kv: addrs
            .iter()
            .map(|a| KeyValueClient::new(channel(*a)))
            .collect(),
        admin: addrs
            .iter()
            .map(|a| AdminClient::new(channel(*a)))
            .collect(),
        changes: addrs
            .iter()
            .map(|a| AdminClient::new(channel_with_timeout(*a, Duration::from_secs(150))))
            .collect(),
        history: history.clone(),
    });
    // The cluster forms: wait until every node serves and sees the others.
    let initial: Vec<usize> = (0..layout.hosts)
        .filter(|i| layout.late.is_none_or(|(late, _, _)| late != *i))
        .filter(|i| !layout.gated.contains(i))
        .collect();
    if !api
        .ring_formed(
            &initial,
            Duration::from_secs(60),
            Duration::from_millis(200),
        )
        .await
    {
        history
            .borrow_mut()
            .violations
            .push("the cluster did not form within 60 s".into());
    }
    let formed = now();
    history.borrow_mut().formed_at = Some(formed);
    api.record("cluster formed".into());
    let done = Cell::new(false);
    // Churn keeps the clients going until its last step; the fault
    // schedule still ends with the fault phase.
    let churning = (scenario == Scenario::Churn).then_some(&done);
    let clients = (0..CLIENTS).map(|me| {
        let until = (formed + FAULTS_UNTIL, churning);
        client(api.clone(), seed, me, layout.stable, until)
    });
    // The fault phase ends with the clients; a change may go on past it.
    let clients = async {
        futures::future::join_all(clients).await;
        history.borrow_mut().faults_over = true;
        api.record("faults over".into());
    };
    let changing = async {
        let changed = change(&api, scenario, &layout, &ids, formed).await;
        done.set(true);
        changed
    };
    // Topology runs clean up beside the change.
    let cleaning = async {
        if scenario != Scenario::Steady {
            cleanups(&api, seed, &layout, formed + FAULTS_UNTIL, &done).await;
        }
    };
    let ((), changed, ()) = futures::join!(clients, changing, cleaning);
    while !history.borrow().healed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !changed {
        history
            .borrow_mut()
            .violations
            .push(format!("the {} did not complete", scenario.name()));
    }
    converge_and_read_back(&api, &layout.final_nodes).await;
    api.record("done".into());
    Ok(())
}
