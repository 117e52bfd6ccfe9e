//! The byte-level pieces of the small binary encodings kept in cells and
//! state (a partition's deletions entry, Paxos acceptor state): varint
//! length-prefixed bytes and fixed-size big-endian fields, read from a
//! cursor that only moves forward. Each encoding turns [`Truncated`] into
//! its own error.

use bytes::Bytes;

/// The input ended inside a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

/// Appends `bytes` with its varint length before it.
pub fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Takes the next `N` bytes.
pub fn take<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], Truncated> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or(Truncated)?;
    *buf = rest;
    Ok(*head)
}

/// Takes a varint.
pub fn get_varint(buf: &mut &[u8]) -> Result<u64, Truncated> {
    prost::encoding::decode_varint(buf).map_err(|_| Truncated)
}

/// Takes varint length-prefixed bytes (never allocating more than the
/// input holds).
pub fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, Truncated> {
    let len = usize::try_from(get_varint(buf)?).map_err(|_| Truncated)?;
    let bytes = buf.get(..len).ok_or(Truncated)?;
    *buf = &buf[len..];
    Ok(Bytes::copy_from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_a_short_input_is_truncated() {
        let mut out = Vec::new();
        put_bytes(b"abc", &mut out);
        out.extend_from_slice(&7u16.to_be_bytes());
        let buf = &mut out.as_slice();
        assert_eq!(get_bytes(buf), Ok(Bytes::from_static(b"abc")));
        assert_eq!(take::<2>(buf), Ok(7u16.to_be_bytes()));
        assert_eq!(take::<1>(buf), Err(Truncated));
        let mut long = Vec::new();
        prost::encoding::encode_varint(1 << 40, &mut long);
        assert_eq!(get_bytes(&mut long.as_slice()), Err(Truncated));
        assert_eq!(get_varint(&mut [0x80u8].as_slice()), Err(Truncated));
    }
}
