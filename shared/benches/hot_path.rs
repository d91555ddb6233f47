//! The ingest hot path, without I/O: verify + parse + match (+ render) for a 2 KB Segment
//! track event. Run: `cargo bench -p shared --bench hot_path` (figures in BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use shared::domain::{JobKey, Source};
use shared::parse::envelopes;
use shared::queue::JobMessage;
use shared::triggers::Triggers;
use shared::verify::{SegmentVerifier, SigningSecrets, segment};

const SECRET: &str = "bench-shared-secret";

/// A Segment track event in the Spec's shape, padded with realistic context to 2 KB.
fn event(name: &str) -> String {
    let mut body = format!(
        r#"{{"anonymousId":"23adfd82-aa0f-45a7-a756-24f2a7a4c895","context":{{"library":{{"name":"analytics.js","version":"2.11.1"}},"page":{{"path":"/pricing","referrer":"https://www.google.com/","search":"?utm_source=google&utm_medium=cpc","title":"Pricing — Example","url":"https://example.com/pricing?utm_source=google&utm_medium=cpc"}},"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","ip":"108.0.78.21","locale":"en-US","timezone":"Europe/Zurich","traits":{{"email":"jane@example.com","plan":"basic","company":"Example AG","seats":12}}}},"event":"{name}","integrations":{{}},"messageId":"ajs-next-1700000000000-f8ca1e4de5024d9430b3928bd8ac6b96","properties":{{"plan":"pro","source":"google","trial_days":14,"seats":12,"billing":"annual","referrer_campaign":"winter-launch","features":["sso","audit-log","api"]}},"receivedAt":"2026-11-23T19:11:01.266Z","sentAt":"2026-11-23T19:11:01.169Z","timestamp":"2026-11-23T19:11:01.249Z","type":"track","userId":"usr_k8m2n4p7q9","originalTimestamp":"2026-11-23T19:11:01.152Z","padding":""#
    );
    while body.len() < 2046 {
        body.push('x');
    }
    body.push_str("\"}");
    assert_eq!(body.len(), 2048);
    body
}

fn bench(c: &mut Criterion) {
    let rules = Triggers::embedded().expect("shipped rules").rules;
    let verifier = SegmentVerifier::new(&SigningSecrets::single("S", SECRET).unwrap(), false);
    let headers_for = |body: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-signature", HeaderValue::from_str(&segment::sign(SECRET, body.as_bytes())).unwrap());
        h
    };

    let matching = event("trial_started");
    let matching_headers = headers_for(&matching);
    c.bench_function("matching 2 KB track: verify+parse+match+render", |b| {
        b.iter(|| {
            let body = black_box(matching.as_bytes());
            verifier.verify(&matching_headers, body).unwrap();
            let envs = envelopes(Source::Segment, body).unwrap();
            let mut out = 0;
            for env in &envs {
                if rules.listens_for(Source::Segment, &env.name) {
                    let event = env.to_event().unwrap();
                    for rule in rules.matching(&event) {
                        let key = JobKey::for_event(Source::Segment, &event.id, &rule.name);
                        let message = JobMessage::event_body(&key, &rule.name, &event).unwrap();
                        let request = black_box(rule.action.render(&event));
                        out += message.len();
                        drop(request);
                    }
                }
            }
            assert!(out > 0);
            black_box(out)
        })
    });

    c.bench_function("part: HMAC-SHA1 verify of 2 KB", |b| {
        b.iter(|| verifier.verify(&matching_headers, black_box(matching.as_bytes())).unwrap())
    });
    c.bench_function("part: envelope parse of 2 KB", |b| {
        b.iter(|| envelopes(Source::Segment, black_box(matching.as_bytes())).unwrap().len())
    });
    let envs = envelopes(Source::Segment, matching.as_bytes()).unwrap();
    c.bench_function("part: fields of 2 KB", |b| b.iter(|| black_box(envs[0].to_event().unwrap())));
    let parsed = envs[0].to_event().unwrap();
    let rule = rules.matching(&parsed).next().unwrap();
    c.bench_function("part: render persona request", |b| b.iter(|| black_box(rule.action.render(&parsed))));
    c.bench_function("part: encode queue message", |b| {
        let key = JobKey::for_event(Source::Segment, &parsed.id, &rule.name);
        b.iter(|| JobMessage::event_body(&key, &rule.name, black_box(&parsed)).unwrap())
    });

    let ignored = event("Page Viewed");
    let ignored_headers = headers_for(&ignored);
    c.bench_function("non-matching 2 KB track: verify+parse+match", |b| {
        b.iter(|| {
            let body = black_box(ignored.as_bytes());
            verifier.verify(&ignored_headers, body).unwrap();
            let envs = envelopes(Source::Segment, body).unwrap();
            let fired = envs.iter().filter(|e| rules.listens_for(Source::Segment, &e.name)).count();
            assert_eq!(fired, 0);
            black_box(fired)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
