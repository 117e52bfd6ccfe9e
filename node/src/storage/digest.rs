//! Digests of cells, for digest reads: replicas send 16 bytes instead of a
//! value, and the coordinator compares them with the digest of the full
//! answer it got. Equal cells have equal digests; different cells have
//! different digests with overwhelming probability (128-bit murmur3).

use bytes::Bytes;

use super::cell::Cell;

/// The digest of what a replica holds for a key (empty for nothing).
pub fn digest(cell: Option<&Cell>) -> Bytes {
    match cell {
        None => Bytes::new(),
        Some(cell) => {
            let encoded = cell.encode();
            let mut cursor = std::io::Cursor::new(encoded);
            // Hashing an in-memory buffer cannot fail.
            let hash = murmur3::murmur3_x64_128(&mut cursor, 0).unwrap_or_default();
            Bytes::copy_from_slice(&hash.to_le_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_versions_apart() {
        let a = Cell::live(1, Bytes::from_static(b"v"), None);
        let b = Cell::live(2, Bytes::from_static(b"v"), None);
        assert_eq!(digest(Some(&a)), digest(Some(&a.clone())));
        assert_ne!(digest(Some(&a)), digest(Some(&b)));
        assert_ne!(digest(Some(&a)), digest(None));
        assert_eq!(digest(None).len(), 0);
        assert_eq!(digest(Some(&a)).len(), 16);
    }
}
