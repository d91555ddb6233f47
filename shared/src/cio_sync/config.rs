//! The `[cio_sync.campaign_strategy]` and `[cio_sync.attribute_personas]` tables of
//! `triggers.toml`: what the scheduled `cio-sync` jobs read from Customer.io and what they ask
//! Mavera for. Both jobs are off unless `enabled = true`; every other key has a default.
//!
//! Read as every table is (`toml_table`): serde into raw structs that refuse unknown keys,
//! then `validate`. An error names the table and the field by its path within the table
//! (`cluster_by[0].buckets`). Templates may only name the fields the worker provides for the
//! job (listed in each error), so a typo is caught at start-up rather than sent to Mavera as
//! `unknown`. The templates themselves are the worker's types: it renders them.

use serde::Deserialize;

use crate::customerio::IdType;
use crate::domain::{FieldPath, PersonaName, RankBy};
use crate::mavera::{PersonaType, PipelineType};
use crate::template::{JsonTemplate, MISSING, Template};
use crate::toml_table::{self, Number, TableError, Whole};
use crate::worker::{
    AnalysisTemplates, CLUSTER_FIELDS, ClusterPersonaTemplate, GenerateStep, MAVE_FIELDS, PROMPT_FIELDS, ScheduledJobs,
};

pub const CAMPAIGN_STRATEGY: &str = "cio_sync.campaign_strategy";
pub const ATTRIBUTE_PERSONAS: &str = "cio_sync.attribute_personas";

/// Job and cluster records live 8 days, so a run window is at most 7: within it, the record
/// of what ran is still there to stop a second run.
pub const MAX_EVERY_DAYS: i64 = 7;

const DEFAULT_PROMPT: &str = "These are our {winner_count} best Customer.io campaigns by {rank_by} \
(at least {min_delivered} messages delivered) from {window.start} to {window.end}, out of \
{campaigns_considered} running campaigns:\n{winners}\n\nWhat do these winning messages have in \
common (audience, timing, channel, offer, tone, structure)? State the shared patterns as concrete \
rules a copywriter can follow to write new variations that extend the winning formula.";
const DEFAULT_TITLE: &str = "Customer.io message variations, {window.start} to {window.end}";
const DEFAULT_PERSONA_NAME: &str = "Customer.io cluster: {cluster.label}";
const DEFAULT_PERSONA_DESCRIPTION: &str = "{cluster.size} of the {members} people read from Customer.io \
segment {segment_id} ({cluster.share}) share {cluster.label}. {distribution}";
const EVERY_DAYS_WHY: &str = "records of what ran live 8 days, so a longer window could not be remembered";

/// Both scheduled jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    pub campaign_strategy: CampaignStrategyConfig,
    pub attribute_personas: AttributePersonasConfig,
}

impl Default for SyncConfig {
    fn default() -> Self {
        RawSyncConfig::default().validate().expect("the defaults are valid")
    }
}

/// Job 1: rank running campaigns, ask Mave what the winners share, ask Generate for variations.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignStrategyConfig {
    pub enabled: bool,
    /// One analysis per run window of this many days (windows start on Mondays, UTC).
    pub every_days: u32,
    /// Metrics cover this many whole UTC days before the run window starts.
    pub metrics_days: u32,
    /// Customer.io's `tz` for the metric periods (e.g. `Europe/Berlin`); Customer.io's own
    /// default (Eastern time) when unset.
    pub time_zone: Option<String>,
    /// Only this channel's messages (`email`, `push`, …); every channel when unset.
    pub message_type: Option<String>,
    pub rank_by: RankBy,
    pub top_n: usize,
    /// Campaigns with fewer deliveries in the window are not ranked (tiny samples win by luck).
    pub min_delivered: u64,
    /// `prompt`, `workspace_id` and `generate`: what the worker renders a queued analysis with.
    pub analysis: AnalysisTemplates,
}

