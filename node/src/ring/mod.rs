//! The ring: where keys live and which nodes hold them.
//!
//! Pure code, no I/O.
//! - [`Token`]: a key's position (murmur3, as Cassandra's partitioner).
//! - [`TokenRange`]: `(start, end]` on the ring, the unit of ownership.
//! - [`Ring`]: every node's tokens and the replicas of each range.
//! - [`placement`]: next N distinct nodes clockwise, racks spread first.
//! - [`allocation`]: tokens for a joining node that keep ownership balanced.

pub mod allocation;
mod map;
pub mod placement;
mod range;
mod token;

pub use allocation::allocate_tokens;
pub use map::{Ring, RingMember};
pub use range::{RING_SIZE, TokenRange};
pub use token::Token;
