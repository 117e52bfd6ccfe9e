//! The web console's data: what each node samples of itself, the history
//! it keeps (and copies from peers), and the charts drawn from it. The HTTP
//! side (routes, page, JSON) is `server::console`.
//!
//! 1. Every 2 s a node reads its own `/metrics` text and keeps the
//!    difference from the last reading as a [`sample::Sample`]: requests/s,
//!    p50 and p99 latency by operation, errors/s by kind, read repairs/s,
//!    hints pending by target. 16 minutes of samples stay in memory.
//! 2. When the console asks for charts, the node copies its peers' newer
//!    samples over the internode API (`Peer/Samples`), so the console of
//!    any node shows every node and the cluster, without Prometheus.
//! 3. Charts are drawn as SVG on the node (`plotters`).
//!
//! CAVEATS: histories live in memory; a restarted node starts empty. The
//! cluster's latency is the worst node's per sample, not a merged quantile.

pub mod chart;
pub mod history;
pub mod sample;
