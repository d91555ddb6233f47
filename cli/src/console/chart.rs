//! Two small bar charts as inline SVG: jobs per UTC day (the failed part in red) and
//! credits per day. Drawn on the server; the page needs no script.

use std::collections::BTreeMap;
use std::fmt::Write;

use shared::store::{JobStatus, JobSummary};

use super::html::esc;

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 150.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 22.0;

#[derive(Default)]
struct Day {
    jobs: f64,
    failed: f64,
    credits: f64,
}

/// Every day of the window (so a quiet day shows as empty), then the jobs'.
fn by_day<'a>(jobs: &'a [JobSummary], window: &'a [String]) -> BTreeMap<&'a str, Day> {
    let mut days: BTreeMap<&str, Day> = window.iter().map(|d| (d.as_str(), Day::default())).collect();
    for j in jobs {
        let d = days.entry(j.position.day()).or_default();
        d.jobs += 1.0;
        d.credits += j.credits.unwrap_or(0.0);
        if j.status == JobStatus::Failed {
            d.failed += 1.0;
        }
    }
    days
}

pub fn jobs_per_day(jobs: &[JobSummary], window: &[String]) -> String {
    let days = by_day(jobs, window);
    bars("Jobs per day (failed in red)", &days, |d| (d.jobs, d.failed))
}

pub fn credits_per_day(jobs: &[JobSummary], window: &[String]) -> String {
    let days = by_day(jobs, window);
    bars("Credits per day", &days, |d| (d.credits, 0.0))
}

/// One bar per day: `value` tall, its `part` drawn over it in red.
fn bars(title: &str, days: &BTreeMap<&str, Day>, value: impl Fn(&Day) -> (f64, f64)) -> String {
    let mut svg = format!(
        "<svg role=\"img\" aria-label=\"{t}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\" font-family=\"sans-serif\">\
         <text x=\"8\" y=\"15\" font-weight=\"600\">{t}</text>",
        t = esc(title)
    );
    if days.values().all(|d| value(d).0 == 0.0) {
        let _ = write!(svg, "<text x=\"8\" y=\"{}\" fill=\"#888\">no jobs</text></svg>", HEIGHT / 2.0);
        return svg;
    }
    let max = days.values().map(|d| value(d).0).fold(0.0, f64::max).max(1.0);
    let slot = (WIDTH - 16.0) / days.len() as f64;
    let bar = (slot * 0.7).min(46.0);
    let plot = HEIGHT - TOP - BOTTOM;
    for (i, (day, d)) in days.iter().enumerate() {
        let (total, part) = value(d);
        let x = 8.0 + i as f64 * slot + (slot - bar) / 2.0;
        let h = plot * total / max;
        let y = TOP + plot - h;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"#3a6fc4\"><title>{day}: {total}</title></rect>"
        );
        if part > 0.0 {
            let hp = plot * part / max;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hp:.1}\" fill=\"#c23b32\"/>",
                TOP + plot - hp
            );
        }
        let cx = x + bar / 2.0;
        let _ = write!(
            svg,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{total}</text>",
            (y - 3.0).max(TOP - 4.0) + 0.0
        );
        let _ = write!(
            svg,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            HEIGHT - 7.0,
            esc(&day[5..])
        );
    }
    svg.push_str("</svg>");
    svg
}
