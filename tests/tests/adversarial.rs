//! The adversarial suite, kept as tests: generated attacks on the ingest path, each a fresh
//! event, so that an accepted one would show as a new job.
//!
//! - **Forged requests** (both sources, the first-event batch flag on and off): forged,
//!   tampered, truncated, re-encoded, replayed and wrong-secret requests. None may be
//!   accepted: each is a 4xx, or for an exact replay of an accepted request a `duplicate` /
//!   `in_flight` answer that queues nothing.
//! - **Bad input** under a valid signature: arbitrary bytes, deep nesting, numbers out of
//!   range, invalid UTF-8, duplicate keys, fields of the wrong type: a 4xx with a code and a
//!   message, nothing stored, no panic.
//! - **Faults** on the AWS side are in `ingest_faults.rs` (moto behind the fault proxy).
//!
//! Case counts are sized for CI (about 11,000 requests in a few seconds); set
//! `ADVERSARIAL_SCALE=20` for a soak (`scripts/soak-adversarial`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use relay_tests::app::{CIO_SECRET, SEGMENT_SECRET, verifiers};
use relay_tests::payloads::{cio_email, segment_track_at};
use serde_json::{Value, json};
use shared::ingest::{self, Settings};
use shared::queue::MemoryQueue;
use shared::store::MemoryStore;
use shared::telemetry::Metrics;
use shared::verify;
use tower::ServiceExt;

