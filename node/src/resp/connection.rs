//! One RESP connection: read commands, run them, write the replies in
//! order.
//!
//! Clients pipeline: they send many commands before reading any reply.
//! The loop parses every whole command it has read and starts it at once,
//! so the commands of a pipeline run concurrently (their coordinator reads
//! and writes overlap), while a [`FuturesOrdered`] hands their replies back
//! in the order the commands came. Replies that are ready together are
//! encoded into one buffer and written with one call, so a pipeline of
//! fifty `GET`s costs a few syscalls, not fifty.
//!
//! Bounds: at most [`MAX_PIPELINE`] commands of a connection run at once,
//! holding at most `max_command` bytes of arguments beyond the one being
//! read; past either, the loop stops reading until replies go out, and the
//! client's own socket buffer pushes back. A malformed command is answered
//! with a protocol error and the connection closes, as in Redis.
//!
//! Concurrency never reorders what one connection does to one key: a
//! command that writes a key an earlier command of the connection still
//! reads or writes, or reads a key one still writes, first waits for every
//! earlier command to finish (as Redis, `SET k v` then `GET k` in one
//! pipeline answers `v`). Commands on different keys overlap freely.
//!
//! State that later commands depend on (the protocol version, the levels,
//! the name) changes when a command is dispatched, before the next one is
//! parsed; each reply is encoded in the protocol in force once its command
//! was dispatched (so `HELLO 3` answers in RESP3). `AUTH` needs a slow check, so it waits for the commands
//! before it to finish and holds the ones after it until it is done.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::commands::{Action, Hello, dispatch, keys_of};
use super::info::hello_reply;
use super::parse::{bytes_wanted, parse};
use super::reply::{Protocol, Reply};
use crate::auth::Refusal;
use crate::coordinator::ConsistencyLevel;

/// Commands of one connection running at once.
pub const MAX_PIPELINE: usize = 256;
/// Free room kept in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// What a connection remembers between commands.
pub struct Session {
    pub id: u64,
    pub protocol: Protocol,
    pub name: Bytes,
    pub lib_name: Bytes,
    pub lib_version: Bytes,
    pub read_level: ConsistencyLevel,
    pub write_level: ConsistencyLevel,
    /// User name and password once `AUTH` accepted them; each command
    /// checks them again (through the authenticator's cache), so a changed
    /// role applies to open connections too.
    pub credentials: Option<Arc<(String, String)>>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub since: Instant,
}

impl Session {
    pub fn new(id: u64, peer: SocketAddr, local: SocketAddr) -> Self {
        Self {
            id,
            protocol: Protocol::Resp2,
            name: Bytes::new(),
            lib_name: Bytes::new(),
            lib_version: Bytes::new(),
            read_level: ConsistencyLevel::Quorum,
            write_level: ConsistencyLevel::Quorum,
            credentials: None,
            peer,
            local,
            since: Instant::now(),
        }
    }

    /// `RESET`: back to a new connection's state, not authenticated.
    pub fn reset(&mut self) {
        let fresh = Session::new(self.id, self.peer, self.local);
        *self = Session {
            since: self.since,
            ..fresh
        };
    }

    pub fn apply(&mut self, hello: Hello) {
        if let Some(protocol) = hello.protocol {
            self.protocol = protocol;
        }
        if let Some(name) = hello.name {
            self.name = name;
        }
    }
}

/// A command's place in the reply order: its reply (ready, or still being
/// worked out), the protocol to encode it in, and the argument bytes it
/// holds.
struct Slot {
    protocol: Protocol,
    held: usize,
    work: Work,
}

enum Work {
    Ready(Option<Reply>),
    Running(BoxFuture<'static, Reply>),
}

impl Future for Slot {
    type Output = (Reply, Protocol, usize);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (protocol, held) = (self.protocol, self.held);
        match &mut self.work {
            Work::Ready(reply) => {
                Poll::Ready((reply.take().unwrap_or(Reply::Null), protocol, held))
            }
            Work::Running(future) => future.poll_unpin(cx).map(|reply| (reply, protocol, held)),
        }
    }
}

/// Keys that commands still running read and write. Entries are dropped
/// only when nothing runs (a conservative superset meanwhile).
#[derive(Default)]
struct Touched {
    reads: HashSet<Bytes>,
    writes: HashSet<Bytes>,
}

impl Touched {
    /// Whether a command on `keys` must wait for the running ones.
    fn conflicts<'a>(&self, writes: bool, mut keys: impl Iterator<Item = &'a Bytes>) -> bool {
        keys.any(|key| self.writes.contains(key) || (writes && self.reads.contains(key)))
    }

    fn add<'a>(&mut self, writes: bool, keys: impl Iterator<Item = &'a Bytes>) {
        let set = if writes {
            &mut self.writes
        } else {
            &mut self.reads
        };
        set.extend(keys.cloned());
    }

    fn clear(&mut self) {
        self.reads.clear();
        self.writes.clear();
    }
}

