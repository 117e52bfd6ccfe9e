//! The commands of one connection in flight: each holds its place in the
//! reply order, and the connection tracks what they hold (argument bytes,
//! the keys they read and write) and the replies encoded but not yet
//! written. See `connection` for how the loop uses it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;

use super::Shared;
use super::parse::ParseLimits;
use super::reply::{Protocol, Reply};
use super::session::{Hello, Session};
use super::session_commands::authenticated;
use crate::auth::{Refusal, Role};

/// Commands of one connection running at once.
pub const MAX_PIPELINE: usize = 256;
/// Replies encoded but not yet written, past which no more are taken in.
pub const OUTPUT_HIGH: usize = 4 << 20;

/// A command's place in the reply order.
pub struct Slot {
    pub protocol: Protocol,
    /// Argument bytes the command holds while it runs.
    pub held: usize,
    /// Hashes of its keys, and whether it writes them.
    pub keys: Vec<u64>,
    pub writes: bool,
    pub work: Work,
}

pub enum Work {
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
pub struct Finished {
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

pub fn ready(protocol: Protocol, reply: Reply) -> Slot {
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
pub struct Pipeline {
    pub pending: FuturesOrdered<Slot>,
    held: usize,
    touched: Touched,
    /// An `AUTH` runs: nothing else starts until it is done.
    pub authenticating: bool,
    pub output: BytesMut,
}

impl Pipeline {
    pub fn new(output_capacity: usize) -> Self {
        Pipeline {
            pending: FuturesOrdered::new(),
            held: 0,
            touched: Touched::default(),
            authenticating: false,
            output: BytesMut::with_capacity(output_capacity),
        }
    }

    /// Whether a command on `keys` must wait for the running ones.
    pub fn conflicts(&self, writes: bool, keys: &[u64]) -> bool {
        self.touched.conflicts(writes, keys)
    }

    /// Nothing runs and nothing is left to write.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.output.is_empty()
    }

    pub fn push(&mut self, slot: Slot) {
        self.held += slot.held;
        self.touched.add(slot.writes, &slot.keys);
        self.pending.push_back(slot);
    }

    /// Whether more commands may start (or be read).
    pub fn has_room(&self, limits: &ParseLimits) -> bool {
        !self.authenticating
            && self.pending.len() < MAX_PIPELINE
            && self.held <= limits.max_command
            && self.output.len() < OUTPUT_HIGH
    }

    /// Encodes a finished command's reply (applying an `AUTH`'s outcome to
    /// the session first).
    pub fn finish(&mut self, shared: &Shared, session: &mut Session, done: Finished) {
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
