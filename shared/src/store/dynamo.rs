//! The event store on DynamoDB: one table, partition key `pk` (string), TTL attribute
//! `expires_at`. Every decision is one conditional write, so concurrent Lambdas cannot
//! both win; a lost condition is read from the typed `ConditionalCheckFailedException`.
//!
//! Job records also carry `day` and `position` (written by the claim, or by the worker's
//! start for a job without one), the keys of the `by-day` index that listings query
//! (`dynamo_listing`); guard and cache records do not, so the index holds jobs only.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::Value;

use super::listing::{self, Position, Step};
use super::{
    CLAIM_LEASE, CacheStore, Claim, ClaimStore, DeliveryClaim, DeliveryState, DeliveryStatus, DeliveryStore,
    GuardStore, JobRecord, JobStatus, JobStore, Lease, NewJob, OpenDeliveries, Outcome, RECORD_TTL, Start, StartJob,
    StoreError, cache_key, cap_key, epoch_millis, epoch_secs, once_key, rfc3339, sortable_millis,
};
use crate::domain::{JobKey, RuleName};

/// The table's partition key attribute.
pub const KEY_ATTRIBUTE: &str = "pk";
/// The table's TTL attribute (epoch seconds), enabled on the table.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The global secondary index listings query: jobs by UTC day, newest first.
pub const LISTING_INDEX: &str = "by-day";
/// The index's partition key: the UTC day a job was received, `2026-11-28`.
pub const DAY_ATTRIBUTE: &str = "day";
/// The index's sort key: the job's [`Position`], `{received}#{key}`.
pub const RECEIVED_ATTRIBUTE: &str = "position";
/// What the index copies beside its keys and the table key: exactly what a listing line
/// shows (and the expiry, to leave out records the TTL has not deleted yet). Every write
/// that changes one of these also writes the index (claim, start, finish, release, replay).
pub const LISTING_PROJECTION: [&str; 7] =
    ["status", "rule", "user_id", "summary", "credits", "attempts", TTL_ATTRIBUTE];

pub(super) type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(super) client: Client,
    pub(super) table: String,
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn expires(now: SystemTime) -> AttributeValue {
    n(epoch_secs(now + RECORD_TTL))
}

/// A history entry as the table keeps it, in a list appended to by each write.
pub(super) fn step(now: SystemTime, status: JobStatus, detail: Option<String>) -> AttributeValue {
    let mut entry =
        HashMap::from([("at".to_owned(), s(sortable_millis(now))), ("status".to_owned(), s(status.as_str()))]);
    if let Some(detail) = detail {
        entry.insert("detail".to_owned(), s(detail));
    }
    AttributeValue::L(vec![AttributeValue::M(entry)])
}

fn read_step(value: &AttributeValue) -> Option<Step> {
    let entry = value.as_m().ok()?;
    let text = |name: &str| entry.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(Step { at: text("at")?, status: JobStatus::parse(&text("status")?)?, detail: text("detail") })
}

/// The typed "condition lost" case of a write, with the old item when the server sent it.
pub(super) trait LostCondition {
    fn lost_condition(&self) -> Option<Option<&Item>>;
}

