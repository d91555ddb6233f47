//! Listings and replays on DynamoDB. A listing queries the `by-day` index one UTC day at a
//! time, newest first, and reads only the index's projection (a few hundred bytes a job): a
//! page costs what it reads, whatever the size of the table. A replay is one conditional
//! update of the record.

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::dynamo::{
    DAY_ATTRIBUTE, DynamoStore, Item, KEY_ATTRIBUTE, LISTING_INDEX, RECEIVED_ATTRIBUTE, TTL_ATTRIBUTE, expires, lost,
    n, s, status_of, step, unavailable,
};
use super::listing::{JobSummary, ListPage, ListQuery, Position, window_bounds};
use super::memory::replay_note;
use super::{JobStatus, ListStore, ReplayStore, Requeue, StoreError, epoch_millis, epoch_secs, rfc3339};
use crate::domain::JobKey;

/// Items a filtered query reads per call: a filter drops items after they are read (and
/// paid for), so a call asks for more than the page still needs.
const FILTERED_READ: i32 = 500;

#[async_trait]
impl ListStore for DynamoStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let (low, high) = window_bounds(query.since, query.until);
        let upper = match &query.after {
            Some(after) if after.as_str() < high.as_str() => after.to_string(),
            _ => high,
        };
        let mut page = ListPage::default();
        if query.limit == 0 || upper.as_str() < low.as_str() {
            return Ok(page);
        }
        let now_secs = epoch_secs(SystemTime::now());
        for day in days_down(&upper[..10], &low[..10]) {
            let mut start: Option<Item> = None;
            loop {
                let remaining = query.limit - page.jobs.len();
                let (filter, mut names, mut values) = filter_expression(query, now_secs);
                names.insert("#day".into(), DAY_ATTRIBUTE.into());
                names.insert("#position".into(), RECEIVED_ATTRIBUTE.into());
                values.insert(":day".into(), s(&day));
                values.insert(":low".into(), s(&low));
                values.insert(":high".into(), s(&upper));
                let read = if query.filter.is_empty() { remaining as i32 + 1 } else { FILTERED_READ };
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(LISTING_INDEX)
                    .key_condition_expression("#day = :day AND #position BETWEEN :low AND :high")
                    .filter_expression(filter)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .scan_index_forward(false)
                    .limit(read)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await;
                let out = match out {
                    Ok(out) => out,
                    Err(e) => return Err(self.query_failed(e).await),
                };
                for item in out.items() {
                    let job = summary(item)?;
                    // The upper bound is inclusive; the previous page's last job is not repeated.
                    if query.after.as_ref() == Some(&job.position) {
                        continue;
                    }
                    if page.jobs.len() == query.limit {
                        page.next = page.jobs.last().map(|j| j.position.clone());
                        return Ok(page);
                    }
                    page.jobs.push(job);
                }
                match out.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        Ok(page)
    }
}

impl DynamoStore {
    /// Why a listing query failed. A table deployed before the listing index existed refuses
    /// the query as invalid; that case, checked by describing the table, says what to do.
    async fn query_failed(&self, error: SdkError<QueryError, HttpResponse>) -> StoreError {
        if error.as_service_error().and_then(|e| e.code()) == Some("ValidationException") {
            let described = self.client.describe_table().table_name(&self.table).send().await;
            let has_index = described
                .ok()
                .and_then(|d| d.table)
                .is_some_and(|t| t.global_secondary_indexes().iter().any(|i| i.index_name() == Some(LISTING_INDEX)));
            if !has_index {
                return StoreError::unavailable(NoListingIndex(self.table.clone()));
            }
        }
        unavailable(error)
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "table {0} has no `by-day` index to list jobs by: deploy this version's template.yaml, which adds it (jobs recorded before that are not listed; they expire within 8 days)"
)]
struct NoListingIndex(String);

