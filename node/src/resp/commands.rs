//! The dispatch from a parsed command to what the connection does with it.
//!
//! Dispatch checks the arity and the connection's authentication against
//! the command's entry in the table (`table::COMMANDS`).
//!
//! Commands that would need an atomic read-modify-write (`INCR`,
//! `SET ... NX`, `GETSET`, `EXPIRE`, `MULTI`...) are refused by name with
//! an error that says so, rather than run as a read then a write that a
//! concurrent write could interleave with.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::keys::{self, Expiry};
use super::reply::{Protocol, Reply, wrong_arity};
use super::session::{Hello, Session, checked_name};
use super::table::{Kind, NEED_CAS, Spec};
use super::{Shared, info};
use crate::auth::{Permission, Refusal};
use crate::coordinator::ConsistencyLevel;

/// What a connection does with one command.
pub enum Action {
    /// Answer at once (in order behind earlier commands).
    Reply(Reply),
    /// Run alongside the commands around it; its reply keeps its place.
    Run(BoxFuture<'static, Reply>),
    /// `AUTH`, or `HELLO` with `AUTH`: runs after every earlier command is
    /// answered and before any later one starts, since those depend on it.
    Authenticate {
        user: String,
        password: String,
        hello: Option<Hello>,
    },
    /// Answer `+OK`, then close.
    Quit,
}

fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_lowercase()
}

fn no_cas(command: &str) -> Reply {
    Reply::error(format!(
        "ERR '{command}' needs an atomic read-modify-write, and ringkv has no compare-and-set yet; read and write the key yourself, knowing a concurrent write may come between"
    ))
}

fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

fn not_an_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// The unknown-command error, as Redis words it.
fn unknown(args: &[Bytes]) -> Reply {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&args[0])
            .chars()
            .take(128)
            .collect::<String>()
    );
    for arg in args.iter().skip(1).take(8) {
        let arg: String = String::from_utf8_lossy(arg).chars().take(64).collect();
        text.push_str(&format!("'{arg}' "));
    }
    Reply::error(text)
}

