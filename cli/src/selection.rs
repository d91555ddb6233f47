//! Which jobs a command looks at: a time window back from now and filters, shared by
//! `relay events`, `relay replay --status …` and the console page.

use std::time::{Duration, SystemTime};

use shared::store::{JobStatus, ListFilter, ListQuery};

use crate::since;

#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Only jobs in these statuses, comma-separated: claimed, running, retrying, done, failed, skipped
    #[arg(long, value_delimiter = ',', value_parser = parse_status)]
    pub status: Vec<JobStatus>,
    /// Only jobs of this rule
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Only jobs about this user id
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// How far back to look: 30m, 2h, 1d, 1w (records live 8 days)
    #[arg(long, value_name = "AGE", default_value = "1d", value_parser = since::parse)]
    pub since: Duration,
}

impl Selection {
    pub fn filter(&self) -> ListFilter {
        ListFilter { statuses: self.status.clone(), rule: self.rule.clone(), user: self.user.clone() }
    }

    /// The first page of at most `limit` jobs, up to now.
    pub fn query(&self, limit: usize) -> ListQuery {
        let now = SystemTime::now();
        ListQuery { since: now - self.since, until: now, filter: self.filter(), limit, after: None }
    }
}

/// `failed` or `FAILED`.
pub fn parse_status(text: &str) -> Result<JobStatus, String> {
    JobStatus::parse(&text.trim().to_ascii_uppercase())
        .ok_or_else(|| format!("`{text}` is not a status: use claimed, running, retrying, done, failed or skipped"))
}
