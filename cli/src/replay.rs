//! `relay replay KEY…` (or `--status failed --since 1d`): puts jobs back on the queue as a
//! new attempt, which the worker runs against the rules it has now, so a job that failed
//! on a bad rule or exhausted credits runs again after the fix. The record keeps every
//! attempt in its history.
//!
//! A `DONE` job already had its effect (a persona exists; a replay creates another and pays
//! again), so it is refused unless `--force`. The command says what the replay will cost
//! and asks before it acts, unless `--yes`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use shared::cio_sync::SyncJob;
use shared::domain::{JobKey, RuleName};
use shared::rules::{Action, Rules};
use shared::store::{JobStatus, ListQuery, Requeue};
use shared::triggers::Triggers;

use crate::error::RelayError;
use crate::records::{Records, Where};
use crate::selection::Selection;
use crate::settings;

/// Jobs a `--status` replay looks at, at most.
const MAX_SELECTED: usize = 10_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to replay, by key (`SOURCE#EVENT_ID#RULE`, as `relay events` lists them)
    keys: Vec<String>,
    #[command(flatten)]
    place: Where,
    /// Instead of keys: every job these filters select (e.g. --status failed --since 1d)
    #[command(flatten)]
    selection: Selection,
    /// Replay DONE jobs too: each runs its action again and pays again
    #[arg(long)]
    force: bool,
    /// Replay without asking
    #[arg(long)]
    yes: bool,
    /// The rules the cost estimate reads (default: TRIGGERS_PATH, else the built-in rules)
    #[arg(long, value_name = "PATH")]
    triggers: Option<PathBuf>,
}

/// A job the command was asked about.
#[derive(Debug)]
struct Candidate {
    key: JobKey,
    status: JobStatus,
    rule: Option<String>,
    /// What it cost last time (a `DONE` job's credits).
    credits: Option<f64>,
    /// Why it will not be replayed, if it will not.
    refused: Option<String>,
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    let selecting = !args.selection.status.is_empty() || args.selection.rule.is_some() || args.selection.user.is_some();
    if args.keys.is_empty() && !selecting {
        return Err(RelayError::NothingToReplay);
    }
    if !args.keys.is_empty() && selecting {
        return Err(RelayError::KeysAndFilters);
    }
    let records = args.place.open().await?;
    let mut candidates = if selecting {
        selected(records.as_ref(), args.selection.query(MAX_SELECTED)).await?
    } else {
        named(records.as_ref(), &args.keys).await?
    };
    for c in &mut candidates {
        if c.refused.is_none() && c.status == JobStatus::Done && !args.force {
            c.refused = Some("DONE: it had its effect; --force runs it again (and pays again)".into());
        }
    }
    let rules = load_rules(args.triggers.as_deref());
    let (go, refused): (Vec<&Candidate>, Vec<&Candidate>) = candidates.iter().partition(|c| c.refused.is_none());

