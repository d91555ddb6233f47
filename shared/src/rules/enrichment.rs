//! How the worker looks a person up in Customer.io before a rule's action runs, and how it
//! classifies them. The `[enrichment]` table of `triggers.toml`; every key has a default
//! that follows Mavera's Customer.io job 3 (`plan_type`, `industry`, `usage_tier`).

use std::time::Duration;

use serde::Deserialize;

use crate::customerio::IdType;
use crate::domain::FieldPath;
use crate::template::Template;

/// `customer.<name>` = the lower-cased value of `attribute`, or `default` when missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    pub name: String,
    pub attribute: String,
    pub default: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrichmentConfig {
    /// The event field holding the person's Customer.io identifier.
    pub id_field: FieldPath,
    pub id_type: IdType,
    /// How long looked-up attributes are reused, so a campaign blast makes one App API
    /// call per person rather than per event.
    pub cache_ttl: Duration,
    pub classify: Vec<Classifier>,
    /// Rendered over the enriched event into `customer.persona_type`.
    pub persona_type: Template,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        RawEnrichment::default().validate().expect("the defaults are valid")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnrichment {
    id_field: Option<String>,
    id_type: Option<IdType>,
    cache_ttl_hours: Option<f64>,
    persona_type: Option<String>,
    classify: Option<std::collections::BTreeMap<String, RawClassifier>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClassifier {
    attribute: String,
    default: Option<String>,
}

impl RawEnrichment {
    /// Validates; errors name the key within `[enrichment]`.
    pub(crate) fn validate(self) -> Result<EnrichmentConfig, (String, String)> {
        let id_field = FieldPath::parse(self.id_field.as_deref().unwrap_or("user_id"))
            .map_err(|e| ("id_field".to_owned(), e.to_string()))?;
        let hours = self.cache_ttl_hours.unwrap_or(24.0);
        if !(0.0..=24.0 * 8.0).contains(&hours) {
            return Err(("cache_ttl_hours".into(), format!("{hours} is outside 0 to 192 (the 8-day record lifetime)")));
        }
        let classify = match self.classify {
            None => vec![
                Classifier { name: "plan".into(), attribute: "plan_type".into(), default: "free".into() },
                Classifier { name: "industry".into(), attribute: "industry".into(), default: "general".into() },
                Classifier { name: "usage_tier".into(), attribute: "usage_tier".into(), default: "low".into() },
            ],
            Some(map) => map
                .into_iter()
                .map(|(name, raw)| {
                    if name == "attributes" || name == "persona_type" || name == "lookup" {
                        return Err((
                            format!("classify.{name}"),
                            format!("`customer.{name}` is set by the lookup itself; pick another name"),
                        ));
                    }
                    if raw.attribute.trim().is_empty() {
                        return Err((format!("classify.{name}.attribute"), "is empty".into()));
                    }
                    Ok(Classifier {
                        name,
                        attribute: raw.attribute,
                        default: raw.default.unwrap_or_else(|| "unknown".into()),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let persona_type = Template::parse(
            self.persona_type
                .as_deref()
                .unwrap_or("{customer.plan} plan customer in {customer.industry} with {customer.usage_tier} usage"),
        )
        .map_err(|e| ("persona_type".to_owned(), e.to_string()))?;
        Ok(EnrichmentConfig {
            id_field,
            id_type: self.id_type.unwrap_or(IdType::Id),
            cache_ttl: Duration::from_secs_f64(hours * 3600.0),
            classify,
            persona_type,
        })
    }
}