/// Job 2: cluster a segment's members by their attributes, one persona per large cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributePersonasConfig {
    pub enabled: bool,
    pub every_days: u32,
    /// The segment whose members are read; required when enabled.
    pub segment_id: Option<u64>,
    /// Which identifier attributes are looked up by; members without it are looked up by `cio_id`.
    pub id_type: IdType,
    pub cluster_by: Vec<ClusterAttribute>,
    /// Attributes whose spread within each cluster goes into `{distribution}`.
    pub describe: Vec<String>,
    pub max_members: usize,
    /// Members read per membership page; also how much work a deadline can cut off.
    pub page_size: u32,
    /// How many of the largest clusters become personas (300 credits each).
    pub clusters: usize,
    pub min_cluster_size: u64,
    /// What the worker renders a queued cluster's persona with.
    pub persona: ClusterPersonaTemplate,
}

/// One attribute clusters are formed on. Text is lower-cased; with `buckets`, numbers fall
/// into ranges between the boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterAttribute {
    /// The name templates use: `{cluster.<name>}`.
    pub name: String,
    /// The Customer.io attribute.
    pub attribute: String,
    /// Ascending boundaries; `None` for a categorical attribute.
    pub buckets: Option<Vec<f64>>,
    /// The value of members without the attribute (or with a non-number where buckets are set).
    pub default: String,
}
impl ClusterAttribute {
    /// The cluster value of one attribute value: lower-cased text, or the bucket a number is in.
    pub fn value_of(&self, value: Option<&serde_json::Value>) -> String {
        use serde_json::Value;
        let text = match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_lowercase()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            // Arrays and objects are not values to group on.
            Some(_) => None,
        };
        let Some(text) = text.filter(|t| !t.is_empty()) else { return self.default.clone() };
        match &self.buckets {
            None => text,
            Some(bounds) => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => bucket_label(bounds, n),
                _ => self.default.clone(),
            },
        }
    }
}

/// `<b0`, `b0-b1`, …, `bN+` for the range `n` falls in (lower bounds inclusive).
pub fn bucket_label(bounds: &[f64], n: f64) -> String {
    match bounds.iter().position(|&b| n < b) {
        Some(0) => format!("<{}", bounds[0]),
        Some(i) => format!("{}-{}", bounds[i - 1], bounds[i]),
        None => format!("{}+", bounds[bounds.len() - 1]),
    }
}

impl SyncConfig {
    /// One line per job for `relay check`.
    pub fn describe(&self) -> Vec<String> {
        vec![self.campaign_strategy.describe(), self.attribute_personas.describe()]
    }

    /// Whether any job runs (and so needs `CIO_APP_KEY`).
    pub fn any_enabled(&self) -> bool {
        self.campaign_strategy.enabled || self.attribute_personas.enabled
    }

    /// What the worker renders queued jobs with: the templates of the jobs that are on.
    pub fn for_worker(&self) -> ScheduledJobs {
        ScheduledJobs {
            campaign_strategy: self.campaign_strategy.enabled.then(|| self.campaign_strategy.analysis.clone()),
            attribute_personas: self.attribute_personas.enabled.then(|| self.attribute_personas.persona.clone()),
        }
    }
}

impl CampaignStrategyConfig {
    pub fn describe(&self) -> String {
        if !self.enabled {
            return format!("[{CAMPAIGN_STRATEGY}] off");
        }
        format!(
            "[{CAMPAIGN_STRATEGY}] once per {} day(s): top {} running campaigns by {} over the last {} days \
             (at least {} delivered) → Mave → Generate app `{}`",
            self.every_days,
            self.top_n,
            self.rank_by.label(),
            self.metrics_days,
            self.min_delivered,
            self.analysis.generate.app_id
        )
    }
}

impl AttributePersonasConfig {
    pub fn describe(&self) -> String {
        if !self.enabled {
            return format!("[{ATTRIBUTE_PERSONAS}] off");
        }
        let by: Vec<String> = self
            .cluster_by
            .iter()
            .map(|c| match &c.buckets {
                Some(b) => format!("{} ({} buckets)", c.name, b.len() + 1),
                None => c.name.clone(),
            })
            .collect();
        format!(
            "[{ATTRIBUTE_PERSONAS}] once per {} day(s): up to {} members of segment {} clustered by {} → \
             personas for the {} largest clusters of at least {} (\"{}\", 300 credits each)",
            self.every_days,
            self.max_members,
            self.segment_id.map_or_else(|| "?".to_owned(), |s| s.to_string()),
            by.join(", "),
            self.clusters,
            self.min_cluster_size,
            self.persona.name.as_str()
        )
    }