impl LostCondition for PutItemError {
    fn lost_condition(&self) -> Option<Option<&Item>> {
        match self {
            PutItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

impl LostCondition for UpdateItemError {
    fn lost_condition(&self) -> Option<Option<&Item>> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

impl LostCondition for DeleteItemError {
    fn lost_condition(&self) -> Option<Option<&Item>> {
        match self {
            DeleteItemError::ConditionalCheckFailedException(c) => Some(c.item()),
            _ => None,
        }
    }
}

pub(super) fn lost<E: LostCondition, R>(err: &SdkError<E, R>) -> Option<Option<&Item>> {
    err.as_service_error().and_then(LostCondition::lost_condition)
}

/// A conditional write's outcome: whether it was applied (`false`: its condition did not
/// hold), or the error if the call failed.
fn applied<T, E: LostCondition, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    SdkError<E, R>: std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if lost(&e).is_some() => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

pub(super) fn unavailable<E, R>(err: SdkError<E, R>) -> StoreError
where
    SdkError<E, R>: std::error::Error + Send + Sync + 'static,
{
    StoreError::unavailable(err)
}

pub(super) fn status_of(item: &Item) -> Option<JobStatus> {
    item.get("status").and_then(|v| v.as_s().ok()).and_then(|s| JobStatus::parse(s))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    /// One cheap call that opens the connection during a cold start, so the first event
    /// does not pay for the TLS handshake.
    pub async fn warm(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s("warm#up"))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub(super) async fn current(&self, key: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// The record that made a condition fail: from the exception when the server returns
    /// the old item, else by reading it.
    async fn item_after_conflict(&self, key: &str, old: Option<&Item>) -> Result<Option<Item>, StoreError> {
        match old {
            Some(item) => Ok(Some(item.clone())),
            None => self.current(key).await,
        }
    }

    /// After a conditional update lost: whether the record already is what the update would
    /// have made it under `holder` (the SDK retried a write that had been applied, and the
    /// retry's condition failed against our own change).
    async fn already_applied(
        &self,
        key: &JobKey,
        old: Option<&Item>,
        holder: &str,
        status: JobStatus,
    ) -> Result<bool, StoreError> {
        let item = self.item_after_conflict(key.as_str(), old).await?;
        Ok(item.is_some_and(|item| status_of(&item) == Some(status) && holder_of(&item) == Some(holder)))
    }
}

fn holder_of(item: &Item) -> Option<&str> {
    item.get("holder").and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn number_of(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// What a claim that lost its condition met: our own claim (a retried write that had been
/// applied), another delivery's claim that may not be sent yet, or a job already sent.
fn claim_conflict(item: Option<&Item>, token: &str) -> Claim {
    let Some(item) = item else {
        // Gone between the write and the read (released or expired): not sent, so not a
        // duplicate; the sender's retry claims it.
        return Claim::InFlight;
    };
    match status_of(item) {
        Some(JobStatus::Claimed) if holder_of(item) == Some(token) => Claim::Claimed,
        Some(JobStatus::Claimed) | None => Claim::InFlight,
        Some(status) => Claim::Duplicate(status),
    }
}

#[async_trait]
impl ClaimStore for DynamoStore {
    async fn claim(&self, job: &NewJob<'_>) -> Result<Claim, StoreError> {
        let now_ms = epoch_millis(job.now);
        let position = Position::new(job.now, job.key);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, s(job.key.as_str()))
            .item("status", s(JobStatus::Claimed.as_str()))
            .item("rule", s(job.rule.as_str()))
            .item("holder", s(job.token))
            .item("lease_until", n(epoch_millis(job.now + CLAIM_LEASE)))
            .item("attempts", n(0))
            .item("created_at", s(rfc3339(job.now)))
            .item("updated_at", s(rfc3339(job.now)))
            .item(TTL_ATTRIBUTE, expires(job.now))
            .item(DAY_ATTRIBUTE, s(position.day()))
            .item(RECEIVED_ATTRIBUTE, s(position.as_str()))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now_s OR (#status = :claimed AND lease_until < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now_s", n(epoch_secs(job.now)))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":claimed", s(JobStatus::Claimed.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed),
            Err(ref e) if let Some(old) = lost(e) => {
                let item = self.item_after_conflict(job.key.as_str(), old).await?;
                Ok(claim_conflict(item.as_ref(), job.token))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn seal_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        // A whole-item put, not an update: ingest's role allows puts, deletes and reads only.
        let now = std::time::SystemTime::now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, s(key.as_str()))
            .item("status", s(JobStatus::Done.as_str()))
            .item("holder", s(token))
            .item("lease_until", n(0))
            .item("attempts", n(0))
            .item("updated_at", s(rfc3339(now)))
            .item(TTL_ATTRIBUTE, expires(now))
            .condition_expression("#status = :claimed AND holder = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claimed", s(JobStatus::Claimed.as_str()))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        // Not applied: sealed already (a retried write), or no longer ours.
        applied(result).map(|_| ())
    }

    async fn release_claim(&self, key: &JobKey, token: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .condition_expression("#status = :claimed AND holder = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":claimed", s(JobStatus::Claimed.as_str()))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        // Not applied: the record is no longer this holder's, which is what was wanted.
        applied(result).map(|_| ())
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn start(&self, job: &StartJob<'_>) -> Result<Start, StoreError> {
        let StartJob { key, rule, lease, message, user, now } = *job;
        let position = Position::new(now, key);
        // The user is set only when known, so a retry never erases it.
        let set_user = if user.is_some() { ", user_id = :user" } else { "" };
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression(format!(
                "SET #status = :running, holder = :owner, lease_until = :until, #rule = :rule, updated_at = :now_iso, \
                 expires_at = :exp, created_at = if_not_exists(created_at, :now_iso), \
                 attempts = if_not_exists(attempts, :zero) + :one, message = :message{set_user}, \
                 #day = if_not_exists(#day, :day), #position = if_not_exists(#position, :position), \
                 history = list_append(if_not_exists(history, :empty), :step) \
                 REMOVE #result, #error, deliveries, delivery_holder, delivery_until, deliveries_opened"
            ))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now_s OR #status IN (:claimed, :retrying) \
                 OR (#status = :running AND lease_until < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#rule", "rule")
            .expression_attribute_names("#result", "result")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#day", DAY_ATTRIBUTE)
            .expression_attribute_names("#position", RECEIVED_ATTRIBUTE)
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":claimed", s(JobStatus::Claimed.as_str()))
            .expression_attribute_values(":retrying", s(JobStatus::Retrying.as_str()))
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":until", n(epoch_millis(lease.until)))
            .expression_attribute_values(":rule", s(rule.as_str()))
            .expression_attribute_values(":now_iso", s(rfc3339(now)))
            .expression_attribute_values(":now_s", n(epoch_secs(now)))
            .expression_attribute_values(":now_ms", n(epoch_millis(now)))
            .expression_attribute_values(":exp", expires(now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":message", s(message))
            .expression_attribute_values(":day", s(position.day()))
            .expression_attribute_values(":position", s(position.as_str()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":step", step(now, JobStatus::Running, None))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match user {
            Some(user) => request.expression_attribute_values(":user", s(user)),
            None => request,
        };
        let result = request.send().await;
        match result {
            Ok(out) => {
                let attempt = out
                    .attributes()
                    .and_then(|a| a.get("attempts"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Ok(Start::Started { attempt })
            }
            Err(ref e) if let Some(old) = lost(e) => {
                let item = self.item_after_conflict(key.as_str(), old).await?;
                let status = item.as_ref().and_then(status_of);
                match status {
                    Some(status) if status.is_final() => Ok(Start::Finished(status)),
                    // Our own lease: the SDK retried an update that had been applied.
                    Some(JobStatus::Running) if item.as_ref().and_then(holder_of) == Some(lease.owner.as_str()) => {
                        let attempt = item.as_ref().and_then(|i| number_of(i, "attempts")).unwrap_or(1) as u32;
                        Ok(Start::Started { attempt })
                    }
                    _ => Ok(Start::Busy),
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn finish(
        &self,
        key: &JobKey,
        owner: &str,
        outcome: &Outcome,
        notes: &[String],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let (field, text, summary) = match outcome {
            Outcome::Done { result } => ("result", result.to_string(), listing::summary_text(Some(result), None)),
            Outcome::Failed { reason, .. } | Outcome::Skipped { reason } => {
                ("error", reason.clone(), listing::summary_text(None, Some(reason)))
            }
        };
        let credits = match outcome {
            Outcome::Done { result } => listing::credits_of(Some(result)),
            _ => None,
        };
        // A replayed job's earlier credits go with its earlier result.
        let (set_credits, remove_credits) =
            if credits.is_some() { (", credits = :credits", "") } else { ("", " REMOVE credits") };
        let notes = AttributeValue::L(notes.iter().map(|n| s(n.as_str())).collect());
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression(format!(
                "SET #status = :status, #field = :text, notes = list_append(if_not_exists(notes, :empty), :notes), \
                 lease_until = :zero, updated_at = :now_iso, expires_at = :exp, summary = :summary{set_credits}, \
                 history = list_append(if_not_exists(history, :empty), :step){remove_credits}"
            ))
            .condition_expression("#status = :running AND holder = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#field", field)
            .expression_attribute_values(":status", s(outcome.status().as_str()))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":text", s(text))
            .expression_attribute_values(":notes", notes)
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now_iso", s(rfc3339(now)))
            .expression_attribute_values(":exp", expires(now))
            .expression_attribute_values(":summary", s(summary.clone().unwrap_or_default()))
            .expression_attribute_values(":step", step(now, outcome.status(), summary))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match credits {
            Some(credits) => request.expression_attribute_values(":credits", n(credits)),
            None => request,
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(ref e) if let Some(old) = lost(e) => {
                if self.already_applied(key, old, owner, outcome.status()).await? {
                    Ok(())
                } else {
                    Err(StoreError::LeaseLost(key.clone()))
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release(&self, key: &JobKey, owner: &str, reason: &str, now: SystemTime) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression(
                "SET #status = :retrying, #error = :reason, lease_until = :zero, updated_at = :now_iso, expires_at = :exp, \
                 summary = :summary, history = list_append(if_not_exists(history, :empty), :step)",
            )
            .condition_expression("#status = :running AND holder = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":retrying", s(JobStatus::Retrying.as_str()))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":summary", s(listing::summary_text(None, Some(reason)).unwrap_or_default()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(
                ":step",
                step(now, JobStatus::Retrying, listing::summary_text(None, Some(reason))),
            )
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now_iso", s(rfc3339(now)))
            .expression_attribute_values(":exp", expires(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(ref e) if let Some(old) = lost(e) => {
                if self.already_applied(key, old, owner, JobStatus::Retrying).await? {
                    Ok(())
                } else {
                    Err(StoreError::LeaseLost(key.clone()))
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, StoreError> {
        let Some(item) = self.current(key.as_str()).await? else { return Ok(None) };
        let corrupt = |problem: &str| StoreError::Corrupt { key: key.to_string(), problem: problem.to_owned() };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
        let status = status_of(&item).ok_or_else(|| corrupt("no readable status"))?;
        let result = text("result")
            .map(|r| serde_json::from_str::<Value>(&r))
            .transpose()
            .map_err(|e| corrupt(&format!("result is not JSON: {e}")))?;
        let notes = item
            .get("notes")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default();
        Ok(Some(JobRecord {
            key: key.clone(),
            status,
            rule: text("rule"),
            attempts: number("attempts").unwrap_or(0) as u32,
            result,
            error: text("error"),
            notes,
            lease_until_ms: number("lease_until").filter(|&l| l > 0),
            expires_at: number(TTL_ATTRIBUTE).unwrap_or(0),
            position: text(RECEIVED_ATTRIBUTE).and_then(|p| Position::parse(p).ok()),
            user: text("user_id"),
            message: text("message"),
            history: item
                .get("history")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(read_step).collect())
                .unwrap_or_default(),
            deliveries: item.get(DELIVERIES).map(|v| delivery_states(key, v)).transpose()?.unwrap_or_default(),
        }))
    }
}

/// The job record's map of destination states (`store::delivery` describes it).
const DELIVERIES: &str = "deliveries";

fn delivery_value(state: &DeliveryState) -> AttributeValue {
    let mut m = HashMap::from([
        ("state".to_owned(), s(state.state.as_str())),
        ("attempts".to_owned(), n(state.attempts)),
        ("at".to_owned(), s(&state.at)),
    ]);
    if let Some(reason) = &state.reason {
        m.insert("reason".to_owned(), s(reason));
    }
    AttributeValue::M(m)
}

fn delivery_states(key: &JobKey, value: &AttributeValue) -> Result<BTreeMap<String, DeliveryState>, StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt { key: key.to_string(), problem };
    let map = value.as_m().map_err(|_| corrupt("deliveries is not a map".into()))?;
    map.iter()
        .map(|(name, v)| {
            let m = v.as_m().map_err(|_| corrupt(format!("deliveries.{name} is not a map")))?;
            let text = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).cloned();
            let state = text("state")
                .and_then(|t| DeliveryStatus::parse(&t))
                .ok_or_else(|| corrupt(format!("deliveries.{name} has no readable state")))?;
            let attempts = m.get("attempts").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
            Ok((
                name.clone(),
                DeliveryState { state, attempts, reason: text("reason"), at: text("at").unwrap_or_default() },
            ))
        })
        .collect()
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn open_deliveries(
        &self,
        key: &JobKey,
        destinations: &[&str],
        lease: &Lease,
        now: SystemTime,
    ) -> Result<DeliveryClaim, StoreError> {
        let initial: HashMap<String, AttributeValue> =
            destinations.iter().map(|d| ((*d).to_owned(), delivery_value(&DeliveryState::pending(now)))).collect();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression(
                "SET delivery_holder = :owner, delivery_until = :until, \
                 deliveries_opened = if_not_exists(deliveries_opened, :now_ms), \
                 deliveries = if_not_exists(deliveries, :initial), updated_at = :now_iso",
            )
            .condition_expression(
                "#status = :done AND expires_at > :now_s \
                 AND (attribute_not_exists(delivery_until) OR delivery_until < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s(JobStatus::Done.as_str()))
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":until", n(epoch_millis(lease.until)))
            .expression_attribute_values(":now_ms", n(epoch_millis(now)))
            .expression_attribute_values(":now_s", n(epoch_secs(now)))
            .expression_attribute_values(":now_iso", s(rfc3339(now)))
            .expression_attribute_values(":initial", AttributeValue::M(initial))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(ref e) if let Some(old) = lost(e) => {
                let old = match old {
                    Some(item) => Some(item.clone()),
                    None => self.current(key.as_str()).await?,
                };
                let live = old.as_ref().filter(|i| {
                    i.get(TTL_ATTRIBUTE).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok())
                        > Some(epoch_secs(now))
                });
                return Ok(match live.and_then(status_of) {
                    Some(JobStatus::Done) => DeliveryClaim::Busy,
                    status => DeliveryClaim::NotDone(status),
                });
            }
            Err(e) => return Err(unavailable(e)),
        };
        let mut states = item.get(DELIVERIES).map(|v| delivery_states(key, v)).transpose()?.unwrap_or_default();
        // A destination the rule gained since the deliveries were opened: add it.
        let missing: Vec<&str> = destinations.iter().copied().filter(|d| !states.contains_key(*d)).collect();
        if !missing.is_empty() {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY_ATTRIBUTE, s(key.as_str()))
                .condition_expression("delivery_holder = :owner")
                .expression_attribute_values(":owner", s(&lease.owner));
            let mut sets = Vec::new();
            for (i, name) in missing.iter().enumerate() {
                sets.push(format!("deliveries.#d{i} = :d{i}"));
                update = update
                    .expression_attribute_names(format!("#d{i}"), *name)
                    .expression_attribute_values(format!(":d{i}"), delivery_value(&DeliveryState::pending(now)));
                states.insert((*name).to_owned(), DeliveryState::pending(now));
            }
            let applied = applied(update.update_expression(format!("SET {}", sets.join(", "))).send().await)?;
            if !applied {
                return Ok(DeliveryClaim::Busy);
            }
        }
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
        let result = text("result")
            .map(|r| serde_json::from_str::<Value>(r))
            .transpose()
            .map_err(|e| StoreError::Corrupt { key: key.to_string(), problem: format!("result is not JSON: {e}") })?
            .unwrap_or(Value::Null);
        let opened_ms = item
            .get("deliveries_opened")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| epoch_millis(now));
        Ok(DeliveryClaim::Open(OpenDeliveries {
            result,
            states,
            opened_at: SystemTime::UNIX_EPOCH + Duration::from_millis(opened_ms),
        }))
    }

    async fn record_delivery(
        &self,
        key: &JobKey,
        owner: &str,
        destination: &str,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression("SET deliveries.#d = :state, updated_at = :at")
            .condition_expression("delivery_holder = :owner AND #status = :done")
            .expression_attribute_names("#d", destination)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":state", delivery_value(state))
            .expression_attribute_values(":at", s(&state.at))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":done", s(JobStatus::Done.as_str()))
            .send()
            .await;
        if applied(result)? { Ok(()) } else { Err(StoreError::LeaseLost(key.clone())) }
    }

    async fn release_deliveries(&self, key: &JobKey, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(key.as_str()))
            .update_expression("SET delivery_until = :zero")
            .condition_expression("delivery_holder = :owner")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        // Not applied: another worker holds it now, which is what releasing allows.
        applied(result).map(|_| ())
    }
}

#[async_trait]
impl GuardStore for DynamoStore {
    async fn take_daily_slot(
        &self,
        rule: &RuleName,
        day: &str,
        key: &JobKey,
        cap: u32,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        // The item lists the jobs it admitted: adding a member is idempotent, so a retried
        // job keeps its slot, and the size check makes the cap exact under concurrency.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(cap_key(rule, day)))
            .update_expression("ADD members :member SET expires_at = if_not_exists(expires_at, :exp)")
            .condition_expression("attribute_not_exists(members) OR contains(members, :key) OR size(members) < :cap")
            .expression_attribute_values(":member", AttributeValue::Ss(vec![key.to_string()]))
            .expression_attribute_values(":key", s(key.as_str()))
            .expression_attribute_values(":cap", n(cap))
            .expression_attribute_values(":exp", expires(now))
            .send()
            .await;
        applied(result)
    }

    async fn take_once_per_user(
        &self,
        rule: &RuleName,
        user: &str,
        key: &JobKey,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, s(once_key(rule, user)))
            .item("holder", s(key.as_str()))
            .item(TTL_ATTRIBUTE, expires(now))
            .condition_expression("attribute_not_exists(pk) OR holder = :key OR expires_at < :now_s")
            .expression_attribute_values(":key", s(key.as_str()))
            .expression_attribute_values(":now_s", n(epoch_secs(now)))
            .send()
            .await;
        applied(result)
    }

    async fn forget_once_per_user(&self, rule: &RuleName, user: &str, key: &JobKey) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, s(once_key(rule, user)))
            .condition_expression("holder = :key")
            .expression_attribute_values(":key", s(key.as_str()))
            .send()
            .await;
        // Not applied: the record is no longer this holder's, which is what was wanted.
        applied(result).map(|_| ())
    }
}

#[async_trait]
impl CacheStore for DynamoStore {
    async fn cached(&self, key: &str, now: SystemTime) -> Result<Option<Value>, StoreError> {
        let Some(item) = self.current(&cache_key(key)).await? else { return Ok(None) };
        let fresh_until = item.get("fresh_until").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
        if fresh_until.is_none_or(|f| f <= epoch_millis(now)) {
            return Ok(None);
        }
        let text = item.get("value").and_then(|v| v.as_s().ok());
        Ok(text.and_then(|t| serde_json::from_str(t).ok()))
    }

    async fn cache(&self, key: &str, value: &Value, ttl: Duration, now: SystemTime) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, s(cache_key(key)))
            .item("value", s(value.to_string()))
            .item("fresh_until", n(epoch_millis(now + ttl)))
            .item(TTL_ATTRIBUTE, expires(now))
            .send()
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// Creates the events table as `template.yaml` declares it (on-demand, TTL on
/// `expires_at`, the listing index), for local development against moto and for tests. An existing table is
/// left as it is.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(StoreError::unavailable)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(StoreError::unavailable)
    };
    let listing = GlobalSecondaryIndex::builder()
        .index_name(LISTING_INDEX)
        .key_schema(key(DAY_ATTRIBUTE, KeyType::Hash)?)
        .key_schema(key(RECEIVED_ATTRIBUTE, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(LISTING_PROJECTION.iter().map(|a| a.to_string()).collect()))
                .build(),
        )
        .build()
        .map_err(StoreError::unavailable)?;
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(string_attribute(KEY_ATTRIBUTE)?)
        .attribute_definitions(string_attribute(DAY_ATTRIBUTE)?)
        .attribute_definitions(string_attribute(RECEIVED_ATTRIBUTE)?)
        .key_schema(key(KEY_ATTRIBUTE, KeyType::Hash)?)
        .global_secondary_indexes(listing)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => return Ok(()),
        Err(e) => return Err(unavailable(e)),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(StoreError::unavailable)?,
        )
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}
