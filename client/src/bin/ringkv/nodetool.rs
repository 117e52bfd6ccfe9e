//! The nodetool-like views of one node and the cluster: `info` (extended),
//! `tpstats`, `hints`, `compactionstats` and `describecluster`, as text for
//! people and JSON for scripts.

use std::collections::BTreeMap;

use ringkv_client::{ClusterStatus, NodeStats};
use serde_json::json;

use crate::format::{ago, human_bytes, table};

/// Which view of a node's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsView {
    Info,
    Tpstats,
    Hints,
    Compaction,
}

/// The node's named tasks, then what the busy ones say they are doing.
fn workers_text(stats: &NodeStats) -> String {
    let mut rows = vec![
        ["Worker", "State", "Running", "Done", "Failed", "Last error"]
            .map(str::to_owned)
            .to_vec(),
    ];
    rows.extend(stats.workers.iter().map(|w| {
        vec![
            w.name.clone(),
            w.state.clone(),
            w.running.to_string(),
            w.done.to_string(),
            w.failed.to_string(),
            match &w.last_error {
                Some((message, at)) => format!("{} ({message})", ago(Some(*at))),
                None => "-".to_owned(),
            },
        ]
    }));
    let mut text = table(&rows);
    let said: Vec<&String> = stats.workers.iter().flat_map(|w| &w.status).collect();
    if !said.is_empty() {
        text.push_str("\n\nRunning work:");
        for line in said {
            text.push_str(&format!("\n  {line}"));
        }
    }
    text
}

