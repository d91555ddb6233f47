//! Cached attribute lookups, shared by the worker's enrichment and the scheduled persona job
//! (same keys, same value, same freshness): a person looked up for a webhook alert is not
//! fetched again for a segment's clustering, and a run resumed after a deadline does not
//! refetch anyone.
//!
//! "No such person" is cached too, but only for [`NOT_FOUND_TTL`]: a wrong identifier guess
//! (an id type the workspace does not use, a `cio_id` spelling) then costs a blast one call
//! per person rather than a day of silently empty attributes, and a person created a minute
//! after their first event is found soon.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::{CioError, CustomerIoApi, IdType, Identifiers, bare_cio_id};
use crate::store::CacheStore;
use crate::telemetry::chain;

/// How long "Customer.io has no such person" is remembered (at most the cache's own TTL).
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(10 * 60);

/// The cache key of a person's attributes. A `cio_id` is keyed without its `cio_` prefix, so
/// both spellings share one entry.
pub fn attribute_cache_key(id_type: IdType, id: &str) -> String {
    let id = if id_type == IdType::CioId { bare_cio_id(id) } else { id };
    format!("cio-attributes#{}#{id}", id_type.as_str())
}

/// How one member's attributes were found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// In the cache (`true`) or fetched from the App API (`false`).
    Attributes { attributes: Map<String, Value>, cached: bool },
    /// Customer.io knows the person but stores no attributes for them.
    Nothing { cached: bool },
    /// Customer.io has no such person (404, in every `cio_id` spelling for a `cio_id`).
    NotFound { cached: bool },
}

impl Found {
    /// The attributes, empty when there are none or nobody was found.
    pub fn into_attributes(self) -> Map<String, Value> {
        match self {
            Found::Attributes { attributes, .. } => attributes,
            Found::Nothing { .. } | Found::NotFound { .. } => Map::new(),
        }
    }

    pub fn cached(&self) -> bool {
        match self {
            Found::Attributes { cached, .. } | Found::Nothing { cached } | Found::NotFound { cached } => *cached,
        }
    }
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
            // How "no such person" is cached: never an attribute map.
            Ok(Some(Value::Null)) => return Ok(Found::NotFound { cached: true }),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %chain(&e), "attribute cache unavailable; asking Customer.io"),
        }
        let (value, ttl, found) = match self.api.customer_attributes(id, id_type, deadline).await? {
            Some(found) if found.attributes.is_empty() => {
                (Value::Object(Map::new()), self.ttl, Found::Nothing { cached: false })
            }
            Some(found) => (
                Value::Object(found.attributes.clone()),
                self.ttl,
                Found::Attributes { attributes: found.attributes, cached: false },
            ),
            None => (Value::Null, self.ttl.min(NOT_FOUND_TTL), Found::NotFound { cached: false }),
        };
        if let Err(e) = self.cache.cache(&key, &value, ttl, SystemTime::now()).await {
            tracing::warn!(error = %chain(&e), "could not cache attributes");
        }
        Ok(found)
    }
}

/// Not-found lookups in a run: counted, and a warning when most lookups found nobody, which
/// points at the identifier rather than at the people.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupTally {
    pub lookups: u64,
    pub not_found: u64,
}

impl LookupTally {
    /// Below this many lookups, "most" says nothing.
    pub const MIN_LOOKUPS_TO_JUDGE: u64 = 5;

    pub fn add(&mut self, found: &Found) {
        self.lookups += 1;
        if matches!(found, Found::NotFound { .. }) {
            self.not_found += 1;
        }
    }

    /// What to tell the operator when most lookups found nobody; `id_type` is what was asked.
    pub fn warning(&self, id_type: IdType) -> Option<String> {
        let most = self.lookups >= Self::MIN_LOOKUPS_TO_JUDGE && self.not_found * 2 > self.lookups;
        most.then(|| {
            format!(
                "Customer.io found nobody for {} of {} attribute lookups (by {}): check that the identifier is one your \
                 workspace uses (`id_type`, and `id_field` for enrichment) and that CIO_REGION is your account's region",
                self.not_found,
                self.lookups,
                id_type.as_str()
            )
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
    async fn nobody_is_cached_as_not_found_but_only_briefly() {
        let api = one_person();
        let store = MemoryStore::new();
        let lookup = Lookup { api: &api, cache: &store, ttl: Duration::from_secs(86_400), id_type: IdType::Id };
        assert_eq!(lookup.attributes(IdType::Id, "404", later()).await.unwrap(), Found::NotFound { cached: false });
        assert_eq!(lookup.attributes(IdType::Id, "404", later()).await.unwrap(), Found::NotFound { cached: true });
        assert_eq!(lookups(&api), 1);
        let key = attribute_cache_key(IdType::Id, "404");
        let soon = SystemTime::now() + NOT_FOUND_TTL - Duration::from_secs(5);
        assert_eq!(store.cached(&key, soon).await.unwrap(), Some(Value::Null));
        let later_on = SystemTime::now() + NOT_FOUND_TTL + Duration::from_secs(5);
        assert_eq!(store.cached(&key, later_on).await.unwrap(), None, "asked again after {NOT_FOUND_TTL:?}");
        // Someone found stays for the whole TTL.
        lookup.attributes(IdType::Id, "7", later()).await.unwrap();
        assert!(store.cached(&attribute_cache_key(IdType::Id, "7"), later_on).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_person_without_attributes_is_not_a_missing_person() {
        let api = MemoryCustomerIo::new();
        api.add_person(Identifiers { id: Some("8".into()), ..Identifiers::default() }, json!({}));
        let store = MemoryStore::new();
        let lookup = Lookup { api: &api, cache: &store, ttl: Duration::from_secs(3600), id_type: IdType::Id };
        assert_eq!(lookup.attributes(IdType::Id, "8", later()).await.unwrap(), Found::Nothing { cached: false });
        assert_eq!(lookup.attributes(IdType::Id, "8", later()).await.unwrap(), Found::Nothing { cached: true });
    }

    #[test]
    fn both_cio_id_spellings_share_a_cache_entry() {
        assert_eq!(attribute_cache_key(IdType::CioId, "cio_a3000001"), attribute_cache_key(IdType::CioId, "a3000001"));
        assert_ne!(attribute_cache_key(IdType::Id, "cio_a3000001"), attribute_cache_key(IdType::Id, "a3000001"));
    }

    #[test]
    fn most_lookups_finding_nobody_is_a_warning() {
        let mut tally = LookupTally::default();
        let nobody = Found::NotFound { cached: false };
        let someone = Found::Nothing { cached: true };
        for _ in 0..3 {
            tally.add(&nobody);
        }
        assert_eq!(tally.warning(IdType::CioId), None, "3 lookups are too few to judge");
        tally.add(&someone);
        tally.add(&someone);
        assert_eq!((tally.lookups, tally.not_found), (5, 3));
        let warning = tally.warning(IdType::CioId).unwrap();
        assert!(
            warning.contains("3 of 5") && warning.contains("by cio_id") && warning.contains("id_type"),
            "{warning}"
        );
        tally.add(&someone);
        assert_eq!(tally.warning(IdType::CioId), None, "3 of 6 is not most");
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
