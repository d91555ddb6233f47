//! What a listing costs as the table grows, measured against moto through the real adapter:
//! `DynamoStore::list` for the last hour (a page of 50), the same with a status filter, and
//! for comparison a `Scan` of the whole table (what a listing without the index would read).
//! An SDK interceptor reads every response and sums the items it carried, sized by
//! DynamoDB's item-size rules; read units follow DynamoDB's rule for a query or scan (the
//! items' total size, rounded up to 4 KB per call, half a unit per 4 KB when eventually
//! consistent). Times are moto's on this machine, not DynamoDB's.
//!
//! Also: the size of what the worker's `start` now keeps (the queue message) for the shipped
//! sample events, and of a listing-index entry (what each index write costs).
//!
//!     scripts/bench-listing            # LISTING_SIZES=1000,5000,20000 by default

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use relay_tests::aws::Aws;
use serde_json::{Value, json};
use shared::domain::{JobKey, RuleName, Source};
use shared::queue::JobMessage;
use shared::store::{
    ClaimStore, DynamoStore, JobStatus, JobStore, Lease, ListFilter, ListQuery, ListStore, NewJob, Outcome, Position,
    StartJob,
};

/// What the responses carried since the last reset.
#[derive(Debug, Default, Clone)]
struct Reads {
    calls: usize,
    items: usize,
    scanned: usize,
    bytes: usize,
    /// Read units, eventually consistent: per call, its bytes rounded up to 4 KB, halved.
    units: f64,
}

/// A listing-index entry's size (as this bench prints it below), for pages that returned no
/// item to size the dropped ones by.
const ENTRY_BYTES: usize = 355;

#[derive(Debug, Clone, Default)]
struct Meter(Arc<Mutex<Reads>>);

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "read-meter"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(body) = context.response().body().bytes() else { return Ok(()) };
        let Ok(json) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
        let Some(items) = json.get("Items").and_then(Value::as_array) else { return Ok(()) };
        let returned: usize = items.iter().map(item_size).sum();
        let scanned = json.get("ScannedCount").and_then(Value::as_u64).map_or(items.len(), |n| n as usize);
        // A filter drops items after they are read (and paid for): those are sized as the
        // average item returned.
        let bytes = match items.len() {
            0 => scanned * ENTRY_BYTES,
            n => returned + (scanned - n) * returned / n,
        };
        let mut reads = self.0.lock().unwrap();
        reads.calls += 1;
        reads.items += items.len();
        reads.scanned += scanned;
        reads.bytes += bytes;
        reads.units += (bytes.max(1) as f64 / 4096.0).ceil() * 0.5;
        Ok(())
    }
}

impl Meter {
    fn take(&self) -> Reads {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// An item's size by DynamoDB's rules: each attribute's name plus its value (strings in UTF-8
/// bytes, numbers about one byte per two digits plus one, lists and maps 3 bytes plus one
/// per element plus their contents).
fn item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |m| m.iter().map(|(name, v)| name.len() + value_size(v)).sum())
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else { return 0 };
    match kind.as_str() {
        "S" | "B" => inner.as_str().map_or(0, str::len),
        "N" => {
            let digits = inner.as_str().unwrap_or("").chars().filter(char::is_ascii_digit).count();
            digits.div_ceil(2) + 1
        }
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |a| a.iter().map(|s| s.as_str().map_or(0, str::len)).sum()),
        "L" => 3 + inner.as_array().map_or(0, |a| a.iter().map(|e| 1 + value_size(e)).sum()),
        "M" => 3 + inner.as_object().map_or(0, |m| m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum()),
        _ => 0,
    }
}

