//! What the node says about itself: `INFO`, `COMMAND`, `CONFIG GET`,
//! `HELLO`'s map and `CLIENT INFO`'s line.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Shared;
use super::reply::{Reply, wrong_arity};
use super::session::Session;
use super::table::{COMMANDS, Spec, lookup};

/// The Redis version whose commands and replies the port follows; `INFO`
/// reports it as `redis_version` for clients that check it.
pub const REDIS_VERSION: &str = "7.0.0";

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_lowercase()
}

/// `HELLO`'s answer: who the server is and how this connection speaks.
pub fn hello_reply(session: &Session) -> Reply {
    let field = |name: &'static str, value: Reply| (Reply::bulk_static(name), value);
    Reply::Map(vec![
        field("server", Reply::bulk_static("ringkv")),
        field("version", Reply::bulk_static(env!("CARGO_PKG_VERSION"))),
        field("proto", Reply::Integer(session.protocol.version())),
        field("id", Reply::Integer(session.id as i64)),
        field("mode", Reply::bulk_static("standalone")),
        field("role", Reply::bulk_static("master")),
        field("modules", Reply::Array(Vec::new())),
    ])
}

/// `CLIENT INFO`: one line of `name=value` fields, as Redis.
pub fn client_line(session: &Session) -> String {
    let user = session
        .credentials
        .as_ref()
        .map_or("default", |credentials| credentials.0.as_str());
    format!(
        "id={} addr={} laddr={} name={} age={} db=0 user={} resp={} lib-name={} lib-ver={} read-consistency={} write-consistency={}\n",
        session.id,
        session.peer,
        session.local,
        String::from_utf8_lossy(&session.name),
        session.since.elapsed().as_secs(),
        user,
        session.protocol.version(),
        String::from_utf8_lossy(&session.lib_name),
        String::from_utf8_lossy(&session.lib_version),
        session.read_level,
        session.write_level,
    )
}

/// `INFO [section ...]`: server, clients, stats, keyspace and cluster.
pub fn info(shared: &Shared, session: &Session, args: &[Bytes]) -> Reply {
    let wanted: Vec<String> = args.iter().map(|a| lower(a)).collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "everything" || w == "default");
    let want = |section: &str| all || wanted.iter().any(|w| w == section);
    let mut text = String::new();
    let stats = &shared.stats;
    if want("server") {
        let uptime = shared.started.elapsed().as_secs();
        text.push_str(&format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nringkv_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            usize::BITS,
            std::process::id(),
            shared.settings.port,
            uptime / 86_400,
        ));
    }
    if want("clients") {
        text.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            stats.connected.load(Ordering::Relaxed),
            shared.settings.max_clients,
        ));
    }
    if want("stats") {
        text.push_str(&format!(
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\ntotal_error_replies:{}\r\nrequests_in_flight:{}\r\n\r\n",
            stats.connections_received.load(Ordering::Relaxed),
            stats.commands.load(Ordering::Relaxed),
            stats.rejected_connections.load(Ordering::Relaxed),
            stats.error_replies.load(Ordering::Relaxed),
            shared.limit.in_flight(),
        ));
    }
    if want("keyspace") || want("cluster") {
        let view = shared.view.load_full();
        let members: Vec<_> = view.members().collect();
        let up = members.iter().filter(|m| view.is_alive(&m.id)).count();
        let load: u64 = members.iter().filter_map(|m| m.load_bytes).sum();
        if want("keyspace") {
            // Keys are not counted (that would be a scan of every replica);
            // the gossiped on-disk size of the nodes stands in.
            text.push_str(&format!(
                "# Keyspace\r\ndb0:cluster_data_bytes={load},replication_factor={}\r\n\r\n",
                shared.settings.replication_factor
            ));
        }
        if want("cluster") {
            text.push_str(&format!(
                "# Cluster\r\ncluster_name:{}\r\nnode_name:{}\r\nnodes:{}\r\nnodes_up:{up}\r\nreplication_factor:{}\r\nread_consistency:{}\r\nwrite_consistency:{}\r\n\r\n",
                shared.settings.cluster_name,
                shared.settings.node_name,
                members.len(),
                shared.settings.replication_factor,
                session.read_level,
                session.write_level,
            ));
        }
    }
    Reply::Bulk(Bytes::from(text))
}

