//! Counters as CloudWatch Embedded Metric Format: JSON lines on stdout, one per request (or
//! batch) and breakdown, that CloudWatch turns into metrics, with no API call and no extra
//! latency. Off outside Lambda unless `RELAY_METRICS=emf`.
//!
//! Every metric carries the `Stage` (env `STAGE`, set by the template) and `Function`
//! dimensions, so two stacks in one account (prod and staging) never add up. Some are also
//! broken down by a third dimension: `rejected` by `Reason`, the worker's `failed` by
//! `Class`, `credits` by `Rule`, and the deliveries (`delivered`, `delivery_failed`,
//! `delivery_retried`) by `Destination`. Those are published under both dimension sets, so the
//! total and the breakdown come from one line. `rejected` is also published by `Kind` (what
//! the alarms watch, see [`RejectionKind`]).

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::RejectionKind;
use crate::store::FailureClass;
use crate::vars;

pub const NAMESPACE: &str = "MaveraRelay";

/// Dimension names, as the template's alarms and dashboard spell them.
pub mod dimension {
    pub const STAGE: &str = "Stage";
    pub const FUNCTION: &str = "Function";
    pub const REASON: &str = "Reason";
    /// `rejected` by [`super::RejectionKind`], beside `Reason`.
    pub const KIND: &str = "Kind";
    pub const CLASS: &str = "Class";
    pub const RULE: &str = "Rule";
    pub const DESTINATION: &str = "Destination";
}

/// The `Stage` of a process that was not given one (local runs).
pub const UNSET_STAGE: &str = "local";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Received,
    Rejected,
    Ignored,
    Duplicate,
    Queued,
    Done,
    Failed,
    Retried,
    Skipped,
    /// Mavera credits a job cost, per rule: a job done, or one that failed after spending some
    /// (a campaign analysis whose Generate failed after Mave answered).
    Credits,
    /// How long ago an accepted Customer.io request was signed, in seconds (a value): a
    /// retry Customer.io held back shows as hours or days.
    SignedAge,
    /// Customer.io attribute lookups that found no such person (worker enrichment, cio-sync).
    CustomersNotFound,
    /// A result a destination took (2xx), per destination.
    Delivered,
    /// A delivery that ended `failed` (refused, credentials missing, or uncertain), per destination.
    DeliveryFailed,
    /// A send that failed transiently and is tried again (here or by the queue), per destination.
    DeliveryRetried,
}

impl Metric {
    pub const ALL: [Metric; 15] = [
        Metric::Received,
        Metric::Rejected,
        Metric::Ignored,
        Metric::Duplicate,
        Metric::Queued,
        Metric::Done,
        Metric::Failed,
        Metric::Retried,
        Metric::Skipped,
        Metric::Credits,
        Metric::SignedAge,
        Metric::CustomersNotFound,
        Metric::Delivered,
        Metric::DeliveryFailed,
        Metric::DeliveryRetried,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Received => "received",
            Metric::Rejected => "rejected",
            Metric::Ignored => "ignored",
            Metric::Duplicate => "duplicate",
            Metric::Queued => "queued",
            Metric::Done => "done",
            Metric::Failed => "failed",
            Metric::Retried => "retried",
            Metric::Skipped => "skipped",
            Metric::Credits => "credits",
            Metric::SignedAge => "signed_age",
            Metric::CustomersNotFound => "customers_not_found",
            Metric::Delivered => "delivered",
            Metric::DeliveryFailed => "delivery_failed",
            Metric::DeliveryRetried => "delivery_retried",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::Credits => "None",
            Metric::SignedAge => "Seconds",
            _ => "Count",
        }
    }

    /// The dimension this metric is broken down by, if any.
    pub fn breakdown(self) -> Option<&'static str> {
        match self {
            Metric::Rejected => Some(dimension::REASON),
            Metric::Failed => Some(dimension::CLASS),
            Metric::Credits => Some(dimension::RULE),
            Metric::Delivered | Metric::DeliveryFailed | Metric::DeliveryRetried => Some(dimension::DESTINATION),
            _ => None,
        }
    }
}

