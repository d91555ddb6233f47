//! `relay check`: validates the trigger rules and the configuration with the functions a
//! cold start uses, prints the rules as a table and says which settings are missing. Exits
//! non-zero when `relay serve` would refuse to start with this environment.

use std::path::PathBuf;
use std::process::ExitCode;

use shared::config::{self, Vars, vars};
use shared::deliver::DestinationName;
use shared::domain::Source;
use shared::rules::{Rule, Rules};
use shared::triggers::Triggers;
use shared::worker::{Enrichment, Mavera};

use crate::error::RelayError;
use crate::settings::{self, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trigger rules file (default: TRIGGERS_PATH, else the rules built in)
    #[arg(long, value_name = "PATH")]
    triggers: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, RelayError> {
    let vars = settings::environment(args.triggers.as_deref());
    // A bad file stops here, with the error naming the rule and the field.
    let triggers = Triggers::from_vars(&vars)?;
    let rules = &triggers.rules;
    println!("{}: {} rule{}\n", triggers.origin(), rules.len(), if rules.len() == 1 { "" } else { "s" });
    print!("{}", table(rules));

    println!("\nsigning secrets (a source without its secret is off; the others run):");
    for source in Source::ALL {
        let var = secret_var(source);
        let used_by = rules.iter().filter(|r| r.source == source).count();
        let previous = config::optional(&vars, &format!("{var}_PREVIOUS")).is_some();
        let state = match (config::optional(&vars, var), used_by) {
            (Some(_), _) if previous => "set (2 secrets, rotating)".to_owned(),
            (Some(_), _) => "set (1 secret)".to_owned(),
            (None, 0) => "not set (no rule uses it, so /webhooks/".to_owned() + source.as_str() + " is off)",
            (None, _) => format!("MISSING: /webhooks/{source} is off (503 source_disabled) until it is set"),
        };
        println!("  {var:<24} {state:<24} {used_by} rule{}", if used_by == 1 { "" } else { "s" });
    }
    println!("\nMavera and Customer.io:");
    for line in services(&vars, rules) {
        println!("  {line}");
    }
    println!("\ndestinations (results go where a rule's `deliver` says; one without credentials is off alone):");
    for line in destinations(&vars, rules) {
        println!("  {line}");
    }

    // The same resolution `relay serve` starts with.
    match Settings::resolve(&vars, false) {
        Ok(settings) => {
            println!("\nok: `relay serve` starts with this configuration ({})", describe(&settings));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("\nerror: {}", shared::telemetry::chain(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn secret_var(source: Source) -> &'static str {
    match source {
        Source::Segment => vars::SEGMENT_SHARED_SECRET,
        Source::CustomerIo => vars::CIO_WEBHOOK_SECRET,
    }
}

/// Where the Mavera and Customer.io settings stand, locally and for the functions.
fn services(vars: &dyn Vars, rules: &Rules) -> Vec<String> {
    let mut lines = Vec::new();
    match config::optional(vars, vars::MAVERA_API_KEY) {
        Some(_) => lines.push(format!(
            "{:<24} set: requests go to {}",
            vars::MAVERA_API_KEY,
            config::optional(vars, vars::MAVERA_BASE_URL).unwrap_or_else(|| shared::mavera::DEFAULT_BASE_URL.to_owned())
        )),
        None => lines.push(format!(
            "{:<24} not set: `relay serve` prints requests instead of sending them (the worker function needs it, or DRY_RUN=true)",
            vars::MAVERA_API_KEY
        )),
    }
    let enriching: Vec<&str> = rules.iter().filter(|r| r.enrich).map(|r| r.name.as_str()).collect();
    match (config::optional(vars, vars::CIO_APP_KEY), enriching.is_empty()) {
        (Some(_), _) => lines.push(format!("{:<24} set: attribute lookups and the cio-sync jobs can run", vars::CIO_APP_KEY)),
        (None, true) => lines.push(format!("{:<24} not set: no rule enriches, so none is needed here", vars::CIO_APP_KEY)),
        (None, false) => lines.push(format!(
            "{:<24} not set: needed by {} (enrich = true), which is disabled (its jobs recorded SKIPPED); every other rule runs",
            vars::CIO_APP_KEY,
            enriching.join(", ")
        )),
    }
    lines
}

/// Each destination: whether its credentials are usable, and which rules deliver there. A
/// destination that is off turns off only those deliveries (recorded `failed` with the reason).
fn destinations(vars: &dyn Vars, rules: &Rules) -> Vec<String> {
    let settings = config::destinations(vars);
    DestinationName::ALL
        .into_iter()
        .map(|d| {
            let using: Vec<&str> = rules.delivering_to(d).iter().map(|r| r.name.as_str()).collect();
            let by = if using.is_empty() {
                "no rule delivers here".to_owned()
            } else {
                format!("used by {}", using.join(", "))
            };
            let state = match settings.problem(d) {
                None => "ready".to_owned(),
                Some(problem) if using.is_empty() => format!("not set ({problem})"),
                Some(problem) => format!("OFF, its deliveries are recorded failed: {problem}"),
            };
            format!("{:<11} {by}; {state}", d.as_str())
        })
        .collect()
}

fn describe(settings: &Settings) -> String {
    let mavera = match &settings.worker.mavera {
        Mavera::DryRun { reason } => format!("dry run, as {reason}"),
        Mavera::Live(config) => format!("calling {}", config.base_url),
    };
    let disabled;
    let enrichment = match &settings.worker.enrichment {
        Enrichment::NotNeeded => "",
        Enrichment::Lookup(_) => ", attributes looked up in Customer.io",
        Enrichment::Unavailable { rules } => {
            disabled = format!(", {} disabled (no CIO_APP_KEY)", rules.join(", "));
            disabled.as_str()
        }
    };
    format!("{mavera}{enrichment}")
}

/// The rules as an aligned table: name, source, events, conditions, action, guards, destinations.
pub fn table(rules: &Rules) -> String {
    let header = ["NAME", "SOURCE", "EVENTS", "CONDITIONS", "ACTION", "GUARDS", "DELIVER"].map(str::to_owned);
    let rows: Vec<[String; 7]> = std::iter::once(header).chain(rules.iter().map(row)).collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn row(rule: &Rule) -> [String; 7] {
    let mut conditions: Vec<String> = rule.conditions.iter().map(|c| c.describe()).collect();
    conditions.extend(rule.after_enrichment.iter().map(|c| format!("{} (after lookup)", c.describe())));
    let mut guards = Vec::new();
    if let Some(cap) = rule.daily_cap {
        guards.push(format!("{cap}/day"));
    }
    if rule.once_per_user {
        guards.push("once per user".to_owned());
    }
    if rule.enrich {
        guards.push("enrich".to_owned());
    }
    [
        rule.name.to_string(),
        rule.source.as_str().to_owned(),
        rule.events.join(", "),
        if conditions.is_empty() { "-".to_owned() } else { conditions.join("; ") },
        rule.action.describe(),
        if guards.is_empty() { "-".to_owned() } else { guards.join(", ") },
        if rule.deliver.is_empty() {
            "-".to_owned()
        } else {
            rule.deliver.iter().map(|t| t.name().as_str()).collect::<Vec<_>>().join(", ")
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_rule_with_its_guards() {
        let text = table(&Triggers::embedded().unwrap().rules);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        let trial = lines.iter().find(|l| l.starts_with("segment-trial-started")).unwrap();
        assert!(
            trial.contains("trial_started")
                && trial.contains("create_persona")
                && trial.contains("20/day, once per user"),
            "{trial}"
        );
        let cio = lines.iter().find(|l| l.starts_with("cio-high-value-alert")).unwrap();
        assert!(cio.contains("unsubscribed, bounced, spammed"), "{cio}");
        assert!(cio.contains("customer.plan in [pro, enterprise, business] (after lookup)"), "{cio}");
    }
}
