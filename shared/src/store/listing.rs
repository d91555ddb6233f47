//! What operators read: jobs listed newest first (`relay events`, the console page), each
//! record's history of attempts, and the short line a listing shows for a result.
//!
//! A listing walks the jobs in the order they were received, by position: the received time
//! (UTC, milliseconds, fixed width) then the job key, so every job has its own place and a
//! page can end between two jobs of the same millisecond. On DynamoDB that is the sort key
//! of the `by-day` index, partitioned by UTC day ([`super::DynamoStore`]); the memory twin
//! keeps the same order in a sorted set.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JobStatus, sortable_millis};
use crate::domain::{JobKey, truncate_chars};

/// A listing line's result or reason is cut to this many characters.
pub const MAX_SUMMARY_CHARS: usize = 120;

/// Characters in a received time: `2026-11-28T10:15:30.123Z`.
const TIME_LEN: usize = 24;

/// Where a job sits in the listing: `{received}#{key}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Position(String);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{0}` is not a listing position (expected `2026-11-28T10:15:30.123Z#<job key>`, as a page's `next` gives it)")]
pub struct PositionError(pub String);

impl Position {
    pub fn new(received: SystemTime, key: &JobKey) -> Self {
        Position(format!("{}#{key}", sortable_millis(received)))
    }

    pub fn parse(s: impl Into<String>) -> Result<Self, PositionError> {
        let s = s.into();
        let valid = s.len() > TIME_LEN + 1
            && s.is_char_boundary(TIME_LEN)
            && s.as_bytes()[TIME_LEN] == b'#'
            && s.as_bytes()[..TIME_LEN].iter().all(|b| b.is_ascii_digit() || b"-:.TZ".contains(b));
        if valid { Ok(Position(s)) } else { Err(PositionError(s)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the job was received, `2026-11-28T10:15:30.123Z`.
    pub fn received(&self) -> &str {
        &self.0[..TIME_LEN]
    }

    /// Its UTC day, `2026-11-28`: the index partition it is in.
    pub fn day(&self) -> &str {
        &self.0[..10]
    }

    pub fn key(&self) -> JobKey {
        JobKey::from_stored(&self.0[TIME_LEN + 1..])
    }
}

impl TryFrom<String> for Position {
    type Error = PositionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Position::parse(s)
    }
}

impl From<Position> for String {
    fn from(p: Position) -> String {
        p.0
    }
}

/// Positions compare as their text, so a sorted set of them can be ranged by text bounds.
impl std::borrow::Borrow<str> for Position {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The positions of a time window, as text bounds: every job received at or after `since`
/// and at or before `until` (to the millisecond) sorts between them.
pub fn window_bounds(since: SystemTime, until: SystemTime) -> (String, String) {
    // `#` (after the time) sorts below `~`, so every key of `until`'s millisecond is inside.
    (sortable_millis(since), format!("{}~", sortable_millis(until)))
}

/// Which jobs a listing keeps. Empty parts keep everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListFilter {
    /// Any of these statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<JobStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ListFilter {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.rule.is_none() && self.user.is_none()
    }

    pub fn keeps(&self, job: &JobSummary) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && self.rule.as_ref().is_none_or(|r| job.rule.as_ref() == Some(r))
            && self.user.as_ref().is_none_or(|u| job.user.as_ref() == Some(u))
    }
}

/// A page of a listing: jobs received between `since` and `until`, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub since: SystemTime,
    pub until: SystemTime,
    pub filter: ListFilter,
    /// At most this many jobs.
    pub limit: usize,
    /// Continue below this position (the previous page's `next`).
    pub after: Option<Position>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListPage {
    pub jobs: Vec<JobSummary>,
    /// Where the next page starts, if the window may hold more.
    pub next: Option<Position>,
}

/// One line of a listing: what `relay events` and the console show without reading the
/// whole record (on DynamoDB, exactly what the index projects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub key: JobKey,
    pub position: Position,
    pub status: JobStatus,
    pub rule: Option<String>,
    pub user: Option<String>,
    /// The persona's name, the first words of the research or generation, or why it
    /// failed, was skipped or is being retried.
    pub summary: Option<String>,
    pub credits: Option<f64>,
    pub attempts: u32,
}

/// One entry of a record's history: an attempt starting or ending, or an operator's replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// UTC, to the millisecond: `2026-11-28T10:15:30.123Z`.
    pub at: String,
    /// The status the record took.
    pub status: JobStatus,
    /// The result's short line, the reason, or what the operator did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The line a listing shows for a record: a short form of its result, else its reason.
pub fn summary_text(result: Option<&Value>, error: Option<&str>) -> Option<String> {
    let text = match (result, error) {
        (Some(result), _) => result_line(result)?,
        (None, Some(reason)) => reason.to_owned(),
        (None, None) => return None,
    };
    Some(one_line(&text))
}

/// The credits a result reports.
pub fn credits_of(result: Option<&Value>) -> Option<f64> {
    result.and_then(|r| r.get("credits")).and_then(Value::as_f64)
}

