//! One RESP connection: read commands, run them, write the replies in
//! order.
//!
//! Clients pipeline: they send many commands before reading any reply.
//! The loop parses every whole command it has read and starts it at once,
//! so the commands of a pipeline run concurrently (their coordinator reads
//! and writes overlap), while a [`FuturesOrdered`] hands their replies back
//! in the order the commands came. Replies that are ready together are
//! encoded into one buffer and written with one call, so a pipeline of
//! fifty `GET`s costs a few syscalls, not fifty. Reading, running and
//! writing are branches of one `select!`, so commands keep running (and
//! give back their in-flight permits) while a slow client takes its
//! replies.
//!
//! Bounds, each making the loop stop taking in commands until it is back
//! under it (the client's own socket buffer then pushes back):
//! - [`MAX_PIPELINE`] commands running;
//! - `max_command` bytes of arguments held by running commands;
//! - [`OUTPUT_HIGH`] bytes of replies not yet written (commands already
//!   running still finish and add theirs: at most [`MAX_PIPELINE`] replies
//!   over it, each at most a value or an `MGET` of `max_command` bytes);
//! - before `AUTH` (with authentication on), commands of at most
//!   [`UNAUTHENTICATED`] size, as Redis limits unauthenticated clients;
//! - a client that takes none of its replies for [`WRITE_STALL`] is
//!   disconnected, as Redis's output buffer limits do.
//!
//! A malformed command is answered with a protocol error and the
//! connection closes, as in Redis.
//!
//! Concurrency never reorders what one connection does to one key: a
//! command that writes a key a running command of the connection reads or
//! writes, or reads a key one writes, waits until every running command is
//! done (as in Redis, `SET k v` then `GET k` in one pipeline answers `v`).
//! Commands on different keys overlap freely. `AUTH` and `HELLO` wait the
//! same way, and nothing after `AUTH` starts before its check is done.
//!
//! State that later commands depend on (the protocol version, the levels,
//! the name) changes when a command is dispatched, before the next one is
//! parsed; each reply is encoded in the protocol in force once its command
//! was dispatched (so `HELLO 3` answers in RESP3).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::commands::{Action, dispatch};
use super::info::hello_reply;
use super::parse::{ParseLimits, Parser};
use super::reply::{Protocol, Reply};
use super::session::Hello;
use super::session::Session;
use super::table::lookup;
use crate::auth::{Refusal, Role};

/// Commands of one connection running at once.
pub const MAX_PIPELINE: usize = 256;
/// Replies encoded but not yet written, past which no more are taken in.
pub const OUTPUT_HIGH: usize = 4 << 20;
/// A client that takes none of its replies for this long is disconnected.
pub const WRITE_STALL: Duration = Duration::from_secs(60);
/// Commands of a connection that has not authenticated (authentication
/// on): enough for `AUTH` and `HELLO 3 AUTH user pass SETNAME name`.
pub const UNAUTHENTICATED: ParseLimits = ParseLimits {
    max_args: 10,
    max_bulk: 16 * 1024,
    max_command: 64 * 1024,
};
/// Free room kept in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// A command's place in the reply order.
struct Slot {
    protocol: Protocol,
    /// Argument bytes the command holds while it runs.
    held: usize,
    /// Hashes of its keys, and whether it writes them.
    keys: Vec<u64>,
    writes: bool,
    work: Work,
}

enum Work {
    Ready(Option<Reply>),
    Running(BoxFuture<'static, Reply>),
    /// `AUTH` or `HELLO ... AUTH`: the check, and what to keep if it
    /// passes.
    Authenticating(
        BoxFuture<'static, Result<Role, Refusal>>,
        Option<(String, String, Option<Hello>)>,
    ),
}

/// A command done: its slot's bookkeeping and what it came to.
struct Finished {
    protocol: Protocol,
    held: usize,
    keys: Vec<u64>,
    writes: bool,
    outcome: Outcome,
}

enum Outcome {
    Reply(Reply),
    Authenticated(Result<Role, Refusal>, (String, String, Option<Hello>)),
}

impl Future for Slot {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        let outcome = match &mut self.work {
            Work::Ready(reply) => Outcome::Reply(reply.take().unwrap_or(Reply::Null)),
            Work::Running(future) => match future.poll_unpin(cx) {
                Poll::Ready(reply) => Outcome::Reply(reply),
                Poll::Pending => return Poll::Pending,
            },
            Work::Authenticating(check, asked) => match check.poll_unpin(cx) {
                Poll::Ready(result) => match asked.take() {
                    Some(asked) => Outcome::Authenticated(result, asked),
                    None => Outcome::Reply(Reply::error("ERR authentication already answered")),
                },
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(Finished {
            protocol: self.protocol,
            held: self.held,
            keys: std::mem::take(&mut self.keys),
            writes: self.writes,
            outcome,
        })
    }
}

fn ready(protocol: Protocol, reply: Reply) -> Slot {
    Slot {
        protocol,
        held: 0,
        keys: Vec::new(),
        writes: false,
        work: Work::Ready(Some(reply)),
    }
}

/// How many running commands read and write each key (by hash: a
/// collision only makes a command wait when it need not).
#[derive(Default)]
struct Touched {
    running: HashMap<u64, (u32, u32)>,
}

impl Touched {
    /// Whether a command on `keys` must wait for the running ones.
    fn conflicts(&self, writes: bool, keys: &[u64]) -> bool {
        keys.iter().any(|key| {
            self.running
                .get(key)
                .is_some_and(|&(reads, writers)| writers > 0 || (writes && reads > 0))
        })
    }

