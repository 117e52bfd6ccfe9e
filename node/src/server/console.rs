//! The web console on the HTTP port: `/` and its assets (embedded in the
//! binary: no CDN, no build step), and the JSON it polls:
//! - `/console/api/cluster`: every node (up/down, state, rack, load,
//!   ownership, tokens, last repair, version), the ring as arcs (fractions
//!   of the circle, one per token range, by primary owner), what this node
//!   sees down, and running work: what the node's named workers say they
//!   are doing (a repair run, hints held, range streams; see
//!   `crate::workers`) and the topology change in progress;
//! - `/console/api/charts?node=NAME|cluster`: the charts of the last 15
//!   minutes as SVG, from the samples this node keeps and copies from its
//!   peers (`console::History`);
//! - `/console/api/replicas?key=K`: a key's token, position and replicas.
//!
//! Before the node has joined, the API answers 503.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::gauges::Gauges;
use crate::clock::ClockOffsets;
use crate::console::chart::{self, Chart};
use crate::console::history::{History, SampleSource};
use crate::coordinator::validate_key;
use crate::identity::NodeId;
use crate::membership::{NodeStatus, ViewHandle};
use crate::ring::Token;

const INDEX: &str = include_str!("../console/assets/index.html");
const SCRIPT: &str = include_str!("../console/assets/app.js");
const STYLE: &str = include_str!("../console/assets/style.css");

/// How long the console waits for a peer's samples.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the console needs once the node has joined.
pub struct Joined {
    pub view: ViewHandle,
    pub cluster_name: String,
    pub replication_factor: u32,
    pub peers: Arc<dyn SampleSource>,
    /// Peers' clock offsets.
    pub offsets: Arc<ClockOffsets>,
}

/// The console's state.
pub struct Console {
    history: Arc<History>,
    gauges: Arc<Gauges>,
    joined: OnceLock<Joined>,
}

impl Console {
    pub fn new(history: Arc<History>, gauges: Arc<Gauges>) -> Arc<Console> {
        Arc::new(Console {
            history,
            gauges,
            joined: OnceLock::new(),
        })
    }

    /// Hands over what exists once the node has joined.
    pub fn joined(&self, joined: Joined) {
        let _ = self.joined.set(joined);
    }

    fn ready(&self) -> Result<&Joined, Box<Response>> {
        self.joined.get().ok_or_else(|| {
            Box::new((StatusCode::SERVICE_UNAVAILABLE, "the node is starting\n").into_response())
        })
    }
}

/// The console's routes.
pub fn routes(console: Arc<Console>) -> Router {
    let asset = |body: &'static str, kind: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, kind)], body) })
    };
    Router::new()
        .route("/", asset(INDEX, "text/html; charset=utf-8"))
        .route(
            "/console/app.js",
            asset(SCRIPT, "text/javascript; charset=utf-8"),
        )
        .route(
            "/console/style.css",
            asset(STYLE, "text/css; charset=utf-8"),
        )
        .route("/console/api/cluster", get(cluster))
        .route("/console/api/charts", get(charts))
        .route("/console/api/replicas", get(replicas))
        .with_state(console)
}

/// Where `token` falls on the circle, 0 to 1 clockwise from the top.
fn fraction(token: Token) -> f64 {
    (i128::from(token.0) - i128::from(i64::MIN)) as f64 / 2f64.powi(64)
}

