//! The writing half of a framed connection, on either side: one task that
//! encodes every frame that is ready into one buffer and sends it with one
//! write. Under load many requests (or answers) share a syscall; alone, a
//! frame goes out at once.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use prost::Message;
use ringkv_proto::internal::v2 as pbi;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{self, Kind};

/// Frames waiting for the writer of one connection, at most. Senders wait
/// when it is full, so a peer that stops reading slows its callers instead
/// of growing this side's memory.
pub const QUEUE_FRAMES: usize = 1024;
/// Frames taken off the queue at a time, at most.
const FRAMES_PER_WRITE: usize = 256;
/// Bytes encoded before they are written: frames are taken off the queue
/// until this much is waiting (one frame may pass it alone).
const BATCH_BYTES: usize = 256 << 10;
/// A write buffer grown past this by a large frame is not kept.
const KEPT_BUFFER_BYTES: usize = 256 << 10;

/// A frame to send: its request id and what it carries.
#[derive(Debug)]
pub struct Outgoing {
    pub id: u64,
    pub body: Body,
    /// Held until the frame is encoded for writing: what bounds a
    /// connection's answers in flight counts the queued ones too.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Outgoing {
    pub fn new(id: u64, body: Body) -> Self {
        Self {
            id,
            body,
            permit: None,
        }
    }
}

/// What a frame carries.
#[derive(Debug)]
pub enum Body {
    WriteRequest(pbi::ReplicaWriteRequest),
    ReadRequest(pbi::ReplicaReadRequest),
    QueryRequest(pbi::ReplicaQueryRequest),
    Ping,
    WriteAnswer(pbi::ReplicaWriteResponse),
    ReadAnswer(pbi::ReplicaReadResponse),
    QueryAnswer(pbi::ReplicaQueryResponse),
    Pong,
    Error(pbi::FrameError),
}

impl Body {
    /// Bytes of the encoded body.
    pub fn encoded_len(&self) -> usize {
        match self {
            Body::WriteRequest(request) => request.encoded_len(),
            Body::ReadRequest(request) => request.encoded_len(),
            Body::QueryRequest(request) => request.encoded_len(),
            Body::ReadAnswer(answer) => answer.encoded_len(),
            Body::QueryAnswer(answer) => answer.encoded_len(),
            Body::WriteAnswer(answer) => answer.encoded_len(),
            Body::Error(error) => error.encoded_len(),
            Body::Ping | Body::Pong => 0,
        }
    }

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
            Body::QueryRequest(request) => frame::encode(out, id, Kind::Query, request),
            Body::WriteAnswer(answer) => frame::encode(out, id, Kind::WriteAnswer, answer),
            Body::Ping => frame::encode(out, id, Kind::Ping, &()),
            Body::ReadAnswer(answer) => frame::encode(out, id, Kind::ReadAnswer, answer),
            Body::QueryAnswer(answer) => frame::encode(out, id, Kind::QueryAnswer, answer),
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
    loop {
        if ready.is_empty() && queue.recv_many(&mut ready, FRAMES_PER_WRITE).await == 0 {
            break;
        }
        // Encode until the batch is big enough; the rest waits for the
        // next write.
        let mut taken = 0;
        for outgoing in &mut ready {
            if taken > 0 && buffer.len() >= BATCH_BYTES {
                break;
            }
            outgoing.encode(&mut buffer);
            // Encoded: it no longer counts against its connection.
            drop(outgoing.permit.take());
            taken += 1;
        }
        ready.drain(..taken);
        write_all_and_flush(&mut out, &buffer, stall).await?;
        buffer.clear();
        if buffer.capacity() > KEPT_BUFFER_BYTES {
            buffer = BytesMut::with_capacity(16 << 10);
        }
    }
    let shutdown = tokio::time::timeout(stall, out.shutdown()).await;
    shutdown.map_err(|_| stalled(stall))?
}

fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the peer read nothing for {stall:?}"),
    )
}

/// Writes `bytes`, each write given `stall` to make progress; the flush
/// matters with TLS, which holds records back until flushed.
async fn write_all_and_flush(
    out: &mut (impl AsyncWrite + Unpin),
    mut bytes: &[u8],
    stall: Duration,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = tokio::time::timeout(stall, out.write(bytes))
            .await
            .map_err(|_| stalled(stall))??;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    tokio::time::timeout(stall, out.flush())
        .await
        .map_err(|_| stalled(stall))?
}