    println!("From {}:", records.describe());
    for c in &refused {
        println!("  skip    {}  {}  {}", c.key, c.status, c.refused.as_deref().unwrap_or_default());
    }
    if go.is_empty() {
        println!("Nothing to replay.");
        return Ok(if refused.is_empty() && selecting { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let mut estimate = Estimate::default();
    for c in &go {
        let cost = cost_of(c, rules.as_ref());
        println!("  replay  {}  {}  {}", c.key, c.status, cost.describe());
        estimate.add(&cost);
    }
    println!(
        "{} job{} to run again as a new attempt, against the rules the worker has now. Estimated cost: {}.",
        go.len(),
        if go.len() == 1 { "" } else { "s" },
        estimate.describe()
    );
    if !args.yes && !confirmed()? {
        println!("Nothing replayed.");
        return Ok(ExitCode::FAILURE);
    }

    let (mut replayed, mut failed) = (0, refused.len());
    for c in &go {
        match records.replay(&c.key, c.status).await? {
            Requeue::Requeued { .. } => {
                replayed += 1;
                println!("  queued  {}", c.key);
            }
            Requeue::Changed(now) => {
                failed += 1;
                let now = now.map_or("gone (expired)".to_owned(), |s| format!("{s} now"));
                println!("  skip    {}  it changed meanwhile: {now}", c.key);
            }
            Requeue::NoMessage => {
                failed += 1;
                println!("  skip    {}  the record keeps no queue message (it never started)", c.key);
            }
        }
    }
    println!("{replayed} replayed, {failed} not.");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn named(records: &dyn Records, keys: &[String]) -> Result<Vec<Candidate>, RelayError> {
    let mut out = Vec::new();
    for key in keys {
        let key = JobKey::from_stored(key.trim());
        let Some(record) = records.get(&key).await? else {
            return Err(RelayError::NoSuchJob { key: key.to_string(), place: records.describe() });
        };
        let refused = if record.is_held(std::time::SystemTime::now()) {
            Some("a worker is running it now".to_owned())
        } else if record.message.is_none() {
            Some("the record keeps no queue message (it never started), so there is nothing to replay".to_owned())
        } else {
            None
        };
        let summary = record.summary();
        out.push(Candidate { key, status: record.status, rule: record.rule, credits: summary.credits, refused });
    }
    Ok(out)
}

async fn selected(records: &dyn Records, mut query: ListQuery) -> Result<Vec<Candidate>, RelayError> {
    let mut out = Vec::new();
    loop {
        let page = records.list(&query).await?;
        out.extend(page.jobs.into_iter().map(|j| Candidate {
            key: j.key,
            refused: (j.status == JobStatus::Running).then(|| "a worker may be running it now".to_owned()),
            status: j.status,
            rule: j.rule,
            credits: j.credits,
        }));
        match page.next {
            Some(next) if out.len() < MAX_SELECTED => {
                query.limit = MAX_SELECTED - out.len();
                query.after = Some(next);
            }
            _ => return Ok(out),
        }
    }
}

fn confirmed() -> Result<bool, RelayError> {
    use std::io::Write;
    print!("Replay? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|source| RelayError::ReadFile { path: "standard input".into(), source })?;
    if read == 0 {
        println!("\n(no answer: standard input is closed; pass --yes to replay without asking)");
    }
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn load_rules(path: Option<&std::path::Path>) -> Option<Rules> {
    match Triggers::from_vars(&settings::environment(path)) {
        Ok(triggers) => Some(triggers.rules),
        Err(e) => {
            eprintln!("(no cost estimate from the rules: {e})");
            None
        }
    }
}

/// What one replay may cost, in credits.
#[derive(Debug, Clone, PartialEq)]
enum Cost {
    /// From the action's documented price: persona 300, Mave research 10–75, Generate 10–30.
    Range {
        action: &'static str,
        low: f64,
        high: f64,
    },
    /// What it cost last time (a rule the local rules do not have).
    LastTime(f64),
    Unknown,
}

impl Cost {
    fn describe(&self) -> String {
        match self {
            Cost::Range { action, low, high } if low == high => format!("{action}: {low} credits"),
            Cost::Range { action, low, high } => format!("{action}: {low}–{high} credits"),
            Cost::LastTime(c) => format!("{c} credits last time"),
            Cost::Unknown => "cost unknown (its rule is not in the local rules)".into(),
        }
    }
}

fn cost_of(candidate: &Candidate, rules: Option<&Rules>) -> Cost {
    let rule = candidate.rule.as_deref().and_then(|r| RuleName::parse(r).ok());
    let from_rules = rule.as_ref().and_then(|r| {
        if let Some(job) = SyncJob::parse(r.as_str()) {
            return Some(match job {
                SyncJob::CampaignStrategy => Cost::Range { action: "research + generate", low: 20.0, high: 105.0 },
                SyncJob::AttributePersonas => Cost::Range { action: "create_persona", low: 300.0, high: 300.0 },
            });
        }
        let action = &rules?.get(r)?.action;
        Some(match action {
            Action::CreatePersona(_) => Cost::Range { action: "create_persona", low: 300.0, high: 300.0 },
            Action::Research(_) => Cost::Range { action: "research", low: 10.0, high: 75.0 },
            Action::Generate(_) => Cost::Range { action: "generate", low: 10.0, high: 30.0 },
        })
    });
    match (from_rules, candidate.credits) {
        (Some(cost), _) => cost,
        (None, Some(c)) => Cost::LastTime(c),
        (None, None) => Cost::Unknown,
    }
}

#[derive(Debug, Default)]
struct Estimate {
    low: f64,
    high: f64,
    unknown: usize,
    by_action: BTreeMap<&'static str, usize>,
}

impl Estimate {
    fn add(&mut self, cost: &Cost) {
        match cost {
            Cost::Range { action, low, high } => {
                self.low += low;
                self.high += high;
                *self.by_action.entry(action).or_default() += 1;
            }
            Cost::LastTime(c) => {
                self.low += c;
                self.high += c;
            }
            Cost::Unknown => self.unknown += 1,
        }
    }

    fn describe(&self) -> String {
        let mut text = if self.low == self.high {
            format!("{} credits", self.low)
        } else {
            format!("{}–{} credits", self.low, self.high)
        };
        if !self.by_action.is_empty() {
            let parts: Vec<String> = self.by_action.iter().map(|(a, n)| format!("{n} × {a}")).collect();
            text.push_str(&format!(" ({})", parts.join(", ")));
        }
        if self.unknown > 0 {
            text.push_str(&format!(", plus {} job(s) of unknown cost", self.unknown));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(rule: &str, credits: Option<f64>) -> Candidate {
        Candidate {
            key: JobKey::from_stored("k"),
            status: JobStatus::Failed,
            rule: Some(rule.into()),
            credits,
            refused: None,
        }
    }

    #[test]
    fn the_estimate_reads_the_rules_action() {
        let rules = Triggers::embedded().unwrap().rules;
        let persona = cost_of(&candidate("segment-trial-started", None), Some(&rules));
        assert_eq!(persona, Cost::Range { action: "create_persona", low: 300.0, high: 300.0 });
        assert_eq!(cost_of(&candidate("gone-rule", Some(25.0)), Some(&rules)), Cost::LastTime(25.0));
        assert_eq!(cost_of(&candidate("gone-rule", None), Some(&rules)), Cost::Unknown);
        assert_eq!(
            cost_of(&candidate("attribute-personas", None), None),
            Cost::Range { action: "create_persona", low: 300.0, high: 300.0 }
        );
        let mut estimate = Estimate::default();
        estimate.add(&persona);
        estimate.add(&persona);
        estimate.add(&Cost::Range { action: "research", low: 10.0, high: 75.0 });
        assert_eq!(estimate.describe(), "610–675 credits (2 × create_persona, 1 × research)");
    }
}
