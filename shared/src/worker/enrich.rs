//! Job 3 enrichment: before a rule's action runs, look the person up in Customer.io (App
//! API attributes, cached in the event store so a campaign blast makes one call per person
//! rather than one per event) and classify them into `customer.*` fields that conditions
//! and templates read. When the attributes stay unknown (no id, a failed lookup) a rule's
//! conditions on `customer.*` never count as met: the worker retries a transient failure and
//! otherwise records the job `SKIPPED` with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::customerio::{CustomerIoApi, Found, Lookup, attribute_cache_key};
use crate::domain::{Event, LookedUp};
use crate::rules::EnrichmentConfig;
use crate::store::CacheStore;
use crate::telemetry::chain;

/// What enrichment learned, for the record and for the conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enriched {
    /// Remarks for the job record (a failed lookup, a person not found).
    pub notes: Vec<String>,
    /// Whether the person's attributes are known (looked up, cached, or known to be absent).
    /// When they are not, conditions on `customer.*` cannot be judged, and never count as met.
    pub known: bool,
    /// When not known: why, and whether asking again later may help (Customer.io timed out,
    /// rate-limited or failed on its side) or not (no id to look up, a rejected key).
    pub unknown: Option<Unknown>,
    /// Customer.io has no such person (counted: mostly not-found lookups mean a wrong `id_field`
    /// or `id_type`, not missing people).
    pub not_found: bool,
}

/// Why a person's attributes are unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    pub reason: String,
    pub transient: bool,
}

#[async_trait]
pub trait Enrich: Send + Sync {
    /// Adds `customer` to the event's fields.
    async fn enrich(&self, event: &mut Event, deadline: Instant) -> Enriched;
}

pub struct CioEnricher {
    api: Arc<dyn CustomerIoApi>,
    cache: Arc<dyn CacheStore>,
    config: EnrichmentConfig,
    /// One lock per person being looked up, so events for the same person in one batch
    /// wait for the first lookup and read its cached answer instead of asking again.
    lookups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CioEnricher {
    pub fn new(api: Arc<dyn CustomerIoApi>, cache: Arc<dyn CacheStore>, config: EnrichmentConfig) -> Self {
        CioEnricher { api, cache, config, lookups: Mutex::default() }
    }

    /// The attributes, from the cache or the App API; `Err` says why they are unknown.
    async fn attributes(&self, id: &str, deadline: Instant) -> Result<(Map<String, Value>, &'static str), Unknown> {
        let cache_key = attribute_cache_key(self.config.id_type, id);
        let lock = self.lookups.lock().unwrap_or_else(|p| p.into_inner()).entry(cache_key.clone()).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            self.cached_or_fetched(id, deadline).await
        };
        // Forget the lock once nobody else holds it (the map holds one reference, we the other).
        let mut lookups = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        if lookups.get(&cache_key).is_some_and(|l| Arc::strong_count(l) <= 2) {
            lookups.remove(&cache_key);
        }
        result
    }

