//! Phases 6 and 7 of a node's start (see `join`): the background workers
//! a joined node runs, and the services it serves clients with.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::announce::{announce_disk, announce_repair_failures, announce_repairs};
use super::console;
use super::gauges;
use super::http;
use super::node::Node;
use super::serve::{Banner, Joined};
use crate::auth::throttle::Throttle;
use crate::auth::{Authenticator, UserStore};
use crate::clock::ClockOffsets;
use crate::console::history::SampleSource;
use crate::coordinator::Coordinator;
use crate::hints::{self, HintStore, run_replay};
use crate::membership::Membership;
use crate::metrics::PeerNames;
use crate::peer::{RepairTransport, ReplicaTransport};
use crate::repair::{self, LocalReplica, Repairer, run_scheduler};
use crate::rpc::limit::InFlightLimit;
use crate::rpc::{AdminService, NodeDescription, NodeTransport};
use crate::streaming::Topology;

/// What the background workers started, for the services.
pub(super) struct Running {
    hints: Option<Arc<HintStore>>,
    offsets: Arc<ClockOffsets>,
    coordinator: Arc<Coordinator>,
    repairer: Arc<Repairer>,
    names: PeerNames,
}

impl Node {
    /// Phase 6: the background workers, and the coordinator.
    pub(super) fn start_workers(
        &mut self,
        membership: &Arc<Membership>,
        transport: &Arc<NodeTransport>,
        last_repair: i64,
        stop: &CancellationToken,
    ) -> anyhow::Result<Running> {
        let config = &self.config;
        let (workers, worker_stop) = (&self.life.workers, &self.life.worker_stop);
        // The names this node labels its peers' metrics with.
        let names = PeerNames::default();
        let hints = if config.hinted_handoff_enabled {
            let hints = Arc::new(
                HintStore::open(self.engine.clone(), config.hint_capacity_bytes())?
                    .durable_as(self.store.clone())
                    .with_clock(self.wall.clone())
                    .with_names(names.clone()),
            );
            let replay = workers.worker(hints::REPLAY_WORKER);
            let view = membership.view_handle();
            replay.describe(&hints, move |hints| hints.in_words(&view.load()));
            replay.spawn(run_replay(
                hints.clone(),
                membership.view_handle(),
                transport.clone(),
                config.replay_settings(),
                worker_stop.clone(),
            ));
            Some(hints)
        } else {
            None
        };
        let offsets = Arc::new(ClockOffsets::new(config.max_clock_offset_ms));
        workers.spawn(
            "clock probes",
            super::clocks::probe_clocks(
                transport.clone(),
                offsets.clone(),
                membership.view_handle(),
                (self.wall.clone(), names.clone()),
                worker_stop.clone(),
            ),
        );
        let coordinator = Arc::new(
            Coordinator::new(
                membership.view_handle(),
                transport.clone() as Arc<dyn ReplicaTransport>,
                self.clock.clone(),
                config.coordinator_settings(),
                hints.clone(),
            )
            .with_tasks(&self.life.requests)
            .with_seed(rand::Rng::random(&mut self.rng))
            .with_clock_offsets(offsets.clone()),
        );
        let repairer = Arc::new(
            Repairer::new(
                self.node_id,
                membership.view_handle(),
                LocalReplica {
                    cache: self.trees.clone(),
                    store: self.store.clone(),
                },
                transport.clone() as Arc<dyn RepairTransport>,
                last_repair,
            )
            .with_clock(self.wall.clone()),
        );
        let repairs = workers.worker(repair::WORKER);
        repairs.describe(&repairer, |repairer| repairer.in_words());
        if let Some(interval) = config.anti_entropy_interval() {
            repairs.spawn(run_scheduler(
                repairer.clone(),
                interval,
                repairs.clone(),
                worker_stop.clone(),
            ));
        }
        workers.spawn(
            "disk announcer",
            announce_disk(
                self.disk.subscribe(),
                membership.clone(),
                config.disk_failure_policy,
                (stop.clone(), self.life.fatal.clone()),
                worker_stop.clone(),
            ),
        );
        workers.spawn(
            "repair failure announcer",
            announce_repair_failures(
                repairer.subscribe_failures(),
                membership.clone(),
                worker_stop.clone(),
            ),
        );
        workers.spawn(
            "repair announcer",
            announce_repairs(
                repairer.subscribe(),
                membership.clone(),
                self.engine.clone(),
                worker_stop.clone(),
            ),
        );
        Ok(Running {
            hints,
            offsets,
            coordinator,
            repairer,
            names,
        })
    }

