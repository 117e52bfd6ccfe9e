//! The commands a RESP connection understands, as one table.
//!
//! [`COMMANDS`] gives each command's name, arity (Redis's convention: the
//! count of words with the name, negative for "at least"), flags, key
//! positions, group and summary. Dispatch checks the arity and the
//! connection's authentication against it, and `COMMAND`,
//! `COMMAND COUNT|INFO|DOCS` answer from it, so `redis-cli` can offer hints.

use bytes::Bytes;

/// What a command does: the dispatch's switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Echo,
    Hello,
    Auth,
    Select,
    Quit,
    Reset,
    Client,
    Command,
    Info,
    Config,
    Time,
    Get,
    Set,
    SetEx,
    PSetEx,
    MGet,
    MSet,
    Del,
    Exists,
    Ttl,
    PTtl,
    StrLen,
    Type,
    HSet,
    HMSet,
    HGet,
    HMGet,
    HGetAll,
    HKeys,
    HVals,
    HDel,
    HExists,
    HStrLen,
    HLen,
    HScan,
    Consistency,
}

/// One command of the table.
pub struct Spec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: &'static [&'static str],
    /// First key, last key (negative: from the end), step.
    pub keys: (i32, i32, i32),
    pub group: &'static str,
    pub summary: &'static str,
    pub kind: Kind,
}

const fn spec(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    group: &'static str,
    summary: &'static str,
    kind: Kind,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
        kind,
    }
}

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write", "denyoom"];
const CONN: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth"];
const NONE: (i32, i32, i32) = (0, 0, 0);

