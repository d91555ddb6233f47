//! The 200 answer: what happened to each event and each job.

use serde::Serialize;

use crate::telemetry::RejectionKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Duplicate,
    Ignored,
    /// An event of a batch that could not be accepted; `error` says why.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Duplicate => "duplicate",
            Status::Ignored => "ignored",
            Status::Rejected => "rejected",
        }
    }

    /// The overall status of several: queued if anything was, else duplicate if anything
    /// was, else ignored (a rejected event counts only in its own report).
    fn combine(statuses: impl Iterator<Item = Status>) -> Status {
        statuses.fold(Status::Ignored, |acc, s| match (acc, s) {
            (Status::Queued, _) | (_, Status::Queued) => Status::Queued,
            (Status::Duplicate, _) | (_, Status::Duplicate) => Status::Duplicate,
            _ => Status::Ignored,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub rule: String,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub status: Status,
    pub event_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobReport>,
    /// Why nothing was queued, for ignored events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where a rejected event is in its batch (it may have no readable id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Why a rejected event was not accepted: the same code and message a request with only
    /// this event would have been refused with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventError {
    pub code: &'static str,
    /// What the `rejected` metric counts it as; not part of the answer.
    #[serde(skip)]
    pub kind: RejectionKind,
    pub message: String,
}

impl EventReport {
    pub(super) fn new(event_id: &str) -> Self {
        EventReport {
            status: Status::Ignored,
            event_id: event_id.to_owned(),
            jobs: Vec::new(),
            reason: None,
            index: None,
            error: None,
        }
    }

    pub(super) fn rejected(
        event_id: Option<String>,
        index: usize,
        code: &'static str,
        kind: RejectionKind,
        message: String,
    ) -> Self {
        EventReport {
            status: Status::Rejected,
            event_id: event_id.unwrap_or_default(),
            jobs: Vec::new(),
            reason: None,
            index: Some(index),
            error: Some(EventError { code, kind, message }),
        }
    }

    pub(super) fn settle(&mut self) {
        if self.status != Status::Rejected {
            self.status = Status::combine(self.jobs.iter().map(|j| j.status));
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Single(EventReport),
    Batch { status: Status, events: Vec<EventReport> },
}

impl Report {
    pub(super) fn batch(events: Vec<EventReport>) -> Self {
        Report::Batch { status: Status::combine(events.iter().map(|e| e.status)), events }
    }

    pub fn status(&self) -> Status {
        match self {
            Report::Single(e) => e.status,
            Report::Batch { status, .. } => *status,
        }
    }

    pub fn events(&self) -> &[EventReport] {
        match self {
            Report::Single(e) => std::slice::from_ref(e),
            Report::Batch { events, .. } => events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_beats_duplicate_beats_ignored() {
        use Status::*;
        assert_eq!(Status::combine([Ignored, Duplicate, Queued].into_iter()), Queued);
        assert_eq!(Status::combine([Ignored, Duplicate].into_iter()), Duplicate);
        assert_eq!(Status::combine([Ignored].into_iter()), Ignored);
        assert_eq!(Status::combine([].into_iter()), Ignored);
    }

    #[test]
    fn single_reports_are_flat() {
        let mut e = EventReport::new("m1");
        e.jobs.push(JobReport { rule: "r".into(), status: Status::Queued });
        e.settle();
        let json = serde_json::to_value(Report::Single(e)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "queued", "event_id": "m1", "jobs": [{"rule": "r", "status": "queued"}]})
        );
    }
}
