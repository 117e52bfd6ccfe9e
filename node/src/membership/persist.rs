//! Remembering the ring across restarts.
//!
//! A node that restarts must not believe it is alone until gossip tells it
//! otherwise: it would coordinate writes to the wrong replicas. So each node
//! keeps the members that shape the ring (ids, racks, tokens, addresses) in
//! its `meta` column family and starts from them, marked down until gossip
//! hears from them. Its own tokens are kept too: a restarted node owns the
//! same ranges as before.

use std::collections::BTreeSet;

use crate::identity::NodeId;
use crate::ring::Token;
use crate::storage::{Storage, StorageError};

use super::view::Member;

const PEERS_KEY: &str = "ring.members";
const TOKENS_KEY: &str = "ring.local_tokens";
const REMOVED_KEY: &str = "ring.removed";
const INCARNATION_KEY: &str = "gossip.incarnation";

/// This node's gossip identity, kept across restarts (see
/// `gossip::Membership::start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Incarnation {
    /// chitchat's generation: the first start at this gossip address.
    pub generation: u64,
    /// The gossip address it was used at.
    pub gossip_addr: std::net::SocketAddr,
    /// The heartbeat and version the last start began its gossip state
    /// at: the next start begins above it.
    pub base: u64,
}

/// Heartbeats and versions one start may count past its base (only the
/// base is stored, at start): 2^40, a thousand years of gossip rounds. A
/// start whose clock has moved on by more than this since the last one
/// begins at the clock; otherwise above the last base by this much.
const INCARNATION_MARGIN: u64 = 1 << 40;

impl Incarnation {
    /// The identity of a node's first start at `gossip_addr`, at `now`
    /// (Unix microseconds).
    pub fn first(gossip_addr: std::net::SocketAddr, now: u64) -> Incarnation {
        Incarnation {
            generation: now,
            gossip_addr,
            base: now,
        }
    }

    /// The identity of the start after this one: the same at the same
    /// address, its state based above this start's (at `now` if the clock
    /// has moved on further, as it has unless it was set back); a new
    /// identity at another address.
    pub fn next(&self, gossip_addr: std::net::SocketAddr, now: u64) -> Incarnation {
        if gossip_addr != self.gossip_addr {
            return Incarnation::first(gossip_addr, now.max(self.generation.saturating_add(1)));
        }
        Incarnation {
            generation: self.generation,
            gossip_addr,
            base: now.max(self.base.saturating_add(INCARNATION_MARGIN)),
        }
    }
}

/// The gossip identity the last start used, if any.
pub fn load_incarnation(storage: &dyn Storage) -> Result<Option<Incarnation>, PersistError> {
    match storage.meta_get(INCARNATION_KEY)? {
        None => Ok(None),
        Some(bytes) => decode(&bytes, "gossip incarnation").map(Some),
    }
}

/// Remembers the gossip identity of this start.
pub fn save_incarnation(
    storage: &dyn Storage,
    incarnation: &Incarnation,
) -> Result<(), PersistError> {
    storage.meta_put(INCARNATION_KEY, &encode(incarnation, "gossip incarnation")?)?;
    Ok(())
}

/// Why remembered state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("remembered {what} are unreadable ({reason}); the data directory is damaged")]
    Corrupt { what: &'static str, reason: String },
}

/// Reads what [`encode`] stored as `what`.
fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, PersistError> {
    serde_json::from_slice(bytes).map_err(|e| PersistError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// The bytes that remember `value` (JSON).
fn encode<T: serde::Serialize + ?Sized>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, PersistError> {
    serde_json::to_vec(value).map_err(|e| PersistError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

/// The members remembered from the last run (all marked down).
pub fn load_members(storage: &dyn Storage) -> Result<Vec<Member>, PersistError> {
    match storage.meta_get(PEERS_KEY)? {
        None => Ok(Vec::new()),
        Some(bytes) => decode(&bytes, "ring members"),
    }
}

/// Remembers the ring's members.
pub fn save_members(storage: &dyn Storage, members: &[Member]) -> Result<(), PersistError> {
    storage.meta_put(PEERS_KEY, &encode(members, "ring members")?)?;
    Ok(())
}

/// This node's tokens, if it has chosen them before.
pub fn load_tokens(storage: &dyn Storage) -> Result<Option<Vec<Token>>, PersistError> {
    match storage.meta_get(TOKENS_KEY)? {
        None => Ok(None),
        Some(bytes) if bytes.is_empty() => Ok(None),
        Some(bytes) => {
            let raw: Vec<i64> = decode(&bytes, "local tokens")?;
            Ok(Some(raw.into_iter().map(Token).collect()))
        }
    }
}

/// Remembers this node's tokens.
pub fn save_tokens(storage: &dyn Storage, tokens: &[Token]) -> Result<(), PersistError> {
    let raw: Vec<i64> = tokens.iter().map(|t| t.0).collect();
    storage.meta_put(TOKENS_KEY, &encode(&raw, "local tokens")?)?;
    Ok(())
}

/// Forgets this node's tokens (a join that withdrew chooses again).
pub fn clear_tokens(storage: &dyn Storage) -> Result<(), PersistError> {
    storage.meta_put(TOKENS_KEY, b"")?;
    Ok(())
}

/// The nodes this node knows were removed from the cluster.
pub fn load_removed(storage: &dyn Storage) -> Result<BTreeSet<NodeId>, PersistError> {
    match storage.meta_get(REMOVED_KEY)? {
        None => Ok(BTreeSet::new()),
        Some(bytes) => decode(&bytes, "removed nodes"),
    }
}

/// Remembers the removed nodes.
pub fn save_removed(storage: &dyn Storage, removed: &BTreeSet<NodeId>) -> Result<(), PersistError> {
    storage.meta_put(REMOVED_KEY, &encode(removed, "removed nodes")?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn members_and_tokens_round_trip() {
        let storage = MemoryStorage::default();
        assert!(load_members(&storage).expect("load").is_empty());
        assert_eq!(load_tokens(&storage).expect("load"), None);
        let member = Member {
            gossip_addr: "127.0.0.1:7402".parse().expect("addr"),
            client_addr: Some("127.0.0.1:7400".parse().expect("addr")),
            generation: 9,
            ..Member::normal(NodeId(uuid::Uuid::from_u128(7)), vec![Token(1), Token(-5)])
        };
        save_members(&storage, std::slice::from_ref(&member)).expect("save");
        let loaded = load_members(&storage).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].tokens, member.tokens);
        assert!(!loaded[0].alive, "remembered members start down");
        assert_eq!(
            loaded[0].generation, 9,
            "remembered with its generation, to tell older gossip from newer"
        );
        save_tokens(&storage, &[Token(3)]).expect("save");
        assert_eq!(load_tokens(&storage).expect("load"), Some(vec![Token(3)]));
        storage.meta_put(TOKENS_KEY, b"garbage").expect("put");
        assert!(matches!(
            load_tokens(&storage),
            Err(PersistError::Corrupt { .. })
        ));
    }
}