/// Every command served, the most used first.
pub static COMMANDS: &[Spec] = &[
    spec(
        "get",
        2,
        READ,
        (1, 1, 1),
        "string",
        "Returns the string value of a key.",
        Kind::Get,
    ),
    spec(
        "set",
        -3,
        WRITE,
        (1, 1, 1),
        "string",
        "Sets the string value of a key, with an optional expiry (EX, PX, EXAT, PXAT).",
        Kind::Set,
    ),
    spec(
        "mget",
        -2,
        READ,
        (1, -1, 1),
        "string",
        "Returns the values of several keys, each read at the connection's level.",
        Kind::MGet,
    ),
    spec(
        "mset",
        -3,
        WRITE,
        (1, -1, 2),
        "string",
        "Sets several keys, each written independently at the connection's level (not atomic).",
        Kind::MSet,
    ),
    spec(
        "del",
        -2,
        &["write"],
        (1, -1, 1),
        "generic",
        "Deletes keys, each independently at the connection's level; answers the number of keys deleted.",
        Kind::Del,
    ),
    spec(
        "unlink",
        -2,
        &["write", "fast"],
        (1, -1, 1),
        "generic",
        "Same as DEL.",
        Kind::Del,
    ),
    spec(
        "exists",
        -2,
        READ,
        (1, -1, 1),
        "generic",
        "Counts how many of the keys exist.",
        Kind::Exists,
    ),
    spec(
        "setex",
        4,
        WRITE,
        (1, 1, 1),
        "string",
        "Sets the value and the expiry (seconds) of a key.",
        Kind::SetEx,
    ),
    spec(
        "psetex",
        4,
        WRITE,
        (1, 1, 1),
        "string",
        "Sets the value and the expiry (milliseconds) of a key.",
        Kind::PSetEx,
    ),
    spec(
        "ttl",
        2,
        READ,
        (1, 1, 1),
        "generic",
        "Returns the seconds a key has to live: -1 without expiry, -2 if missing.",
        Kind::Ttl,
    ),
    spec(
        "pttl",
        2,
        READ,
        (1, 1, 1),
        "generic",
        "Returns the milliseconds a key has to live: -1 without expiry, -2 if missing.",
        Kind::PTtl,
    ),
    spec(
        "strlen",
        2,
        READ,
        (1, 1, 1),
        "string",
        "Returns the length of a key's value.",
        Kind::StrLen,
    ),
    spec(
        "type",
        2,
        READ,
        (1, 1, 1),
        "generic",
        "Returns the type of a key: string, hash or none.",
        Kind::Type,
    ),
    spec(
        "hset",
        -4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        "hash",
        "Sets fields of a hash, in one atomic partition batch (up to 100 fields and 1 MiB); answers the number of fields written.",
        Kind::HSet,
    ),
    spec(
        "hmset",
        -4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        "hash",
        "Same as HSET, answering OK.",
        Kind::HMSet,
    ),
    spec(
        "hget",
        3,
        READ,
        (1, 1, 1),
        "hash",
        "Returns the value of a field of a hash.",
        Kind::HGet,
    ),
    spec(
        "hmget",
        -3,
        READ,
        (1, 1, 1),
        "hash",
        "Returns the values of fields of a hash.",
        Kind::HMGet,
    ),
    spec(
        "hgetall",
        2,
        &["readonly"],
        (1, 1, 1),
        "hash",
        "Returns every field and value of a hash, in field order.",
        Kind::HGetAll,
    ),
    spec(
        "hkeys",
        2,
        &["readonly"],
        (1, 1, 1),
        "hash",
        "Returns every field of a hash, in order.",
        Kind::HKeys,
    ),
    spec(
        "hvals",
        2,
        &["readonly"],
        (1, 1, 1),
        "hash",
        "Returns every value of a hash, in field order.",
        Kind::HVals,
    ),
    spec(
        "hdel",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        "hash",
        "Deletes fields of a hash, in one atomic partition batch (up to 100 fields and 1 MiB); answers the number of fields named.",
        Kind::HDel,
    ),
    spec(
        "hexists",
        3,
        READ,
        (1, 1, 1),
        "hash",
        "Whether a field of a hash exists.",
        Kind::HExists,
    ),
    spec(
        "hstrlen",
        3,
        READ,
        (1, 1, 1),
        "hash",
        "Returns the length of a field's value.",
        Kind::HStrLen,
    ),
    spec(
        "hlen",
        2,
        &["readonly"],
        (1, 1, 1),
        "hash",
        "Returns the number of fields of a hash.",
        Kind::HLen,
    ),
    spec(
        "hscan",
        -3,
        &["readonly"],
        (1, 1, 1),
        "hash",
        "Iterates over the fields of a hash in field order: HSCAN key cursor [MATCH pattern] [COUNT n] [NOVALUES].",
        Kind::HScan,
    ),
    spec(
        "ping",
        -1,
        &["fast", "stale"],
        NONE,
        "connection",
        "Returns PONG, or the argument.",
        Kind::Ping,
    ),
    spec(
        "echo",
        2,
        &["fast", "stale"],
        NONE,
        "connection",
        "Returns the argument.",
        Kind::Echo,
    ),
    spec(
        "hello",
        -1,
        CONN,
        NONE,
        "connection",
        "Sets the protocol (2 or 3), authenticates, names the connection.",
        Kind::Hello,
    ),
    spec(
        "auth",
        -2,
        CONN,
        NONE,
        "connection",
        "Authenticates the connection as a ringkv user.",
        Kind::Auth,
    ),
    spec(
        "select",
        2,
        &["loading", "stale", "fast"],
        NONE,
        "connection",
        "Selects database 0, the only one.",
        Kind::Select,
    ),
    spec(
        "quit",
        -1,
        CONN,
        NONE,
        "connection",
        "Closes the connection.",
        Kind::Quit,
    ),
    spec(
        "reset",
        1,
        CONN,
        NONE,
        "connection",
        "Resets the connection: RESP2, default levels, no name, not authenticated.",
        Kind::Reset,
    ),
    spec(
        "client",
        -2,
        &["noscript", "loading", "stale"],
        NONE,
        "connection",
        "CLIENT SETNAME|GETNAME|ID|INFO|SETINFO.",
        Kind::Client,
    ),
    spec(
        "command",
        -1,
        &["loading", "stale"],
        NONE,
        "server",
        "Describes the commands: COMMAND, COUNT, INFO, DOCS.",
        Kind::Command,
    ),
    spec(
        "info",
        -1,
        &["loading", "stale"],
        NONE,
        "server",
        "Returns information about the node and its cluster.",
        Kind::Info,
    ),
    spec(
        "config",
        -2,
        &["loading", "stale"],
        NONE,
        "server",
        "CONFIG GET answers the few settings clients ask about; nothing can be set.",
        Kind::Config,
    ),
    spec(
        "time",
        1,
        &["loading", "stale", "fast"],
        NONE,
        "server",
        "Returns the node's clock.",
        Kind::Time,
    ),
    spec(
        "ringkv.consistency",
        -1,
        &["fast", "stale"],
        NONE,
        "connection",
        "RINGKV.CONSISTENCY [READ|WRITE] LEVEL sets the connection's consistency levels; alone, shows them.",
        Kind::Consistency,
    ),
];