fn result_line(result: &Value) -> Option<String> {
    let text = |pointer: &str| result.pointer(pointer).and_then(Value::as_str);
    if result.get("dry_run").and_then(Value::as_bool) == Some(true) {
        return Some(match text("/request/path") {
            Some(path) => format!("dry run: POST {path}"),
            None => "dry run".to_owned(),
        });
    }
    if result.get("already_existed").and_then(Value::as_bool) == Some(true) {
        return Some(format!("persona already existed: {}", text("/name").unwrap_or("?")));
    }
    // A persona's name, a research answer, a generation, a campaign analysis's generation
    // (else its Mave answer).
    ["/name", "/content", "/output", "/generation/output", "/mave/content"]
        .iter()
        .find_map(|p| text(p))
        .map(str::to_owned)
}

/// Whitespace folded to single spaces and Markdown heading marks dropped (research answers
/// start with `## Findings`), cut to [`MAX_SUMMARY_CHARS`] with an ellipsis.
fn one_line(text: &str) -> String {
    let folded = text
        .lines()
        .map(|line| line.trim_start().trim_start_matches('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    let cut = truncate_chars(&folded, MAX_SUMMARY_CHARS - 1);
    if cut.len() < folded.len() { format!("{cut}…") } else { folded }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;

    #[test]
    fn positions_sort_by_time_then_key_and_give_their_parts_back() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let a = Position::new(t, &JobKey::from_stored("segment#m#1#r"));
        assert_eq!(a.as_str(), "2023-11-14T22:13:20.123Z#segment#m#1#r");
        assert_eq!(
            (a.day(), a.received(), a.key().as_str()),
            ("2023-11-14", "2023-11-14T22:13:20.123Z", "segment#m#1#r")
        );
        let b = Position::new(t + Duration::from_millis(1), &JobKey::from_stored("customerio#a#r"));
        assert!(a < b);
        assert_eq!(Position::parse(a.to_string()).unwrap(), a);
        for bad in ["", "2023-11-14T22:13:20.123Z", "2023-11-14T22:13:20.123Z#", "not a position at all, no#key"] {
            assert!(Position::parse(bad).is_err(), "{bad}");
        }
        let (lo, hi) = window_bounds(t, t);
        assert!(lo.as_str() <= a.as_str() && a.as_str() <= hi.as_str(), "a window's ends are inclusive");
        assert!(b.as_str() > hi.as_str());
    }

    #[test]
    fn summaries_show_the_result_or_the_reason() {
        let persona =
            json!({"action": "create_persona", "persona_id": "p1", "name": "Trial User — u1", "credits": 300});
        assert_eq!(summary_text(Some(&persona), None).as_deref(), Some("Trial User — u1"));
        assert_eq!(credits_of(Some(&persona)), Some(300.0));
        let research = json!({"action": "research", "content": "## Findings\n\nUsers upgrade\nbecause   of the #1 plan.", "credits": 25.0});
        assert_eq!(
            summary_text(Some(&research), None).as_deref(),
            Some("Findings Users upgrade because of the #1 plan.")
        );
        let long = json!({"action": "generate", "output": "word ".repeat(100)});
        let line = summary_text(Some(&long), None).unwrap();
        assert_eq!(line.chars().count(), MAX_SUMMARY_CHARS);
        assert!(line.ends_with('…'));
        let dry = json!({"dry_run": true, "request": {"method": "POST", "path": "/personas", "body": {}}});
        assert_eq!(summary_text(Some(&dry), None).as_deref(), Some("dry run: POST /personas"));
        let existed = json!({"action": "create_persona", "already_existed": true, "name": "N"});
        assert_eq!(summary_text(Some(&existed), None).as_deref(), Some("persona already existed: N"));
        let analysis = json!({"mave": {"content": "M"}, "generation": {"output": "G"}});
        assert_eq!(summary_text(Some(&analysis), None).as_deref(), Some("G"));
        assert_eq!(summary_text(None, Some("Mavera answered 402")).as_deref(), Some("Mavera answered 402"));
        assert_eq!(summary_text(None, None), None);
    }

    #[test]
    fn filters_keep_what_they_name() {
        let job = JobSummary {
            key: JobKey::from_stored("segment#m#r"),
            position: Position::new(UNIX_EPOCH, &JobKey::from_stored("segment#m#r")),
            status: JobStatus::Failed,
            rule: Some("r".into()),
            user: Some("u1".into()),
            summary: None,
            credits: None,
            attempts: 1,
        };
        assert!(ListFilter::default().keeps(&job));
        assert!(ListFilter { statuses: vec![JobStatus::Done, JobStatus::Failed], ..Default::default() }.keeps(&job));
        assert!(!ListFilter { statuses: vec![JobStatus::Done], ..Default::default() }.keeps(&job));
        assert!(!ListFilter { rule: Some("other".into()), ..Default::default() }.keeps(&job));
        assert!(ListFilter { user: Some("u1".into()), rule: Some("r".into()), ..Default::default() }.keeps(&job));
        assert!(!ListFilter { user: Some("u2".into()), ..Default::default() }.keeps(&job));
    }
}