/// Where counts go: this function's `Function` and `Stage` dimensions, or nowhere.
#[derive(Debug, Clone)]
pub struct Metrics {
    target: Option<Target>,
}

#[derive(Debug, Clone)]
struct Target {
    function: &'static str,
    stage: String,
    level: &'static str,
}

impl Metrics {
    /// Enabled in Lambda (or with `RELAY_METRICS=emf`), for the function `name`.
    pub fn from_env(name: &'static str) -> Self {
        let enabled = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("RELAY_METRICS").is_ok_and(|v| v.eq_ignore_ascii_case("emf"));
        if !enabled {
            return Metrics::disabled();
        }
        let stage = std::env::var(vars::STAGE).ok();
        let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
        Metrics::to_stdout(name, stage.as_deref(), level.as_deref())
    }

    /// Enabled for `function` in `stage` (`None` or blank: [`UNSET_STAGE`]), with Lambda's
    /// application log level `log_level` (`AWS_LAMBDA_LOG_LEVEL`).
    pub fn to_stdout(function: &'static str, stage: Option<&str>, log_level: Option<&str>) -> Self {
        let stage = stage.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(UNSET_STAGE).to_owned();
        Metrics { target: Some(Target { function, stage, level: line_level(log_level) }) }
    }

    pub fn disabled() -> Self {
        Metrics { target: None }
    }

    pub fn counts(&self) -> Counts {
        Counts { target: self.target.clone(), plain: Vec::new(), values: Vec::new(), broken_down: Vec::new() }
    }
}

/// The level written on every metrics line: the lowest one Lambda keeps.
///
/// With JSON logs, Lambda drops application lines below `ApplicationLogLevel`, and reads a
/// line's level from its `level` key; a line without one, or without a valid RFC 3339
/// `timestamp`, counts as INFO ("Log-level filtering", AWS Lambda Developer Guide,
/// https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
/// An EMF line Lambda drops never reaches CloudWatch, so its metrics vanish: each line
/// carries the configured level itself (INFO when it is lower or unset), which is exactly
/// what the filter keeps, without calling every metrics line an error at INFO.
fn line_level(configured: Option<&str>) -> &'static str {
    match configured.map(|l| l.trim().to_ascii_uppercase()).as_deref() {
        Some("WARN" | "WARNING") => "WARN",
        Some("ERROR") => "ERROR",
        Some("FATAL") => "FATAL",
        _ => "INFO",
    }
}

/// Counts gathered during one request or batch; `flush` writes them.
#[derive(Debug)]
pub struct Counts {
    target: Option<Target>,
    plain: Vec<(Metric, u64)>,
    /// Measured values (not counts), e.g. [`Metric::SignedAge`].
    values: Vec<(Metric, f64)>,
    /// (metric, the breakdown dimension's value, a rejection's kind, amount)
    broken_down: Vec<(Metric, String, Option<RejectionKind>, f64)>,
}