/// One command as `COMMAND` and `COMMAND INFO` describe it.
fn command_info(spec: &Spec) -> Reply {
    let flags = spec
        .flags
        .iter()
        .map(|flag| Reply::Simple((*flag).into()))
        .collect();
    Reply::Array(vec![
        Reply::bulk_static(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Array(flags),
        Reply::Integer(i64::from(spec.keys.0)),
        Reply::Integer(i64::from(spec.keys.1)),
        Reply::Integer(i64::from(spec.keys.2)),
        Reply::Array(vec![Reply::Simple(format!("@{}", spec.group).into())]),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn command_docs(spec: &Spec) -> Reply {
    let field = |name: &'static str, value: &'static str| {
        (Reply::bulk_static(name), Reply::bulk_static(value))
    };
    Reply::Map(vec![
        field("summary", spec.summary),
        field("since", "1.0.0"),
        field("group", spec.group),
    ])
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND LIST`, `COMMAND INFO name...`,
/// `COMMAND DOCS [name...]`.
pub fn command(args: &[Bytes]) -> Reply {
    let Some(sub) = args.first() else {
        return Reply::Array(COMMANDS.iter().map(command_info).collect());
    };
    let names = &args[1..];
    match lower(sub).as_str() {
        "count" => Reply::Integer(COMMANDS.len() as i64),
        "list" => Reply::Array(
            COMMANDS
                .iter()
                .map(|spec| Reply::bulk_static(spec.name))
                .collect(),
        ),
        "info" => Reply::Array(
            names
                .iter()
                .map(|name| lookup(name).map_or(Reply::Null, command_info))
                .collect(),
        ),
        "docs" => {
            let specs: Vec<&Spec> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names.iter().filter_map(|name| lookup(name)).collect()
            };
            Reply::Map(
                specs
                    .into_iter()
                    .map(|spec| (Reply::bulk_static(spec.name), command_docs(spec)))
                    .collect(),
            )
        }
        _ => Reply::error(format!(
            "ERR unknown subcommand '{}'. ringkv answers COMMAND, COMMAND COUNT, LIST, INFO and DOCS.",
            String::from_utf8_lossy(sub)
        )),
    }
}

/// `CONFIG GET pattern...` answers the few settings clients and tools
/// (redis-benchmark) ask for; nothing can be set at run time.
pub fn config(shared: &Shared, args: &[Bytes]) -> Reply {
    if lower(&args[0]) != "get" {
        return Reply::error(format!(
            "ERR CONFIG {} is not supported: ringkv's settings come from its configuration file",
            String::from_utf8_lossy(&args[0]).to_uppercase()
        ));
    }
    if args.len() < 2 {
        return wrong_arity("config|get");
    }
    let max_clients = shared.settings.max_clients.to_string();
    let known: [(&str, String); 6] = [
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("databases", "1".into()),
        ("maxclients", max_clients),
        ("maxmemory", "0".into()),
        ("timeout", "0".into()),
    ];
    let mut pairs = Vec::new();
    for (name, value) in known {
        if args[1..].iter().any(|pattern| glob(&lower(pattern), name)) {
            pairs.push((Reply::bulk_static(name), Reply::bulk(value)));
        }
    }
    Reply::Map(pairs)
}

/// Glob match with `*` and `?`.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == b'?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (pattern, name, matches) in [
            ("*", "save", true),
            ("save", "save", true),
            ("sav?", "save", true),
            ("max*", "maxclients", true),
            ("*clients", "maxclients", true),
            ("max", "maxclients", false),
            ("x*", "save", false),
        ] {
            assert_eq!(glob(pattern, name), matches, "{pattern} {name}");
        }
    }

    #[test]
    fn command_count_and_docs_cover_the_table() {
        assert_eq!(
            command(&[Bytes::from_static(b"COUNT")]),
            Reply::Integer(COMMANDS.len() as i64)
        );
        let Reply::Map(docs) = command(&[Bytes::from_static(b"docs")]) else {
            panic!("a map");
        };
        assert_eq!(docs.len(), COMMANDS.len());
        let Reply::Array(info) = command(&[
            Bytes::from_static(b"info"),
            Bytes::from_static(b"GET"),
            Bytes::from_static(b"nope"),
        ]) else {
            panic!("an array");
        };
        assert_eq!(info[1], Reply::Null);
    }
}