    /// The shared cached lookup (`customerio::Lookup`, also used by the scheduled persona job), with
    /// its answer turned into the `customer.lookup` label.
    async fn cached_or_fetched(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<(Map<String, Value>, &'static str), Unknown> {
        let id_type = self.config.id_type;
        let lookup = Lookup { api: self.api.as_ref(), cache: self.cache.as_ref(), ttl: self.config.cache_ttl, id_type };
        match lookup.attributes(id_type, id, deadline).await {
            Ok(Found::Attributes { attributes, cached }) => {
                Ok((attributes, if cached { "cached" } else { "customer.io" }))
            }
            Ok(Found::Nothing { cached }) => Ok((Map::new(), if cached { "cached" } else { "customer.io" })),
            // Cached briefly (`NOT_FOUND_TTL`): a blast asks once, a wrong id guess is not kept.
            Ok(Found::NotFound { .. }) => Ok((Map::new(), "not_found")),
            Err(e) => Err(Unknown {
                reason: format!(
                    "the Customer.io attribute lookup for {} {id} failed ({})",
                    id_type.as_str(),
                    chain(&e)
                ),
                transient: e.is_transient(),
            }),
        }
    }
}

#[async_trait]
impl Enrich for CioEnricher {
    async fn enrich(&self, event: &mut Event, deadline: Instant) -> Enriched {
        let id = event.lookup(&self.config.id_field).map(|v| v.to_text());
        let mut enriched = Enriched::default();
        let (attributes, lookup) = match id {
            None => {
                let reason = format!(
                    "the event has no `{}`, so its Customer.io attributes cannot be looked up",
                    self.config.id_field
                );
                enriched.notes.push(reason.clone());
                enriched.unknown = Some(Unknown { reason, transient: false });
                (Map::new(), "no_id")
            }
            Some(id) => match self.attributes(&id, deadline).await {
                Ok((attributes, source)) => {
                    enriched.known = true;
                    enriched.not_found = source == "not_found";
                    if source == "not_found" {
                        enriched.notes.push(format!(
                            "Customer.io has no attributes for {} {id} (no such person?); classified with defaults",
                            self.config.id_type.as_str()
                        ));
                    }
                    (attributes, source)
                }
                Err(unknown) => {
                    enriched.notes.push(unknown.reason.clone());
                    enriched.unknown = Some(unknown);
                    (Map::new(), "failed")
                }
            },
        };
        event.fields.insert("customer".into(), classify(&self.config, attributes, lookup));
        let persona_type = self.config.persona_type.render(event);
        if let Some(Value::Object(customer)) = event.fields.get_mut("customer") {
            customer.insert("persona_type".into(), Value::String(persona_type));
        }
        enriched
    }
}

/// `customer.<name>` for each classifier (the attribute lower-cased, or its default), plus
/// the raw `attributes` and how they were obtained (`lookup`).
pub fn classify(config: &EnrichmentConfig, attributes: Map<String, Value>, lookup: &str) -> Value {
    let mut customer = Map::new();
    for c in &config.classify {
        let value = attributes
            .get(&c.attribute)
            .filter(|v| !v.is_null())
            .map(|v| LookedUp::Json(v).to_text().trim().to_lowercase())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| c.default.clone());
        customer.insert(c.name.clone(), Value::String(value));
    }
    customer.insert("attributes".into(), Value::Object(attributes));
    customer.insert("lookup".into(), json!(lookup));
    Value::Object(customer)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::customerio::IdType;
    use crate::customerio::memory::{Call, MemoryCustomerIo};
    use crate::customerio::{Identifiers, Lookup};
    use crate::domain::{EventId, Source};
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

    /// The scheduled persona job looks attributes up through the same cache.
    #[tokio::test]
    async fn what_enrichment_cached_is_not_fetched_again() {
        let api = Arc::new(one_person());
        let store = Arc::new(MemoryStore::new());
        let enricher = CioEnricher::new(api.clone(), store.clone(), EnrichmentConfig::default());
        let mut event = Event {
            source: Source::CustomerIo,
            id: EventId::parse("e1").unwrap(),
            name: "unsubscribed".into(),
            user_id: Some("7".into()),
            fields: json!({"user_id": "7"}).as_object().unwrap().clone(),
        };
        enricher.enrich(&mut event, later()).await;
        assert_eq!(lookups(&api), 1);

        let lookup =
            Lookup { api: api.as_ref(), cache: store.as_ref(), ttl: Duration::from_secs(3600), id_type: IdType::Id };
        let found = lookup.attributes(IdType::Id, "7", later()).await.unwrap();
        assert_eq!(
            found,
            Found::Attributes { attributes: json!({"plan_type": "Pro"}).as_object().unwrap().clone(), cached: true }
        );
        assert_eq!(lookups(&api), 1, "the enrichment's cache entry was used");
    }

    #[test]
    fn classifies_like_mavera_job_3_with_defaults() {
        let config = EnrichmentConfig::default();
        let attributes =
            json!({"plan_type": " Enterprise ", "industry": "SaaS", "seats": 40}).as_object().unwrap().clone();
        let c = classify(&config, attributes, "customer.io");
        assert_eq!(c["plan"], "enterprise");
        assert_eq!(c["industry"], "saas");
        assert_eq!(c["usage_tier"], "low", "missing attributes take the default");
        assert_eq!(c["attributes"]["seats"], 40);
        assert_eq!(c["lookup"], "customer.io");
    }
}