/// `ADVERSARIAL_SCALE` times `base` cases.
fn cases(base: u32) -> u32 {
    let scale = std::env::var("ADVERSARIAL_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    base * scale.max(1)
}

fn runner(base: u32) -> TestRunner {
    TestRunner::new(Config { cases: cases(base), failure_persistence: None, ..Config::default() })
}

/// The ingest router over an in-memory store and queue, driven in-process.
struct Target {
    /// Requests sent, for the figures each test prints.
    tried: AtomicUsize,
    app: Router,
    store: MemoryStore,
    queue: MemoryQueue,
    rt: tokio::runtime::Runtime,
}

impl Target {
    fn new(allow_first_event: bool) -> Self {
        let (store, queue) = (MemoryStore::new(), MemoryQueue::default());
        let settings = Settings {
            rules: Arc::new(shared::triggers::Triggers::embedded().unwrap().rules),
            verifiers: verifiers(allow_first_event),
            cio_sources: None,
        };
        let app = ingest::build(settings, Arc::new(store.clone()), Arc::new(queue.clone()), Metrics::disabled());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Target { tried: AtomicUsize::new(0), app, store, queue, rt }
    }

    fn send(&self, request: &Sent) -> (u16, Value) {
        self.tried.fetch_add(1, Ordering::Relaxed);
        let mut builder =
            Request::post(format!("/webhooks/{}", request.source)).header("content-type", "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let http = builder.body(Body::from(request.body.clone())).unwrap();
        self.rt.block_on(async {
            let response = self.app.clone().oneshot(http).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        })
    }

    /// Prints what this target was sent and what it took in.
    fn report(&self, what: &str, genuine: usize) {
        let (queued, stored) = self.state();
        eprintln!(
            "adversarial {what}: {} requests ({} genuine), {} jobs queued and {} stored from the genuine ones, 0 from the rest",
            self.tried.load(Ordering::Relaxed),
            genuine,
            queued,
            stored
        );
    }

    /// What is stored and queued, to see whether a request changed anything.
    fn state(&self) -> (usize, usize) {
        (self.queue.sent() as usize, self.store.jobs().len())
    }
}

/// One request as sent: path source, headers, body.
#[derive(Debug, Clone)]
struct Sent {
    source: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn segment_signed(body: Vec<u8>, secret: &str) -> Sent {
    let signature = verify::segment::sign(secret, &body);
    Sent { source: "segment", headers: vec![("x-signature".into(), signature)], body }
}

fn cio_signed(body: Vec<u8>, secret: &str, timestamp: u64) -> Sent {
    let ts = timestamp.to_string();
    let signature = verify::customerio::sign(secret, &ts, &body);
    Sent {
        source: "customerio",
        headers: vec![("x-cio-timestamp".into(), ts), ("x-cio-signature".into(), signature)],
        body,
    }
}

/// A generated id made unique, so no two cases share an event.
fn fresh(id: &str) -> String {
    format!("adv-{id}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh event some rule listens for (so an accepted one would queue a job), from either
/// sender, with generated ids and properties.
fn event() -> impl Strategy<Value = (bool, Vec<u8>)> {
    let id = "[a-zA-Z0-9_-]{1,40}";
    let segment_event =
        prop::sample::select(vec!["trial_started", "plan_upgraded", "feature_milestone", "churn_signal"]);
    let cio_metric = prop::sample::select(vec!["unsubscribed", "bounced", "spammed"]);
    let props = prop::collection::btree_map(
        "[a-z_]{1,12}",
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,30}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from)
        ],
        0..8,
    );
    prop_oneof![
        (id, segment_event, "[a-z0-9]{1,20}", props).prop_map(|(id, name, user, props)| {
            let body = segment_track_at(&fresh(&id), name, &user, json!(props), SystemTime::now());
            (true, body.to_string().into_bytes())
        }),
        (id, cio_metric, "[0-9]{1,10}")
            .prop_map(|(id, metric, user)| (false, cio_email(&fresh(&id), metric, &user).to_string().into_bytes())),
    ]
}

/// A valid request for a fresh event: what the attacks start from.
fn genuine((segment, body): (bool, Vec<u8>)) -> Sent {
    if segment { segment_signed(body, SEGMENT_SECRET) } else { cio_signed(body, CIO_SECRET, now_secs()) }
}

/// How a captured or made-up request is changed.
#[derive(Debug, Clone)]
enum Attack {
    /// A signature that was never computed: random bytes of the right length, or not hex.
    Forged { signature: Vec<u8>, hex: bool },
    /// One byte of the body changed, inserted or removed.
    Tampered { at: prop::sample::Index, byte: u8, how: u8 },
    /// The body cut short.
    Truncated { keep: prop::sample::Index },
    /// The same JSON written differently (whitespace, key order, escapes).
    Reencoded { how: u8 },
    /// Signed with a secret that is not the configured one.
    WrongSecret { secret: String, how: u8 },
    /// Customer.io: the signature of one timestamp sent with another.
    MovedTimestamp { by: i64 },
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        (prop::collection::vec(any::<u8>(), 20..=32), any::<bool>())
            .prop_map(|(signature, hex)| Attack::Forged { signature, hex }),
        (any::<prop::sample::Index>(), 1..=255u8, 0..3u8).prop_map(|(at, byte, how)| Attack::Tampered {
            at,
            byte,
            how
        }),
        any::<prop::sample::Index>().prop_map(|keep| Attack::Truncated { keep }),
        (0..4u8).prop_map(|how| Attack::Reencoded { how }),
        ("[ -~]{0,40}", 0..7u8).prop_map(|(secret, how)| Attack::WrongSecret { secret, how }),
        prop_oneof![-100_000i64..-1, 1..100_000i64].prop_map(|by| Attack::MovedTimestamp { by }),
    ]
}

/// Applies `attack` to a genuine request; `None` when the result would be the genuine
/// request itself (e.g. a re-encoding that wrote the same bytes).
fn apply(genuine: &Sent, attack: &Attack) -> Option<Sent> {
    let mut sent = genuine.clone();
    let segment = sent.source == "segment";
    let signature_header = if segment { "x-signature" } else { "x-cio-signature" };
    let set = |sent: &mut Sent, name: &str, value: String| {
        sent.headers.retain(|(n, _)| n != name);
        sent.headers.push((name.to_owned(), value));
    };
    match attack {
        Attack::Forged { signature, hex } => {
            let len = if segment { 20 } else { 32 };
            let mut bytes = signature.clone();
            bytes.resize(len, 0);
            // Not hex: printable characters, as a header can carry.
            let value =
                if *hex { hex::encode(bytes) } else { bytes.iter().map(|b| char::from(b' ' + b % 95)).collect() };
            set(&mut sent, signature_header, value);
        }
        Attack::Tampered { at, byte, how } => {
            let i = at.index(sent.body.len());
            match how {
                0 => sent.body[i] ^= byte,
                1 => sent.body.insert(i, *byte),
                _ => {
                    sent.body.remove(i);
                }
            }
        }
        Attack::Truncated { keep } => {
            let keep = keep.index(sent.body.len());
            sent.body.truncate(keep);
        }
        Attack::Reencoded { how } => {
            let value: Value = serde_json::from_slice(&sent.body).ok()?;
            sent.body = match how {
                0 => serde_json::to_vec_pretty(&value).ok()?,
                1 => format!(" {} ", String::from_utf8_lossy(&sent.body)).into_bytes(),
                2 => {
                    // The first letter of the body's first string, as a \u escape.
                    let text = String::from_utf8_lossy(&sent.body).into_owned();
                    let at = text.find("\":\"").map(|i| i + 3)?;
                    let c = text[at..].chars().next().filter(char::is_ascii_alphanumeric)?;
                    format!("{}\\u{:04x}{}", &text[..at], c as u32, &text[at + 1..]).into_bytes()
                }
                _ => {
                    // Keys in the reverse order.
                    let Value::Object(map) = value else { return None };
                    let entries: Vec<String> =
                        map.iter().rev().map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))).collect();
                    format!("{{{}}}", entries.join(",")).into_bytes()
                }
            };
        }
        Attack::WrongSecret { secret, how } => {
            let real = if segment { SEGMENT_SECRET } else { CIO_SECRET };
            let wrong = match how {
                0 => secret.clone(),
                1 => format!("{real}{secret}x"),
                2 => real[..real.len() - 1].to_owned(),
                3 => real.to_uppercase(),
                4 => format!("{real},{secret}"),
                5 => real.split('-').next_back().unwrap_or("x").to_owned(),
                _ => String::new(),
            };
            if wrong == real {
                return None;
            }
            let resigned = if segment {
                segment_signed(sent.body.clone(), &wrong)
            } else {
                cio_signed(sent.body.clone(), &wrong, now_secs())
            };
            sent.headers = resigned.headers;
        }
        Attack::MovedTimestamp { by } => {
            if segment {
                return None;
            }
            let ts = sent.headers.iter().find(|(n, _)| n == "x-cio-timestamp")?.1.parse::<i64>().ok()?;
            set(&mut sent, "x-cio-timestamp", (ts + by).to_string());
        }
    }
    (sent.body != genuine.body || sent.headers != genuine.headers).then_some(sent)
}

