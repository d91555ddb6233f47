//! `triggers.toml`, loaded whole and validated once at start-up: the `[[rule]]`s (which
//! webhooks make Mavera do what), `[enrichment]` (how enriching rules look people up) and
//! `[cio_sync.*]` (the scheduled jobs). Each table is read by its owner the same way
//! (`toml_table`): serde into a raw struct that refuses unknown keys, then `validate`. A bad
//! file is an error naming the rule or table and the field:
//!
//! - a rule's field by the key itself (``rule `r`, field `promt` ``), a condition's by its
//!   position (`conditions[1].*`);
//! - a table's field by its path within the table (``[cio_sync.attribute_personas], field
//!   `cluster_by[0].buckets` ``, ``[enrichment], field `cache_ttl_hours` ``).

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::cio_sync::{self, SyncConfig};
use crate::config::{Vars, optional, vars};
use crate::rules::{self, EnrichmentConfig, RawEnrichment, Rules};
use crate::{toml_table, worker};

/// The repository's `triggers.toml`, compiled into every binary so a deployed function needs
/// no file beside it. `TRIGGERS_PATH` overrides it.
pub const EMBEDDED_TRIGGERS: &str = include_str!("../../triggers.toml");

#[derive(Debug, thiserror::Error)]
pub enum TriggersError {
    #[error("cannot read the rules file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {source}")]
    Syntax { origin: String, source: toml::de::Error },
    #[error("{origin}: rule `{rule}`, field `{field}`: {problem}")]
    Rule { origin: String, rule: String, field: String, problem: String },
    #[error("{origin}: [enrichment], field `{field}`: {problem}")]
    Enrichment { origin: String, field: String, problem: String },
    #[error("{origin}: [{section}], field `{field}`: {problem}")]
    CioSync { origin: String, section: &'static str, field: String, problem: String },
}

/// Everything `triggers.toml` says. Ingest needs only `rules`; the worker `rules`,
/// `enrichment` and the templates of `cio_sync`; the `cio-sync` function `cio_sync`.
#[derive(Debug, Clone)]
pub struct Triggers {
    pub rules: Rules,
    /// Defaults when the file has no `[enrichment]`.
    pub enrichment: EnrichmentConfig,
    /// Both jobs off when the file has no `[cio_sync.*]`.
    pub cio_sync: SyncConfig,
    origin: String,
}

/// The file as written: each table is read on by its owner.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Table>,
    enrichment: Option<toml::Table>,
    cio_sync: Option<toml::Table>,
}

impl Triggers {
    /// Parses and validates the whole file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TriggersError> {
        let raw: RawFile =
            toml::from_str(text).map_err(|source| TriggersError::Syntax { origin: origin.to_owned(), source })?;
        let enrichment = match raw.enrichment {
            None => EnrichmentConfig::default(),
            Some(table) => toml_table::read::<RawEnrichment>(table)
                .map_err(|e| (e.field(), e.message))
                .and_then(RawEnrichment::validate)
                .map_err(|(field, problem)| TriggersError::Enrichment { origin: origin.to_owned(), field, problem })?,
        };
        let cio_sync = match raw.cio_sync {
            None => SyncConfig::default(),
            Some(table) => cio_sync::parse_config(table).map_err(|(section, (field, problem))| {
                TriggersError::CioSync { origin: origin.to_owned(), section, field, problem }
            })?,
        };
        let rules = rules::parse(raw.rule).map_err(|e| TriggersError::Rule {
            origin: origin.to_owned(),
            rule: e.rule,
            field: e.field,
            problem: e.problem,
        })?;
        Ok(Triggers { rules: Rules::new(rules), enrichment, cio_sync, origin: origin.to_owned() })
    }

    /// The file at `TRIGGERS_PATH`, else the shipped one.
    pub fn from_vars(vars: &dyn Vars) -> Result<Self, TriggersError> {
        match optional(vars, vars::TRIGGERS_PATH) {
            Some(path) => Triggers::load(Path::new(&path)),
            None => Triggers::embedded(),
        }
    }

    /// The shipped file.
    pub fn embedded() -> Result<Self, TriggersError> {
        Triggers::parse(EMBEDDED_TRIGGERS, "triggers.toml (embedded)")
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, TriggersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TriggersError::Read { path: path.display().to_string(), source })?;
        Triggers::parse(&text, &path.display().to_string())
    }

    /// The worker's part: its rules, `[enrichment]`, and the templates of the scheduled jobs
    /// that are on.
    pub fn for_worker(&self) -> worker::TriggerConfig {
        worker::TriggerConfig {
            rules: Arc::new(self.rules.clone()),
            lookup: self.enrichment.clone(),
            scheduled: self.cio_sync.for_worker(),
        }
    }

    /// The `cio-sync` function's part: `[cio_sync.*]`, and the attribute cache's lifetime.
    pub fn for_cio_sync(&self) -> cio_sync::TriggerConfig {
        cio_sync::TriggerConfig { jobs: self.cio_sync.clone(), attribute_ttl: self.enrichment.cache_ttl }
    }

    /// Where the file came from: its path, or `triggers.toml (embedded)`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[[rule]]
