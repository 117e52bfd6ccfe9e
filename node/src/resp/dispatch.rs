//! From a parsed command to what the connection does with it.
//!
//! Dispatch checks the connection's authentication, takes the in-flight
//! permits a key command needs and the caller's role, and hands the key
//! commands to `keys` and the connection's own commands to
//! `session_commands`. The command's name and arity were checked when it
//! was parsed (`Command::parse`).
//!
//! Commands that would need an atomic read-modify-write (`INCR`,
//! `SET ... NX`, `GETSET`, `EXPIRE`, `MULTI`...) are refused by name with
//! an error that says so, rather than run as a read then a write that a
//! concurrent write could interleave with.

use std::sync::Arc;

use bytes::Bytes;

use super::command::{Action, Command, integer, lower, no_cas};
use super::keys::{self, Expiry};
use super::reply::{Reply, not_an_integer, syntax_error, wrong_arity};
use super::session::Session;
use super::session_commands::{auth, client, consistency, hello};
use super::table::Kind;
use super::{Shared, hashes, info};
use crate::auth::{Permission, Refusal};

/// What the connection does with `command`.
pub fn dispatch(shared: &Arc<Shared>, session: &mut Session, command: Command) -> Action {
    let spec = command.spec();
    let open = matches!(
        spec.kind,
        Kind::Auth | Kind::Hello | Kind::Quit | Kind::Reset
    );
    if shared.auth.is_some() && session.credentials.is_none() && !open {
        return Action::Reply(Reply::error("NOAUTH Authentication required."));
    }
    let (read, write) = (session.read_level, session.write_level);
    let args = command.args();
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
        Kind::Type => run!(keys::type_of(shared.clone(), read, key())),
        Kind::HSet | Kind::HMSet => {
            if !args.len().is_multiple_of(2) {
                return Action::Reply(wrong_arity(spec.name));
            }
            let pairs = args[2..]
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            let answer_ok = spec.kind == Kind::HMSet;
            run!(hashes::hset(shared.clone(), write, key(), pairs, answer_ok))
        }
        Kind::HGet => run!(hashes::hget(shared.clone(), read, key(), args[2].clone())),
        Kind::HMGet => run!(hashes::hmget(
            shared.clone(),
            read,
            key(),
            args[2..].to_vec()
        )),
        Kind::HGetAll | Kind::HKeys | Kind::HVals => {
            let what = match spec.kind {
                Kind::HKeys => hashes::Whole::Keys,
                Kind::HVals => hashes::Whole::Values,
                _ => hashes::Whole::All,
            };
            run!(hashes::whole(shared.clone(), read, key(), what))
        }
        Kind::HDel => run!(hashes::hdel(
            shared.clone(),
            write,
            key(),
            args[2..].to_vec()
        )),
        Kind::HExists | Kind::HStrLen => run!(hashes::hexists(
            shared.clone(),
            read,
            key(),
            args[2].clone(),
            spec.kind == Kind::HStrLen
        )),
        Kind::HLen => run!(hashes::hlen(shared.clone(), read, key())),
        Kind::HScan => match hashes::scan_options(&args[3..]) {
            Ok(options) => run!(hashes::hscan(
                shared.clone(),
                read,
                key(),
                args[2].clone(),
                options
            )),
            Err(reply) => Action::Reply(reply),
        },
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
        Kind::Hello => hello(shared, session, command.rest()),
        Kind::Auth => auth(shared, command.rest()),
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