fn refused(target: &Target, sent: &Sent) -> Result<(), TestCaseError> {
    let before = target.state();
    let (status, body) = target.send(sent);
    prop_assert!((400..500).contains(&status), "accepted ({status}): {sent:?} -> {body}");
    prop_assert!(body["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "no error code: {body}");
    prop_assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {body}");
    prop_assert_eq!(target.state(), before, "a refused request changed the store or queue: {:?}", sent);
    Ok(())
}

#[test]
fn forged_tampered_truncated_reencoded_and_wrong_secret_requests_are_never_accepted() {
    for allow_first_event in [false, true] {
        let target = Target::new(allow_first_event);
        runner(2500)
            .run(&(event(), attack()), |(event, attack)| {
                let genuine = genuine(event);
                match apply(&genuine, &attack) {
                    Some(forged) => refused(&target, &forged),
                    None => Ok(()),
                }
            })
            .unwrap();
        assert_eq!(target.state(), (0, 0), "nothing was accepted");
        target.report(
            &format!("forged/tampered/truncated/re-encoded/wrong-secret (first-event flag {allow_first_event})"),
            0,
        );
    }
}

#[test]
fn replays_queue_nothing_new_and_old_signed_requests_are_refused() {
    let target = Target::new(false);
    runner(1200)
        .run(&(event(), 8..400u64, 1..4usize), |(event, days_back_hours, replays)| {
            let segment = event.0;
            let genuine = genuine(event.clone());
            // The genuine request is accepted once...
            let (status, body) = target.send(&genuine);
            prop_assert_eq!(status, 200, "{}", body);
            let after = target.state();
            // ...and every exact replay is answered without queueing anything new.
            for _ in 0..replays {
                let (status, body) = target.send(&genuine);
                prop_assert!(status == 503 || body["status"] == "duplicate", "{status} {body}");
                prop_assert_eq!(target.state(), after);
            }
            // A request signed long ago (a capture replayed after its record could be gone):
            // refused by its own date (Segment) or its signed timestamp (Customer.io).
            let age = Duration::from_secs(7 * 86_400 + days_back_hours * 3600);
            let fresh_id = format!("old-{}", uuid::Uuid::new_v4().simple());
            let old = if segment {
                let body = segment_track_at(&fresh_id, "trial_started", "u", json!({}), SystemTime::now() - age);
                segment_signed(body.to_string().into_bytes(), SEGMENT_SECRET)
            } else {
                cio_signed(
                    cio_email(&fresh_id, "bounced", "7").to_string().into_bytes(),
                    CIO_SECRET,
                    now_secs() - age.as_secs(),
                )
            };
            refused(&target, &old)?;
            // And a Customer.io signature dated ahead of our clock beyond the skew.
            let ahead = cio_signed(
                cio_email(&fresh_id, "bounced", "7").to_string().into_bytes(),
                CIO_SECRET,
                now_secs() + 301 + days_back_hours,
            );
            refused(&target, &ahead)
        })
        .unwrap();
    let genuine = target.state().0;
    target.report("replayed and old-signed", genuine);
}

#[test]
fn batches_signed_on_their_first_event_carry_nothing_unsigned_in() {
    for allow_first_event in [false, true] {
        let target = Target::new(allow_first_event);
        let accepted_before = AtomicUsize::new(0);
        runner(600)
            .run(&(prop::collection::vec("[a-z0-9]{6,20}", 2..6), 0..3u8), |(ids, how)| {
                let events: Vec<String> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        segment_track_at(&format!("b{i}-{id}"), "trial_started", id, json!({}), SystemTime::now())
                            .to_string()
                    })
                    .collect();
                let body = format!("[{}]", events.join(","));
                let sent = match how {
                    // Signed over another element than the first.
                    0 => Sent {
                        source: "segment",
                        headers: vec![(
                            "x-signature".into(),
                            verify::segment::sign(SEGMENT_SECRET, events[1].as_bytes()),
                        )],
                        body: body.into_bytes(),
                    },
                    // The first event signed, its bytes then changed.
                    1 => {
                        let signature = verify::segment::sign(SEGMENT_SECRET, events[0].as_bytes());
                        let tampered = body.replacen("trial_started", "churn_signal", 1);
                        Sent {
                            source: "segment",
                            headers: vec![("x-signature".into(), signature)],
                            body: tampered.into_bytes(),
                        }
                    }
                    // A genuine first-event-signed batch, then its signature reused with other events.
                    _ => {
                        let signature = verify::segment::sign(SEGMENT_SECRET, events[0].as_bytes());
                        let genuine = Sent {
                            source: "segment",
                            headers: vec![("x-signature".into(), signature.clone())],
                            body: body.clone().into_bytes(),
                        };
                        let before = target.state();
                        let (status, _) = target.send(&genuine);
                        if allow_first_event {
                            prop_assert_eq!(status, 200);
                            accepted_before.fetch_add(target.state().0 - before.0, Ordering::Relaxed);
                        } else {
                            prop_assert_eq!(status, 401);
                        }
                        let extra = segment_track_at(
                            &format!("forged-{}", uuid::Uuid::new_v4().simple()),
                            "trial_started",
                            "attacker",
                            json!({}),
                            SystemTime::now(),
                        );
                        let forged = format!("[{},{extra}]", events[0]);
                        Sent {
                            source: "segment",
                            headers: vec![("x-signature".into(), signature)],
                            body: forged.into_bytes(),
                        }
                    }
                };
                refused(&target, &sent)
            })
            .unwrap();
        assert_eq!(target.state().0, accepted_before.load(Ordering::Relaxed), "only the genuine batches were queued");
        target.report(&format!("first-event-signed batches (flag {allow_first_event})"), 0);
    }
}

