//! `relay events`: the jobs of a time window, newest first, one line each: when it was
//! received, source, event id, rule, status, credits and a short result (the persona's
//! name, the first words of the research or generation) or why it failed. `--json` prints
//! one JSON object per line instead.

use std::process::ExitCode;

use serde::Serialize;
use shared::store::{JobStatus, JobSummary};

use crate::error::RelayError;
use crate::records::Where;
use crate::selection::Selection;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    place: Where,
    #[command(flatten)]
    selection: Selection,
    /// At most this many jobs
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per job and line, for scripts
    #[arg(long)]
    json: bool,
}

/// A listing line as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct EventLine<'a> {
    pub received: &'a str,
    pub key: &'a str,
    pub source: &'a str,
    pub event_id: &'a str,
    pub rule: Option<&'a str>,
    pub status: JobStatus,
    pub user: Option<&'a str>,
    pub attempts: u32,
    pub credits: Option<f64>,
    pub summary: Option<&'a str>,
}

impl<'a> EventLine<'a> {
    pub fn of(job: &'a JobSummary) -> Self {
        EventLine {
            received: job.position.received(),
            key: job.key.as_str(),
            source: job.key.source(),
            event_id: job.key.event_id(),
            rule: job.rule.as_deref(),
            status: job.status,
            user: job.user.as_deref(),
            attempts: job.attempts,
            credits: job.credits,
            summary: job.summary.as_deref(),
        }
    }
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    let records = args.place.open().await?;
    let page = records.list(&args.selection.query(args.limit)).await?;
    if args.json {
        for job in &page.jobs {
            println!("{}", serde_json::to_string(&EventLine::of(job)).map_err(RelayError::Encode)?);
        }
    } else {
        print!("{}", table(&page.jobs));
        let more = if page.next.is_some() { "; there may be more: raise --limit or narrow --since" } else { "" };
        eprintln!(
            "{} jobs from {} in the last {}{more}. The whole record: relay show SOURCE#EVENT_ID#RULE",
            page.jobs.len(),
            records.describe(),
            humanize(args.selection.since),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-28 10:15:30Z` from `2026-11-28T10:15:30.123Z`.
pub fn short_time(received: &str) -> String {
    format!("{} {}Z", &received[..10], &received[11..19])
}

/// `300`, `25.5`, or `-`.
pub fn credits_text(credits: Option<f64>) -> String {
    match credits {
        Some(c) if c.fract() == 0.0 => format!("{c:.0}"),
        Some(c) => format!("{c}"),
        None => "-".into(),
    }
}

fn humanize(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The listing as aligned columns under a header.
fn table(jobs: &[JobSummary]) -> String {
    const HEADER: [&str; 7] = ["TIME", "SOURCE", "EVENT ID", "RULE", "STATUS", "CREDITS", "RESULT"];
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|j| {
            [
                short_time(j.position.received()),
                j.key.source().to_owned(),
                j.key.event_id().to_owned(),
                j.rule.clone().unwrap_or_else(|| "-".into()),
                j.status.to_string(),
                credits_text(j.credits),
                j.summary.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(HEADER.map(str::to_owned)).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            match i {
                5 => line.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                6 => line.push_str(cell),
                _ => line.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