/// The commands running, in reply order, and the replies encoded but not
/// yet written.
struct Pipeline {
    pending: FuturesOrdered<Slot>,
    /// Argument bytes the running commands hold.
    held: usize,
    touched: Touched,
    output: BytesMut,
}

impl Pipeline {
    fn push(&mut self, slot: Slot) {
        self.held += slot.held;
        self.pending.push_back(slot);
    }

    fn encode(&mut self, shared: &Shared, (reply, protocol, size): (Reply, Protocol, usize)) {
        self.held -= size;
        if matches!(reply, Reply::Error(_)) {
            shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
        }
        reply.encode(protocol, &mut self.output);
        if self.pending.is_empty() {
            self.touched.clear();
        }
    }

    /// Waits for every running command and encodes its reply.
    async fn finish_all(&mut self, shared: &Shared) {
        while let Some(done) = self.pending.next().await {
            self.encode(shared, done);
        }
    }
}

/// Serves one connection until the client closes it, sends `QUIT` or
/// something unparsable, or `stop` is cancelled (commands already read
/// are answered first).
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
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut line = Pipeline {
        pending: FuturesOrdered::new(),
        held: 0,
        touched: Touched::default(),
        output: BytesMut::with_capacity(READ_CHUNK),
    };
    let mut closing = false;
    loop {
        // Start every whole command already read, within the bounds.
        while !closing && line.pending.len() < MAX_PIPELINE && line.held <= limits.max_command {
            let args = match parse(&mut input, &limits) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(error) => {
                    line.push(ready(
                        session.protocol,
                        Reply::error(format!("ERR {error}")),
                    ));
                    closing = true;
                    break;
                }
            };
            shared.stats.commands.fetch_add(1, Ordering::Relaxed);
            if let Some((writes, keys)) = keys_of(&args) {
                if line.touched.conflicts(writes, keys) {
                    line.finish_all(&shared).await;
                }
                if let Some((writes, keys)) = keys_of(&args) {
                    line.touched.add(writes, keys);
                }
            }
            let size: usize = args.iter().map(Bytes::len).sum();
            let action = dispatch(&shared, &mut session, args);
            // After dispatch: `HELLO 3` answers in RESP3 already.
            let protocol = session.protocol;
            match action {
                Action::Reply(reply) => line.push(ready(protocol, reply)),
                Action::Run(future) => line.push(Slot {
                    protocol,
                    held: size,
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
                    // Everything before AUTH is answered first.
                    line.finish_all(&shared).await;
                    let reply = authenticate(&shared, &mut session, user, password, hello).await;
                    let protocol = session.protocol;
                    line.encode(&shared, (reply, protocol, 0));
                }
            }
        }
        if closing && line.pending.is_empty() {
            let _ = writer.write_all(&line.output).await;
            let _ = writer.shutdown().await;
            break;
        }
        if !line.output.is_empty() {
            // Replies encoded while later commands waited for them.
            if writer.write_all(&line.output).await.is_err() {
                break;
            }
            line.output.clear();
        }
        let reading =
            !closing && line.pending.len() < MAX_PIPELINE && line.held <= limits.max_command;
        if reading {
            let wanted = bytes_wanted(&input, &limits).max(input.len() + READ_CHUNK);
            input.reserve(wanted - input.len());
        }
        // `biased`: replies go out before more input is taken in, which
        // keeps latency low and the pipeline short.
        tokio::select! {
            biased;
            Some(done) = line.pending.next(), if !line.pending.is_empty() => {
                line.encode(&shared, done);
                while let Some(Some(done)) = line.pending.next().now_or_never() {
                    line.encode(&shared, done);
                }
                if writer.write_all(&line.output).await.is_err() {
                    break;
                }
                line.output.clear();
                if line.output.capacity() > 4 * READ_CHUNK {
                    line.output = BytesMut::with_capacity(READ_CHUNK);
                }
            }
            read = reader.read_buf(&mut input), if reading => {
                match read {
                    Ok(0) | Err(_) => closing = true,
                    Ok(_) => {}
                }
            }
            _ = stop.cancelled(), if !closing => closing = true,
        }
    }
}

fn ready(protocol: Protocol, reply: Reply) -> Slot {
    Slot {
        protocol,
        held: 0,
        work: Work::Ready(Some(reply)),
    }
}

/// `AUTH`, or `HELLO ... AUTH`: checks the credentials and, if they are
/// right, keeps them (and applies the `HELLO`).
async fn authenticate(
    shared: &Shared,
    session: &mut Session,
    user: String,
    password: String,
    hello: Option<Hello>,
) -> Reply {
    let Some(auth) = &shared.auth else {
        return Reply::error("ERR authentication is off on this node");
    };
    match auth.authenticate(&user, &password).await {
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
