//! Choosing hosts for a request: the [`Router`] holds the ring as last
//! fetched, which hosts failed lately, and the rotation among replicas
//! (the client fetches the ring and keeps it fresh).
//!
//! The client fetches the ring (`Admin.Ring`), computes each key's token
//! (the partitioner the nodes use) and sends the request to one of the key's
//! live replicas, rotating among them; the replica coordinates, saving the
//! hop a non-replica coordinator would make. Other live nodes, then the
//! configured hosts, are fallbacks; a host that just failed at the
//! transport level goes last for a moment. The ring is refreshed every few
//! seconds and at once when a node stops answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::cluster::RingInfo;

/// How long a host that failed at the transport level is passed over.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// Least time between two ring refreshes.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(500);

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

/// Where a client sends its requests: the ring's routes, the hosts that
/// failed lately, and the turn among a key's replicas.
#[derive(Debug)]
pub(crate) struct Router {
    /// The host first connected to, a fallback of last resort.
    home: String,
    /// The configured hosts, fallbacks too.
    hosts: Vec<String>,
    routes: RwLock<Arc<Routes>>,
    down_until: Mutex<HashMap<String, Instant>>,
    rotation: AtomicUsize,
    /// Wakes the ring refresher early (a host stopped answering).
    refresh: Arc<Notify>,
    last_refresh: Mutex<Option<Instant>>,
}

impl Router {
    /// Routes with no ring yet: the home host, then the configured ones.
    pub(crate) fn new(home: &str, hosts: &[String]) -> Router {
        Router {
            home: home.to_owned(),
            hosts: hosts.to_vec(),
            routes: RwLock::new(Arc::new(Routes::new(None, home, hosts))),
            down_until: Mutex::new(HashMap::new()),
            rotation: AtomicUsize::new(0),
            refresh: Arc::new(Notify::new()),
            last_refresh: Mutex::new(None),
        }
    }

    /// The host first connected to.
    pub(crate) fn home(&self) -> &str {
        &self.home
    }

    /// The ring as last fetched, if any.
    pub(crate) fn ring(&self) -> Option<Arc<RingInfo>> {
        self.routes().ring.clone()
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Routes by `ring` from now on.
    pub(crate) fn install(&self, ring: RingInfo) {
        let routes = Routes::new(Some(Arc::new(ring)), &self.home, &self.hosts);
        if let Ok(mut slot) = self.routes.write() {
            *slot = Arc::new(routes);
        }
    }

    /// `host` failed at the transport level: it goes last for a moment, and
    /// the ring is refreshed soon.
    pub(crate) fn mark_down(&self, host: &str) {
        if let Ok(mut down) = self.down_until.lock() {
            down.insert(host.to_owned(), Instant::now() + DOWN_FOR);
        }
        self.refresh.notify_one();
    }

    /// Hosts to try for a request on `key`, best first: its live replicas
    /// (rotating, to spread the load), then the fallbacks; hosts that failed
    /// in the last moments go last rather than nowhere.
    pub(crate) fn candidates(&self, key: Option<&[u8]>) -> Vec<Arc<str>> {
        let routes = self.routes();
        let mut hosts: Vec<Arc<str>> = Vec::with_capacity(routes.fallbacks.len() + 3);
        if let (Some(ring), Some(key)) = (&routes.ring, key)
            && let Some(range) = ring.range_index(ringkv_proto::partitioner::token_of(key))
            && let Some(replicas) = routes.replicas.get(range)
            && !replicas.is_empty()
        {
            let turn = self.rotation.fetch_add(1, Ordering::Relaxed);
            for i in 0..replicas.len() {
                hosts.push(replicas[(turn + i) % replicas.len()].clone());
            }
        }
        for host in &routes.fallbacks {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        if let Ok(down) = self.down_until.lock()
            && !down.is_empty()
        {
            let now = Instant::now();
            // A stable sort keeps the preference order within each group.
            hosts.sort_by_key(|h| down.get(&**h).is_some_and(|until| *until > now));
        }
        hosts
    }

    /// Notes that a refresh starts now.
    pub(crate) fn refreshing(&self) {
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Some(Instant::now());
        }
    }

    /// Waits until the next refresh is due: `period` after the last, or
    /// sooner when a host was marked down, but never within
    /// `MIN_REFRESH_GAP` of the last refresh.
    pub(crate) async fn next_refresh(&self, period: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = self.refresh.notified() => {}
        }
        let recent = self
            .last_refresh
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|at| at.elapsed() < MIN_REFRESH_GAP);
        if recent {
            tokio::time::sleep(MIN_REFRESH_GAP).await;
        }
    }
}
