//! Webhook bodies as Segment and Customer.io send them.

use serde_json::{Value, json};

/// An RFC 3339 UTC time, as Segment writes its `receivedAt`, `sentAt` and `timestamp`.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    at.format(&time::format_description::well_known::Rfc3339).expect("a time formats")
}

/// A Segment `track` event in the Spec's shape, padded with the usual context, dated now.
pub fn segment_track(message_id: &str, event: &str, user_id: &str, properties: Value) -> Value {
    segment_track_at(message_id, event, user_id, properties, std::time::SystemTime::now())
}

/// The same, dated `at` (Segment received it then).
pub fn segment_track_at(
    message_id: &str,
    event: &str,
    user_id: &str,
    properties: Value,
    at: std::time::SystemTime,
) -> Value {
    let when = rfc3339(at);
    json!({
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "page": {"path": "/pricing", "referrer": "", "search": "", "title": "Pricing", "url": "https://example.com/pricing"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
            "ip": "108.0.78.21",
            "traits": {"email": "jane@example.com", "plan": "basic"}
        },
        "event": event,
        "integrations": {},
        "messageId": message_id,
        "properties": properties,
        "receivedAt": when,
        "sentAt": when,
        "timestamp": when,
        "type": "track",
        "userId": user_id,
        "originalTimestamp": when
    })
}

/// A Customer.io reporting webhook for an email metric.
pub fn cio_email(event_id: &str, metric: &str, customer_id: &str) -> Value {
    json!({
        "metric": metric,
        "event_id": event_id,
        "object_type": "email",
        "timestamp": 1_763_900_000,
        "data": {
            "action_id": 42,
            "campaign_id": 7,
            "customer_id": customer_id,
            "delivery_id": "RPILAgUBcRhIBqSfeiIwdIYJKxTY",
            "identifiers": {"id": customer_id, "email": "jane@example.com", "cio_id": "d9c106000001"},
            "recipient": "jane@example.com",
            "subject": "Your trial ends soon"
        }
    })
}
