//! The commands about the connection itself: `HELLO`, `AUTH`, `CLIENT`
//! and `RINGKV.CONSISTENCY`, which read or change its session.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::command::{Action, integer, lower};
use super::reply::{Protocol, Reply, syntax_error, wrong_arity};
use super::session::{Hello, Session, checked_name};
use super::{Shared, info};
use crate::auth::{Refusal, Role};
use crate::coordinator::ConsistencyLevel;

fn level_of(arg: &[u8]) -> Result<ConsistencyLevel, Reply> {
    let text = std::str::from_utf8(arg).unwrap_or("");
    text.parse::<ConsistencyLevel>().map_err(|_| {
        Reply::error(format!(
            "ERR unknown consistency level '{}' (expected ONE, TWO, THREE, QUORUM, ALL or ANY)",
            String::from_utf8_lossy(arg)
        ))
    })
}

/// `HELLO [protover [AUTH user password] [SETNAME name]]`.
pub fn hello(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Action {
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
pub fn auth(shared: &Shared, args: &[Bytes]) -> Action {
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
pub fn client(session: &mut Session, args: &[Bytes]) -> Reply {
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
pub fn consistency(session: &mut Session, args: &[Bytes]) -> Reply {
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

/// The credential check of an `AUTH`.
pub fn authenticate(
    shared: &Shared,
    user: String,
    password: String,
    peer: SocketAddr,
) -> BoxFuture<'static, Result<Role, Refusal>> {
    let auth = shared.auth.clone();
    Box::pin(async move {
        match auth {
            Some(auth) => auth.authenticate(&user, &password, Some(peer.ip())).await,
            None => Err(Refusal::Unavailable("authentication is off".into())),
        }
    })
}

/// An `AUTH`'s answer; on success the session keeps the credentials (and
/// takes the `HELLO`'s changes).
pub fn authenticated(
    session: &mut Session,
    result: Result<Role, Refusal>,
    user: String,
    password: String,
    hello: Option<Hello>,
) -> Reply {
    match result {
        Ok(_) => {
            session.credentials = Some(Arc::new((user, password)));
            match hello {
                Some(hello) => {
                    session.apply(hello);
                    info::hello_reply(session)
                }
                None => Reply::OK,
            }
        }
        Err(Refusal::Unauthenticated(_)) => {
            Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
        }
        Err(Refusal::Unavailable(why)) => {
            Reply::error(format!("UNAVAILABLE cannot check the user: {why}"))
        }
    }
}