    fn add(&mut self, writes: bool, keys: &[u64]) {
        for key in keys {
            let entry = self.running.entry(*key).or_default();
            if writes {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
        }
    }

    fn remove(&mut self, writes: bool, keys: &[u64]) {
        for key in keys {
            if let Some(entry) = self.running.get_mut(key) {
                if writes {
                    entry.1 = entry.1.saturating_sub(1);
                } else {
                    entry.0 = entry.0.saturating_sub(1);
                }
                if *entry == (0, 0) {
                    self.running.remove(key);
                }
            }
        }
    }
}

/// The commands running, in reply order, and the replies encoded but not
/// yet written.
struct Pipeline {
    pending: FuturesOrdered<Slot>,
    held: usize,
    touched: Touched,
    /// An `AUTH` runs: nothing else starts until it is done.
    authenticating: bool,
    output: BytesMut,
}

impl Pipeline {
    fn push(&mut self, slot: Slot) {
        self.held += slot.held;
        self.touched.add(slot.writes, &slot.keys);
        self.pending.push_back(slot);
    }

    /// Whether more commands may start (or be read).
    fn has_room(&self, limits: &ParseLimits) -> bool {
        !self.authenticating
            && self.pending.len() < MAX_PIPELINE
            && self.held <= limits.max_command
            && self.output.len() < OUTPUT_HIGH
    }

