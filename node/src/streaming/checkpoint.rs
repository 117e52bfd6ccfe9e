//! How far a stream got, kept in the `meta` column family so that a node
//! restarted in the middle of a topology change resumes where it stopped
//! instead of starting over.
//!
//! The checkpoint is saved after each page is acknowledged by its target,
//! and a `meta` write fsyncs the write-ahead log: on the receiving node,
//! the cells of every page the checkpoint covers are durable with it.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::identity::NodeId;
use crate::ring::TokenRange;
use crate::storage::{Storage, StorageError};

/// A range copied from a source to a target: (start, end, source, target).
type Done = (i64, i64, NodeId, NodeId);

/// Progress of one operation's streams.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    done: BTreeSet<Done>,
    /// The range being copied, its source and target, and the last key
    /// copied.
    cursor: Option<(i64, i64, NodeId, NodeId, Vec<u8>)>,
    /// The cursor's key is a row key (storage format 2); a checkpoint
    /// saved by an older release holds a plain key, converted on load.
    #[serde(default)]
    row_keys: bool,
    /// The dead node a replacement replaces.
    #[serde(default)]
    pub replaces: Option<NodeId>,
    #[serde(skip)]
    name: String,
}

fn meta_key(operation: &str) -> String {
    format!("stream.{operation}")
}

impl Checkpoint {
    /// The checkpoint of `operation`; `None` when it has none (never
    /// started, or finished).
    pub fn load(engine: &dyn Storage, operation: &str) -> Result<Option<Checkpoint>, StorageError> {
        let Some(bytes) = engine.meta_get(&meta_key(operation))? else {
            return Ok(None);
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        let mut checkpoint: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::Task(format!(
                "the stream checkpoint of {operation} is unreadable: {e}"
            ))
        })?;
        checkpoint.name = operation.to_owned();
        if !checkpoint.row_keys {
            if let Some(cursor) = &mut checkpoint.cursor {
                cursor.4 = crate::storage::key::plain_key(&cursor.4);
            }
            checkpoint.row_keys = true;
        }
        Ok(Some(checkpoint))
    }

    /// A fresh checkpoint of `operation`, saved so that the operation
    /// counts as started.
    pub async fn begin(
        engine: &Arc<dyn Storage>,
        operation: &str,
        replaces: Option<NodeId>,
    ) -> Result<Checkpoint, StorageError> {
        let checkpoint = Checkpoint {
            name: operation.to_owned(),
            replaces,
            row_keys: true,
            ..Checkpoint::default()
        };
        checkpoint.save(engine).await?;
        Ok(checkpoint)
    }

    /// Forgets `operation`'s checkpoint: it finished.
    pub async fn clear(engine: &Arc<dyn Storage>, operation: &str) -> Result<(), StorageError> {
        let (engine, key) = (engine.clone(), meta_key(operation));
        crate::storage::blocking(move || engine.meta_put(&key, b"")).await?
    }

    async fn save(&self, engine: &Arc<dyn Storage>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| StorageError::Task(format!("cannot encode a stream checkpoint: {e}")))?;
        let (engine, key) = (engine.clone(), meta_key(&self.name));
        crate::storage::blocking(move || engine.meta_put(&key, &bytes)).await?
    }

    /// Whether `range` was already copied along `(source, target)`.
    pub fn is_done(&self, range: TokenRange, (source, target): (NodeId, NodeId)) -> bool {
        self.done
            .contains(&(range.start.0, range.end.0, source, target))
    }

    /// Where to resume copying `range` along `(source, target)`: after
    /// this key.
    pub fn resume_after(
        &self,
        range: TokenRange,
        (source, target): (NodeId, NodeId),
    ) -> Option<Bytes> {
        match &self.cursor {
            Some((start, end, from, to, key))
                if (*start, *end, *from, *to) == (range.start.0, range.end.0, source, target)
                    && crate::storage::key::partition_token(key)
                        .is_some_and(|token| range.contains(token)) =>
            {
                Some(Bytes::copy_from_slice(key))
            }
            _ => None,
        }
    }

    /// Records that everything up to `after` of `range` reached the target.
    pub async fn advance(
        &mut self,
        engine: &Arc<dyn Storage>,
        range: TokenRange,
        (source, target): (NodeId, NodeId),
        after: &Bytes,
    ) -> Result<(), StorageError> {
        self.cursor = Some((range.start.0, range.end.0, source, target, after.to_vec()));
        self.save(engine).await
    }

    /// Records that all of `range` reached the target.
    pub async fn finish(
        &mut self,
        engine: &Arc<dyn Storage>,
        range: TokenRange,
        (source, target): (NodeId, NodeId),
    ) -> Result<(), StorageError> {
        self.cursor = None;
        self.done
            .insert((range.start.0, range.end.0, source, target));
        self.save(engine).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Token;
    use crate::storage::MemoryStorage;

    #[tokio::test]
    async fn a_checkpoint_survives_a_reload_and_clears() {
        let engine: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
        assert!(
            Checkpoint::load(engine.as_ref(), "bootstrap")
                .expect("load")
                .is_none()
        );
        let target = (
            NodeId(uuid::Uuid::from_u128(1)),
            NodeId(uuid::Uuid::from_u128(4)),
        );
        let (a, b) = (
            TokenRange::new(Token(i64::MIN), Token(0)),
            TokenRange::new(Token(0), Token(i64::MIN)),
        );
        let mut checkpoint = Checkpoint::begin(&engine, "bootstrap", None)
            .await
            .expect("begin");
        checkpoint.finish(&engine, a, target).await.expect("finish");
        let key = (0u32..)
            .map(|i| Bytes::from(crate::storage::key::plain_key(format!("k{i}").as_bytes())))
            .find(|k| crate::storage::key::partition_token(k).is_some_and(|t| b.contains(t)))
            .expect("a key of b");
        checkpoint
            .advance(&engine, b, target, &key)
            .await
            .expect("advance");
        let loaded = Checkpoint::load(engine.as_ref(), "bootstrap")
            .expect("load")
            .expect("saved");
        assert!(loaded.is_done(a, target));
        assert!(!loaded.is_done(b, target));
        assert_eq!(loaded.resume_after(b, target), Some(key));
        assert_eq!(loaded.resume_after(a, target), None);
        Checkpoint::clear(&engine, "bootstrap")
            .await
            .expect("clear");
        assert!(
            Checkpoint::load(engine.as_ref(), "bootstrap")
                .expect("load")
                .is_none()
        );
    }

    /// A checkpoint an older release saved holds a plain key: it resumes
    /// after that key's row, not after whatever its bytes mean as a row key.
    #[test]
    fn a_checkpoint_of_storage_format_1_resumes_after_the_same_key() {
        let engine = MemoryStorage::default();
        let (source, target) = (
            NodeId(uuid::Uuid::from_u128(1)),
            NodeId(uuid::Uuid::from_u128(4)),
        );
        let plain = b"user:42";
        let range = TokenRange::new(Token(Token::of(plain).0 - 1), Token(Token::of(plain).0 + 1));
        // As format 1 saved it: no `row_keys`, the cursor's plain key.
        let saved = serde_json::json!({
            "done": [],
            "cursor": [range.start.0, range.end.0, source, target, plain.to_vec()],
        });
        engine
            .meta_put("stream.bootstrap", saved.to_string().as_bytes())
            .expect("put");
        let loaded = Checkpoint::load(&engine, "bootstrap")
            .expect("load")
            .expect("saved");
        assert_eq!(
            loaded.resume_after(range, (source, target)),
            Some(Bytes::from(crate::storage::key::plain_key(plain)))
        );
    }
}