/// Commands that need an atomic read-modify-write, refused until ringkv
/// has compare-and-set.
pub const NEED_CAS: &[&str] = &[
    "getset",
    "getdel",
    "getex",
    "setnx",
    "msetnx",
    "setrange",
    "append",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "rename",
    "renamenx",
    "copy",
    "move",
    "watch",
    "unwatch",
    "multi",
    "exec",
    "discard",
    "hsetnx",
    "hincrby",
    "hincrbyfloat",
];

impl Spec {
    /// Whether the command writes its keys (the `write` flag), which is
    /// also the permission it needs.
    pub fn writes(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// The keys the command touches in `args`, from its key positions;
    /// `None` for commands without keys.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> Option<impl Iterator<Item = &'a Bytes>> {
        let (first, last, step) = self.keys;
        if first <= 0 || step <= 0 {
            return None;
        }
        let last = if last < 0 {
            args.len() as i64 + i64::from(last)
        } else {
            i64::from(last)
        };
        let (first, last) = (first as usize, usize::try_from(last).ok()?);
        Some(
            args.iter()
                .take(last + 1)
                .skip(first)
                .step_by(step as usize),
        )
    }

    /// Whether the command starts only when none of the connection's
    /// commands runs: `AUTH` and `HELLO` change who the connection is and
    /// how it speaks.
    pub fn waits_for_quiet(&self) -> bool {
        matches!(self.kind, Kind::Auth | Kind::Hello)
    }
}

pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_by_name_in_any_case_and_listed_once() {
        for spec in COMMANDS {
            assert!(std::ptr::eq(
                lookup(spec.name.to_uppercase().as_bytes()).expect("found"),
                spec
            ));
            assert_eq!(spec.name, spec.name.to_lowercase());
            assert_eq!(COMMANDS.iter().filter(|s| s.name == spec.name).count(), 1);
            assert!(
                !NEED_CAS.contains(&spec.name),
                "{} is both served and refused",
                spec.name
            );
        }
        assert!(lookup(b"nosuch").is_none());
    }

    #[test]
    fn keys_come_from_the_table_positions() {
        let args = |words: &[&'static str]| -> Vec<Bytes> {
            words
                .iter()
                .map(|w| Bytes::from_static(w.as_bytes()))
                .collect()
        };
        let keys = |words: &[&'static str]| {
            let args = args(words);
            let spec = lookup(&args[0])?;
            spec.keys(&args).map(|keys| {
                (
                    spec.writes(),
                    keys.map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect::<Vec<_>>(),
                )
            })
        };
        assert_eq!(keys(&["GET", "a"]), Some((false, vec!["a".into()])));
        assert_eq!(
            keys(&["set", "a", "v", "EX", "5"]),
            Some((true, vec!["a".into()]))
        );
        assert_eq!(
            keys(&["MSET", "a", "1", "b", "2"]),
            Some((true, vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            keys(&["DEL", "a", "b", "c"]),
            Some((true, vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(keys(&["PING"]), None);
        assert_eq!(keys(&["NOSUCH", "a"]), None);
    }
}
