//! Cached attribute lookups, shared by the worker's enrichment and the scheduled persona job
//! (same keys, same value, same freshness): a person looked up for a webhook alert is not
//! fetched again for a segment's clustering, and a run resumed after a deadline does not
//! refetch anyone.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::{CioError, CustomerIoApi, IdType, Identifiers};
use crate::store::CacheStore;
use crate::telemetry::chain;

/// The cache key of a person's attributes.
pub fn attribute_cache_key(id_type: IdType, id: &str) -> String {
    format!("cio-attributes#{}#{id}", id_type.as_str())
}

/// How one member's attributes were found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// In the cache (`true`) or fetched from the App API (`false`).
    Attributes { attributes: Map<String, Value>, cached: bool },
    /// Customer.io has no attributes for them (no such person, or nothing stored).
    Nothing { cached: bool },
}

pub struct Lookup<'a> {
    pub api: &'a dyn CustomerIoApi,
    pub cache: &'a dyn CacheStore,
    /// Freshness of what is cached: the enrichment's `cache_ttl_hours`, as both share entries.
    pub ttl: Duration,
    /// The preferred identifier; members without it are looked up by `cio_id`.
    pub id_type: IdType,
}

impl Lookup<'_> {
    /// The identifier a member is looked up by: the preferred one, else `cio_id`.
    pub fn identifier<'m>(&self, member: &'m Identifiers) -> Option<(IdType, &'m str)> {
        let preferred = match self.id_type {
            IdType::Id => member.id.as_deref(),
            IdType::Email => member.email.as_deref(),
            IdType::CioId | IdType::Phone => None,
        };
        match preferred {
            Some(id) => Some((self.id_type, id)),
            None => member.cio_id.as_deref().map(|id| (IdType::CioId, id)),
        }
    }

    pub async fn attributes(&self, id_type: IdType, id: &str, deadline: Instant) -> Result<Found, CioError> {
        let key = attribute_cache_key(id_type, id);
        match self.cache.cached(&key, SystemTime::now()).await {
            Ok(Some(Value::Object(attributes))) if attributes.is_empty() => return Ok(Found::Nothing { cached: true }),
            Ok(Some(Value::Object(attributes))) => return Ok(Found::Attributes { attributes, cached: true }),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %chain(&e), "attribute cache unavailable; asking Customer.io"),
        }
        let attributes = match self.api.customer_attributes(id, id_type, deadline).await? {
            Some(found) => found.attributes,
            // Cached as an empty object, as enrichment does.
            None => Map::new(),
        };
        if let Err(e) = self.cache.cache(&key, &Value::Object(attributes.clone()), self.ttl, SystemTime::now()).await {
            tracing::warn!(error = %chain(&e), "could not cache attributes");
        }
        Ok(if attributes.is_empty() {
            Found::Nothing { cached: false }
        } else {
            Found::Attributes { attributes, cached: false }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::customerio::memory::{Call, MemoryCustomerIo};
    use crate::store::MemoryStore;

    /// Knows one person, `id` 7.
    fn one_person() -> MemoryCustomerIo {
        let api = MemoryCustomerIo::new();
        api.add_person(Identifiers { id: Some("7".into()), ..Identifiers::default() }, json!({"plan_type": "Pro"}));
        api
    }

    fn lookups(api: &MemoryCustomerIo) -> usize {
        api.calls().iter().filter(|c| matches!(c, Call::Attributes { .. })).count()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn nobody_is_cached_as_nothing() {
        let api = one_person();
        let store = MemoryStore::new();
        let lookup = Lookup { api: &api, cache: &store, ttl: Duration::from_secs(3600), id_type: IdType::Id };
        assert_eq!(lookup.attributes(IdType::Id, "404", later()).await.unwrap(), Found::Nothing { cached: false });
        assert_eq!(lookup.attributes(IdType::Id, "404", later()).await.unwrap(), Found::Nothing { cached: true });
        assert_eq!(lookups(&api), 1);
    }

    #[test]
    fn members_without_the_preferred_identifier_fall_back_to_cio_id() {
        let api = one_person();
        let store = MemoryStore::new();
        let lookup = Lookup { api: &api, cache: &store, ttl: Duration::ZERO, id_type: IdType::Id };
        let both = Identifiers { id: Some("7".into()), email: None, cio_id: Some("c7".into()) };
        let no_id = Identifiers { id: None, email: Some("a@x.io".into()), cio_id: Some("c8".into()) };
        assert_eq!(lookup.identifier(&both), Some((IdType::Id, "7")));
        assert_eq!(lookup.identifier(&no_id), Some((IdType::CioId, "c8")));
        assert_eq!(lookup.identifier(&Identifiers::default()), None);
    }
}