/// The sample event's queue message, as ingest writes it.
fn sample_message(file: &str, rule: &str) -> (JobKey, RuleName, String) {
    let body = std::fs::read(format!("{}/../examples/segment/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let event = shared::parse::envelopes(Source::Segment, &body).unwrap().remove(0).to_event().unwrap();
    let rule = RuleName::parse(rule).unwrap();
    let key = JobKey::for_event(Source::Segment, &event.id, &rule);
    let message = JobMessage::event_body(&key, &rule, &event).unwrap();
    (key, rule, message)
}

/// A research job taken through claim, start and finish by the adapter, read back as stored:
/// the template every bulk-written job copies.
async fn template_item(aws: &Aws, store: &DynamoStore) -> (HashMap<String, AttributeValue>, [usize; 2]) {
    let (key, rule, message) = sample_message("plan_upgraded.json", "segment-plan-upgraded");
    let now = SystemTime::now();
    let size = || async {
        let item =
            aws.dynamo.get_item().table_name(&aws.table).key("pk", AttributeValue::S(key.to_string())).send().await;
        let item = item.unwrap().item.unwrap();
        item_size(&json!(item.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>()))
    };
    store.claim(&NewJob { key: &key, rule: &rule, token: "t", now }).await.unwrap();
    let claimed = size().await;
    let lease = Lease { owner: "w".into(), until: now + Duration::from_secs(60) };
    let start = StartJob { key: &key, rule: &rule, lease: &lease, message: &message, user: Some("usr_p4x9q"), now };
    store.start(&start).await.unwrap();
    let started = size().await;
    // The stand-in's research answer is about 1.3 KB, as a real short Mave answer.
    let content =
        format!("## Findings\n\n{}", "Users who upgrade to growth expect the team features at once. ".repeat(20));
    let result = json!({"action": "research", "thread_id": "mave_thread_0123456789ab", "message_id": "msg_0123456789abcdef",
        "content": content, "truncated": false, "credits": 25.0});
    store.finish(&key, "w", &Outcome::Done { result }, &[], now).await.unwrap();
    let item = aws.dynamo.get_item().table_name(&aws.table).key("pk", AttributeValue::S(key.to_string())).send().await;
    (item.unwrap().item.unwrap(), [claimed, started])
}

/// Writes jobs `from..to`, received over the last 48 hours (spread so that every stage of the
/// fill covers the whole span evenly), a tenth of them failed, and one guard record per four
/// jobs (not in the index).
async fn fill(aws: &Aws, template: &HashMap<String, AttributeValue>, from: usize, to: usize, total: usize) {
    let now = SystemTime::now();
    let span = Duration::from_secs(48 * 3600);
    let mut requests = Vec::new();
    for i in from..to {
        let key = JobKey::from_stored(format!("segment#bench-{i:07}#segment-plan-upgraded"));
        // 7919 is prime and does not divide the total, so i * 7919 mod total visits every slot.
        let slot = (i * 7919) % total;
        let received = now - span.mul_f64(slot as f64 / total as f64);
        let position = Position::new(received, &key);
        let mut item = template.clone();
        item.insert("pk".into(), AttributeValue::S(key.to_string()));
        item.insert("day".into(), AttributeValue::S(position.day().to_owned()));
        item.insert("position".into(), AttributeValue::S(position.to_string()));
        item.insert("user_id".into(), AttributeValue::S(format!("usr_{i:07}")));
        if i % 10 == 3 {
            item.insert("status".into(), AttributeValue::S("FAILED".into()));
            item.insert(
                "summary".into(),
                AttributeValue::S("Mavera refused the call (402 credits_exhausted): top up credits".into()),
            );
            item.remove("credits");
            item.remove("result");
        }
        requests.push(
            WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build().unwrap()).build(),
        );
        if i % 4 == 0 {
            let guard = HashMap::from([
                ("pk".to_owned(), AttributeValue::S(format!("once#segment-plan-upgraded#usr_{i:07}"))),
                ("holder".to_owned(), AttributeValue::S(key.to_string())),
                ("expires_at".to_owned(), AttributeValue::N("9999999999".into())),
            ]);
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(guard)).build().unwrap())
                    .build(),
            );
        }
    }
    for chunk in requests.chunks(25) {
        let mut pending = HashMap::from([(aws.table.clone(), chunk.to_vec())]);
        while !pending.is_empty() {
            let out = aws.dynamo.batch_write_item().set_request_items(Some(pending)).send().await.unwrap();
            pending = out.unprocessed_items.unwrap_or_default().into_iter().filter(|(_, v)| !v.is_empty()).collect();
        }
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() {
    let aws = Aws::fresh().await;
    let meter = Meter::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws.sdk).interceptor(meter.clone()).build(),
    );
    let store = DynamoStore::new(client.clone(), &aws.table);
    let sizes: Vec<usize> = std::env::var("LISTING_SIZES")
        .unwrap_or_else(|_| "1000,5000,20000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("LISTING_SIZES: numbers"))
        .collect();
    let total = *sizes.iter().max().unwrap();
    let (template, [claimed, started]) = template_item(&aws, &store).await;

    println!("jobs in table | listing | calls | items read | bytes read (est.) | read units | moto time/page");
    println!("---|---|---|---|---|---|---");
    let mut filled = 0;
    for &size in &sizes {
        fill(&aws, &template, filled, size, total).await;
        filled = size;
        let now = SystemTime::now();
        let cases = [
            (
                "last 1h, page of 50",
                ListQuery {
                    since: now - Duration::from_secs(3600),
                    until: now,
                    filter: ListFilter::default(),
                    limit: 50,
                    after: None,
                },
            ),
            (
                "last 1d, FAILED, page of 50",
                ListQuery {
                    since: now - Duration::from_secs(86_400),
                    until: now,
                    filter: ListFilter { statuses: vec![JobStatus::Failed], ..ListFilter::default() },
                    limit: 50,
                    after: None,
                },
            ),
        ];
        for (label, query) in cases {
            let mut times = Vec::new();
            let mut reads = Reads::default();
            let mut listed = 0;
            for _ in 0..5 {
                meter.take();
                let started = Instant::now();
                let page = store.list(&query).await.unwrap();
                times.push(started.elapsed());
                reads = meter.take();
                listed = page.jobs.len();
            }
            println!(
                "{size} | {label} ({listed} listed) | {} | {} | {} | {:.1} | {:.1} ms",
                reads.calls,
                reads.scanned,
                reads.bytes,
                reads.units,
                median(times).as_secs_f64() * 1000.0
            );
        }
        meter.take();
        let started = Instant::now();
        let mut start = None;
        loop {
            let out = client.scan().table_name(&aws.table).set_exclusive_start_key(start).send().await.unwrap();
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                break;
            }
        }
        let scan = meter.take();
        println!(
            "{size} | Scan of the table (no index) | {} | {} | {} | {:.1} | {:.1} ms",
            scan.calls,
            scan.scanned,
            scan.bytes,
            scan.units,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }

    println!("\nwhat a job costs to write beside the listing:");
    let projected =
        ["pk", "day", "position", "status", "rule", "user_id", "summary", "credits", "attempts", "expires_at"];
    let entry: Value = json!(
        template
            .iter()
            .filter(|(k, _)| projected.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect::<serde_json::Map<_, _>>()
    );
    let whole: Value =
        json!(template.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>());
    println!(
        "  listing-index entry of a DONE research job: {} bytes (1 write unit per index write; 3 per job: claim, start, finish)",
        item_size(&entry)
    );
    println!(
        "  the record after the claim: {claimed} bytes; after the start (with the kept message): {started} bytes; DONE: {} bytes",
        item_size(&whole)
    );
    for (file, rule) in [
        ("trial_started.json", "segment-trial-started"),
        ("plan_upgraded.json", "segment-plan-upgraded"),
        ("feature_milestone.json", "segment-feature-milestone"),
        ("churn_signal.json", "segment-churn-signal"),
    ] {
        let (_, _, message) = sample_message(file, rule);
        println!(
            "  queue message kept by start for examples/segment/{file}: {} bytes",
            message.len() + "message".len()
        );
    }
}

/// An attribute as DynamoDB JSON, for sizing.
fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::L(items) => json!({"L": items.iter().map(attribute_json).collect::<Vec<_>>()}),
        AttributeValue::M(m) => {
            json!({"M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>()})
        }
        AttributeValue::Ss(ss) => json!({"SS": ss}),
        _ => json!({"NULL": true}),
    }
}
