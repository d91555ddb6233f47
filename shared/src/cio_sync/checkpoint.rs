//! Checkpoints: how far a run got, kept in the event store (as cache records that live as long
//! as any record, 8 days) so the next run in the same window resumes instead of starting over.
//!
//! A checkpoint's key holds a fingerprint of the settings it was made under: after a change to
//! `triggers.toml` the next run starts afresh rather than mixing old and new counts.

use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{CacheStore, RECORD_TTL, StoreError};

/// DynamoDB refuses items over 400 KB; a checkpoint stays well below.
pub const MAX_CHECKPOINT_BYTES: usize = 300 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the checkpoint {key} would be {bytes} bytes, more than the event store takes; lower `page_size` or \
         cluster on fewer or coarser attributes"
    )]
    TooLarge { key: String, bytes: usize },
}

/// Reads a checkpoint; one this version cannot read counts as absent (and is logged).
pub async fn load<T: DeserializeOwned>(
    cache: &dyn CacheStore,
    key: &str,
    now: SystemTime,
) -> Result<Option<T>, StoreError> {
    let Some(value) = cache.cached(key, now).await? else { return Ok(None) };
    match serde_json::from_value(value) {
        Ok(checkpoint) => Ok(Some(checkpoint)),
        Err(e) => {
            tracing::warn!(key, error = %e, "a checkpoint could not be read; starting this part over");
            Ok(None)
        }
    }
}

pub async fn save<T: Serialize>(
    cache: &dyn CacheStore,
    key: &str,
    checkpoint: &T,
    now: SystemTime,
) -> Result<(), CheckpointError> {
    let value = serde_json::to_value(checkpoint).unwrap_or(Value::Null);
    let bytes = value.to_string().len();
    if bytes > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge { key: key.to_owned(), bytes });
    }
    cache.cache(key, &value, RECORD_TTL, now).await?;
    Ok(())
}

/// A short, stable digest of some settings (or any identity), in hex.
pub fn fingerprint(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::store::MemoryStore;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Step {
        done: u32,
    }

    #[tokio::test]
    async fn a_checkpoint_round_trips_and_a_foreign_one_reads_as_absent() {
        let store = MemoryStore::new();
        let now = SystemTime::now();
        assert_eq!(load::<Step>(&store, "k", now).await.unwrap(), None);
        save(&store, "k", &Step { done: 3 }, now).await.unwrap();
        assert_eq!(load::<Step>(&store, "k", now).await.unwrap(), Some(Step { done: 3 }));
        store.cache("old", &json!({"something": "else"}), RECORD_TTL, now).await.unwrap();
        assert_eq!(load::<Step>(&store, "old", now).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversized_checkpoint_is_refused_before_the_store_sees_it() {
        let store = MemoryStore::new();
        let big = json!({"x": "y".repeat(MAX_CHECKPOINT_BYTES)});
        let err = save(&store, "k", &big, SystemTime::now()).await.unwrap_err();
        assert!(err.to_string().contains("page_size"), "{err}");
    }

    #[test]
    fn fingerprints_are_stable_and_tell_settings_apart() {
        assert_eq!(fingerprint(&json!({"a": 1})), fingerprint(&json!({"a": 1})));
        assert_ne!(fingerprint(&json!({"a": 1})), fingerprint(&json!({"a": 2})));
        assert_eq!(fingerprint(&json!(1)).len(), 16);
    }
}
