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
//! A [`Connection`] holds the connection's state (its session, what was
//! read and not yet parsed, the commands in flight, the replies not yet
//! written) and runs the loop: start every command that may start
//! (`start_commands`), then wait for whichever comes first of a command
//! done, a write, a read, a stalled client or the node stopping (`step`).
//!
//! Bounds, each making the loop stop taking in commands until it is back
//! under it (the client's own socket buffer then pushes back):
//! - `MAX_PIPELINE` commands running;
//! - `max_command` bytes of arguments held by running commands;
//! - `OUTPUT_HIGH` bytes of replies not yet written (commands already
//!   running still finish and add theirs: at most `MAX_PIPELINE` replies
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

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::command::{Action, Command};
use super::dispatch::dispatch;
use super::parse::{ParseLimits, Parser};
use super::pipeline::{Pipeline, Slot, Work, ready};
use super::reply::Reply;
use super::session::Session;
use super::session_commands::authenticate;

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

/// One client connection and everything it holds.
pub struct Connection<Io> {
    shared: Arc<Shared>,
    session: Session,
    reader: ReadHalf<Io>,
    writer: WriteHalf<Io>,
    /// The port's bounds on a command (tighter before `AUTH`).
    limits: ParseLimits,
    parser: Parser,
    /// Read and not yet parsed.
    input: BytesMut,
    /// The commands running, in reply order, and the replies not yet
    /// written.
    line: Pipeline,
    /// Hashes keys for the conflict check (seeded per connection).
    hasher: std::collections::hash_map::RandomState,
    /// A command read but waiting for the running ones to finish.
    waiting: Option<Command>,
    /// Answer what started, then close.
    closing: bool,
    /// The client sent its last byte: answer what it sent, then close.
    eof: bool,
    /// Since when replies wait to be written.
    stalled_since: Option<Instant>,
    /// Replies written but maybe not yet flushed (TLS buffers records).
    unflushed: bool,
    stop: CancellationToken,
}

/// The next thing the input holds.
enum Next {
    /// A command, or the reply that refuses it.
    Command(Result<Command, Reply>),
    /// No whole command yet.
    Nothing,
    /// Unparsable: answered, and the connection closes.
    Malformed,
}

/// What a turn of the loop came to.
enum Turn {
    Go,
    /// The connection is done (closed, broken or stalled).
    End,
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
    Connection::new(shared, io, (peer, local), stop).run().await;
}

impl<Io: AsyncRead + AsyncWrite + Send + Unpin> Connection<Io> {
    pub fn new(
        shared: Arc<Shared>,
        io: Io,
        (peer, local): (SocketAddr, SocketAddr),
        stop: CancellationToken,
    ) -> Self {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (reader, writer) = tokio::io::split(io);
        let limits = shared.settings.limits;
        Connection {
            session: Session::new(id, peer, local),
            reader,
            writer,
            limits,
            parser: Parser::new(limits),
            input: BytesMut::with_capacity(READ_CHUNK),
            line: Pipeline::new(READ_CHUNK),
            hasher: std::collections::hash_map::RandomState::new(),
            waiting: None,
            closing: false,
            eof: false,
            stalled_since: None,
            unflushed: false,
            stop,
            shared,
        }
    }

    pub async fn run(mut self) {
        loop {
            let input_done = self.start_commands();
            if self.eof && input_done && self.waiting.is_none() {
                self.closing = true;
            }
            if self.closing && self.line.is_idle() {
                let _ = tokio::time::timeout(WRITE_STALL, self.writer.shutdown()).await;
                return;
            }
            if let Turn::End = self.step().await {
                return;
            }
        }
    }

    /// Starts every command that may start now; `true` when the input
    /// holds no whole command more.
    fn start_commands(&mut self) -> bool {
        while !self.closing && self.line.has_room(&self.limits) {
            let command = match self.waiting.take() {
                Some(command) => Ok(command),
                None => match self.next_command() {
                    Next::Command(command) => command,
                    Next::Nothing => return true,
                    Next::Malformed => return false,
                },
            };
            match command {
                Ok(command) => {
                    if let Err(command) = self.start(command) {
                        self.waiting = Some(command);
                        return false;
                    }
                }
                Err(refusal) => self.line.push(ready(self.session.protocol, refusal)),
            }
        }
        false
    }