/// The filter of a listing query: what is not expired, and the query's filter. Status, rule
/// and user are projected attributes, so the filter never reads the table.
fn filter_expression(
    query: &ListQuery,
    now_secs: u64,
) -> (String, HashMap<String, String>, HashMap<String, AttributeValue>) {
    let mut parts = vec!["#expires > :now".to_owned()];
    let mut names = HashMap::from([("#expires".to_owned(), TTL_ATTRIBUTE.to_owned())]);
    let mut values = HashMap::from([(":now".to_owned(), n(now_secs))]);
    let filter = &query.filter;
    if !filter.statuses.is_empty() {
        let placeholders: Vec<String> = (0..filter.statuses.len()).map(|i| format!(":status{i}")).collect();
        for (p, status) in placeholders.iter().zip(&filter.statuses) {
            values.insert(p.clone(), s(status.as_str()));
        }
        parts.push(format!("#status IN ({})", placeholders.join(", ")));
        names.insert("#status".into(), "status".into());
    }
    if let Some(rule) = &filter.rule {
        parts.push("#rule = :rule".into());
        names.insert("#rule".into(), "rule".into());
        values.insert(":rule".into(), s(rule));
    }
    if let Some(user) = &filter.user {
        parts.push("#user = :user".into());
        names.insert("#user".into(), "user_id".into());
        values.insert(":user".into(), s(user));
    }
    (parts.join(" AND "), names, values)
}

/// The UTC days from `newest` down to `oldest` (both `YYYY-MM-DD`), inclusive.
fn days_down(newest: &str, oldest: &str) -> Vec<String> {
    let parse = |d: &str| time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok();
    let (Some(mut day), Some(last)) = (parse(newest), parse(oldest)) else { return vec![] };
    let mut days = Vec::new();
    while day >= last {
        days.push(format!("{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day()));
        match day.previous_day() {
            Some(previous) => day = previous,
            None => break,
        }
    }
    days
}

/// A listing line from an index item.
fn summary(item: &Item) -> Result<JobSummary, StoreError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).filter(|t| !t.is_empty()).cloned();
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<f64>().ok());
    let key = text(KEY_ATTRIBUTE).unwrap_or_default();
    let corrupt = |problem: &str| StoreError::Corrupt { key: key.clone(), problem: problem.to_owned() };
    let position = text(RECEIVED_ATTRIBUTE)
        .and_then(|p| Position::parse(p).ok())
        .ok_or_else(|| corrupt("no readable listing position"))?;
    Ok(JobSummary {
        key: JobKey::from_stored(key.clone()),
        status: status_of(item).ok_or_else(|| corrupt("no readable status"))?,
        position,
        rule: text("rule"),
        user: text("user_id"),
        summary: text("summary"),
        credits: number("credits"),
        attempts: number("attempts").unwrap_or(0.0) as u32,
    })
}

#[async_trait]
impl ReplayStore for DynamoStore {
    async fn requeue(&self, key: &JobKey, seen: JobStatus, now: SystemTime) -> Result<Requeue, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression(
                "SET #status = :retrying, lease_until = :zero, updated_at = :now_iso, expires_at = :exp, \
                 history = list_append(if_not_exists(history, :empty), :step)",
            )
            .condition_expression(
                "#status = :seen AND expires_at > :now_s AND attribute_exists(message) \
                 AND NOT (#status IN (:running, :claimed) AND lease_until >= :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":retrying", s(JobStatus::Retrying.as_str()))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":claimed", s(JobStatus::Claimed.as_str()))
            .expression_attribute_values(":seen", s(seen.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now_iso", s(rfc3339(now)))
            .expression_attribute_values(":now_s", n(epoch_secs(now)))
            .expression_attribute_values(":now_ms", n(epoch_millis(now)))
            .expression_attribute_values(":exp", expires(now))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":step", step(now, JobStatus::Retrying, Some(replay_note(seen))))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes().and_then(|a| a.get("message")).and_then(|m| m.as_s().ok()) {
                Some(message) => Ok(Requeue::Requeued { message: message.clone() }),
                None => Err(StoreError::Corrupt { key: key.to_string(), problem: "replayed without a message".into() }),
            },
            Err(ref e) if let Some(old) = lost(e) => {
                let old = match old {
                    Some(item) => Some(item.clone()),
                    None => self.current(key.as_str()).await?,
                };
                let live = old.filter(|item| {
                    let expires =
                        item.get(TTL_ATTRIBUTE).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
                    expires.is_some_and(|e| e > epoch_secs(now))
                });
                Ok(match live {
                    Some(item) if status_of(&item) == Some(seen) && !item.contains_key("message") => Requeue::NoMessage,
                    Some(item) => Requeue::Changed(status_of(&item)),
                    None => Requeue::Changed(None),
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_run_newest_first_across_month_ends() {
        assert_eq!(days_down("2026-03-01", "2026-02-27"), vec!["2026-03-01", "2026-02-28", "2026-02-27"]);
        assert_eq!(days_down("2026-03-01", "2026-03-01"), vec!["2026-03-01"]);
        assert!(days_down("2026-03-01", "2026-03-02").is_empty());
    }
}
