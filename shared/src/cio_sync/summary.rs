//! What a run did: the Lambda's answer, and the one log line each run writes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::SyncJob;
use crate::telemetry::{Counts, Metric};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The job is off in `triggers.toml`; nothing was read or queued.
    Disabled,
    /// An earlier run finished this window's work.
    AlreadyDone,
    /// This run finished the window's work (queued what there was, possibly nothing).
    Done,
    /// Stopped at the deadline; the next run resumes from the checkpoint.
    Partial,
    /// Stopped by an error; the checkpoint is kept and the next run resumes.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub job: SyncJob,
    pub status: RunStatus,
    /// The run window, e.g. `2026-03-02_7d`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Nothing was queued or checkpointed; `planned` is what would have been queued.
    pub dry_run: bool,
    pub counts: BTreeMap<&'static str, u64>,
    /// What was queued this run (or would be, in a dry run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Summary {
    pub fn new(job: SyncJob, status: RunStatus) -> Self {
        Summary { job, status, window: None, dry_run: false, counts: BTreeMap::new(), planned: vec![], message: None }
    }

    /// The summary of a run in `window`: `Done` until something says otherwise.
    pub fn starting(job: SyncJob, window: &super::window::RunWindow, dry_run: bool) -> Self {
        Summary { window: Some(window.label()), dry_run, ..Summary::new(job, RunStatus::Done) }
    }

    pub fn failed(&self) -> bool {
        self.status == RunStatus::Failed
    }

    /// The one log line per run: counts and what happened.
    pub fn log(&self) {
        let counts = self.counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        let window = self.window.as_deref().unwrap_or("-");
        let message = self.message.as_deref().unwrap_or("");
        let job = self.job.as_str();
        match self.status {
            RunStatus::Failed => {
                tracing::error!(
                    job,
                    status = "failed",
                    window,
                    dry_run = self.dry_run,
                    counts,
                    "cio-sync run failed: {message}"
                )
            }
            RunStatus::Disabled => tracing::warn!(job, status = "disabled", "cio-sync run did nothing: {message}"),
            status => {
                let status = match status {
                    RunStatus::AlreadyDone => "already_done",
                    RunStatus::Done => "done",
                    _ => "partial",
                };
                tracing::info!(job, status, window, dry_run = self.dry_run, counts, "cio-sync run finished: {message}")
            }
        }
    }

    /// What the run adds to the metrics: the Customer.io lookups that found nobody.
    pub fn count_into(&self, counts: &mut Counts) {
        if let Some(&n) = self.counts.get("not_found").filter(|n| **n > 0) {
            counts.add(Metric::CustomersNotFound, n);
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|e| serde_json::json!({"job": self.job.as_str(), "error": e.to_string()}))
    }
}

/// A run that ended in [`RunStatus::Failed`], for the Lambda to report as an error (so the
/// function's `Errors` metric and alarm see it).
#[derive(Debug, thiserror::Error)]
#[error("cio-sync {} failed: {}; summary: {}", .0.job.as_str(), .0.message.as_deref().unwrap_or("no reason recorded"), .0.to_json())]
pub struct RunFailed(pub Summary);
