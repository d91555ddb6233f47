//! Counters as CloudWatch Embedded Metric Format: one JSON line on stdout per request (or
//! batch) that CloudWatch turns into metrics, with no API call and no extra latency.
//! Off outside Lambda unless `RELAY_METRICS=emf`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "MaveraRelay";

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
    /// How long ago an accepted Customer.io request was signed (seconds): a value, not a count.
    SignedAge,
}

impl Metric {
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
            Metric::SignedAge => "signed_age",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::SignedAge => "Seconds",
            _ => "Count",
        }
    }
}

/// Where counts go: this function's name as the `Function` dimension, or nowhere.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: Option<&'static str>,
}

impl Metrics {
    /// Enabled in Lambda (or with `RELAY_METRICS=emf`), for the function `name`.
    pub fn from_env(name: &'static str) -> Self {
        let enabled = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("RELAY_METRICS").is_ok_and(|v| v.eq_ignore_ascii_case("emf"));
        Metrics { function: enabled.then_some(name) }
    }

    pub fn disabled() -> Self {
        Metrics { function: None }
    }

    pub fn counts(&self) -> Counts {
        Counts { function: self.function, plain: Vec::new(), values: Vec::new(), rejected: Vec::new() }
    }
}

/// Counts gathered during one request or batch; `flush` writes them.
#[derive(Debug)]
pub struct Counts {
    function: Option<&'static str>,
    plain: Vec<(Metric, u64)>,
    values: Vec<(Metric, f64)>,
    rejected: Vec<(String, u64)>,
}

impl Counts {
    pub fn add(&mut self, metric: Metric, n: u64) {
        match self.plain.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, c)) => *c += n,
            None => self.plain.push((metric, n)),
        }
    }

    /// A measured value (e.g. [`Metric::SignedAge`]); a later one replaces it.
    pub fn observe(&mut self, metric: Metric, value: f64) {
        self.values.retain(|(m, _)| *m != metric);
        self.values.push((metric, value));
    }

    /// A rejected request, by reason (the error code): its own `Reason` dimension.
    pub fn add_rejected(&mut self, reason: &str) {
        match self.rejected.iter_mut().find(|(r, _)| r == reason) {
            Some((_, c)) => *c += 1,
            None => self.rejected.push((reason.to_owned(), 1)),
        }
    }

    pub fn get(&self, metric: Metric) -> u64 {
        self.plain.iter().find(|(m, _)| *m == metric).map_or(0, |(_, c)| *c)
    }

    /// The EMF documents for what was counted (empty when nothing was, or metrics are off).
    pub fn documents(&self) -> Vec<Value> {
        let Some(function) = self.function else { return Vec::new() };
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut docs = Vec::new();
        if !self.plain.is_empty() || !self.values.is_empty() {
            let mut doc = Map::new();
            let metrics: Vec<Value> = self
                .plain
                .iter()
                .map(|(m, _)| *m)
                .chain(self.values.iter().map(|(m, _)| *m))
                .map(|m| json!({"Name": m.name(), "Unit": m.unit()}))
                .collect();
            doc.insert(
                "_aws".into(),
                json!({"Timestamp": timestamp, "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Function"]], "Metrics": metrics}]}),
            );
            doc.insert("Function".into(), json!(function));
            for (m, c) in &self.plain {
                doc.insert(m.name().into(), json!(c));
            }
            for (m, v) in &self.values {
                doc.insert(m.name().into(), json!(v));
            }
            docs.push(Value::Object(doc));
        }
        for (reason, count) in &self.rejected {
            docs.push(json!({
                "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Function"], ["Function", "Reason"]], "Metrics": [{"Name": "rejected", "Unit": "Count"}]}]},
                "Function": function,
                "Reason": reason,
                "rejected": count,
            }));
        }
        docs
    }

    pub fn flush(self) {
        let docs = self.documents();
        if docs.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for doc in docs {
            let _ = writeln!(out, "{doc}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_metrics_write_nothing() {
        let mut c = Metrics::disabled().counts();
        c.add(Metric::Queued, 1);
        assert!(c.documents().is_empty());
    }

    #[test]
    fn emf_documents_declare_their_metrics() {
        let mut c = Metrics { function: Some("ingest") }.counts();
        c.add(Metric::Received, 2);
        c.add(Metric::Queued, 1);
        c.add(Metric::Received, 1);
        c.add_rejected("bad_signature");
        let docs = c.documents();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["received"], 3);
        assert_eq!(docs[0]["queued"], 1);
        assert_eq!(docs[0]["Function"], "ingest");
        assert_eq!(docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        let names: Vec<_> = docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].clone())
            .collect();
        assert_eq!(names, vec![json!("received"), json!("queued")]);
        assert_eq!(docs[1]["Reason"], "bad_signature");

        assert_eq!(docs[1]["rejected"], 1);

        let mut c = Metrics { function: Some("ingest") }.counts();
        c.observe(Metric::SignedAge, 7200.0);
        let docs = c.documents();
        assert_eq!(docs[0]["signed_age"], 7200.0);
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "signed_age", "Unit": "Seconds"})
        );
    }
}
