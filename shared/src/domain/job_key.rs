use std::fmt;

use serde::{Deserialize, Serialize};

use super::{EventId, RuleName, Source};

/// The events-table key of one unit of work. For a webhook event it is
/// `{source}#{event id}#{rule}`, so one event can fire several rules and each runs once;
/// scheduled Customer.io jobs use `cio-sync#{job}#{run window}[#{part}]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobKey(String);

impl JobKey {
    pub fn for_event(source: Source, id: &EventId, rule: &RuleName) -> Self {
        JobKey(format!("{source}#{id}#{rule}"))
    }

    /// A key for scheduled work. `parts` are joined with `#` after `cio-sync#{job}`.
    pub fn for_sync(job: &RuleName, parts: &[&str]) -> Self {
        let mut key = format!("cio-sync#{job}");
        for p in parts {
            key.push('#');
            key.push_str(p);
        }
        JobKey(key)
    }

    /// Wraps a key read back from the store or a queue message.
    pub fn from_stored(s: impl Into<String>) -> Self {
        JobKey(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Who sent the job: `segment`, `customerio`, or `cio-sync` for scheduled work.
    pub fn source(&self) -> &str {
        self.0.split_once('#').map_or(&self.0, |(source, _)| source)
    }

    /// The sender's event id (which may itself hold `#`), or for scheduled work what follows
    /// the job's name (the run window and part).
    pub fn event_id(&self) -> &str {
        let Some((source, rest)) = self.0.split_once('#') else { return "" };
        if source == "cio-sync" {
            return rest.split_once('#').map_or("", |(_, parts)| parts);
        }
        rest.rsplit_once('#').map_or(rest, |(id, _)| id)
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_name_source_event_and_rule() {
        let key =
            JobKey::for_event(Source::Segment, &EventId::parse("m-1").unwrap(), &RuleName::parse("trial").unwrap());
        assert_eq!(key.as_str(), "segment#m-1#trial");
    }

    #[test]
    fn sync_keys_join_parts() {
        let key = JobKey::for_sync(&RuleName::parse("personas").unwrap(), &["2026-11-23", "c3"]);
        assert_eq!(key.as_str(), "cio-sync#personas#2026-11-23#c3");
        assert_eq!((key.source(), key.event_id()), ("cio-sync", "2026-11-23#c3"));
    }

    #[test]
    fn keys_give_their_source_and_event_id_back() {
        let key =
            JobKey::for_event(Source::CustomerIo, &EventId::parse("a#b").unwrap(), &RuleName::parse("r").unwrap());
        assert_eq!((key.source(), key.event_id()), ("customerio", "a#b"));
    }
}
