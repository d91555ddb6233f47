//! `relay serve`'s log on a terminal: one line per event and step, in columns (time, source,
//! event id, rule, outcome, detail), and in a dry run the request that would be sent, with
//! its JSON body pretty-printed below. The fields come from the same `tracing` events the
//! functions log; `--log-format json` prints those events as JSON lines instead.

use std::fmt;

use clap::ValueEnum;
use serde_json::Value;
use shared::telemetry::{SafeStdout, clean};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event, for a terminal
    Text,
    /// One JSON object per line, for tools
    Json,
}

/// Installs the global subscriber. The level comes from `RUST_LOG`, else `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_installed = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(SafeStdout { escape: false })
            .with_target(false)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
            .is_err(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(SpanFields)
            .with(tracing_subscriber::fmt::layer().event_format(Terminal).with_writer(SafeStdout { escape: false }))
            .try_init()
            .is_err(),
    };
}

/// An event's or a span's fields as text, in the order they were recorded.
#[derive(Debug, Default, Clone)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        // The event's own fields come last and win over its spans'.
        self.0.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Values are kept with their control characters escaped: a field an outsider controls (a
/// URL path with `%0a`) cannot start a line of its own. The line breaks this format prints
/// (a dry-run body) are its own.
impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), clean(value, true)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name(), clean(&format!("{value:?}"), true)));
    }
}

/// Keeps each span's fields, so that a worker line can show the job's source, id and rule.
struct SpanFields;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFields {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }
}

struct Terminal;

impl<S, N> FormatEvent<S, N> for Terminal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<Fields>() {
                    fields.0.extend(span_fields.0.iter().cloned());
                }
            }
        }
        event.record(&mut fields);
        writer.write_str(&render(&fields, *event.metadata().level(), &clock()))
    }
}

/// `HH:MM:SS` in UTC.
fn clock() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// Fields shown in the columns or the detail of an event line, not repeated as `key=value`.
const SHOWN: [&str; 13] = [
    "message",
    "method",
    "source",
    "event_id",
    "rule",
    "outcome",
    "reason",
    "mavera_id",
    "credits",
    "elapsed_ms",
    "dry_run",
    "path",
    "body",
];

fn render(fields: &Fields, level: Level, clock: &str) -> String {
    let message = fields.get("message").unwrap_or("");
    let (Some(source), Some(event_id)) = (fields.get("source"), fields.get("event_id")) else {
        // Not about one event: start-up, shutdown, warnings.
        let extra = rest(fields, &["message"]);
        return format!("{clock}  {:<5} {message}{extra}\n", level.as_str());
    };
    let rule = fields.get("rule").unwrap_or("-");
    let head = |outcome: &str| format!("{clock}  {source:<10} {event_id:<26} {rule:<26} {outcome:<9}");

    if let (Some(path), Some(body)) = (fields.get("path"), fields.get("body")) {
        // The dry-run request (Mavera's, or a destination's): method and path, then the body
        // as it would be sent.
        let pretty = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| body.to_owned());
        let indented: String = pretty.lines().map(|l| format!("    {l}\n")).collect();
        let method = fields.get("method").unwrap_or("POST");
        return format!("{} {method} {path}\n{indented}", head("would send"));
    }

    let outcome = fields.get("outcome");
    let detail = match outcome {
        Some("queued") => String::new(),
        Some("ignored" | "failed" | "skipped" | "retry") => fields.get("reason").unwrap_or(message).to_owned(),
        Some("done") => done_detail(fields),
        _ => format!("{message}{}", rest(fields, &SHOWN)),
    };
    let outcome = outcome.map(str::to_owned).unwrap_or_else(|| level.as_str().to_ascii_lowercase());
    format!("{} {detail}", head(&outcome)).trim_end().to_owned() + "\n"
}

/// What a finished job produced: Mavera's id, the credits, the time.
fn done_detail(fields: &Fields) -> String {
    let mut parts = Vec::new();
    if fields.get("dry_run") == Some("true") {
        parts.push("dry run, nothing sent".to_owned());
    }
    if let Some(id) = fields.get("mavera_id").filter(|id| *id != "-") {
        parts.push(id.to_owned());
    }
    if let Some(credits) = fields.get("credits") {
        parts.push(format!("{credits} credits"));
    }
    if let Some(ms) = fields.get("elapsed_ms") {
        parts.push(format!("{ms} ms"));
    }
    parts.join(", ")
}

/// The fields not already shown, as ` key=value`.
fn rest(fields: &Fields, shown: &[&str]) -> String {
    fields.0.iter().filter(|(k, _)| !shown.contains(k)).map(|(k, v)| format!(" {k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&'static str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    }

    #[test]
    fn an_event_step_is_one_line_in_columns() {
        let line = render(
            &fields(&[
                ("source", "segment"),
                ("event_id", "msg-1"),
                ("rule", "r"),
                ("outcome", "queued"),
                ("message", "event queued"),
            ]),
            Level::INFO,
            "12:00:00",
        );
        assert_eq!(line, format!("12:00:00  segment    {:<26} {:<26} queued\n", "msg-1", "r"));
    }

    #[test]
    fn a_finished_job_says_what_mavera_returned() {
        let line = render(
            &fields(&[
                ("source", "segment"),
                ("event_id", "m"),
                ("rule", "r"),
                ("outcome", "done"),
                ("attempt", "1"),
                ("elapsed_ms", "2004"),
                ("mavera_id", "clx1"),
                ("credits", "300.0"),
                ("dry_run", "false"),
            ]),
            Level::INFO,
            "t",
        );
        assert!(line.ends_with("done      clx1, 300.0 credits, 2004 ms\n"), "{line}");
    }

    #[test]
    fn a_dry_run_request_is_printed_with_its_body() {
        let text = render(
            &fields(&[
                ("source", "segment"),
                ("event_id", "m"),
                ("rule", "r"),
                ("path", "/mave/chat"),
                ("body", r#"{"message":"hi"}"#),
            ]),
            Level::INFO,
            "t",
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("would send POST /mave/chat"), "{text}");
        assert_eq!(&lines[1..], ["    {", "      \"message\": \"hi\"", "    }"]);
    }

    #[test]
    fn a_dry_run_delivery_is_printed_with_its_method() {
        let text = render(
            &fields(&[
                ("source", "segment"),
                ("event_id", "m"),
                ("rule", "r"),
                ("destination", "customerio"),
                ("method", "PUT"),
                ("path", "Customer.io /api/v1/customers/u1"),
                ("body", r#"{"_update":true}"#),
            ]),
            Level::INFO,
            "t",
        );
        assert!(text.lines().next().unwrap().ends_with("would send PUT Customer.io /api/v1/customers/u1"), "{text}");
    }

    #[test]
    fn other_lines_keep_their_fields() {
        let line = render(&fields(&[("message", "listening"), ("url", "http://x")]), Level::INFO, "t");
        assert_eq!(line, "t  INFO  listening url=http://x\n");
    }
}