    /// Encodes a finished command's reply (applying an `AUTH`'s outcome to
    /// the session first).
    fn finish(&mut self, shared: &Shared, session: &mut Session, done: Finished) {
        self.held -= done.held;
        self.touched.remove(done.writes, &done.keys);
        let (reply, protocol) = match done.outcome {
            Outcome::Reply(reply) => (reply, done.protocol),
            Outcome::Authenticated(result, (user, password, hello)) => {
                self.authenticating = false;
                let reply = authenticated(session, result, user, password, hello);
                (reply, session.protocol)
            }
        };
        if matches!(reply, Reply::Error(_)) {
            shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
        }
        reply.encode(protocol, &mut self.output);
    }
}

/// Serves one connection until the client closes it, sends `QUIT` or
/// something unparsable, stops taking its replies, or `stop` is cancelled
/// (commands already started are answered first; those not started yet
/// are not run).
pub async fn serve<Io>(
    shared: Arc<Shared>,
    io: Io,
    peer: SocketAddr,
    local: SocketAddr,
    stop: CancellationToken,
) where
    Io: AsyncRead + AsyncWrite + Send + Unpin,
{
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut session = Session::new(id, peer, local);
    let (mut reader, mut writer) = tokio::io::split(io);
    let limits = shared.settings.limits;
    let hasher = std::collections::hash_map::RandomState::new();
    let mut parser = Parser::new(limits);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut line = Pipeline {
        pending: FuturesOrdered::new(),
        held: 0,
        touched: Touched::default(),
        authenticating: false,
        output: BytesMut::with_capacity(READ_CHUNK),
    };
    // A command read but waiting for the running ones to finish.
    let mut waiting: Option<Vec<Bytes>> = None;
    let mut closing = false;
    // The client sent its last byte: answer what it sent, then close.
    let mut eof = false;
    let mut stalled_since: Option<Instant> = None;
    // Replies written but maybe not yet flushed (TLS buffers records).
    let mut unflushed = false;
    loop {
        // Start every command that may start now.
        let mut input_done = false;
        while !closing && line.has_room(&limits) {
            let args = match waiting.take() {
                Some(args) => args,
                None => {
                    parser.limits = if shared.auth.is_some() && session.credentials.is_none() {
                        UNAUTHENTICATED
                    } else {
                        limits
                    };
                    match parser.next(&mut input) {
                        Ok(Some(args)) => {
                            shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                            args
                        }
                        Ok(None) => {
                            input_done = true;
                            break;
                        }
                        Err(error) => {
                            line.push(ready(
                                session.protocol,
                                Reply::error(format!("ERR {error}")),
                            ));
                            closing = true;
                            break;
                        }
                    }
                }
            };
            let spec = lookup(&args[0]);
            let writes = spec.is_some_and(|spec| spec.writes());
            let keys: Vec<u64> = spec
                .and_then(|spec| spec.keys(&args))
                .map(|keys| keys.map(|key| hasher.hash_one(key)).collect())
                .unwrap_or_default();
            let must_wait = spec.is_some_and(|spec| spec.waits_for_quiet())
                || line.touched.conflicts(writes, &keys);
            if must_wait && !line.pending.is_empty() {
                waiting = Some(args);
                break;
            }
            let held: usize = args.iter().map(Bytes::len).sum();
            let action = dispatch(&shared, &mut session, spec, args);
            // After dispatch: `HELLO 3` answers in RESP3 already.
            let protocol = session.protocol;
            match action {
                Action::Reply(reply) => line.push(ready(protocol, reply)),
                Action::Run(future) => line.push(Slot {
                    protocol,
                    held,
                    keys,
                    writes,
                    work: Work::Running(future),
                }),
                Action::Quit => {
                    line.push(ready(protocol, Reply::OK));
                    closing = true;
                }
                Action::Authenticate {
                    user,
                    password,
                    hello,
                } => {
                    let check = authenticate(&shared, user.clone(), password.clone(), peer);
                    line.authenticating = true;
                    line.push(Slot {
                        protocol,
                        held: 0,
                        keys: Vec::new(),
                        writes: false,
                        work: Work::Authenticating(check, Some((user, password, hello))),
                    });
                }
            }
        }
        if eof && input_done && waiting.is_none() {
            closing = true;
        }
        if closing && line.pending.is_empty() && line.output.is_empty() {
            let _ = tokio::time::timeout(WRITE_STALL, writer.shutdown()).await;
            break;
        }
        let reading = !closing && !eof && waiting.is_none() && line.has_room(&limits);
        if reading {
            // Room for the command in progress, grown with what arrives
            // rather than what its headers announce.
            let floor = input.len() + READ_CHUNK;
            let target = parser
                .wanted()
                .min(input.len().saturating_mul(2))
                .max(floor);
            input.reserve(target - input.len());
        }
        let stall_deadline = stalled_since.map(|since| since + WRITE_STALL);
        let output_empty = line.output.is_empty();
        let output = &mut line.output;
        let mut wrote = false;
        tokio::select! {
            // Stop first, so a busy connection notices it.
            biased;
            _ = stop.cancelled(), if !closing => closing = true,
            // Running commands are always driven to their end, so they give
            // their permits back however slowly the client reads.
            done = line.pending.next(), if !line.pending.is_empty() => {
                if let Some(done) = done {
                    line.finish(&shared, &mut session, done);
                    while let Some(Some(done)) = line.pending.next().now_or_never() {
                        line.finish(&shared, &mut session, done);
                    }
                }
            }
            // Write what is encoded; once it is all written, flush (TLS may
            // keep records it could not send yet). A branch of its own, so
            // running commands go on while the client is slow to read.
            progress = write_or_flush(&mut writer, output), if !output_empty || unflushed => {
                match progress {
                    Ok(Some(0)) | Err(_) => break,
                    Ok(Some(_)) => unflushed = true,
                    Ok(None) => unflushed = false,
                }
                wrote = true;
            }
            read = reader.read_buf(&mut input), if reading => {
                match read {
                    Ok(0) => eof = true,
                    Err(_) => break,
                    Ok(_) => {}
                }
            }
            _ = sleep_until(stall_deadline), if stall_deadline.is_some() => {
                tracing::debug!(%peer, ?WRITE_STALL, "RESP client took none of its replies; closing");
                break;
            }
        }
        if line.output.is_empty() && !unflushed {
            stalled_since = None;
        } else if wrote || stalled_since.is_none() {
            stalled_since = Some(Instant::now());
        }
    }
}

/// Writes some of `output` (`Some(bytes written)`), or flushes when it is
/// empty (`None`).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    output: &mut BytesMut,
) -> std::io::Result<Option<usize>> {
    if output.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write_buf(output).await.map(Some)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The credential check of an `AUTH`.
fn authenticate(
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
fn authenticated(
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
                    hello_reply(session)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_waits_only_for_running_commands_that_conflict() {
        let mut touched = Touched::default();
        touched.add(false, &[1, 2]);
        touched.add(true, &[3]);
        assert!(!touched.conflicts(false, &[1, 2]), "reads share");
        assert!(touched.conflicts(true, &[2]), "a write waits for a read");
        assert!(touched.conflicts(false, &[3]), "a read waits for a write");
        assert!(!touched.conflicts(true, &[4]), "other keys do not wait");
        touched.remove(false, &[1, 2]);
        touched.remove(true, &[3]);
        assert!(!touched.conflicts(true, &[1, 2, 3]));
        assert!(touched.running.is_empty(), "nothing left behind");
    }
}
