//! The console's two pages, rendered on the server: the list (filters, totals per rule, jobs
//! and credits per day, the recent jobs) and one job (its result in full, its history, its
//! event).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;
use shared::queue::{Job, JobMessage};
use shared::store::listing::credits_of;
use shared::store::{JobRecord, JobStatus, JobSummary};

use super::html::{esc, page, url_value};
use crate::events::{credits_text, short_time};

/// The list page's filters, as its form submits them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filters {
    /// `1h`, `6h`, `1d`, `2d`, `7d`.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

pub const WINDOWS: [&str; 5] = ["1h", "6h", "1d", "2d", "7d"];
pub const DEFAULT_WINDOW: &str = "7d";
/// Rows of the recent-jobs table.
pub const ROWS: usize = 200;

/// The jobs of the window (newest first, at most `cap`), summed and listed.
pub fn list_page(place: &str, filters: &Filters, jobs: &[JobSummary], capped: bool, days: &[String]) -> String {
    let mut body = String::new();
    filter_form(&mut body, filters);
    if capped {
        let _ =
            write!(body, "<p class=\"note\">Totals and charts cover the newest {} jobs of the window.</p>", jobs.len());
    }
    totals(&mut body, jobs);
    let _ = write!(
        body,
        "<div class=\"charts\">{}{}</div>",
        super::chart::jobs_per_day(jobs, days),
        super::chart::credits_per_day(jobs, days)
    );
    recent(&mut body, jobs);
    page("mavera-relay: events", place, &body)
}

fn filter_form(body: &mut String, f: &Filters) {
    let since = f.since.as_deref().unwrap_or(DEFAULT_WINDOW);
    let _ =
        write!(body, "<form class=\"filters\" method=\"get\" action=\"/console\"><label>since<select name=\"since\">");
    for w in WINDOWS {
        let selected = if w == since { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{w}\"{selected}>last {w}</option>");
    }
    let _ = write!(body, "</select></label><label>status<select name=\"status\"><option value=\"\">any</option>");
    for s in ["CLAIMED", "RUNNING", "RETRYING", "DONE", "FAILED", "SKIPPED"] {
        let selected = if f.status.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(s)) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{s}\"{selected}>{s}</option>");
    }
    let _ = write!(
        body,
        "</select></label><label>rule<input name=\"rule\" value=\"{}\"></label>\
         <label>user<input name=\"user\" value=\"{}\"></label><button type=\"submit\">Show</button></form>",
        esc(f.rule.as_deref().unwrap_or_default()),
        esc(f.user.as_deref().unwrap_or_default()),
    );
}

#[derive(Default)]
struct RuleTotals {
    jobs: usize,
    done: usize,
    failed: usize,
    skipped: usize,
    open: usize,
    credits: f64,
}

fn totals(body: &mut String, jobs: &[JobSummary]) {
    let mut by_rule: BTreeMap<&str, RuleTotals> = BTreeMap::new();
    for j in jobs {
        let t = by_rule.entry(j.rule.as_deref().unwrap_or("-")).or_default();
        t.jobs += 1;
        t.credits += j.credits.unwrap_or(0.0);
        match j.status {
            JobStatus::Done => t.done += 1,
            JobStatus::Failed => t.failed += 1,
            JobStatus::Skipped => t.skipped += 1,
            _ => t.open += 1,
        }
    }
    let _ = write!(
        body,
        "<h2>Per rule</h2><table><tr><th>rule</th><th class=\"num\">jobs</th><th class=\"num\">done</th>\
         <th class=\"num\">failed</th><th class=\"num\">skipped</th><th class=\"num\">in progress</th><th class=\"num\">credits</th></tr>"
    );
    for (rule, t) in &by_rule {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(rule),
            t.jobs,
            t.done,
            t.failed,
            t.skipped,
            t.open,
            credits_text(Some(t.credits)),
        );
    }
    if by_rule.is_empty() {
        let _ = write!(body, "<tr><td colspan=\"7\" class=\"note\">No jobs in this window.</td></tr>");
    }
    let _ = write!(body, "</table>");
}

fn recent(body: &mut String, jobs: &[JobSummary]) {
    let _ = write!(
        body,
        "<h2>Recent jobs</h2><table><tr><th>time (UTC)</th><th>source</th><th>event id</th><th>rule</th><th>status</th>\
         <th class=\"num\">credits</th><th>result or reason</th></tr>"
    );
    for j in jobs.iter().take(ROWS) {
        let _ = write!(
            body,
            "<tr><td>{time}</td><td>{source}</td><td class=\"key\"><a href=\"/console/job?key={link}\">{id}</a></td><td>{rule}</td>\
             <td><span class=\"status {status}\">{status}</span></td><td class=\"num\">{credits}</td><td>{summary}</td></tr>",
            time = esc(&short_time(j.position.received())),
            source = esc(j.key.source()),
            link = url_value(j.key.as_str()),
            id = esc(j.key.event_id()),
            rule = esc(j.rule.as_deref().unwrap_or("-")),
            status = j.status,
            credits = credits_text(j.credits),
            summary = esc(j.summary.as_deref().unwrap_or_default()),
        );
    }
    let _ = write!(body, "</table>");
    if jobs.len() > ROWS {
        let _ = write!(
            body,
            "<p class=\"note\">The newest {ROWS} of {} jobs; narrow the filters to see others.</p>",
            jobs.len()
        );
    }
}