impl Counts {
    /// Adds to a metric without a breakdown. The broken-down ones have their own methods.
    pub fn add(&mut self, metric: Metric, n: u64) {
        debug_assert!(metric.breakdown().is_none(), "{} is counted with its breakdown", metric.name());
        match self.plain.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, c)) => *c += n,
            None => self.plain.push((metric, n)),
        }
    }

    /// A measured value, e.g. [`Metric::SignedAge`]; a later one replaces it.
    pub fn observe(&mut self, metric: Metric, value: f64) {
        self.values.retain(|(m, _)| *m != metric);
        if value.is_finite() {
            self.values.push((metric, value));
        }
    }

    /// A rejected request, by reason (the error code) and kind: its `Reason` and `Kind`
    /// dimensions.
    pub fn add_rejected(&mut self, reason: &str, kind: RejectionKind) {
        self.add_to(Metric::Rejected, reason, Some(kind), 1.0);
    }

    /// A job that failed for good, by class: its `Class` dimension.
    pub fn add_failed(&mut self, class: FailureClass) {
        self.add_broken_down(Metric::Failed, class.as_str(), 1.0);
    }

    /// Credits a job of `rule` cost.
    pub fn add_credits(&mut self, rule: &str, credits: f64) {
        if credits.is_finite() && credits >= 0.0 {
            self.add_broken_down(Metric::Credits, rule, credits);
        }
    }

    /// A delivery metric (`delivered`, `delivery_failed`, `delivery_retried`) for `destination`.
    pub fn add_delivery(&mut self, metric: Metric, destination: &str, n: u64) {
        debug_assert_eq!(
            metric.breakdown(),
            Some(dimension::DESTINATION),
            "{} is not a delivery metric",
            metric.name()
        );
        if n > 0 {
            self.add_broken_down(metric, destination, n as f64);
        }
    }

    fn add_broken_down(&mut self, metric: Metric, value: &str, amount: f64) {
        self.add_to(metric, value, None, amount);
    }

    fn add_to(&mut self, metric: Metric, value: &str, kind: Option<RejectionKind>, amount: f64) {
        match self.broken_down.iter_mut().find(|(m, v, k, _)| *m == metric && v == value && *k == kind) {
            Some((_, _, _, total)) => *total += amount,
            None => self.broken_down.push((metric, value.to_owned(), kind, amount)),
        }
    }

    /// The total counted for `metric`, over every breakdown.
    pub fn get(&self, metric: Metric) -> f64 {
        let plain = self.plain.iter().filter(|(m, _)| *m == metric).map(|(_, c)| *c as f64).sum::<f64>();
        plain + self.broken_down.iter().filter(|(m, _, _, _)| *m == metric).map(|(_, _, _, a)| a).sum::<f64>()
    }

    /// The EMF documents for what was counted (empty when nothing was, or metrics are off).
    pub fn documents(&self) -> Vec<Value> {
        self.documents_at(SystemTime::now())
    }

    fn documents_at(&self, now: SystemTime) -> Vec<Value> {
        let Some(target) = &self.target else { return Vec::new() };
        let base = [dimension::STAGE, dimension::FUNCTION];
        let mut docs = Vec::new();
        if !self.plain.is_empty() || !self.values.is_empty() {
            let declared = self.plain.iter().map(|(m, _)| *m).chain(self.values.iter().map(|(m, _)| *m));
            let mut doc = target.document(now, &[&base], declared);
            for (m, c) in &self.plain {
                doc.insert(m.name().into(), json!(c));
            }
            for (m, v) in &self.values {
                doc.insert(m.name().into(), json!(v));
            }
            docs.push(Value::Object(doc));
        }
        for (metric, value, kind, amount) in &self.broken_down {
            let Some(by) = metric.breakdown() else { continue };
            let by_value = [dimension::STAGE, dimension::FUNCTION, by];
            let by_kind = [dimension::STAGE, dimension::FUNCTION, dimension::KIND];
            let sets: &[&[&str]] = if kind.is_some() { &[&base, &by_value, &by_kind] } else { &[&base, &by_value] };
            let mut doc = target.document(now, sets, [*metric]);
            doc.insert(by.into(), json!(value));
            if let Some(kind) = kind {
                doc.insert(dimension::KIND.into(), json!(kind.as_str()));
            }
            // Counts as whole numbers; credits as they came (Mavera reports fractions).
            let amount = if *metric == Metric::Credits { json!(amount) } else { json!(*amount as u64) };
            doc.insert(metric.name().into(), amount);
            docs.push(Value::Object(doc));
        }
        docs
    }

    /// The lines `flush` writes, one JSON object each.
    pub fn lines(&self) -> Vec<String> {
        self.documents().iter().map(Value::to_string).collect()
    }

    pub fn flush(self) {
        let lines = self.lines();
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
}

impl Target {
    /// A document's fixed part: the log fields Lambda's level filter reads, the EMF metadata
    /// declaring `metrics` under `dimension_sets`, and this function's dimensions.
    fn document(
        &self,
        now: SystemTime,
        dimension_sets: &[&[&str]],
        metrics: impl IntoIterator<Item = Metric>,
    ) -> Map<String, Value> {
        let declared: Vec<Value> = metrics.into_iter().map(|m| json!({"Name": m.name(), "Unit": m.unit()})).collect();
        let mut doc = Map::new();
        doc.insert("level".into(), json!(self.level));
        doc.insert("timestamp".into(), json!(rfc3339_millis(now)));
        doc.insert("message".into(), json!("metrics"));
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": epoch_millis(now),
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": dimension_sets, "Metrics": declared}],
            }),
        );
        doc.insert(dimension::STAGE.into(), json!(self.stage));
        doc.insert(dimension::FUNCTION.into(), json!(self.function));
        doc
    }
}

fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn rfc3339_millis(t: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from(t).format(&format).unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn metric_names(doc: &Value) -> Vec<Value> {
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].clone()).collect()
    }

    #[test]
    fn a_measured_value_is_declared_with_its_unit() {
        let mut c = Metrics::to_stdout("ingest", Some("prod"), None).counts();
        c.add(Metric::Received, 1);
        c.observe(Metric::SignedAge, 7200.0);
        let docs = c.documents();
        assert_eq!(docs[0]["signed_age"], 7200.0);
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][1],
            json!({"Name": "signed_age", "Unit": "Seconds"})
        );
    }

    #[test]
    fn disabled_metrics_write_nothing() {
        let mut c = Metrics::disabled().counts();
        c.add(Metric::Queued, 1);
        c.add_failed(FailureClass::Unauthorized);
        assert!(c.documents().is_empty());
        assert!(c.lines().is_empty());
    }

    #[test]
    fn emf_documents_declare_their_metrics_under_stage_and_function() {
        let mut c = Metrics::to_stdout("ingest", Some("staging"), None).counts();
        c.add(Metric::Received, 2);
        c.add(Metric::Queued, 1);
        c.add(Metric::Received, 1);
        c.add_rejected("bad_signature", RejectionKind::Signature);
        c.add_rejected("bad_signature", RejectionKind::Signature);
        let docs = c.documents();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["received"], 3);
        assert_eq!(docs[0]["queued"], 1);
        assert_eq!(docs[0]["Function"], "ingest");
        assert_eq!(docs[0]["Stage"], "staging");
        let directive = &docs[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Stage", "Function"]]));
        assert_eq!(metric_names(&docs[0]), vec![json!("received"), json!("queued")]);

        // The breakdown publishes the total, the per-reason and the per-kind count from one line.
        assert_eq!(docs[1]["Reason"], "bad_signature");
        assert_eq!(docs[1]["Kind"], "signature");
        assert_eq!(docs[1]["rejected"], 2);
        assert_eq!(docs[1]["Stage"], "staging");
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage", "Function"], ["Stage", "Function", "Reason"], ["Stage", "Function", "Kind"]])
        );
        assert_eq!(c.get(Metric::Rejected), 2.0);
    }

    #[test]
    fn failed_jobs_carry_their_class_and_credits_their_rule() {
        let mut c = Metrics::to_stdout("worker", Some("prod"), None).counts();
        c.add(Metric::Done, 2);
        c.add_failed(FailureClass::CreditsExhausted);
        c.add_failed(FailureClass::CreditsExhausted);
        c.add_failed(FailureClass::Unauthorized);
        c.add_credits("trial-persona", 300.0);
        c.add_credits("trial-persona", 12.5);
        c.add_credits("churn-research", 25.0);
        c.add_credits("broken", f64::NAN);
        let docs = c.documents();
        let by = |metric: &str, dim: &str, value: &str| {
            docs.iter()
                .find(|d| d.get(metric).is_some() && d[dim] == value)
                .unwrap_or_else(|| panic!("no {metric} document for {dim}={value}: {docs:?}"))
        };
        assert_eq!(by("failed", "Class", "credits_exhausted")["failed"], 2);
        assert_eq!(by("failed", "Class", "unauthorized")["failed"], 1);
        let credits = by("credits", "Rule", "trial-persona");
        assert_eq!(credits["credits"], 312.5);
        assert_eq!(credits["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([{"Name": "credits", "Unit": "None"}]));
        assert_eq!(by("credits", "Rule", "churn-research")["credits"], 25.0);
        assert!(!docs.iter().any(|d| d["Rule"] == "broken"), "a non-number is not a cost");
        assert_eq!(c.get(Metric::Failed), 3.0);
        assert_eq!(c.get(Metric::Done), 2.0);
    }

    #[test]
    fn deliveries_are_counted_per_destination() {
        let mut c = Metrics::to_stdout("worker", Some("prod"), None).counts();
        c.add_delivery(Metric::Delivered, "slack", 1);
        c.add_delivery(Metric::Delivered, "slack", 1);
        c.add_delivery(Metric::DeliveryFailed, "webhook", 1);
        c.add_delivery(Metric::DeliveryRetried, "segment", 3);
        c.add_delivery(Metric::DeliveryRetried, "slack", 0);
        let docs = c.documents();
        assert_eq!(docs.len(), 3, "nothing for a zero count: {docs:?}");
        let slack = docs.iter().find(|d| d["Destination"] == "slack").unwrap();
        assert_eq!(slack["delivered"], 2);
        assert_eq!(
            slack["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage", "Function"], ["Stage", "Function", "Destination"]])
        );
        assert_eq!(c.get(Metric::DeliveryRetried), 3.0);
    }

    #[test]
    fn an_unset_stage_is_local() {
        for stage in [None, Some(""), Some("  ")] {
            let mut c = Metrics::to_stdout("relay", stage, None).counts();
            c.add(Metric::Received, 1);
            assert_eq!(c.documents()[0]["Stage"], UNSET_STAGE);
        }
    }

    /// Lambda's application log filter as documented: a JSON line's `level` key (INFO when
    /// missing or invalid, or when the `timestamp` is not RFC 3339) against the configured
    /// level, in the order TRACE < DEBUG < INFO < WARN < ERROR < FATAL.
    fn lambda_keeps(line: &str, configured: &str) -> bool {
        const ORDER: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        let rank = |l: &str| ORDER.iter().position(|o| o.eq_ignore_ascii_case(l));
        let doc: Value = serde_json::from_str(line).expect("every metrics line is one JSON object");
        let valid_time = doc["timestamp"]
            .as_str()
            .is_some_and(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok());
        let level = doc["level"].as_str().and_then(rank).filter(|_| valid_time).unwrap_or(2);
        level >= rank(configured).unwrap()
    }

    #[test]
    fn metrics_lines_survive_every_application_log_level() {
        for configured in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] {
            let mut c = Metrics::to_stdout("worker", Some("prod"), Some(configured)).counts();
            c.add(Metric::Done, 1);
            c.add_failed(FailureClass::Forbidden);
            c.add_credits("r", 10.0);
            let lines = c.lines();
            assert_eq!(lines.len(), 3);
            for line in &lines {
                assert!(!line.contains('\n'), "one line per document");
                assert!(lambda_keeps(line, configured), "Lambda at {configured} would drop {line}");
                let doc: Value = serde_json::from_str(line).unwrap();
                assert!(doc["_aws"]["CloudWatchMetrics"].is_array(), "still an EMF document: {line}");
            }
        }
        // At INFO and below the lines say INFO, not something louder.
        let mut c = Metrics::to_stdout("worker", Some("prod"), Some("DEBUG")).counts();
        c.add(Metric::Done, 1);
        assert_eq!(serde_json::from_str::<Value>(&c.lines()[0]).unwrap()["level"], "INFO");
        // A line without the level field would not survive WARN: what the fields are for.
        assert!(!lambda_keeps(r#"{"_aws":{},"done":1}"#, "WARN"));
    }

    #[test]
    fn the_line_looks_like_this() {
        let mut c = Metrics::to_stdout("ingest", Some("prod"), Some("WARN")).counts();
        c.add(Metric::Received, 1);
        let at = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let line = c.documents_at(at)[0].to_string();
        assert_eq!(
            line,
            r#"{"Function":"ingest","Stage":"prod","_aws":{"CloudWatchMetrics":[{"Dimensions":[["Stage","Function"]],"Metrics":[{"Name":"received","Unit":"Count"}],"Namespace":"MaveraRelay"}],"Timestamp":1795000000123},"level":"WARN","message":"metrics","received":1,"timestamp":"2026-11-18T11:06:40.123Z"}"#
        );
    }
}