name = "r"
source = "segment"
event = "e"
action = "research"
research = { prompt = "p {x}" }
"#;

    #[test]
    fn cio_sync_errors_name_the_table_and_the_field() {
        let err = Triggers::parse(&format!("{OK}\n[cio_sync.attribute_personas]\nclusters = 0"), "t.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.toml: [cio_sync.attribute_personas], field `clusters`: 0 is outside 1 to 20"),
            "{err}"
        );
        let triggers = Triggers::parse(OK, "t.toml").unwrap();
        assert!(!triggers.cio_sync.any_enabled(), "without the tables both jobs are off");
    }

    #[test]
    fn syntax_errors_carry_the_file_name() {
        let err = Triggers::parse("[[rule]\nname=", "t.toml").unwrap_err();
        assert!(matches!(err, TriggersError::Syntax { .. }));
        assert!(err.to_string().starts_with("t.toml:"), "{err}");
    }

    #[test]
    fn enrichment_errors_name_the_field() {
        let err = Triggers::parse("[enrichment]\ncache_ttl_hours = 500", "t.toml").unwrap_err();
        assert!(err.to_string().starts_with("t.toml: [enrichment], field `cache_ttl_hours`: 500 is outside"), "{err}");
        let err = Triggers::parse("[enrichment]\nid_fild = \"x\"", "t.toml").unwrap_err();
        assert!(err.to_string().starts_with("t.toml: [enrichment], field `id_fild`: unknown field"), "{err}");
    }

    #[test]
    fn the_shipped_commented_deliver_example_is_valid_once_uncommented() {
        let start = EMBEDDED_TRIGGERS.find("# deliver = [").expect("the shipped file shows `deliver`");
        let end = start + EMBEDDED_TRIGGERS[start..].find("# --- Customer.io").expect("the next section");
        let example: String = EMBEDDED_TRIGGERS[start..end]
            .lines()
            .map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix('#')).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("{}\n{example}\n{}", &EMBEDDED_TRIGGERS[..start], &EMBEDDED_TRIGGERS[end..]);
        let triggers = Triggers::parse(&text, "uncommented").unwrap();
        let churn = triggers.rules.iter().find(|r| r.name.as_str() == "segment-churn-signal").unwrap();
        let names: Vec<&str> = churn.deliver.iter().map(|t| t.name().as_str()).collect();
        assert_eq!(names, ["slack", "customerio", "segment", "webhook"]);
        assert!(Triggers::embedded().unwrap().rules.iter().all(|r| r.deliver.is_empty()), "shipped off");
    }

    #[test]
    fn unknown_tables_are_refused() {
        assert!(matches!(Triggers::parse("[rules]\nx = 1", "t.toml"), Err(TriggersError::Syntax { .. })));
    }
}