    /// The template names of every `cluster_by` entry, as `cluster.<name>`.
    pub fn cluster_fields(&self) -> impl Iterator<Item = String> + '_ {
        self.cluster_by.iter().map(|c| format!("cluster.{}", c.name))
    }
}

/// A problem in one table: the field and what is wrong.
pub(crate) type Problem = (String, String);

/// Reads `[cio_sync]`; errors name the table (`cio_sync.campaign_strategy`, …) and the field.
pub(crate) fn parse(table: toml::Table) -> Result<SyncConfig, (&'static str, Problem)> {
    let raw: RawSyncConfig = toml_table::read(table).map_err(|e| match e.split_first() {
        (Some(job), e) if job == "campaign_strategy" => (CAMPAIGN_STRATEGY, serde_problem(e)),
        (Some(job), e) if job == "attribute_personas" => (ATTRIBUTE_PERSONAS, serde_problem(e)),
        (Some(other), _) => {
            let problem =
                format!("`[cio_sync.{other}]` is not a job; the jobs are campaign_strategy and attribute_personas");
            ("cio_sync", (other, problem))
        }
        (None, e) => ("cio_sync", serde_problem(e)),
    })?;
    raw.validate()
}

/// Serde's problem, named by its path within the job's table (`*` for the table itself).
fn serde_problem(e: TableError) -> Problem {
    (e.field(), e.message)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyncConfig {
    campaign_strategy: Option<RawCampaignStrategy>,
    attribute_personas: Option<RawAttributePersonas>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawCampaignStrategy {
    enabled: Option<bool>,
    every_days: Option<Whole>,
    metrics_days: Option<Whole>,
    time_zone: Option<String>,
    message_type: Option<String>,
    rank_by: Option<String>,
    top_n: Option<Whole>,
    min_delivered: Option<Whole>,
    prompt: Option<String>,
    workspace_id: Option<String>,
    generate: Option<RawGenerateStep>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawGenerateStep {
    app_id: Option<String>,
    title: Option<String>,
    input: Option<toml::Table>,
    brand_voice_id: Option<String>,
    persona_id: Option<String>,
    workspace_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawAttributePersonas {
    enabled: Option<bool>,
    every_days: Option<Whole>,
    segment_id: Option<Whole>,
    id_type: Option<String>,
    cluster_by: Option<Vec<RawClusterAttribute>>,
    describe: Option<Vec<String>>,
    max_members: Option<Whole>,
    page_size: Option<Whole>,
    clusters: Option<Whole>,
    min_cluster_size: Option<Whole>,
    persona: Option<RawPersonaTemplate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { attribute = \"plan_type\" }")]
struct RawClusterAttribute {
    attribute: Option<String>,
    name: Option<String>,
    buckets: Option<Vec<Number>>,
    default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawPersonaTemplate {
    name: Option<String>,
    description: Option<String>,
    pipeline_type: Option<String>,
    #[serde(rename = "type")]
    persona_type: Option<String>,
    context_field: Option<String>,
    extra: Option<toml::Table>,
}

impl RawSyncConfig {
    fn validate(self) -> Result<SyncConfig, (&'static str, Problem)> {
        let strategy = self.campaign_strategy.unwrap_or_default().validate().map_err(|p| (CAMPAIGN_STRATEGY, p))?;
        let personas = self.attribute_personas.unwrap_or_default().validate().map_err(|p| (ATTRIBUTE_PERSONAS, p))?;
        Ok(SyncConfig { campaign_strategy: strategy, attribute_personas: personas })
    }
}

impl RawCampaignStrategy {
    fn validate(self) -> Result<CampaignStrategyConfig, Problem> {
        let enabled = self.enabled.unwrap_or(false);
        let rank_by = match text(self.rank_by).as_deref() {
            None | Some("conversion_rate") => RankBy::ConversionRate,
            Some("click_rate") => RankBy::ClickRate,
            Some(other) => {
                return Err(field(
                    "rank_by",
                    format!("`{other}` is not a ranking: use `conversion_rate` or `click_rate`"),
                ));
            }
        };
        let prompt_fields: Vec<String> = PROMPT_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        let prompt = template("prompt", self.prompt, DEFAULT_PROMPT, &prompt_fields)?;
        if prompt.as_str().trim().is_empty() {
            return Err(field("prompt", "is empty".into()));
        }
        let generate_fields: Vec<String> =
            prompt_fields.iter().cloned().chain(MAVE_FIELDS.map(str::to_owned)).collect();
        let generate = self
            .generate
            .unwrap_or_default()
            .validate(&generate_fields)
            .map_err(|(f, p)| (format!("generate.{f}"), p))?;
        if enabled && generate.app_id.is_empty() {
            return Err(field(
                "generate.app_id",
                "set it to one of your Mavera generation apps (GET /generation-apps lists them); Mavera does not \
                 document which app writes message variations, so there is no default"
                    .into(),
            ));
        }
        Ok(CampaignStrategyConfig {
            enabled,
            every_days: whole("every_days", self.every_days, 7, 1..=MAX_EVERY_DAYS, EVERY_DAYS_WHY)? as u32,
            metrics_days: whole("metrics_days", self.metrics_days, 30, 1..=365, "")? as u32,
            time_zone: text(self.time_zone),
            message_type: text(self.message_type),
            rank_by,
            top_n: whole("top_n", self.top_n, 3, 1..=10, "each winner lengthens the Mave prompt")? as usize,
            min_delivered: whole("min_delivered", self.min_delivered, 100, 0..=1_000_000_000, "")? as u64,
            analysis: AnalysisTemplates { prompt, workspace_id: text(self.workspace_id), generate },
        })
    }
}

impl RawGenerateStep {
    fn validate(self, allowed: &[String]) -> Result<GenerateStep, Problem> {
        let input = self.input.unwrap_or_else(|| {
            let mut t = toml::Table::new();
            t.insert("topic".into(), "New variations of our best-performing Customer.io messages".into());
            t.insert("brief".into(), "{mave.content}".into());
            t
        });
        Ok(GenerateStep {
            app_id: text(self.app_id).unwrap_or_default(),
            title: Some(template("title", self.title, DEFAULT_TITLE, allowed)?)
                .filter(|t| !t.as_str().trim().is_empty()),
            input: json_templates("input", input, allowed)?,
            brand_voice_id: text(self.brand_voice_id),
            persona_id: text(self.persona_id),
            workspace_id: text(self.workspace_id),
        })
    }
}

impl RawAttributePersonas {
    fn validate(self) -> Result<AttributePersonasConfig, Problem> {
        let enabled = self.enabled.unwrap_or(false);
        let segment_id = match self.segment_id {
            None => None,
            Some(Whole(n)) if n > 0 => Some(n as u64),
            Some(Whole(n)) => {
                return Err(field(
                    "segment_id",
                    format!("expected a Customer.io segment id (a positive whole number), found {n}"),
                ));
            }
        };
        if enabled && segment_id.is_none() {
            return Err(field(
                "segment_id",
                "set the id of the segment whose members are clustered (Segments > the segment > its URL ends in the id)"
                    .into(),
            ));
        }
        let id_type = match text(self.id_type).as_deref() {
            None | Some("id") => IdType::Id,
            Some("cio_id") => IdType::CioId,
            Some("email") => IdType::Email,
            Some(other) => {
                return Err(field(
                    "id_type",
                    format!("`{other}` is not a segment identifier: use `id`, `cio_id` or `email`"),
                ));
            }
        };
        let cluster_by = cluster_by(self.cluster_by)?;
        let describe = self.describe.unwrap_or_default();
        if let Some(i) = describe.iter().position(|d| d.trim().is_empty()) {
            return Err(field(&format!("describe[{i}]"), "expected an attribute name, found an empty string".into()));
        }
        if describe.len() > 6 {
            return Err(field("describe", "name at most 6 attributes; each adds a line to every description".into()));
        }
        let mut allowed: Vec<String> = CLUSTER_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        allowed.extend(cluster_by.iter().map(|c| format!("cluster.{}", c.name)));
        let persona = self
            .persona
            .unwrap_or_default()
            .validate(&allowed, &cluster_by)
            .map_err(|(f, p)| (format!("persona.{f}"), p))?;
        Ok(AttributePersonasConfig {
            enabled,
            every_days: whole("every_days", self.every_days, 7, 1..=MAX_EVERY_DAYS, EVERY_DAYS_WHY)? as u32,
            segment_id,
            id_type,
            cluster_by,
            describe,
            max_members: whole(
                "max_members",
                self.max_members,
                500,
                1..=50_000,
                "each member is one App API call, at most 10 a second per account",
            )? as usize,
            page_size: whole(
                "page_size",
                self.page_size,
                100,
                1..=500,
                "a page's cluster counts are checkpointed as one record",
            )? as u32,
            clusters: whole("clusters", self.clusters, 3, 1..=20, "each persona costs 300 credits")? as usize,
            min_cluster_size: whole("min_cluster_size", self.min_cluster_size, 10, 1..=1_000_000, "")? as u64,
            persona,
        })
    }
}

fn cluster_by(entries: Option<Vec<RawClusterAttribute>>) -> Result<Vec<ClusterAttribute>, Problem> {
    let Some(entries) = entries else {
        // Mavera's Customer.io job 3 classifies people by these three.
        return Ok(vec![
            categorical("plan", "plan_type"),
            categorical("industry", "industry"),
            categorical("usage_tier", "usage_tier"),
        ]);
    };
    if !(1..=6).contains(&entries.len()) {
        return Err(field("cluster_by", "name 1 to 6 attributes; more make clusters too small to matter".into()));
    }
    let mut attributes: Vec<ClusterAttribute> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = |key: &str| format!("cluster_by[{i}].{key}");
        let attribute = text(entry.attribute)
            .ok_or_else(|| (at("attribute"), "is missing: name the Customer.io attribute".to_owned()))?;
        let name = text(entry.name).unwrap_or_else(|| attribute.clone());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err((
                at("name"),
                format!(
                    "`{name}` cannot be used in templates as {{cluster.{name}}}: use letters, digits, `_` or `-` (set `name` when the attribute has other characters)"
                ),
            ));
        }
        if ["label", "size", "share"].contains(&name.as_str()) {
            return Err((
                at("name"),
                format!("`{{cluster.{name}}}` is set by the job itself; give this entry another `name`"),
            ));
        }
        if attributes.iter().any(|a| a.name == name) {
            return Err((at("name"), format!("another entry is already named `{name}`")));
        }
        let buckets = match entry.buckets {
            None => None,
            Some(bounds) => {
                let bounds: Vec<f64> = bounds.into_iter().map(|Number(n)| n).collect();
                if bounds.is_empty() || bounds.len() > 20 || bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err((
                        at("buckets"),
                        "give 1 to 20 boundaries in ascending order, e.g. [0, 100, 1000]".into(),
                    ));
                }
                Some(bounds)
            }
        };
        let default = text(entry.default).map(|d| d.to_lowercase()).unwrap_or_else(|| MISSING.to_owned());
        attributes.push(ClusterAttribute { name, attribute, buckets, default });
    }
    Ok(attributes)
}

fn categorical(name: &str, attribute: &str) -> ClusterAttribute {
    ClusterAttribute { name: name.into(), attribute: attribute.into(), buckets: None, default: MISSING.into() }
}

impl RawPersonaTemplate {
    fn validate(self, allowed: &[String], cluster_by: &[ClusterAttribute]) -> Result<ClusterPersonaTemplate, Problem> {
        let name = template("name", self.name, DEFAULT_PERSONA_NAME, allowed)?;
        // Persona names key Mavera's only duplicate guard (422), so each cluster needs its own.
        let names: Vec<&str> = name.fields().map(FieldPath::as_str).collect();
        let tells_apart = names.contains(&"cluster.label")
            || cluster_by.iter().all(|c| names.contains(&format!("cluster.{}", c.name).as_str()));
        if !tells_apart {
            return Err(field(
                "name",
                "the name must tell clusters apart: include {cluster.label} or every {cluster.<name>}; Mavera refuses a second persona with the same name".into(),
            ));
        }
        if name.as_str().chars().count() > PersonaName::MAX_CHARS {
            return Err(field(
                "name",
                format!(
                    "is longer than Mavera's {} characters before a single field is filled in",
                    PersonaName::MAX_CHARS
                ),
            ));
        }
        let description = template("description", self.description, DEFAULT_PERSONA_DESCRIPTION, allowed)?;
        // Unset: the reference's body (see triggers.toml's notes on the values); `""` leaves one out.
        let pipeline_type = match self.pipeline_type {
            None => Some(PipelineType::NorthStar),
            Some(v) if v.trim().is_empty() => None,
            v => PipelineType::setting(v).map_err(|e| field("pipeline_type", e))?,
        };
        let persona_type = match self.persona_type {
            None => Some(PersonaType::B2B),
            Some(v) if v.trim().is_empty() => None,
            v => PersonaType::setting(v).map_err(|e| field("type", e))?,
        };
        // Unset or `""`: the cluster's facts are only in the description, as the reference has
        // no field for them.
        let context_field = self.context_field.map(|f| f.trim().to_owned()).filter(|f| !f.is_empty());
        let extra = json_templates("extra", self.extra.unwrap_or_default(), allowed)?;
        let own_keys = ["name", "description", "pipeline_type", "type"];
        if let Some((k, _)) =
            extra.iter().find(|(k, _)| own_keys.contains(&k.as_str()) || Some(k) == context_field.as_ref())
        {
            return Err(field(
                &format!("extra.{k}"),
                "is set by the job from its own key in the table: set `name`, `description`, `pipeline_type`, `type` \
                 or `context_field` instead"
                    .into(),
            ));
        }
        Ok(ClusterPersonaTemplate { name, description, pipeline_type, persona_type, context_field, extra })
    }
}

/// A trimmed string; empty counts as unset.
fn text(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A whole number within `range`, or `default` when unset.
fn whole(
    key: &str,
    value: Option<Whole>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    why: &str,
) -> Result<i64, Problem> {
    let Some(Whole(n)) = value else { return Ok(default) };
    if range.contains(&n) {
        return Ok(n);
    }
    let why = if why.is_empty() { String::new() } else { format!(": {why}") };
    Err(field(key, format!("{n} is outside {} to {}{why}", range.start(), range.end())))
}

/// A template (or `default` when unset) that may only name `allowed` fields.
fn template(key: &str, value: Option<String>, default: &str, allowed: &[String]) -> Result<Template, Problem> {
    let template = Template::parse(value.as_deref().unwrap_or(default)).map_err(|e| field(key, e.to_string()))?;
    if let Some(bad) = template.fields().find(|f| !allowed.iter().any(|a| a == f.as_str())) {
        return Err(field(key, unknown_field(bad, allowed)));
    }
    Ok(template)
}

fn json_templates(key: &str, table: toml::Table, allowed: &[String]) -> Result<Vec<(String, JsonTemplate)>, Problem> {
    let value = serde_json::to_value(table).map_err(|e| field(key, e.to_string()))?;
    let entries = match JsonTemplate::parse(value) {
        Ok(JsonTemplate::Object(entries)) => entries,
        Ok(_) => return Err(field(key, "expected a table".into())),
        Err((at, e)) => return Err(field(&format!("{key}.{at}"), e.to_string())),
    };
    for (k, t) in &entries {
        if let Some(bad) = t.fields().into_iter().find(|f| !allowed.iter().any(|a| a == f.as_str())) {
            return Err(field(&format!("{key}.{k}"), unknown_field(bad, allowed)));
        }
    }
    Ok(entries)
}

fn field(name: &str, problem: String) -> Problem {
    (name.to_owned(), problem)
}

fn unknown_field(path: &FieldPath, allowed: &[String]) -> String {
    let list: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
    format!("`{{{path}}}` is not available here; use {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_text(text: &str) -> Result<SyncConfig, (&'static str, Problem)> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let sync = table.get("cio_sync").and_then(|v| v.as_table()).cloned().unwrap_or_default();
        parse(sync)
    }

    fn error(text: &str) -> (&'static str, String, String) {
        let (section, (field, problem)) = parse_text(text).unwrap_err();
        (section, field, problem)
    }

    #[test]
    fn the_defaults_are_off_and_conservative() {
        let c = SyncConfig::default();
        assert!(!c.any_enabled());
        let s = &c.campaign_strategy;
        assert_eq!((s.every_days, s.metrics_days, s.top_n, s.min_delivered), (7, 30, 3, 100));
        assert_eq!(s.rank_by, RankBy::ConversionRate);
        let p = &c.attribute_personas;
        assert_eq!((p.clusters, p.max_members, p.min_cluster_size, p.page_size), (3, 500, 10, 100));
        let names: Vec<_> = p.cluster_by.iter().map(|a| a.attribute.as_str()).collect();
        assert_eq!(names, ["plan_type", "industry", "usage_tier"]);
        assert_eq!(c.describe(), ["[cio_sync.campaign_strategy] off", "[cio_sync.attribute_personas] off"]);
    }

    #[test]
    fn the_shipped_file_writes_the_defaults_out() {
        let shipped = crate::triggers::Triggers::embedded().unwrap();
        assert_eq!(shipped.cio_sync, SyncConfig::default(), "triggers.toml documents the defaults as they are");
    }

    #[test]
    fn enabling_needs_the_settings_without_defaults() {
        let (section, field, problem) = error("[cio_sync.campaign_strategy]\nenabled = true");
        assert_eq!((section, field.as_str()), (CAMPAIGN_STRATEGY, "generate.app_id"));
        assert!(problem.contains("/generation-apps"), "{problem}");
        let (section, field, _) = error("[cio_sync.attribute_personas]\nenabled = true");
        assert_eq!((section, field.as_str()), (ATTRIBUTE_PERSONAS, "segment_id"));
        let ok = parse_text(
            "[cio_sync.campaign_strategy]\nenabled = true\ngenerate = { app_id = \"email-variations\" }\n\
             [cio_sync.attribute_personas]\nenabled = true\nsegment_id = 42",
        )
        .unwrap();
        assert!(ok.campaign_strategy.describe().contains("Generate app `email-variations`"));
        assert!(ok.attribute_personas.describe().contains("segment 42"));
    }

    #[test]
    fn errors_name_the_table_and_the_field() {
        let cases = [
            ("[cio_sync.campaign_strategy]\ntop_n = 0", CAMPAIGN_STRATEGY, "top_n", "outside 1 to 10"),
            ("[cio_sync.campaign_strategy]\ntop_n = \"3\"", CAMPAIGN_STRATEGY, "top_n", "expected a whole number"),
            ("[cio_sync.campaign_strategy]\nevery_days = 30", CAMPAIGN_STRATEGY, "every_days", "8 days"),
            ("[cio_sync.campaign_strategy]\nrank_by = \"opens\"", CAMPAIGN_STRATEGY, "rank_by", "click_rate"),
            ("[cio_sync.campaign_strategy]\nprompt = \"{winer}\"", CAMPAIGN_STRATEGY, "prompt", "{winners}"),
            ("[cio_sync.campaign_strategy]\nwindow = 7", CAMPAIGN_STRATEGY, "window", "unknown field"),
            (
                "[cio_sync.campaign_strategy.generate]\ninput = { a = \"{mave.contents}\" }",
                CAMPAIGN_STRATEGY,
                "generate.input.a",
                "{mave.content}",
            ),
            ("[cio_sync.attribute_personas]\nid_type = \"phone\"", ATTRIBUTE_PERSONAS, "id_type", "cio_id"),
            (
                "[cio_sync.attribute_personas]\ncluster_by = [{ attribute = \"ltv\", buckets = [10, 5] }]",
                ATTRIBUTE_PERSONAS,
                "cluster_by[0].buckets",
                "ascending",
            ),
            (
                "[cio_sync.attribute_personas]\ncluster_by = [{ attribute = \"plan type\" }]",
                ATTRIBUTE_PERSONAS,
                "cluster_by[0].name",
                "set `name`",
            ),
            (
                "[cio_sync.attribute_personas]\ncluster_by = [{ name = \"x\" }]",
                ATTRIBUTE_PERSONAS,
                "cluster_by[0].attribute",
                "missing",
            ),
            (
                "[cio_sync.attribute_personas.persona]\nname = \"Cluster {cluster.plan}\"",
                ATTRIBUTE_PERSONAS,
                "persona.name",
                "tell clusters apart",
            ),
            (
                "[cio_sync.attribute_personas.persona]\nextra = { name = \"x\" }",
                ATTRIBUTE_PERSONAS,
                "persona.extra.name",
                "set by the job",
            ),
            ("[cio_sync.attribute_personas]\nclusters = 50", ATTRIBUTE_PERSONAS, "clusters", "300 credits"),
            (
                "[cio_sync.attribute_personas]\ncluster_by = [{ attribute = \"size\" }]",
                ATTRIBUTE_PERSONAS,
                "cluster_by[0].name",
                "another `name`",
            ),
            ("[cio_sync.segment_sync]\nenabled = true", "cio_sync", "segment_sync", "not a job"),
        ];
        for (text, section, field, hint) in cases {
            let (s, f, p) = error(text);
            assert_eq!((s, f.as_str()), (section, field), "{text}: {p}");
            assert!(p.contains(hint), "{text}: {p}");
        }
    }

    #[test]
    fn a_name_with_every_cluster_field_tells_clusters_apart() {
        let c = parse_text(
            "[cio_sync.attribute_personas]\ncluster_by = [{ attribute = \"plan_type\", name = \"plan\" }, { attribute = \"ltv\", buckets = [100, 1000] }]\n\
             persona = { name = \"{cluster.plan} at {cluster.ltv}\", type = \"B2C\", extra = { goals = [\"Grow\"], tags = [\"{cluster.plan}\"] } }",
        )
        .unwrap();
        let p = &c.attribute_personas;
        assert_eq!(p.cluster_by[1].name, "ltv");
        assert_eq!(p.persona.extra.len(), 2);
        assert_eq!(p.cluster_fields().collect::<Vec<_>>(), ["cluster.plan", "cluster.ltv"]);
    }

    #[test]
    fn the_facts_go_into_a_body_field_only_when_one_is_named() {
        let c = parse_text("[cio_sync.attribute_personas.persona]\ncontext_field = \"\"").unwrap();
        assert_eq!(c.attribute_personas.persona.context_field, None);
        let c = parse_text("[cio_sync.attribute_personas.persona]\ncontext_field = \"facts\"").unwrap();
        assert_eq!(c.attribute_personas.persona.context_field.as_deref(), Some("facts"));
        // Mavera's reference has no field for them; the description carries them.
        assert_eq!(SyncConfig::default().attribute_personas.persona.context_field, None);
    }

    #[test]
    fn the_persona_enums_take_only_the_documented_values() {
        let c =
            parse_text("[cio_sync.attribute_personas.persona]\npipeline_type = \"advanced\"\ntype = \"B2C\"").unwrap();
        let p = &c.attribute_personas.persona;
        assert_eq!((p.pipeline_type, p.persona_type), (Some(PipelineType::Advanced), Some(PersonaType::B2C)));
        let p = SyncConfig::default().attribute_personas.persona;
        assert_eq!((p.pipeline_type, p.persona_type), (Some(PipelineType::NorthStar), Some(PersonaType::B2B)));
        let c = parse_text("[cio_sync.attribute_personas.persona]\npipeline_type = \"\"\ntype = \"\"").unwrap();
        let p = &c.attribute_personas.persona;
        assert_eq!((p.pipeline_type, p.persona_type), (None, None), "\"\" leaves them out");
        for (text, key, hint) in [
            ("pipeline_type = \"northstar\"", "persona.pipeline_type", "`north_star`, `intermediate`, `advanced`"),
            ("type = \"b2b\"", "persona.type", "`B2B`, `B2C`"),
            ("extra = { type = \"B2B\" }", "persona.extra.type", "`type`"),
        ] {
            let (section, field, problem) = error(&format!("[cio_sync.attribute_personas.persona]\n{text}"));
            assert_eq!((section, field.as_str()), (ATTRIBUTE_PERSONAS, key), "{problem}");
            assert!(problem.contains(hint), "{problem}");
        }
    }

    #[test]
    fn values_are_lower_cased_or_bucketed() {
        let plan = categorical("plan", "plan_type");
        assert_eq!(plan.value_of(Some(&json!(" Enterprise "))), "enterprise");
        assert_eq!(plan.value_of(Some(&json!(true))), "true");
        assert_eq!(plan.value_of(None), "unknown");
        assert_eq!(plan.value_of(Some(&json!(""))), "unknown");
        assert_eq!(plan.value_of(Some(&json!(["a"]))), "unknown");
        let ltv = ClusterAttribute {
            buckets: Some(vec![0.0, 100.0, 1000.5]),
            default: "none".into(),
            ..categorical("ltv", "ltv")
        };
        assert_eq!(ltv.value_of(Some(&json!(-3))), "<0");
        assert_eq!(ltv.value_of(Some(&json!("99.9"))), "0-100");
        assert_eq!(ltv.value_of(Some(&json!(100))), "100-1000.5");
        assert_eq!(ltv.value_of(Some(&json!(5000))), "1000.5+");
        assert_eq!(ltv.value_of(Some(&json!("lots"))), "none");
    }
}
