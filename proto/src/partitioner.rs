//! The partitioner: where a key sits on the ring.
//!
//! Part of the protocol because clients route requests to a key's replicas
//! themselves and must compute exactly the tokens the nodes compute.
//!
//! A key's token is the first 64 bits (`h1`) of its murmur3 x64_128 hash
//! with seed 0, read as a signed integer, as Cassandra's
//! `Murmur3Partitioner` does. `i64::MIN` is reserved as the ring's minimum
//! ("before every token"), so a hash landing on it is moved to `i64::MAX`,
//! again as Cassandra does.
//!
//! CAVEATS: Cassandra's Java hash sign-extends tail bytes ≥ 0x80, so for keys
//! whose last `len % 16` bytes hold such a byte its tokens differ from the
//! reference murmur3 used here. ringkv agrees with itself everywhere; it
//! does not promise Cassandra's token values.

/// The token of a key.
pub fn token_of(key: &[u8]) -> i64 {
    let mut cursor = std::io::Cursor::new(key);
    // Reading from an in-memory cursor cannot fail.
    let hash = murmur3::murmur3_x64_128(&mut cursor, 0).unwrap_or_default();
    let h1 = hash as u64 as i64;
    if h1 == i64::MIN { i64::MAX } else { h1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_half_of_murmur3_x64_128() {
        // murmur3_x64_128("hello", seed 0): h1 = 0xcbd8a7b341bd9b02,
        // h2 = 0x5b1e906a48ae1d19 (computed with an independent implementation).
        assert_eq!(token_of(b"hello"), 0xcbd8_a7b3_41bd_9b02_u64 as i64);
        assert_eq!(token_of(b"user:42"), token_of(b"user:42"));
        assert_ne!(token_of(b"user:42"), token_of(b"user:43"));
    }
}
