//! Versioned cells and their on-disk encoding.
//!
//! A cell is what a replica stores for a key: a value or a tombstone, the
//! timestamp of the write that made it, and optionally the moment it stops
//! being live. It is stored as the RocksDB value:
//!
//! ```text
//! byte 0     format (1)
//! byte 1     flags: bit 0 tombstone, bit 1 has local_deletion_time,
//!            bit 2 has expiry_ms_early (storage format 3)
//! bytes 2-9  timestamp, i64 big-endian, microseconds since the Unix epoch
//! [8 bytes]  local_deletion_time, i64 big-endian, Unix seconds (if flagged)
//! [2 bytes]  expiry_ms_early, u16 big-endian, 1..=999 (if flagged)
//! rest       value bytes (empty for a tombstone)
//! ```
//!
//! `local_deletion_time` is Cassandra's name for "when this cell counts as
//! deleted": a tombstone's deletion time, or an expiring value's expiry,
//! rounded up to the second. The garbage collection rule (`gc`) is defined
//! on it, so a value is never purged before it expired. An expiry that is
//! not a whole second (Redis's `PX`) keeps its milliseconds as
//! `expiry_ms_early`, how long before `local_deletion_time` the value
//! expires; liveness is defined on that exact millisecond
//! ([`CellOf::expires_at_ms`]).
//!
//! [`CellOf`] is generic over how the value is held so that the same type and
//! the same LWW function serve owned cells ([`Cell`], a shared `Bytes`) and
//! cells borrowed straight out of a RocksDB buffer ([`CellView`]).

use bytes::Bytes;

use crate::clock::Timestamp;

const FORMAT_V1: u8 = 1;
const FLAG_TOMBSTONE: u8 = 0b01;
const FLAG_HAS_LDT: u8 = 0b10;
const FLAG_MS_EARLY: u8 = 0b100;
const HEADER_LEN: usize = 2 + 8;

/// A value or tombstone with its write timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellOf<V> {
    /// Write timestamp, microseconds since the Unix epoch.
    pub timestamp: Timestamp,
    /// A delete marker rather than a value.
    pub tombstone: bool,
    /// Unix seconds from which the cell counts as deleted (tombstone: when it
    /// was deleted; value: when it expires, rounded up). `None`: a value that
    /// never expires.
    pub local_deletion_time: Option<i64>,
    /// Milliseconds before `local_deletion_time` that an expiring value
    /// expires (0..=999; 0 for every other cell).
    pub expiry_ms_early: u16,
    /// The value; empty for tombstones.
    pub value: V,
}

/// An owned cell.
pub type Cell = CellOf<Bytes>;

/// A cell borrowed from an encoded buffer.
pub type CellView<'a> = CellOf<&'a [u8]>;

/// Why bytes could not be decoded as a cell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellDecodeError {
    #[error("cell is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("unknown cell format {0}")]
    UnknownFormat(u8),
    #[error("unknown cell flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("cell expiry milliseconds {0} out of 1..=999")]
    BadMillis(u16),
}

impl Cell {
    /// A live value; `expires_at` in Unix seconds.
    pub fn live(timestamp: Timestamp, value: Bytes, expires_at: Option<i64>) -> Cell {
        CellOf {
            timestamp,
            tombstone: false,
            local_deletion_time: expires_at,
            expiry_ms_early: 0,
            value,
        }
    }

    /// A live value that expires at `expires_at_ms` (Unix milliseconds).
    pub fn expiring_at_ms(timestamp: Timestamp, value: Bytes, expires_at_ms: i64) -> Cell {
        // Rounded up to the second, and how much earlier it is.
        let seconds =
            expires_at_ms.div_euclid(1000) + i64::from(expires_at_ms.rem_euclid(1000) > 0);
        let early = seconds.saturating_mul(1000).saturating_sub(expires_at_ms);
        CellOf {
            timestamp,
            tombstone: false,
            local_deletion_time: Some(seconds),
            expiry_ms_early: u16::try_from(early).unwrap_or(0),
            value,
        }
    }