pub fn integer(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

fn level_of(arg: &[u8]) -> Result<ConsistencyLevel, Reply> {
    let text = std::str::from_utf8(arg).unwrap_or("");
    text.parse::<ConsistencyLevel>().map_err(|_| {
        Reply::error(format!(
            "ERR unknown consistency level '{}' (expected ONE, TWO, THREE, QUORUM, ALL or ANY)",
            String::from_utf8_lossy(arg)
        ))
    })
}

/// What the connection does with `args` (a whole command, name first),
/// whose entry in the table is `spec` (`lookup(&args[0])`).
pub fn dispatch(
    shared: &Arc<Shared>,
    session: &mut Session,
    spec: Option<&'static Spec>,
    args: Vec<Bytes>,
) -> Action {
    let Some(spec) = spec else {
        let name = lower(&args[0]);
        if NEED_CAS.contains(&name.as_str()) {
            return Action::Reply(no_cas(&name));
        }
        return Action::Reply(unknown(&args));
    };
    let n = args.len() as i64;
    let arity = i64::from(spec.arity);
    if (arity >= 0 && n != arity) || (arity < 0 && n < -arity) {
        return Action::Reply(wrong_arity(spec.name));
    }
    let open = matches!(
        spec.kind,
        Kind::Auth | Kind::Hello | Kind::Quit | Kind::Reset
    );
    if shared.auth.is_some() && session.credentials.is_none() && !open {
        return Action::Reply(Reply::error("NOAUTH Authentication required."));
    }
    let (read, write) = (session.read_level, session.write_level);
    let key = || args[1].clone();
    // Coordinator requests the command makes: each takes an in-flight
    // permit, so a multi-key command counts as many requests.
    let requests = match spec.kind {
        Kind::MGet | Kind::Exists | Kind::Del => args.len() - 1,
        Kind::MSet => (args.len() - 1) / 2,
        _ => 1,
    };
    let needed = if spec.writes() {
        Permission::Write
    } else {
        Permission::Read
    };
    // A key command, under the in-flight limit and the caller's role.
    macro_rules! run {
        ($work:expr) => {
            run(shared, session, requests, needed, $work)
        };
    }
    match spec.kind {
        Kind::Get => run!(keys::get(shared.clone(), read, key())),
        Kind::Set => match set_options(shared, &args[3..]) {
            Ok(expiry) => run!(keys::set(
                shared.clone(),
                write,
                key(),
                args[2].clone(),
                expiry
            )),
            Err(reply) => Action::Reply(reply),
        },
        Kind::SetEx | Kind::PSetEx => {
            let millis = spec.kind == Kind::PSetEx;
            match integer(&args[2]) {
                Some(n) if n > 0 => {
                    let expiry = keys::expiry_in(n, millis);
                    run!(keys::set(
                        shared.clone(),
                        write,
                        key(),
                        args[3].clone(),
                        expiry
                    ))
                }
                Some(_) => Action::Reply(Reply::error(format!(
                    "ERR invalid expire time in '{}' command",
                    spec.name
                ))),
                None => Action::Reply(not_an_integer()),
            }
        }
        Kind::MGet => run!(keys::mget(shared.clone(), read, args[1..].to_vec())),
        Kind::MSet => {
            if args.len().is_multiple_of(2) {
                return Action::Reply(wrong_arity(spec.name));
            }
            let pairs = args[1..]
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            run!(keys::mset(shared.clone(), write, pairs))
        }
        Kind::Del => run!(keys::del(shared.clone(), write, args[1..].to_vec())),
        Kind::Exists => run!(keys::exists(shared.clone(), read, args[1..].to_vec())),
        Kind::Ttl | Kind::PTtl => run!(keys::ttl(
            shared.clone(),
            read,
            key(),
            spec.kind == Kind::PTtl
        )),
        Kind::StrLen => run!(keys::strlen(shared.clone(), read, key())),
        Kind::Ping => Action::Reply(match &args[1..] {
            [] => Reply::Simple("PONG".into()),
            [message] => Reply::Bulk(message.clone()),
            _ => wrong_arity("ping"),
        }),
        Kind::Echo => Action::Reply(Reply::Bulk(args[1].clone())),
        Kind::Select => Action::Reply(match integer(&args[1]) {
            Some(0) => Reply::OK,
            Some(_) => Reply::error("ERR DB index is out of range (ringkv has database 0 only)"),
            None => not_an_integer(),
        }),
        Kind::Quit => Action::Quit,
        Kind::Reset => {
            session.reset();
            Action::Reply(Reply::Simple("RESET".into()))
        }
        Kind::Hello => hello(shared, session, &args[1..]),
        Kind::Auth => auth(shared, &args[1..]),
        Kind::Client => Action::Reply(client(session, &args[1..])),
        Kind::Command => Action::Reply(info::command(&args[1..])),
        Kind::Info => Action::Reply(info::info(shared, session, &args[1..])),
        Kind::Config => Action::Reply(info::config(shared, &args[1..])),
        Kind::Time => {
            let micros = shared.coordinator.wall().micros();
            Action::Reply(Reply::Array(vec![
                Reply::bulk(micros.div_euclid(1_000_000).to_string()),
                Reply::bulk(micros.rem_euclid(1_000_000).to_string()),
            ]))
        }
        Kind::Consistency => Action::Reply(consistency(session, &args[1..])),
    }
}

/// Runs a key command under the node's in-flight limit and, with
/// authentication on, the caller's role as it is now (a changed role or
/// password takes effect within `auth_cache_ms`, as on the gRPC API).
fn run(
    shared: &Arc<Shared>,
    session: &Session,
    requests: usize,
    needed: Permission,
    work: impl Future<Output = Reply> + Send + 'static,
) -> Action {
    let permit = match shared.limit.try_acquire_many(requests) {
        Ok(permit) => permit,
        Err(why) => return Action::Reply(Reply::error(format!("OVERLOADED {why}"))),
    };
    let check = shared.auth.clone().zip(session.credentials.clone());
    let source = Some(session.peer.ip());
    Action::Run(Box::pin(async move {
        let _permit = permit;
        if let Some((auth, credentials)) = check {
            let (user, password) = &*credentials;
            match auth.authenticate(user, password, source).await {
                Ok(role) if role.allows(needed) => {}
                Ok(role) => {
                    return Reply::error(format!(
                        "NOPERM user '{user}' has role {role}, which may not {}",
                        if needed == Permission::Read {
                            "read"
                        } else {
                            "write"
                        }
                    ));
                }
                Err(Refusal::Unauthenticated(why)) => {
                    return Reply::error(format!("NOAUTH {why}"));
                }
                Err(Refusal::Unavailable(why)) => {
                    return Reply::error(format!("UNAVAILABLE cannot check the user: {why}"));
                }
            }
        }
        work.await
    }))
}

/// `SET key value [EX s | PX ms | EXAT t | PXAT t]`.
fn set_options(shared: &Shared, options: &[Bytes]) -> Result<Expiry, Reply> {
    let mut expiry = None;
    let mut i = 0;
    while i < options.len() {
        let option = lower(&options[i]);
        match option.as_str() {
            "ex" | "px" | "exat" | "pxat" => {
                if expiry.is_some() {
                    return Err(syntax_error());
                }
                let n = options
                    .get(i + 1)
                    .ok_or_else(syntax_error)
                    .and_then(|arg| integer(arg).ok_or_else(not_an_integer))?;
                if n <= 0 {
                    return Err(Reply::error("ERR invalid expire time in 'set' command"));
                }
                let now_ms = shared.coordinator.wall().micros() / 1000;
                expiry = Some(match option.as_str() {
                    "ex" => keys::expiry_in(n, false),
                    "px" => keys::expiry_in(n, true),
                    "exat" => keys::expiry_at(n.saturating_mul(1000), now_ms),
                    _ => keys::expiry_at(n, now_ms),
                });
                i += 2;
            }
            "nx" | "xx" | "get" | "keepttl" => {
                return Err(no_cas(&format!("set {}", option.to_uppercase())));
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(expiry.unwrap_or(Expiry::Never))
}

/// `HELLO [protover [AUTH user password] [SETNAME name]]`.
fn hello(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Action {
    let mut change = Hello::default();
    let mut given_credentials = None;
    if let Some(version) = args.first() {
        change.protocol = Some(match integer(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => {
                return Action::Reply(Reply::error(
                    "NOPROTO unsupported protocol version (ringkv speaks RESP 2 and 3)",
                ));
            }
            None => {
                return Action::Reply(Reply::error(
                    "ERR Protocol version is not an integer or out of range",
                ));
            }
        });
    }
    let mut i = 1;
    while i < args.len() {
        match lower(&args[i]).as_str() {
            "auth" if i + 2 < args.len() => {
                match credentials(&args[i + 1], &args[i + 2]) {
                    Some(given) => given_credentials = Some(given),
                    None => return Action::Reply(wrong_password()),
                }
                i += 3;
            }
            "setname" if i + 1 < args.len() => {
                match checked_name(&args[i + 1]) {
                    Ok(name) => change.name = Some(name),
                    Err(why) => return Action::Reply(Reply::error(why)),
                }
                i += 2;
            }
            _ => {
                return Action::Reply(Reply::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                )));
            }
        }
    }
    if let Some((user, password)) = given_credentials {
        if shared.auth.is_none() {
            return Action::Reply(auth_off());
        }
        return Action::Authenticate {
            user,
            password,
            hello: Some(change),
        };
    }
    if shared.auth.is_some() && session.credentials.is_none() {
        return Action::Reply(Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    session.apply(change);
    Action::Reply(info::hello_reply(session))
}

/// User names and passwords are text: anything else cannot match.
fn credentials(user: &[u8], password: &[u8]) -> Option<(String, String)> {
    Some((
        std::str::from_utf8(user).ok()?.to_owned(),
        std::str::from_utf8(password).ok()?.to_owned(),
    ))
}

pub fn wrong_password() -> Reply {
    Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
}

fn auth_off() -> Reply {
    Reply::error(
        "ERR AUTH called, but authentication is off on this node (set authentication = true to use users)",
    )
}

/// `AUTH [user] password`; with the password alone the user is `default`,
/// as in Redis.
fn auth(shared: &Shared, args: &[Bytes]) -> Action {
    if shared.auth.is_none() {
        return Action::Reply(auth_off());
    }
    let (user, password) = match args {
        [password] => (&b"default"[..], password),
        [user, password] => (&user[..], password),
        _ => return Action::Reply(syntax_error()),
    };
    match credentials(user, password) {
        Some((user, password)) => Action::Authenticate {
            user,
            password,
            hello: None,
        },
        None => Action::Reply(wrong_password()),
    }
}

/// `CLIENT SETNAME|GETNAME|ID|INFO|SETINFO`.
fn client(session: &mut Session, args: &[Bytes]) -> Reply {
    let sub = lower(&args[0]);
    match (sub.as_str(), args.len()) {
        ("setname", 2) => match checked_name(&args[1]) {
            Ok(name) => {
                session.name = name;
                Reply::OK
            }
            Err(why) => Reply::error(why),
        },
        ("getname", 1) if session.name.is_empty() => Reply::Null,
        ("getname", 1) => Reply::Bulk(session.name.clone()),
        ("id", 1) => Reply::Integer(session.id as i64),
        ("info", 1) => Reply::Bulk(Bytes::from(info::client_line(session))),
        ("setinfo", 3) => {
            let value = match checked_name(&args[2]) {
                Ok(value) => value,
                Err(why) => return Reply::error(why),
            };
            match lower(&args[1]).as_str() {
                "lib-name" => session.lib_name = value,
                "lib-ver" => session.lib_version = value,
                _ => {
                    return Reply::error(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&args[1])
                    ));
                }
            }
            Reply::OK
        }
        ("setname" | "getname" | "id" | "info" | "setinfo", _) => {
            wrong_arity(&format!("client|{sub}"))
        }
        _ => Reply::error(format!(
            "ERR unknown subcommand '{}'. ringkv answers CLIENT SETNAME, GETNAME, ID, INFO and SETINFO.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

/// `RINGKV.CONSISTENCY [READ|WRITE] LEVEL`, or alone to show the levels.
fn consistency(session: &mut Session, args: &[Bytes]) -> Reply {
    let show = |session: &Session| {
        Reply::Map(vec![
            (
                Reply::bulk_static("read"),
                Reply::bulk_static(session.read_level.name()),
            ),
            (
                Reply::bulk_static("write"),
                Reply::bulk_static(session.write_level.name()),
            ),
        ])
    };
    let (which, level) = match args {
        [] => return show(session),
        [level] => ("both".to_owned(), level),
        [which, level] => (lower(which), level),
        _ => return wrong_arity("ringkv.consistency"),
    };
    let level = match level_of(level) {
        Ok(level) => level,
        Err(reply) => return reply,
    };
    let for_reads = || {
        if level == ConsistencyLevel::Any {
            Err(Reply::error(
                "ERR consistency level ANY is for writes only; reads need at least ONE",
            ))
        } else {
            Ok(level)
        }
    };
    match which.as_str() {
        "read" => match for_reads() {
            Ok(level) => session.read_level = level,
            Err(reply) => return reply,
        },
        "write" => session.write_level = level,
        "both" => match for_reads() {
            Ok(level) => {
                session.read_level = level;
                session.write_level = level;
            }
            Err(reply) => return reply,
        },
        _ => return Reply::error("ERR expected READ or WRITE before the level"),
    }
    Reply::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_commands_are_named_in_the_error() {
        let reply = unknown(&[Bytes::from_static(b"FOO"), Bytes::from_static(b"a")]);
        assert_eq!(
            reply.as_error(),
            Some("ERR unknown command 'FOO', with args beginning with: 'a' ")
        );
    }
}
