//! The commands of the shell, shared by one-shot mode (`ringkv get k`) and
//! the interactive prompt (`GET k`): one clap definition parses both.

use clap::{Parser, Subcommand};
use ringkv_client::Consistency;

/// A request the shell can send.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Read a key (or one row of a partition); prints its value, or
    /// (not found).
    Get {
        /// The key (the partition key with --row).
        key: String,
        /// The row of the partition KEY, by sort key.
        #[arg(long)]
        row: Option<String>,
    },
    /// Write a value.
    Put {
        /// The key (the partition key with --row).
        key: String,
        /// The value, as text.
        value: String,
        /// Expire the value after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// The row of the partition KEY, by sort key.
        #[arg(long)]
        row: Option<String>,
    },
    /// Delete a key, one row of a partition (--row), or its rows in a
    /// range (--from, --to: [from, to)).
    #[command(alias = "delete")]
    Del {
        /// The key (the partition key with --row, --from or --to).
        key: String,
        /// The row of the partition KEY, by sort key.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        row: Option<String>,
        /// Delete the rows from this sort key (included; default: the
        /// first row).
        #[arg(long)]
        from: Option<String>,
        /// ...up to this sort key (excluded; default: the last row).
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete a whole partition: every row written before it.
    Delpartition {
        /// The partition key.
        key: String,
    },
    /// Write puts and deletes read from FILE (or stdin), one a line, as
    /// `put`, `del` and `delpartition` commands (# starts a comment). The
    /// lines of one partition are one atomic batch; each partition is
    /// written on its own.
    Batch {
        /// The file of operations; absent or `-`: stdin.
        file: Option<String>,
    },
    /// The rows of a partition in sort order, a page at a time: a table
    /// (JSON lines with --json).
    Query {
        /// The partition key.
        key: String,
        #[command(flatten)]
        range: RowRange,
        /// Rows a page holds.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Largest sort key first.
        #[arg(long)]
        reverse: bool,
        /// Every page, not only the first.
        #[arg(long, conflicts_with = "page")]
        all: bool,
        /// Continue where a previous page stopped (the token it printed).
        #[arg(long)]
        page: Option<String>,
    },
    /// How many rows of a partition lie in a range.
    Count {
        /// The partition key.
        key: String,
        #[command(flatten)]
        range: RowRange,
        /// Stop counting here (default 1,000,000).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Show the connected node's id, name and version, uptime, load,
    /// generation, memory, file descriptors and repair state.
    Info,
    /// Work in flight and waiting on the connected node, by kind, with
    /// bounds and refusals (like nodetool tpstats), then its named workers:
    /// how many run, ended and failed, the last error, what they are doing.
    Tpstats,
    /// Hints the connected node holds, by the node they are for.
    Hints,
    /// The connected node's storage engine: pending and running
    /// compactions, SST files, live data, memtables, block cache, disk.
    Compactionstats,
    /// The cluster's name, partitioner and replication factor, and the
    /// versions and shared settings of its nodes, grouped.
    Describecluster,
    /// Every node the connected node knows: address, rack, up/down, state,
    /// load and the share of the data it holds.
    Status,
    /// Every token and the node that owns it.
    Ring,
    /// The replicas of a key, primary first.
    Getendpoints {
        /// The key.
        key: String,
    },
    /// Anti-entropy repair: compare every range the connected node holds
    /// with its other replicas (Merkle trees) and stream the differences.
    Repair {
        /// Only the ranges the node is the primary replica of.
        #[arg(long)]
        primary_only: bool,
    },
    /// Decommission the connected node: stream its ranges to the nodes
    /// taking them over, leave the ring, stop.
    Decommission,
    /// Remove a dead node: re-replicate its ranges from the survivors.
    Removenode {
        /// The dead node's id (from `status`).
        node_id: String,
    },
    /// Delete the connected node's data of ranges it no longer replicates.
    Cleanup,
    /// The range streams of topology changes on the connected node.
    Streams,
    /// Users, when the cluster has authentication on: add, del, passwd,
    /// list. New passwords come from RINGKV_NEW_PASSWORD or a prompt.
    #[command(subcommand)]
    User(UserCommand),
}

/// The rows of a partition a query or count covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct RowRange {
    /// From this sort key (included).
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this sort key (excluded).
    #[arg(long)]
    pub to: Option<String>,
    /// Only sort keys that start with this.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// `user ...`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum UserCommand {
    /// Add (or replace) a user.
    Add {
        /// The user name.
        name: String,
        /// read-only, read-write or admin.
        #[arg(long, default_value = "read-write")]
        role: String,
    },
    /// Delete a user.
    #[command(alias = "delete")]
    Del {
        /// The user name.
        name: String,
    },
    /// Change a user's password (admins: anyone's; others: their own).
    Passwd {
        /// The user name.
        name: String,
    },
    /// Every user and its role.
    List,
}

/// Commands handled by the interactive prompt itself.
pub const SHELL_COMMANDS: [&str; 5] = ["CONSISTENCY", "TRACING", "HELP", "EXIT", "QUIT"];

/// Request commands, as the prompt lists them.
pub const REQUEST_COMMANDS: [&str; 21] = [
    "GET",
    "PUT",
    "DEL",
    "DELPARTITION",
    "BATCH",
    "QUERY",
    "COUNT",
    "INFO",
    "TPSTATS",
    "HINTS",
    "COMPACTIONSTATS",
    "DESCRIBECLUSTER",
    "STATUS",
    "RING",
    "GETENDPOINTS",
    "REPAIR",
    "DECOMMISSION",
    "REMOVENODE",
    "CLEANUP",
    "STREAMS",
    "USER",
];

/// One line typed at the prompt, parsed with the same definitions as the
/// one-shot command line.
#[derive(Debug, Parser)]
#[command(
    name = "",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct PromptLine {
    #[command(subcommand)]
    command: Command,
}

/// What to do with a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Request(Command),
    ShowConsistency,
    SetConsistency(Consistency),
    ShowTracing,
    SetTracing(bool),
    Help,
    Exit,
    Nothing,
}

/// Parses a prompt line. Command names are case-insensitive.
pub fn parse_line(line: &str) -> Result<Action, String> {
    let mut words = shell_words::split(line).map_err(|e| format!("cannot parse line: {e}"))?;
    let Some(first) = words.first_mut() else {
        return Ok(Action::Nothing);
    };
    *first = first.to_lowercase();
    match first.as_str() {
        "help" | "?" => return Ok(Action::Help),
        "exit" | "quit" => return Ok(Action::Exit),
        "tracing" => {
            return match words.get(1).map(|w| w.to_lowercase()).as_deref() {
                None => Ok(Action::ShowTracing),
                Some("on") => Ok(Action::SetTracing(true)),
                Some("off") => Ok(Action::SetTracing(false)),
                Some(other) => Err(format!("TRACING takes ON or OFF, not {other}")),
            };
        }
        "consistency" => {
            return match words.get(1) {
                None => Ok(Action::ShowConsistency),
                Some(level) => level
                    .parse()
                    .map(Action::SetConsistency)
                    .map_err(|e: ringkv_client::UnknownConsistency| e.to_string()),
            };
        }
        _ => {}
    }
    PromptLine::try_parse_from(words)
        .map(|line| Action::Request(line.command))
        .map_err(|e| e.render().to_string().trim_end().to_owned())
}
