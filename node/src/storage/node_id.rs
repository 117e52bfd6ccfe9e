//! The node id kept in the data directory: made once, read at every start.

use super::{Storage, StorageError};
use crate::identity::NodeId;

const NODE_ID_KEY: &str = "node_id";

/// Why the stored identity could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored node id {0:?} is not a UUID; the data directory is damaged")]
    Corrupt(String),
}

/// The id stored in `storage`, or a new one, stored before returning.
pub fn load_or_create(storage: &dyn Storage) -> Result<NodeId, IdentityError> {
    if let Some(bytes) = storage.meta_get(NODE_ID_KEY)? {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        return text.parse().map_err(|_| IdentityError::Corrupt(text));
    }
    let id = NodeId(uuid::Uuid::new_v4());
    assign(storage, id)?;
    Ok(id)
}

/// Stores `id` as the node id of `storage` (the simulation names its
/// nodes so that a run replays exactly).
pub fn assign(storage: &dyn Storage, id: NodeId) -> Result<(), IdentityError> {
    storage.meta_put(NODE_ID_KEY, id.to_string().as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn created_once_then_kept() {
        let storage = MemoryStorage::default();
        let first = load_or_create(&storage).expect("create");
        assert_eq!(load_or_create(&storage).expect("load"), first);
        assert_eq!(first.short().len(), 8);
    }

    #[test]
    fn corrupt_id_is_an_error() {
        let storage = MemoryStorage::default();
        storage.meta_put(NODE_ID_KEY, b"not-a-uuid").expect("put");
        assert!(matches!(
            load_or_create(&storage),
            Err(IdentityError::Corrupt(_))
        ));
    }
}