/// A view for people.
pub fn text(view: StatsView, stats: &NodeStats) -> String {
    match view {
        StatsView::Info => info_text(stats),
        StatsView::Tpstats => {
            let mut rows = vec![
                ["Pool", "Active", "Pending", "Limit", "Refused"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            rows.extend(stats.pools.iter().map(|p| {
                vec![
                    p.name.clone(),
                    p.active.to_string(),
                    p.pending.to_string(),
                    if p.limit == 0 {
                        "-".to_owned()
                    } else {
                        p.limit.to_string()
                    },
                    p.refused.to_string(),
                ]
            }));
            format!("{}\n\n{}", table(&rows), workers_text(stats))
        }
        StatsView::Hints => {
            if stats.hints.is_empty() {
                return format!("{} holds no hints.", stats.name);
            }
            let mut rows = vec![
                ["Target", "Id", "Status", "Pending"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            rows.extend(stats.hints.iter().map(|h| {
                vec![
                    if h.node_name.is_empty() {
                        "(left)".to_owned()
                    } else {
                        h.node_name.clone()
                    },
                    h.node_id.clone(),
                    if h.up { "UP (replaying)" } else { "DOWN" }.to_owned(),
                    human_bytes(h.bytes),
                ]
            }));
            let total: u64 = stats.hints.iter().map(|h| h.bytes).sum();
            format!("{}\ntotal: {}", table(&rows), human_bytes(total))
        }
        StatsView::Compaction => {
            let s = &stats.storage;
            let mut text = format!(
                "pending compaction:  {}\nrunning compactions: {}\nSST files:           {}\nlive data:           {}\nmemtables:           {}\nblock cache:         {}\ndisk:                {} free of {}",
                human_bytes(s.pending_compaction_bytes),
                s.running_compactions,
                s.sst_files,
                human_bytes(s.live_data_bytes),
                human_bytes(s.memtable_bytes),
                human_bytes(s.block_cache_bytes),
                human_bytes(s.disk_free_bytes),
                human_bytes(s.disk_total_bytes),
            );
            if let Some(problem) = &s.disk_problem {
                text.push_str(&format!("\ndisk refuses writes: {problem}"));
            }
            text
        }
    }
}

fn info_text(s: &NodeStats) -> String {
    let repair = &s.repair;
    let repair_line = if repair.running {
        format!(
            "running: {} of {} ranges",
            repair.ranges_done, repair.ranges_total
        )
    } else {
        format!("last completed {}", ago(repair.last_completed))
    };
    let rows = [
        ("uptime", format!("{}s", s.uptime_seconds)),
        ("generation", s.generation.to_string()),
        ("load", human_bytes(s.load_bytes)),
        (
            "memory (RSS)",
            format!(
                "{} (peak {})",
                human_bytes(s.rss_bytes),
                human_bytes(s.peak_rss_bytes)
            ),
        ),
        (
            "file descriptors",
            format!("{} of {}", s.open_fds, s.max_fds),
        ),
        ("repair", repair_line),
        (
            "hints held",
            human_bytes(s.hints.iter().map(|h| h.bytes).sum()),
        ),
    ];
    rows.iter()
        .map(|(name, value)| format!("{:<20}{value}", format!("{name}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A view for scripts.
pub fn json(view: StatsView, s: &NodeStats) -> serde_json::Value {
    match view {
        StatsView::Info => json!({
            "uptime_seconds": s.uptime_seconds,
            "generation": s.generation,
            "load_bytes": s.load_bytes,
            "rss_bytes": s.rss_bytes,
            "peak_rss_bytes": s.peak_rss_bytes,
            "open_fds": s.open_fds,
            "max_fds": s.max_fds,
            "repair": {
                "running": s.repair.running,
                "ranges_total": s.repair.ranges_total,
                "ranges_done": s.repair.ranges_done,
                "keys_streamed": s.repair.keys_streamed,
                "bytes_streamed": s.repair.bytes_streamed,
                "last_completed": s.repair.last_completed,
            },
            "hints_bytes": s.hints.iter().map(|h| h.bytes).sum::<u64>(),
        }),
        StatsView::Tpstats => json!({
            "node_name": s.name,
            "pools": s.pools.iter().map(|p| json!({
                "name": p.name,
                "active": p.active,
                "pending": p.pending,
                "limit": p.limit,
                "refused": p.refused,
            })).collect::<Vec<_>>(),
            "workers": s.workers.iter().map(|w| json!({
                "name": w.name,
                "state": w.state,
                "running": w.running,
                "done": w.done,
                "failed": w.failed,
                "last_error": w.last_error.as_ref().map(|(message, _)| message),
                "last_error_at": w.last_error.as_ref().map(|(_, at)| at),
                "status": w.status,
            })).collect::<Vec<_>>(),
        }),
        StatsView::Hints => json!({
            "node_name": s.name,
            "hints": s.hints.iter().map(|h| json!({
                "node_id": h.node_id,
                "node_name": h.node_name,
                "up": h.up,
                "bytes": h.bytes,
            })).collect::<Vec<_>>(),
        }),
        StatsView::Compaction => json!({
            "node_name": s.name,
            "pending_compaction_bytes": s.storage.pending_compaction_bytes,
            "running_compactions": s.storage.running_compactions,
            "sst_files": s.storage.sst_files,
            "live_data_bytes": s.storage.live_data_bytes,
            "memtable_bytes": s.storage.memtable_bytes,
            "block_cache_bytes": s.storage.block_cache_bytes,
            "disk_free_bytes": s.storage.disk_free_bytes,
            "disk_total_bytes": s.storage.disk_total_bytes,
            "disk_problem": s.storage.disk_problem,
        }),
    }
}

/// Node names by the value `key` gives each member.
fn grouped(
    status: &ClusterStatus,
    key: impl Fn(&ringkv_client::MemberInfo) -> String,
) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in status.members.iter().filter(|m| m.state != "LEFT") {
        let value = key(m);
        let value = if value.is_empty() {
            "(unknown)".to_owned()
        } else {
            value
        };
        groups.entry(value).or_default().push(m.name.clone());
    }
    for nodes in groups.values_mut() {
        nodes.sort();
    }
    groups
}

/// `describecluster` for people: like nodetool's, the settings nodes must
/// share and the versions they run, with the nodes of each.
pub fn describe_text(status: &ClusterStatus) -> String {
    let mut text = format!(
        "Cluster Information:\n\tName: {}\n\tPartitioner: Murmur3 (64-bit tokens)\n\tReplication factor: {}\n",
        status.cluster_name, status.replication_factor
    );
    let down: Vec<&str> = status
        .members
        .iter()
        .filter(|m| !m.up && m.state != "LEFT")
        .map(|m| m.name.as_str())
        .collect();
    let sections = [
        ("Versions", grouped(status, |m| m.version.clone())),
        (
            "Settings",
            grouped(status, |m| m.settings.replace(';', " ")),
        ),
    ];
    for (title, groups) in sections {
        text.push_str(&format!("\t{title}:\n"));
        for (value, nodes) in &groups {
            text.push_str(&format!("\t\t{value}: [{}]\n", nodes.join(", ")));
        }
        if groups.len() > 1 {
            text.push_str(&format!(
                "\t\tWARNING: the nodes disagree on {}\n",
                title.to_lowercase()
            ));
        }
    }
    if !down.is_empty() {
        text.push_str(&format!("\tDown: [{}]\n", down.join(", ")));
    }
    text.trim_end().to_owned()
}

/// `describecluster` for scripts.
pub fn describe_json(status: &ClusterStatus) -> serde_json::Value {
    json!({
        "cluster_name": status.cluster_name,
        "partitioner": "murmur3",
        "replication_factor": status.replication_factor,
        "versions": grouped(status, |m| m.version.clone()),
        "settings": grouped(status, |m| m.settings.clone()),
        "down": status.members.iter().filter(|m| !m.up && m.state != "LEFT").map(|m| m.name.clone()).collect::<Vec<_>>(),
    })
}