/// One job: its fields, Mavera's answer in full, where it was delivered, the history, the event.
pub fn job_page(place: &str, record: &JobRecord, replay_hint: &str) -> String {
    let mut body = String::new();
    let key = &record.key;
    let _ = write!(body, "<h2 class=\"key\">{}</h2><dl>", esc(key.as_str()));
    let mut field = |name: &str, value: String| {
        let _ = write!(body, "<dt>{name}</dt><dd>{value}</dd>");
    };
    field("source", esc(key.source()));
    field("event id", esc(key.event_id()));
    field("rule", esc(record.rule.as_deref().unwrap_or("-")));
    field("user", esc(record.user.as_deref().unwrap_or("-")));
    field(
        "status",
        format!("<span class=\"status {0}\">{0}</span> after {1} attempt(s)", record.status, record.attempts),
    );
    if let Some(p) = &record.position {
        field("received", esc(&short_time(p.received())));
    }
    field("credits", credits_text(credits_of(record.result.as_ref())));
    let _ = write!(body, "</dl>");

    if let Some(error) = &record.error {
        let _ = write!(body, "<h2>Why</h2><div class=\"text\">{}</div>", esc(error));
    }
    if let Some(result) = &record.result {
        let _ = write!(body, "<h2>Mavera's answer</h2>");
        result_html(&mut body, result);
    }
    if !record.deliveries.is_empty() {
        let _ = write!(
            body,
            "<h2>Deliveries</h2><table><tr><th>destination</th><th>state</th><th>tries</th><th>at (UTC)</th><th>reason</th></tr>"
        );
        for (destination, d) in &record.deliveries {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><span class=\"status {1}\">{1}</span></td><td>{2}</td><td>{3}</td><td>{4}</td></tr>",
                esc(destination),
                d.state,
                d.attempts,
                esc(&d.at),
                esc(d.reason.as_deref().unwrap_or_default()),
            );
        }
        let _ = write!(body, "</table>");
    }
    if !record.history.is_empty() {
        let _ = write!(body, "<h2>Attempts</h2><table><tr><th>at (UTC)</th><th>status</th><th>detail</th></tr>");
        for step in &record.history {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><span class=\"status {1}\">{1}</span></td><td>{2}</td></tr>",
                esc(&step.at),
                step.status,
                esc(step.detail.as_deref().unwrap_or_default()),
            );
        }
        let _ = write!(body, "</table>");
    }
    if !record.notes.is_empty() {
        let _ = write!(body, "<h2>Notes</h2><ul>");
        for note in &record.notes {
            let _ = write!(body, "<li>{}</li>", esc(note));
        }
        let _ = write!(body, "</ul>");
    }
    let _ = write!(body, "<h2>Event</h2>");
    match record.message.as_deref().map(JobMessage::from_body) {
        Some(Ok(message)) => {
            let shown = match &message.job {
                Job::Event { event } => serde_json::to_value(event),
                other => serde_json::to_value(other),
            };
            let pretty = shown.ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or_default();
            let _ = write!(body, "<pre>{}</pre>", esc(&pretty));
        }
        Some(Err(_)) => {
            let _ = write!(body, "<pre>{}</pre>", esc(record.message.as_deref().unwrap_or_default()));
        }
        None => {
            let _ =
                write!(body, "<p class=\"note\">Not kept yet: the worker keeps the event when it starts the job.</p>");
        }
    }
    let _ = write!(
        body,
        "<h2>Replay</h2><p class=\"note\">This page only reads. To run the job again:</p><pre>{}</pre>",
        esc(replay_hint)
    );
    page(&format!("mavera-relay: {key}"), place, &body)
}

/// Texts (research, generations) as readable paragraphs; everything else as fields.
fn result_html(body: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let _ = write!(body, "<dl>");
            for (k, v) in map {
                match v {
                    Value::String(text) if text.contains('\n') || text.chars().count() > 80 => {
                        let _ = write!(body, "<dt>{}</dt><dd><div class=\"text\">{}</div></dd>", esc(k), esc(text));
                    }
                    Value::Object(_) => {
                        let _ = write!(body, "<dt>{}</dt><dd>", esc(k));
                        result_html(body, v);
                        let _ = write!(body, "</dd>");
                    }
                    Value::String(text) => {
                        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(text));
                    }
                    other => {
                        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&other.to_string()));
                    }
                }
            }
            let _ = write!(body, "</dl>");
        }
        other => {
            let _ = write!(body, "<pre>{}</pre>", esc(&serde_json::to_string_pretty(other).unwrap_or_default()));
        }
    }
}
