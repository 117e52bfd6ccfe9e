//! The worker that reads every live peer's clock (see `clock::offsets`)
//! and exports what it measured.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::offsets::PROBE_INTERVAL;
use crate::clock::{ClockOffsets, WallClock};
use crate::membership::ViewHandle;
use crate::metrics::{CLOCK_OFFSET, CLOCK_OFFSET_EXCEEDED, PeerNames};
use crate::rpc::NodeTransport;

/// Longest wait for one peer's clock: a slower answer would be too
/// uncertain to tell anything anyway.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Every [`PROBE_INTERVAL`], reads each live peer's clock into `offsets`,
/// forgets peers that left, and sets `ringkv_clock_offset_seconds{peer}`
/// and `ringkv_clock_offset_exceeded`, logging when this node starts or
/// stops refusing writes for its clock.
pub(super) async fn probe_clocks(
    transport: Arc<NodeTransport>,
    offsets: Arc<ClockOffsets>,
    view: ViewHandle,
    (wall, names): (WallClock, PeerNames),
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let exceeded = metrics::gauge!(CLOCK_OFFSET_EXCEEDED);
    let mut refusing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let current = view.load_full();
        let local = current.local();
        let probes = current
            .members()
            .filter(|m| m.id != local && current.is_alive(&m.id))
            .map(|member| {
                let (peer, wall) = (member.id, wall.clone());
                let answer = transport.clock_of(peer);
                async move {
                    let sent = wall.micros();
                    match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
                        Ok(Ok(remote)) => Some((peer, sent, remote, wall.micros())),
                        _ => None,
                    }
                }
            });
        for (peer, sent, remote, received) in futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
        {
            offsets.record(peer, sent, remote, received);
        }
        offsets.retain(|peer| current.member(peer).is_some());
        for measured in offsets.offsets() {
            metrics::gauge!(CLOCK_OFFSET, "peer" => names.label(&measured.peer))
                .set(measured.offset_micros as f64 / 1e6);
        }
        let refusal = offsets.refusal();
        match (&refusal, refusing) {
            (Some(why), false) => tracing::error!(why, "refusing to coordinate writes"),
            (None, true) => tracing::info!(
                "clock offset back within max_clock_offset_ms: coordinating writes again"
            ),
            _ => {}
        }
        refusing = refusal.is_some();
        exceeded.set(if refusing { 1.0 } else { 0.0 });
    }
}
