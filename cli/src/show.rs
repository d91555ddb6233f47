//! `relay show KEY`: one job's whole record, readable in a terminal: the event, the rule,
//! the status and each attempt, Mavera's full answer (research and generated texts as
//! paragraphs), the credits, and the notes. `--json` prints the record for scripts (the
//! queued message as JSON, not as a string).

use std::fmt::Write;
use std::process::ExitCode;

use serde_json::Value;
use shared::domain::JobKey;
use shared::queue::{Job, JobMessage};
use shared::store::JobRecord;
use shared::store::listing::credits_of;

use crate::error::RelayError;
use crate::events::{credits_text, short_time};
use crate::records::Where;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's key, `SOURCE#EVENT_ID#RULE` as `relay events` lists it (quote it in a shell)
    key: String,
    #[command(flatten)]
    place: Where,
    /// The record as JSON
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    let records = args.place.open().await?;
    let key = JobKey::from_stored(args.key.trim());
    let Some(record) = records.get(&key).await? else {
        return Err(RelayError::NoSuchJob { key: key.to_string(), place: records.describe() });
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&record)).map_err(RelayError::Encode)?);
    } else {
        print!("{}", render(&record));
    }
    Ok(ExitCode::SUCCESS)
}

/// The record as JSON, its message decoded.
pub fn as_json(record: &JobRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Some(message) = record.message.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()) {
        value["message"] = message;
    }
    value
}

/// The record for a terminal.
pub fn render(record: &JobRecord) -> String {
    let mut out = String::new();
    let key = &record.key;
    let _ = writeln!(out, "{key}");
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<10} {value}");
    };
    field("source", key.source().to_owned());
    field("event id", key.event_id().to_owned());
    field("rule", record.rule.clone().unwrap_or_else(|| "-".into()));
    if let Some(user) = &record.user {
        field("user", user.clone());
    }
    let attempts = match record.attempts {
        0 => "not started".to_owned(),
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    field("status", format!("{} ({attempts})", record.status));
    if let Some(position) = &record.position {
        field("received", short_time(position.received()));
    }
    field("credits", credits_text(credits_of(record.result.as_ref())));
    if let Some(until) = record.lease_until_ms {
        field("lease", format!("held until {}", short_time(&millis_text(until))));
    }
    field("expires", short_time(&millis_text(record.expires_at * 1000)));

    if let Some(error) = &record.error {
        section(&mut out, "Why");
        let _ = writeln!(out, "  {error}");
    }
    if let Some(result) = &record.result {
        section(&mut out, "Result");
        value_lines(&mut out, result, 1);
    }
    if !record.deliveries.is_empty() {
        section(&mut out, "Deliveries");
        for (destination, d) in &record.deliveries {
            let tries = match d.attempts {
                1 => "1 try".to_owned(),
                n => format!("{n} tries"),
            };
            let reason = d.reason.as_deref().map(|r| format!("  {r}")).unwrap_or_default();
            let _ = writeln!(out, "  {destination:<10} {:<8} {tries}, {}{reason}", d.state, short_time(&d.at));
        }
    }
    if !record.history.is_empty() {
        section(&mut out, "History");
        let mut attempt = 0;
        for step in &record.history {
            let label = if step.status == shared::store::JobStatus::Running {
                attempt += 1;
                format!("attempt {attempt} started")
            } else {
                step.status.to_string()
            };
            let detail = step.detail.as_deref().map(|d| format!("  {d}")).unwrap_or_default();
            let _ = writeln!(out, "  {}  {label}{detail}", short_time(&step.at));
        }
    }
    if !record.notes.is_empty() {
        section(&mut out, "Notes");
        for note in &record.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    section(&mut out, "Event");
    match record.message.as_deref().map(JobMessage::from_body) {
        Some(Ok(message)) => match &message.job {
            Job::Event { event } => {
                let _ = writeln!(
                    out,
                    "  {} `{}` from {}",
                    event.source,
                    event.name,
                    event.user_id.as_deref().unwrap_or("no user id")
                );
                value_lines(&mut out, &Value::Object(event.fields.clone()), 1);
            }
            _ => value_lines(&mut out, &serde_json::to_value(&message.job).unwrap_or(Value::Null), 1),
        },
        Some(Err(_)) => {
            let _ = writeln!(out, "  {}", record.message.as_deref().unwrap_or_default());
        }
        None => {
            let _ = writeln!(out, "  (not kept: the job has not started, so it cannot be replayed yet)");
        }
    }
    out
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}");
}

/// JSON as indented `key  value` lines; long or multi-line texts as paragraphs under
/// their key.
fn value_lines(out: &mut String, value: &Value, depth: usize) {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0).min(20);
            for (k, v) in map {
                match v {
                    Value::String(text) if text.contains('\n') || text.chars().count() > 80 => {
                        let _ = writeln!(out, "{indent}{k}:");
                        for line in text.lines() {
                            let _ = writeln!(out, "{indent}  {line}");
                        }
                    }
                    Value::Object(inner) if !inner.is_empty() => {
                        let _ = writeln!(out, "{indent}{k}:");
                        value_lines(out, v, depth + 1);
                    }
                    Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                        let _ = writeln!(out, "{indent}{k}:");
                        for item in items {
                            let _ = writeln!(out, "{indent}  -");
                            value_lines(out, item, depth + 2);
                        }
                    }
                    _ => {
                        let _ = writeln!(out, "{indent}{k:<width$}  {}", scalar(v));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{indent}{}", scalar(other));
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Epoch milliseconds as `2026-11-28T10:15:30.123Z`.
fn millis_text(ms: u64) -> String {
    shared::store::sortable_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_done_job_shows_where_its_result_went() {
        let record: JobRecord = serde_json::from_value(json!({
            "key": "segment#m-1#churn", "status": "DONE", "rule": "churn", "attempts": 1,
            "result": {"action": "research", "content": "They miss the export."}, "error": null,
            "notes": [], "lease_until_ms": null, "expires_at": 1_900_000_000u64,
            "deliveries": {
                "slack": {"state": "sent", "attempts": 1, "at": "2026-11-28T07:00:00Z"},
                "webhook": {"state": "failed", "attempts": 2, "reason": "the endpoint answered 410 Gone",
                            "at": "2026-11-28T07:00:01Z"}
            }
        }))
        .unwrap();
        let text = render(&record);
        let section = &text[text.find("Deliveries").expect(&text)..];
        let lines: Vec<&str> = section.lines().skip(1).take(2).collect();
        assert!(lines[0].contains("slack") && lines[0].contains("sent") && lines[0].contains("1 try"), "{text}");
        assert!(
            lines[1].contains("webhook")
                && lines[1].contains("failed")
                && lines[1].contains("2 tries")
                && lines[1].contains("410 Gone"),
            "{text}"
        );
    }
}