/// Bodies that are not events, under a valid signature (so they reach the parser).
fn bad_body() -> impl Strategy<Value = Vec<u8>> {
    let event = |inner: String| {
        format!(
            r#"{{"type":"track","event":"trial_started","messageId":"bad-{}","userId":"u","receivedAt":"{}",{inner}}}"#,
            uuid::Uuid::new_v4().simple(),
            relay_tests::payloads::rfc3339(SystemTime::now())
        )
    };
    prop_oneof![
        // Arbitrary bytes.
        prop::collection::vec(any::<u8>(), 0..512),
        // Deep nesting, at the top and inside properties.
        (100..5000usize).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (130..3000usize).prop_map(move |n| event(format!(r#""properties":{}1{}"#, "{\"a\":".repeat(n), "}".repeat(n))).into_bytes()),
        // Numbers out of range.
        (400..100_000u32).prop_map(move |e| event(format!(r#""properties":{{"ltv":1e{e}}}"#)).into_bytes()),
        (400..2000usize).prop_map(move |n| event(format!(r#""properties":{{"ltv":{}}}"#, "9".repeat(n))).into_bytes()),
        // Invalid UTF-8 inside a string.
        (prop::collection::vec(0x80..=0xffu8, 1..8)).prop_map(move |bytes| {
            let mut body = event(r#""properties":{"plan":"X"}"#.into()).into_bytes();
            let at = body.iter().rposition(|b| *b == b'X').unwrap();
            body.splice(at..=at, bytes.into_iter().filter(|b| !(0xc2..=0xf4).contains(b)).chain([0xc0]));
            body
        }),
        // Duplicate keys, in the envelope and in what rules read.
        Just(br#"{"type":"track","event":"trial_started","messageId":"a","messageId":"b"}"#.to_vec()),
        "[a-z]{1,8}".prop_map(move |k| event(format!(r#""properties":{{"{k}":1,"{k}":2}}"#)).into_bytes()),
        // Every field of the wrong type.
        (prop::sample::select(vec!["type", "event", "messageId", "userId", "anonymousId", "properties", "traits", "context", "receivedAt", "sentAt", "timestamp"]),
         prop::sample::select(vec!["[]", "{}", "true", "1e5", "[1,2]", "{\"a\":1}"]))
            .prop_filter("a value that is the right type for its field", |(field, value)| {
                !matches!((*field, *value), ("userId" | "anonymousId", "1e5") | ("properties" | "traits" | "context", "{}" | "{\"a\":1}"))
            })
            .prop_map(|(field, value)| {
                let mut body = serde_json::from_str::<serde_json::Map<String, Value>>(
                    &segment_track_at("wrong-type", "trial_started", "u", json!({"plan": "pro"}), SystemTime::now()).to_string(),
                )
                .unwrap();
                body.insert(field.to_owned(), serde_json::from_str(value).unwrap());
                serde_json::to_vec(&body).unwrap()
            }),
    ]
}

#[test]
fn bad_input_under_a_valid_signature_is_a_clear_4xx_and_stores_nothing() {
    let target = Target::new(true);
    runner(1500)
        .run(&(bad_body(), any::<bool>()), |(body, segment)| {
            let sent =
                if segment { segment_signed(body, SEGMENT_SECRET) } else { cio_signed(body, CIO_SECRET, now_secs()) };
            refused(&target, &sent)
        })
        .unwrap();
    assert_eq!(target.state(), (0, 0));
    target.report("bad input", 0);
}
