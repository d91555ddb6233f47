//! `relay doctor`: for every credential the relay is configured with, one authenticated call
//! that costs nothing and proves the credential, the host and the region, with one line per
//! check and the fix when it fails. The exit code is 1 if any check failed, so scripts and the
//! deploy steps can stop there.
//!
//! The credentials come from the environment, or with `--stack NAME` from the deployed stack:
//! its outputs name the two secrets (read with your own AWS profile), its parameters give
//! `CioRegion`, `MaveraBaseUrl` and `DryRun`. With `--stack`, no secret is taken from the
//! environment; only the hosts' overrides are (`CIO_APP_API_URL`, `CIO_TRACK_API_URL`).
//!
//! - Mavera: `GET /personas?limit=1` (0 credits).
//! - Customer.io App API: the attributes of a made-up person (`404` proves the key, the
//!   region's host and the scope the enrichment uses).
//! - Customer.io Track API: `GET /api/v1/accounts/region` with the Site ID and Track key,
//!   and the region it reports against `CIO_REGION`.
//! - Signing secrets: set for every source that has rules (no call can check them).
//! - Slack and the result webhook: only with `--send-test-messages`, a test message and a
//!   signed test event (they land in a channel and at the receiver).

mod checks;
mod messages;
mod stack;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use shared::config::{Layered, ProcessEnv, Vars, vars};

use crate::error::RelayError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Check a deployed stack's credentials (its secrets and parameters, read with your AWS profile)
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// The AWS profile for --stack (default: AWS_PROFILE, else the default credentials)
    #[arg(long, value_name = "PROFILE", requires = "stack")]
    profile: Option<String>,
    /// The stack's AWS region (default: AWS_REGION, else the profile's)
    #[arg(long, value_name = "REGION", requires = "stack")]
    region: Option<String>,
    /// Also post a test message to Slack and a signed test event to the result webhook
    #[arg(long)]
    send_test_messages: bool,
    /// How long each check may take, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    timeout: u64,
    /// The trigger rules file (default: TRIGGERS_PATH, else the rules built in): which
    /// credentials the rules need
    #[arg(long, value_name = "PATH")]
    triggers: Option<PathBuf>,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    /// What happened, and what to do.
    Fail {
        what: String,
        fix: String,
    },
    /// Not checked, and why.
    Skip(String),
}

impl Verdict {
    pub fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Verdict::Fail { what: what.into(), fix: fix.into() }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub check: &'static str,
    pub verdict: Verdict,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Ok(text) => write!(f, "ok    {:<18} {text}", self.check),
            Verdict::Skip(text) => write!(f, "skip  {:<18} {text}", self.check),
            Verdict::Fail { what, fix } => write!(f, "FAIL  {:<18} {what}; fix: {fix}", self.check),
        }
    }
}

/// Where the credentials were read: this is what a fix tells the user to change.
#[derive(Debug, Clone)]
pub enum Origin {
    Environment,
    Stack { name: String },
}

impl Origin {
    /// What a test message says it comes from.
    pub fn label(&self) -> String {
        match self {
            Origin::Environment => "a local environment".to_owned(),
            Origin::Stack { name } => format!("stack {name}"),
        }
    }

    /// Where to store a secret value, for a fix.
    pub fn store(&self, key: &str) -> String {
        match self {
            Origin::Environment => format!("set {key} in the environment"),
            Origin::Stack { .. } => {
                format!("put {key} in the API keys secret (the stack's ApiKeysSecretArn output; docs/deploy.md)")
            }
        }
    }

    /// Where to change a setting that the stack takes as a parameter.
    pub fn setting(&self, variable: &str, parameter: &str) -> String {
        match self {
            Origin::Environment => format!("set {variable}"),
            Origin::Stack { .. } => format!("set the stack parameter {parameter} (samconfig.toml) and deploy"),
        }
    }
}

/// The settings a check reads, and where they came from.
pub struct Sources<'a> {
    pub vars: &'a dyn Vars,
    pub origin: Origin,
    pub timeout: Duration,
    pub send_test_messages: bool,
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    let mut lines = Vec::new();
    let triggers = args.triggers.as_ref().map(|p| p.display().to_string());
    let (secrets, origin) = match &args.stack {
        None => (HashMap::new(), Origin::Environment),
        Some(name) => {
            let (values, stack_lines) =
                stack::read(name, args.profile.as_deref(), args.region.as_deref(), Duration::from_secs(args.timeout))
                    .await;
            let failed = stack_lines.iter().any(|l| matches!(l.verdict, Verdict::Fail { .. }));
            lines.extend(stack_lines);
            if failed {
                return Ok(finish(&lines));
            }
            (values, Origin::Stack { name: name.clone() })
        }
    };
    let mut secrets = secrets;
    if let Some(path) = triggers {
        secrets.insert(vars::TRIGGERS_PATH.to_owned(), path);
    }
    // With --stack, secrets come only from the stack; settings may still come from here.
    let base: &dyn Vars = match origin {
        Origin::Environment => &ProcessEnv,
        Origin::Stack { .. } => &WithoutSecrets,
    };
    let vars = Layered { secrets, base };
    let sources = Sources {
        vars: &vars,
        origin,
        timeout: Duration::from_secs(args.timeout),
        send_test_messages: args.send_test_messages,
    };
    lines.extend(checks::all(&sources).await);
    Ok(finish(&lines))
}

/// Prints the report; the exit code says whether everything passed.
fn finish(lines: &[Line]) -> ExitCode {
    for line in lines {
        println!("{line}");
    }
    let count = |f: fn(&Verdict) -> bool| lines.iter().filter(|l| f(&l.verdict)).count();
    let failed = count(|v| matches!(v, Verdict::Fail { .. }));
    println!(
        "\n{} ok, {failed} failed, {} skipped",
        count(|v| matches!(v, Verdict::Ok(_))),
        count(|v| matches!(v, Verdict::Skip(_)))
    );
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The environment without any secret's value: with `--stack`, a developer's own keys in the
/// shell must not stand in for the stack's.
struct WithoutSecrets;

impl Vars for WithoutSecrets {
    fn get(&self, name: &str) -> Option<String> {
        let secret = vars::SECRET_KEYS.contains(&name);
        if secret { None } else { ProcessEnv.get(name) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_line_says_what_and_the_fix_on_one_line() {
        let line = Line { check: "mavera", verdict: Verdict::fail("MAVERA_API_KEY refused (401)", "set a valid key") };
        assert_eq!(line.to_string(), "FAIL  mavera             MAVERA_API_KEY refused (401); fix: set a valid key");
        let ok = Line { check: "mavera", verdict: Verdict::Ok("works".into()) };
        assert_eq!(ok.to_string(), "ok    mavera             works");
    }

    #[test]
    fn the_exit_code_is_failure_when_any_check_fails() {
        let ok = Line { check: "a", verdict: Verdict::Ok("x".into()) };
        let skip = Line { check: "b", verdict: Verdict::Skip("y".into()) };
        assert_eq!(finish(&[ok.clone(), skip.clone()]), ExitCode::SUCCESS);
        let fail = Line { check: "c", verdict: Verdict::fail("z", "w") };
        assert_eq!(finish(&[ok, skip, fail]), ExitCode::FAILURE);
    }
}
