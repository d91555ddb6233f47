//! Job 3 enrichment: before a rule's action runs, look the person up in Customer.io (App
//! API attributes, cached in the event store so a campaign blast makes one call per person
//! rather than one per event) and classify them into `customer.*` fields that conditions
//! and templates read. A failed lookup never fails the job: it runs with what is known,
//! and the record says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::customerio::CustomerIoApi;
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
    /// When they are not, conditions on `customer.*` cannot be judged and are not applied.
    pub known: bool,
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

    /// The attributes, from the cache or the App API; `Err` is a note for the record.
    async fn attributes(&self, id: &str, deadline: Instant) -> Result<(Map<String, Value>, &'static str), String> {
        let id_type = self.config.id_type.as_str();
        let cache_key = format!("cio-attributes#{id_type}#{id}");
        let lock = self.lookups.lock().unwrap_or_else(|p| p.into_inner()).entry(cache_key.clone()).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            self.cached_or_fetched(&cache_key, id, deadline).await
        };
        // Forget the lock once nobody else holds it (the map holds one reference, we the other).
        let mut lookups = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        if lookups.get(&cache_key).is_some_and(|l| Arc::strong_count(l) <= 2) {
            lookups.remove(&cache_key);
        }
        result
    }

    async fn cached_or_fetched(
        &self,
        cache_key: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<(Map<String, Value>, &'static str), String> {
        let id_type = self.config.id_type.as_str();
        match self.cache.cached(cache_key, SystemTime::now()).await {
            Ok(Some(Value::Object(attributes))) => return Ok((attributes, "cached")),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %chain(&e), "attribute cache unavailable; asking Customer.io"),
        }
        let (attributes, source) = match self.api.customer_attributes(id, self.config.id_type, deadline).await {
            Ok(Some(found)) => (found.attributes, "customer.io"),
            // Cached too: a deleted person stays deleted for the length of a blast.
            Ok(None) => (Map::new(), "not_found"),
            Err(e) => {
                return Err(format!(
                    "Customer.io attribute lookup for {id_type} {id} failed ({}); ran with what the event says",
                    chain(&e)
                ));
            }
        };
        let value = Value::Object(attributes.clone());
        if let Err(e) = self.cache.cache(cache_key, &value, self.config.cache_ttl, SystemTime::now()).await {
            tracing::warn!(error = %chain(&e), "could not cache attributes");
        }
        Ok((attributes, source))
    }
}

#[async_trait]
impl Enrich for CioEnricher {
    async fn enrich(&self, event: &mut Event, deadline: Instant) -> Enriched {
        let id = event.lookup(&self.config.id_field).map(|v| v.to_text());
        let mut enriched = Enriched::default();
        let (attributes, lookup) = match id {
            None => {
                enriched.notes.push(format!(
                    "the event has no `{}`, so Customer.io attributes were not looked up",
                    self.config.id_field
                ));
                (Map::new(), "no_id")
            }
            Some(id) => match self.attributes(&id, deadline).await {
                Ok((attributes, source)) => {
                    enriched.known = true;
                    if source == "not_found" {
                        enriched.notes.push(format!(
                            "Customer.io has no person with {} {id}; classified with defaults",
                            self.config.id_type.as_str()
                        ));
                    }
                    (attributes, source)
                }
                Err(note) => {
                    enriched.notes.push(note);
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
    use super::*;

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