    /// Parses the next command of the input, under the bounds the
    /// connection is held to now.
    fn next_command(&mut self) -> Next {
        let authenticated = self.shared.auth.is_none() || self.session.credentials.is_some();
        self.parser.limits = if authenticated {
            self.limits
        } else {
            UNAUTHENTICATED
        };
        match self.parser.next(&mut self.input) {
            Ok(Some(args)) => {
                self.shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                Next::Command(Command::parse(args))
            }
            Ok(None) => Next::Nothing,
            Err(error) => {
                let refusal = Reply::error(format!("ERR {error}"));
                self.line.push(ready(self.session.protocol, refusal));
                self.closing = true;
                Next::Malformed
            }
        }
    }

    /// Starts `command`, or gives it back when it must wait for the
    /// commands running (it touches their keys, or it is `AUTH`/`HELLO`).
    fn start(&mut self, command: Command) -> Result<(), Command> {
        let writes = command.writes();
        let keys: Vec<u64> = command
            .keys()
            .map(|key| self.hasher.hash_one(key))
            .collect();
        let must_wait = command.spec().waits_for_quiet() || self.line.conflicts(writes, &keys);
        if must_wait && !self.line.pending.is_empty() {
            return Err(command);
        }
        let held = command.size();
        let action = dispatch(&self.shared, &mut self.session, command);
        // After dispatch: `HELLO 3` answers in RESP3 already.
        let protocol = self.session.protocol;
        match action {
            Action::Reply(reply) => self.line.push(ready(protocol, reply)),
            Action::Run(future) => self.line.push(Slot {
                protocol,
                held,
                keys,
                writes,
                work: Work::Running(future),
            }),
            Action::Quit => {
                self.line.push(ready(protocol, Reply::OK));
                self.closing = true;
            }
            Action::Authenticate {
                user,
                password,
                hello,
            } => {
                let check = authenticate(
                    &self.shared,
                    user.clone(),
                    password.clone(),
                    self.session.peer,
                );
                self.line.authenticating = true;
                self.line.push(Slot {
                    protocol,
                    held: 0,
                    keys: Vec::new(),
                    writes: false,
                    work: Work::Authenticating(check, Some((user, password, hello))),
                });
            }
        }
        Ok(())
    }

    /// Waits for the first of: the node stopping, a command done, some
    /// replies written, some bytes read, the client stalled too long.
    async fn step(&mut self) -> Turn {
        let reading = !self.closing
            && !self.eof
            && self.waiting.is_none()
            && self.line.has_room(&self.limits);
        if reading {
            // Room for the command in progress, grown with what arrives
            // rather than what its headers announce.
            let floor = self.input.len() + READ_CHUNK;
            let target = self
                .parser
                .wanted()
                .min(self.input.len().saturating_mul(2))
                .max(floor);
            self.input.reserve(target - self.input.len());
        }
        let stall_deadline = self.stalled_since.map(|since| since + WRITE_STALL);
        let Connection {
            shared,
            session,
            reader,
            writer,
            input,
            line,
            closing,
            eof,
            unflushed,
            stop,
            ..
        } = self;
        let output_empty = line.output.is_empty();
        let mut wrote = false;
        tokio::select! {
            // Stop first, so a busy connection notices it.
            biased;
            _ = stop.cancelled(), if !*closing => *closing = true,
            // Running commands are always driven to their end, so they give
            // their permits back however slowly the client reads.
            done = line.pending.next(), if !line.pending.is_empty() => {
                if let Some(done) = done {
                    line.finish(shared, session, done);
                    while let Some(Some(done)) = line.pending.next().now_or_never() {
                        line.finish(shared, session, done);
                    }
                }
            }
            // Write what is encoded; once it is all written, flush (TLS may
            // keep records it could not send yet). A branch of its own, so
            // running commands go on while the client is slow to read.
            progress = write_or_flush(writer, &mut line.output), if !output_empty || *unflushed => {
                match progress {
                    Ok(Some(0)) | Err(_) => return Turn::End,
                    Ok(Some(_)) => *unflushed = true,
                    Ok(None) => *unflushed = false,
                }
                wrote = true;
            }
            read = reader.read_buf(input), if reading => {
                match read {
                    Ok(0) => *eof = true,
                    Err(_) => return Turn::End,
                    Ok(_) => {}
                }
            }
            _ = sleep_until(stall_deadline), if stall_deadline.is_some() => {
                let peer = session.peer;
                tracing::debug!(%peer, ?WRITE_STALL, "RESP client took none of its replies; closing");
                return Turn::End;
            }
        }
        if self.line.output.is_empty() && !self.unflushed {
            self.stalled_since = None;
        } else if wrote || self.stalled_since.is_none() {
            self.stalled_since = Some(Instant::now());
        }
        Turn::Go
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
