//! Choosing hosts for a request, and keeping the ring fresh.
//!
//! The client fetches the ring (`Admin.Ring`), computes each key's token
//! (the partitioner the nodes use) and sends the request to one of the key's
//! live replicas, rotating among them; the replica coordinates, saving the
//! hop a non-replica coordinator would make. Other live nodes, then the
//! configured hosts, are fallbacks; a host that just failed at the
//! transport level goes last for a moment. The ring is refreshed every few
//! seconds and at once when a node stops answering.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringkv_proto::v1 as pb;
use ringkv_proto::v1::admin_client::AdminClient;
use tokio::sync::Notify;

use crate::client::{Client, Inner};
use crate::cluster::RingInfo;
use crate::connection::is_transport_failure;
use crate::error::{Error, Result};

/// How long a host that failed at the transport level is passed over.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// Least time between two ring refreshes.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(500);

/// The ring as the client routes with it, computed once per refresh so
/// that choosing hosts for a request copies no strings.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    ring: Option<Arc<RingInfo>>,
    /// For each range of `ring`, the addresses of its live replicas.
    replicas: Vec<Vec<Arc<str>>>,
    /// Live NORMAL members, then the host first connected to and the
    /// configured hosts: where to go when the replicas do not answer.
    fallbacks: Vec<Arc<str>>,
}

impl Routes {
    pub(crate) fn new(ring: Option<Arc<RingInfo>>, home: &str, hosts: &[String]) -> Routes {
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

impl Client {
    /// The ring as last fetched, if any.
    pub fn ring(&self) -> Option<Arc<RingInfo>> {
        self.routes().ring.clone()
    }

    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.inner
            .routes
            .read()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub(crate) fn mark_down(&self, host: &str) {
        if let Ok(mut down) = self.inner.down_until.lock() {
            down.insert(host.to_owned(), Instant::now() + DOWN_FOR);
        }
        self.inner.refresh.notify_one();
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

    /// Fetches the ring from the first host that answers.
    pub(crate) async fn refresh_ring(&self) -> Result<()> {
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
pub(crate) async fn keep_ring_fresh(inner: Weak<Inner>, refresh: Arc<Notify>) {
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
