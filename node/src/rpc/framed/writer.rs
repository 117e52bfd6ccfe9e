//! The writing half of a framed connection, on either side: one task that
//! encodes every frame that is ready into one buffer and sends it with one
//! write. Under load many requests (or answers) share a syscall; alone, a
//! frame goes out at once.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use ringkv_proto::internal::v1 as pbi;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{self, Kind};

/// Frames waiting for the writer of one connection, at most. Senders wait
/// when it is full, so a peer that stops reading slows its callers instead
/// of growing this side's memory.
pub const QUEUE_FRAMES: usize = 1024;
/// Frames encoded into one write, at most.
const FRAMES_PER_WRITE: usize = 256;
/// A write buffer grown past this by a large frame is not kept.
const KEPT_BUFFER_BYTES: usize = 256 << 10;

/// A frame to send: its request id and what it carries.
#[derive(Debug)]
pub struct Outgoing {
    pub id: u64,
    pub body: Body,
}

/// What a frame carries.
#[derive(Debug)]
pub enum Body {
    WriteRequest(pbi::ReplicaWriteRequest),
    ReadRequest(pbi::ReplicaReadRequest),
    Ping,
    WriteAnswer,
    ReadAnswer(pbi::ReplicaReadResponse),
    Pong,
    Error(pbi::FrameError),
}

impl Body {
    /// An error frame's body.
    pub fn error(status: &tonic::Status) -> Body {
        Body::Error(pbi::FrameError {
            code: status.code() as i32,
            message: status.message().to_owned(),
        })
    }
}

impl Outgoing {
    pub fn encode(&self, out: &mut BytesMut) {
        let id = self.id;
        match &self.body {
            Body::WriteRequest(request) => frame::encode(out, id, Kind::Write, request),
            Body::ReadRequest(request) => frame::encode(out, id, Kind::Read, request),
            Body::WriteAnswer => {
                frame::encode(out, id, Kind::WriteAnswer, &pbi::ReplicaWriteResponse {})
            }
            Body::Ping => frame::encode(out, id, Kind::Ping, &()),
            Body::ReadAnswer(answer) => frame::encode(out, id, Kind::ReadAnswer, answer),
            Body::Pong => frame::encode(out, id, Kind::Pong, &()),
            Body::Error(error) => frame::encode(out, id, Kind::Error, error),
        }
    }
}

/// Sends what arrives on `queue` until every sender is gone, then shuts
/// the stream down. A write that makes no progress for `stall` (a peer
/// that stopped reading) fails with `TimedOut`.
pub async fn write_frames(
    mut queue: mpsc::Receiver<Outgoing>,
    mut out: impl AsyncWrite + Unpin,
    stall: Duration,
) -> io::Result<()> {
    let mut ready = Vec::with_capacity(FRAMES_PER_WRITE);
    let mut buffer = BytesMut::with_capacity(16 << 10);
    while queue.recv_many(&mut ready, FRAMES_PER_WRITE).await > 0 {
        for outgoing in ready.drain(..) {
            outgoing.encode(&mut buffer);
        }
        tokio::time::timeout(stall, write_all_and_flush(&mut out, &buffer))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer read nothing for {stall:?}"),
                )
            })??;
        buffer.clear();
        if buffer.capacity() > KEPT_BUFFER_BYTES {
            buffer = BytesMut::with_capacity(16 << 10);
        }
    }
    out.shutdown().await
}

/// Writes `bytes`; the flush matters with TLS, which holds records back
/// until flushed.
async fn write_all_and_flush(out: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
}