    /// Phase 7: the console's and gauges' sources, users, the admin
    /// service, and what step 3 serves.
    pub(super) fn build_services(
        &self,
        health: Arc<http::Health>,
        membership: &Arc<Membership>,
        (transport, topology): (Arc<NodeTransport>, Arc<Topology>),
        running: Running,
        internode: InFlightLimit,
        stop: &CancellationToken,
    ) -> anyhow::Result<Joined> {
        let config = &self.config;
        let (workers, worker_stop) = (&self.life.workers, &self.life.worker_stop);
        let Running {
            hints,
            offsets,
            coordinator,
            repairer,
            names,
        } = running;
        self.console.joined(console::Joined {
            view: membership.view_handle(),
            cluster_name: config.cluster_name.clone(),
            replication_factor: config.replication_factor,
            peers: transport.clone() as Arc<dyn SampleSource>,
            offsets: offsets.clone(),
        });
        self.gauges.joined(gauges::Joined {
            view: membership.view_handle(),
            generation: membership.generation(),
            hints,
            repairer: repairer.clone(),
            internode,
            background: self.life.requests.clone(),
            replicas: transport.replica_metrics(),
            names,
        });
        let users = config
            .authentication
            .then(|| UserStore::new(coordinator.clone()));
        if let (Some(users), Some(password)) = (&users, config.admin_password()?) {
            workers.spawn(
                "admin user",
                users.clone().ensure_admin(password, worker_stop.clone()),
            );
        }
        let auth = users.clone().map(|users| {
            let throttle = Throttle::new(
                config.auth_max_failures,
                Duration::from_millis(config.auth_failure_refill_ms),
            );
            Arc::new(Authenticator::with_throttle(
                users,
                config.auth_cache(),
                throttle,
            ))
        });
        let admin = AdminService::new(
            NodeDescription {
                id: self.node_id,
                name: self.name.clone(),
                replication_factor: config.replication_factor,
                rack: config.rack.clone(),
                cluster_name: config.cluster_name.clone(),
            },
            membership.view_handle(),
            repairer,
        )
        .with_tasks(workers.clone(), worker_stop.clone())
        .with_topology(topology, stop.clone())
        .with_users(users)
        .with_clock_offsets(offsets)
        .with_stats({
            let gauges = self.gauges.clone();
            Arc::new(move || gauges.snapshot())
        });
        Ok(Joined {
            coordinator,
            admin,
            health,
            max_message: config.max_message_bytes(),
            client_limits: config.client_api_limits(),
            client_tls: self.tls.client.clone(),
            client_port: config.port_limits().client,
            ping: config.server_ping_interval(),
            auth,
            request_deadline: config.client_request_deadline(),
            view: membership.view_handle(),
            resp: config.resp_settings(&self.name),
            resp_tls: self.tls.resp.clone(),
            grace: config.shutdown_grace(),
            banner: Banner {
                node_id: self.node_id,
                name: self.name.clone(),
                advertised: self.advertised,
                data_dir: config.data_dir.display().to_string(),
                commitlog_sync: config.commitlog_sync,
            },
            gauges: self.gauges.clone(),
            // They end on `stop`: listed, not waited for.
            tasks: self.life.workers.sibling(),
        })
    }
}