async fn cluster(State(console): State<Arc<Console>>) -> Response {
    let joined = match console.ready() {
        Ok(joined) => joined,
        Err(refused) => return *refused,
    };
    let Some(stats) = console.gauges.off_runtime(Gauges::snapshot).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "gathering statistics failed\n",
        )
            .into_response();
    };
    let view = joined.view.load_full();
    let name = |id: &NodeId| view.name_of(id);
    let owns = view.ring().effective_ownership();
    let offsets = joined.offsets.offsets();
    let clock_offset_ms = |id: &NodeId| {
        if *id == view.local() {
            return Some(0.0);
        }
        offsets
            .iter()
            .find(|o| o.peer == *id)
            .map(|o| o.offset_micros as f64 / 1e3)
    };
    let nodes: Vec<_> = view
        .members()
        .filter(|m| m.status != NodeStatus::Left)
        .map(|m| {
            json!({
                "id": m.id.to_string(),
                "name": m.name,
                "address": m.client_addr.map(|a| a.to_string()).unwrap_or_default(),
                "rack": m.rack,
                "up": view.is_alive(&m.id),
                "state": m.status.to_string(),
                "load_bytes": m.load_bytes.unwrap_or(0),
                "owns": owns.get(&m.id).copied().unwrap_or(0.0),
                "tokens": m.tokens.len(),
                "last_repair": m.last_repair.filter(|t| *t > 0),
                "clock_offset_ms": clock_offset_ms(&m.id),
                "version": m.version,
            })
        })
        .collect();
    let ring: Vec<_> = view
        .ring()
        .ranges()
        .map(|(range, replicas)| {
            json!({
                "from": fraction(range.start),
                "to": fraction(range.end),
                "owner": replicas.first().map(&name).unwrap_or_default(),
            })
        })
        .collect();
    let down: Vec<String> = view
        .members()
        .filter(|m| m.status != NodeStatus::Left && !view.is_alive(&m.id))
        .map(|m| m.name.clone())
        .collect();
    // What the node's workers say they are doing (see `crate::workers`):
    // a repair run, hints held, range streams.
    let mut work: Vec<String> = stats
        .workers
        .iter()
        .flat_map(|worker| worker.status.iter().cloned())
        .collect();
    let change = view.changes_in_words();
    if !change.is_empty() {
        work.push(format!("topology change: {change}"));
    }
    axum::Json(json!({
        "cluster_name": joined.cluster_name,
        "replication_factor": joined.replication_factor,
        "local": name(&view.local()),
        "nodes": nodes,
        "ring": ring,
        "down": down,
        "work": work,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct ChartsQuery {
    node: Option<String>,
}

async fn charts(State(console): State<Arc<Console>>, Query(query): Query<ChartsQuery>) -> Response {
    let joined = match console.ready() {
        Ok(joined) => joined,
        Err(refused) => return *refused,
    };
    let view = joined.view.load_full();
    let local = view.local();
    let members: Vec<(NodeId, String)> = view
        .members()
        .filter(|m| m.status != NodeStatus::Left)
        .map(|m| (m.id, m.name.clone()))
        .collect();
    let wanted = query.node.unwrap_or_else(|| "cluster".into());
    let chosen: Vec<NodeId> = match wanted.as_str() {
        "cluster" => members.iter().map(|(id, _)| *id).collect(),
        name => match members.iter().find(|(_, n)| n == name) {
            Some((id, _)) => vec![*id],
            None => {
                return (StatusCode::NOT_FOUND, format!("no node named {name:?}\n"))
                    .into_response();
            }
        },
    };
    let peers: Vec<NodeId> = chosen
        .iter()
        .copied()
        .filter(|id| *id != local && view.is_alive(id))
        .collect();
    let silent = console
        .history
        .refresh_peers(joined.peers.as_ref(), &peers, PEER_TIMEOUT)
        .await;
    console
        .history
        .retain_peers(&members.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    let per_node: Vec<_> = chosen
        .iter()
        .map(|id| console.history.of(*id, *id == local))
        .collect();
    let samples = if per_node.len() == 1 {
        per_node.into_iter().next().unwrap_or_default()
    } else {
        chart::cluster(&per_node)
    };
    let now_ms = crate::clock::wall_clock_micros() / 1000;
    let mut drawn = Vec::new();
    for kind in Chart::ALL {
        let lines = chart::series(kind, &samples, now_ms);
        let svg = match chart::svg(kind, &lines) {
            Ok(svg) => svg,
            Err(error) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("drawing {} failed: {error}\n", kind.id()),
                )
                    .into_response();
            }
        };
        drawn.push(json!({
            "id": kind.id(),
            "title": kind.title(),
            "svg": svg,
            "points": lines.iter().map(|l| l.points.len()).sum::<usize>(),
            "nonzero": lines.iter().map(chart::Series::nonzero).sum::<usize>(),
        }));
    }
    let silent: Vec<String> = silent
        .iter()
        .filter_map(|id| members.iter().find(|(m, _)| m == id))
        .map(|(_, name)| name.clone())
        .collect();
    axum::Json(json!({ "node": wanted, "charts": drawn, "silent": silent })).into_response()
}

#[derive(serde::Deserialize)]
struct ReplicasQuery {
    key: String,
}

async fn replicas(
    State(console): State<Arc<Console>>,
    Query(query): Query<ReplicasQuery>,
) -> Response {
    let joined = match console.ready() {
        Ok(joined) => joined,
        Err(refused) => return *refused,
    };
    if let Err(error) = validate_key(query.key.as_bytes()) {
        return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
    }
    let view = joined.view.load_full();
    let token = Token::of(query.key.as_bytes());
    let ring = view.ring();
    let range = ring.ranges().position(|(range, _)| range.contains(token));
    let replicas: Vec<String> = ring
        .replicas(token)
        .iter()
        .map(|id| view.name_of(id))
        .collect();
    axum::Json(json!({
        "token": token.0.to_string(),
        "at": fraction(token),
        "range": range,
        "replicas": replicas,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_onto_the_circle_in_order() {
        assert_eq!(fraction(Token(i64::MIN)), 0.0);
        assert_eq!(fraction(Token(0)), 0.5);
        // The largest token rounds to the full circle: the same point as 0.
        assert!(fraction(Token(i64::MAX)) <= 1.0);
        // f64 resolves tokens about 2^11 apart near the middle.
        assert!(fraction(Token(-1_000_000)) < fraction(Token(1_000_000)));
    }

    #[test]
    fn the_assets_are_embedded_and_reference_each_other() {
        assert!(INDEX.contains("/console/app.js"));
        assert!(INDEX.contains("/console/style.css"));
        assert!(SCRIPT.contains("/console/api/cluster"));
        assert!(SCRIPT.contains("/console/api/charts"));
        assert!(SCRIPT.contains("/console/api/replicas"));
        for asset in [INDEX, SCRIPT, STYLE] {
            // XML namespaces name, they do not load.
            let loads = asset
                .replace("http://www.w3.org/2000/svg", "")
                .replace("http://www.w3.org/1999/xhtml", "");
            for external in ["http://", "https://", "//cdn"] {
                assert!(
                    !loads.contains(external),
                    "an asset loads {external}: the console must work offline"
                );
            }
        }
    }
}