    /// A tombstone written at `timestamp`, deleted (for gc purposes) at
    /// `deleted_at` Unix seconds.
    pub fn tombstone(timestamp: Timestamp, deleted_at: i64) -> Cell {
        CellOf {
            timestamp,
            tombstone: true,
            local_deletion_time: Some(deleted_at),
            expiry_ms_early: 0,
            value: Bytes::new(),
        }
    }

    /// Borrows the cell as a view.
    pub fn view(&self) -> CellView<'_> {
        CellOf {
            timestamp: self.timestamp,
            tombstone: self.tombstone,
            local_deletion_time: self.local_deletion_time,
            expiry_ms_early: self.expiry_ms_early,
            value: &self.value,
        }
    }
}

impl<V: AsRef<[u8]>> CellOf<V> {
    /// True when the cell holds a value that has not expired at the start
    /// of the second `now_seconds` (Unix seconds).
    pub fn is_live(&self, now_seconds: i64) -> bool {
        self.is_live_ms(now_seconds.saturating_mul(1000))
    }

    /// True when the cell holds a value that has not expired at `now_ms`
    /// (Unix milliseconds).
    pub fn is_live_ms(&self, now_ms: i64) -> bool {
        !self.tombstone && self.expires_at_ms().is_none_or(|t| now_ms < t)
    }

    /// When a value expires (Unix milliseconds); `None` for a value that
    /// never does. (A tombstone's is its deletion time.)
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.local_deletion_time.map(|t| {
            t.saturating_mul(1000)
                .saturating_sub(i64::from(self.expiry_ms_early))
        })
    }

    /// Whether the encoding carries `expiry_ms_early`.
    fn has_ms_early(&self) -> bool {
        self.local_deletion_time.is_some() && self.expiry_ms_early != 0
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + if self.local_deletion_time.is_some() {
                8
            } else {
                0
            }
            + if self.has_ms_early() { 2 } else { 0 }
            + self.value.as_ref().len()
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let mut flags = 0;
        if self.tombstone {
            flags |= FLAG_TOMBSTONE;
        }
        if self.local_deletion_time.is_some() {
            flags |= FLAG_HAS_LDT;
        }
        if self.has_ms_early() {
            flags |= FLAG_MS_EARLY;
        }
        out.push(FORMAT_V1);
        out.push(flags);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        if let Some(ldt) = self.local_deletion_time {
            out.extend_from_slice(&ldt.to_be_bytes());
        }
        if self.has_ms_early() {
            out.extend_from_slice(&self.expiry_ms_early.to_be_bytes());
        }
        out.extend_from_slice(self.value.as_ref());
    }

    /// The encoding as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// A copy that owns its value.
    pub fn to_owned_cell(&self) -> Cell {
        CellOf {
            timestamp: self.timestamp,
            tombstone: self.tombstone,
            local_deletion_time: self.local_deletion_time,
            expiry_ms_early: self.expiry_ms_early,
            value: Bytes::copy_from_slice(self.value.as_ref()),
        }
    }
}

