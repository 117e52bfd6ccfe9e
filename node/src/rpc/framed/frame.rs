//! The wire format of the framed internode protocol.
//!
//! A connection opens with [`MAGIC`] and a version byte, sent by the caller
//! in plaintext (so that the peer port can tell it from HTTP/2 and from a
//! TLS handshake); with internode TLS on, the TLS handshake follows. Then
//! both sides send frames, big-endian:
//!
//! ```text
//! [u32 length][u64 request id][u8 kind][protobuf body]
//! ```
//!
//! `length` counts the id, the kind and the body. A request's kind names
//! the Peer method; its answer carries the same id and the method's answer
//! kind, or [`Kind::Error`] with a `FrameError` body. An error frame with
//! id 0 concerns the whole connection (refused, or a frame too large); the
//! sender closes the connection after it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// What a framed connection starts with.
pub const MAGIC: &[u8; 4] = b"RKVF";
/// The protocol version this node speaks: 3 added queries ([`Kind::Query`])
/// to 2's writes and reads.
pub const VERSION: u8 = 3;
/// The versions this node serves (a caller of version 2 never sends a
/// query), as gossiped.
pub const SERVED: [u8; 2] = [2, 3];
/// Bytes of a frame's header: length, request id and kind.
pub const HEADER_BYTES: usize = 4 + 8 + 1;
/// Bytes of the header counted by `length` (id and kind).
const COUNTED_HEADER_BYTES: usize = 8 + 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ReplicaWriteRequest`.
    Write,
    /// `ReplicaReadRequest`.
    Read,
    /// `ReplicaQueryRequest`.
    Query,
    /// A keepalive ping (empty): is the peer still there?
    Ping,
    /// `ReplicaWriteResponse`.
    WriteAnswer,
    /// `ReplicaReadResponse`.
    ReadAnswer,
    /// `ReplicaQueryResponse`.
    QueryAnswer,
    /// The answer to a ping (empty).
    Pong,
    /// `FrameError`: the request failed.
    Error,
}

impl Kind {
    pub fn byte(self) -> u8 {
        match self {
            Kind::Write => 1,
            Kind::Read => 2,
            Kind::Ping => 3,
            Kind::Query => 4,
            Kind::WriteAnswer => 0x81,
            Kind::ReadAnswer => 0x82,
            Kind::Pong => 0x83,
            Kind::QueryAnswer => 0x84,
            Kind::Error => 0xff,
        }
    }

    /// The kind of `byte`; `None` for kinds this version does not know.
    pub fn of(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Write,
            2 => Kind::Read,
            3 => Kind::Ping,
            4 => Kind::Query,
            0x81 => Kind::WriteAnswer,
            0x82 => Kind::ReadAnswer,
            0x83 => Kind::Pong,
            0x84 => Kind::QueryAnswer,
            0xff => Kind::Error,
            _ => return None,
        })
    }
}

/// One received frame. `kind` is the raw byte: an unknown kind is answered
/// with an error, not a closed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: u64,
    pub kind: u8,
    pub body: Bytes,
}

/// A frame that cannot be read: the connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a frame of {length} bytes is shorter than its header")]
    Short { length: usize },
    #[error("a frame of {length} bytes is over the limit of {limit} bytes (max_message_bytes)")]
    TooLarge { length: usize, limit: usize },
}

/// Appends a frame holding `body` to `out`.
pub fn encode(out: &mut BytesMut, id: u64, kind: Kind, body: &impl Message) {
    let length = COUNTED_HEADER_BYTES + body.encoded_len();
    out.reserve(4 + length);
    // A body's size is bounded by the message limit (at most 512 MiB),
    // well inside u32; a larger one is refused by the receiver.
    out.put_u32(u32::try_from(length).unwrap_or(u32::MAX));
    out.put_u64(id);
    out.put_u8(kind.byte());
    // Cannot fail: the space was reserved above.
    let _ = body.encode(out);
}

/// The bytes of the frame `buffer` starts with, as its length prefix
/// announces them (prefix included); `None` before the prefix arrived.
pub fn announced(buffer: &[u8]) -> Option<usize> {
    let prefix = buffer.get(..4)?;
    Some(4 + u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize)
}

/// Takes the first complete frame off `buffer`; `Ok(None)` when more
/// bytes are needed. A body larger than `max_body` is an error before any
/// of it is buffered, so a peer cannot make this side allocate more than
/// its limit, nor, by announcing a length it never sends, more than it
/// actually sent.
pub fn decode(buffer: &mut BytesMut, max_body: usize) -> Result<Option<Frame>, DecodeError> {
    let Some(prefix) = buffer.get(..4) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if length < COUNTED_HEADER_BYTES {
        return Err(DecodeError::Short { length });
    }
    let limit = max_body.saturating_add(COUNTED_HEADER_BYTES);
    if length > limit {
        return Err(DecodeError::TooLarge { length, limit });
    }
    if buffer.len() < 4 + length {
        // No room is reserved for the announced length: the buffer grows
        // as bytes arrive, so a length alone claims no memory.
        return Ok(None);
    }
    buffer.advance(4);
    let mut frame = buffer.split_to(length);
    let id = frame.get_u64();
    let kind = frame.get_u8();
    Ok(Some(Frame {
        id,
        kind,
        body: frame.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ringkv_proto::internal::v2 as pbi;

    fn read_request(key: &'static [u8]) -> pbi::ReplicaReadRequest {
        pbi::ReplicaReadRequest {
            key: Bytes::from_static(key),
            digest_only: true,
        }
    }

    #[test]
    fn frames_round_trip_one_by_one_and_back_to_back() {
        let mut wire = BytesMut::new();
        encode(&mut wire, 7, Kind::Read, &read_request(b"k1"));
        encode(
            &mut wire,
            8,
            Kind::WriteAnswer,
            &pbi::ReplicaWriteResponse::default(),
        );
        let first = decode(&mut wire, 1024).expect("valid").expect("complete");
        assert_eq!((first.id, Kind::of(first.kind)), (7, Some(Kind::Read)));
        let request = pbi::ReplicaReadRequest::decode(first.body).expect("protobuf");
        assert_eq!(request, read_request(b"k1"));
        let second = decode(&mut wire, 1024).expect("valid").expect("complete");
        assert_eq!(
            (second.id, Kind::of(second.kind)),
            (8, Some(Kind::WriteAnswer))
        );
        assert!(second.body.is_empty());
        assert_eq!(decode(&mut wire, 1024), Ok(None));
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let mut whole = BytesMut::new();
        encode(&mut whole, 1, Kind::Read, &read_request(b"key"));
        let mut arriving = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(decode(&mut arriving, 1024), Ok(None), "after {i} bytes");
            arriving.put_u8(*byte);
        }
        assert!(decode(&mut arriving, 1024).expect("valid").is_some());
    }

    #[test]
    fn oversize_and_short_frames_are_refused_from_their_length_alone() {
        let mut huge = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(
            decode(&mut huge, 1 << 20),
            Err(DecodeError::TooLarge {
                length: u32::MAX as usize,
                limit: (1 << 20) + 9
            })
        );
        let mut short = BytesMut::from(&[0, 0, 0, 3, 1, 2, 3][..]);
        assert_eq!(
            decode(&mut short, 1024),
            Err(DecodeError::Short { length: 3 })
        );
        // A body of exactly the limit is fine.
        let mut wire = BytesMut::new();
        let limit = read_request(b"abc").encoded_len();
        encode(&mut wire, 1, Kind::Read, &read_request(b"abc"));
        assert!(
            decode(&mut wire.clone(), limit)
                .expect("at the limit")
                .is_some()
        );
        assert!(decode(&mut wire, limit - 1).is_err());
    }

    #[test]
    fn an_announced_length_claims_no_memory_before_its_bytes_arrive() {
        let mut buffer = BytesMut::with_capacity(64);
        buffer.put_u32(1 << 20);
        buffer.put_u64(1);
        buffer.put_u8(Kind::Write.byte());
        assert_eq!(decode(&mut buffer, 2 << 20), Ok(None));
        assert!(
            buffer.capacity() < 1024,
            "{} bytes reserved",
            buffer.capacity()
        );
    }

    #[test]
    fn kinds_round_trip_and_unknown_bytes_are_none() {
        for kind in [
            Kind::Write,
            Kind::Read,
            Kind::Ping,
            Kind::Query,
            Kind::WriteAnswer,
            Kind::ReadAnswer,
            Kind::Pong,
            Kind::QueryAnswer,
            Kind::Error,
        ] {
            assert_eq!(Kind::of(kind.byte()), Some(kind));
        }
        assert_eq!(Kind::of(0), None);
        assert_eq!(Kind::of(5), None);
    }

    proptest! {
        /// Whatever bytes arrive, decoding never panics, never returns a
        /// frame over the limit, and consumes exactly the frames it returns.
        #[test]
        fn arbitrary_bytes_decode_to_frames_or_a_clear_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            max_body in 0usize..128,
        ) {
            let mut buffer = BytesMut::from(&bytes[..]);
            let mut consumed = 0;
            while let Ok(Some(frame)) = decode(&mut buffer, max_body) {
                prop_assert!(frame.body.len() <= max_body);
                consumed += HEADER_BYTES + frame.body.len();
            }
            prop_assert_eq!(consumed + buffer.len(), bytes.len());
        }

        /// Any sequence of frames survives any split into reads.
        #[test]
        fn frames_survive_any_chunking(
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for (i, key) in keys.iter().enumerate() {
                let request = pbi::ReplicaReadRequest { key: Bytes::from(key.clone()), digest_only: false };
                encode(&mut wire, i as u64, Kind::Read, &request);
            }
            let mut buffer = BytesMut::new();
            let mut decoded = Vec::new();
            for piece in wire.chunks(chunk) {
                buffer.extend_from_slice(piece);
                while let Some(frame) = decode(&mut buffer, 1024).expect("valid frames") {
                    decoded.push(frame);
                }
            }
            prop_assert_eq!(decoded.len(), keys.len());
            for (i, (frame, key)) in decoded.into_iter().zip(&keys).enumerate() {
                prop_assert_eq!(frame.id, i as u64);
                let request = pbi::ReplicaReadRequest::decode(frame.body).expect("protobuf");
                prop_assert_eq!(&request.key[..], &key[..]);
            }
        }
    }
}