impl<'a> CellView<'a> {
    /// Decodes a cell without copying its value.
    pub fn decode(bytes: &'a [u8]) -> Result<CellView<'a>, CellDecodeError> {
        let (header, rest) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(CellDecodeError::Truncated(bytes.len()))?;
        let [format, flags, ts @ ..] = *header;
        if format != FORMAT_V1 {
            return Err(CellDecodeError::UnknownFormat(format));
        }
        let known = FLAG_TOMBSTONE | FLAG_HAS_LDT | FLAG_MS_EARLY;
        // Milliseconds are only ever kept beside a deletion time.
        if flags & !known != 0 || (flags & FLAG_MS_EARLY != 0 && flags & FLAG_HAS_LDT == 0) {
            return Err(CellDecodeError::UnknownFlags(flags));
        }
        let timestamp = i64::from_be_bytes(ts);
        let (local_deletion_time, rest) = if flags & FLAG_HAS_LDT != 0 {
            let (ldt, rest) = rest
                .split_first_chunk::<8>()
                .ok_or(CellDecodeError::Truncated(bytes.len()))?;
            (Some(i64::from_be_bytes(*ldt)), rest)
        } else {
            (None, rest)
        };
        let (expiry_ms_early, value) = if flags & FLAG_MS_EARLY != 0 {
            let (early, value) = rest
                .split_first_chunk::<2>()
                .ok_or(CellDecodeError::Truncated(bytes.len()))?;
            let early = u16::from_be_bytes(*early);
            if !(1..=999).contains(&early) {
                return Err(CellDecodeError::BadMillis(early));
            }
            (early, value)
        } else {
            (0, rest)
        };
        Ok(CellOf {
            timestamp,
            tombstone: flags & FLAG_TOMBSTONE != 0,
            local_deletion_time,
            expiry_ms_early,
            value,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn any_cell() -> impl Strategy<Value = Cell> {
        (
            any::<i64>(),
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            0u16..1000,
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(timestamp, tombstone, ldt, early, value)| CellOf {
                timestamp,
                tombstone,
                local_deletion_time: ldt,
                // Only an expiring value keeps milliseconds.
                expiry_ms_early: if tombstone || ldt.is_none() { 0 } else { early },
                value: if tombstone {
                    Bytes::new()
                } else {
                    Bytes::from(value)
                },
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(cell in any_cell()) {
            let bytes = cell.encode();
            prop_assert_eq!(bytes.len(), cell.encoded_len());
            let view = CellView::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(view.to_owned_cell(), cell);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CellView::decode(&bytes);
        }
    }

    #[test]
    fn rejects_truncated_and_unknown_formats() {
        assert_eq!(
            CellView::decode(&[1, 0, 0]),
            Err(CellDecodeError::Truncated(3))
        );
        let mut bytes = Cell::live(5, Bytes::from_static(b"v"), None).encode();
        bytes[0] = 9;
        assert_eq!(
            CellView::decode(&bytes),
            Err(CellDecodeError::UnknownFormat(9))
        );
        bytes[0] = 1;
        bytes[1] = 0x80;
        assert_eq!(
            CellView::decode(&bytes),
            Err(CellDecodeError::UnknownFlags(0x80))
        );
        let tomb = Cell::tombstone(5, 7).encode();
        assert_eq!(
            CellView::decode(&tomb[..tomb.len() - 1]),
            Err(CellDecodeError::Truncated(tomb.len() - 1))
        );
    }

    #[test]
    fn millisecond_expiry_rounds_up_for_gc_and_is_exact_for_liveness() {
        let cell = Cell::expiring_at_ms(1, Bytes::from_static(b"v"), 1_500);
        assert_eq!(cell.local_deletion_time, Some(2), "gc never before expiry");
        assert_eq!(cell.expires_at_ms(), Some(1_500));
        assert!(cell.is_live_ms(1_499));
        assert!(!cell.is_live_ms(1_500));
        let whole = Cell::expiring_at_ms(1, Bytes::from_static(b"v"), 3_000);
        assert_eq!(whole, Cell::live(1, Bytes::from_static(b"v"), Some(3)));
        assert_eq!(
            whole.encode().len(),
            cell.encode().len() - 2,
            "no millis kept"
        );
        let back = CellView::decode(&cell.encode())
            .expect("decodes")
            .to_owned_cell();
        assert_eq!(back, cell);
        // Millis out of range, or without a deletion time, do not decode.
        let mut bytes = cell.encode();
        bytes[18..20].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(
            CellView::decode(&bytes),
            Err(CellDecodeError::BadMillis(1000))
        );
        let mut bytes = Cell::live(1, Bytes::from_static(b"v"), None).encode();
        bytes[1] |= FLAG_MS_EARLY;
        assert!(CellView::decode(&bytes).is_err());
    }

    #[test]
    fn liveness() {
        let forever = Cell::live(1, Bytes::from_static(b"v"), None);
        assert!(forever.is_live(i64::MAX));
        let expiring = Cell::live(1, Bytes::from_static(b"v"), Some(100));
        assert!(expiring.is_live(99));
        assert!(!expiring.is_live(100));
        assert!(!Cell::tombstone(1, 100).is_live(0));
    }
}
