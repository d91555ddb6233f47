//! Webhook bodies as Segment and Customer.io send them.

use serde_json::{Value, json};

/// A Segment `track` event in the Spec's shape, padded with the usual context.
pub fn segment_track(message_id: &str, event: &str, user_id: &str, properties: Value) -> Value {
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
        "receivedAt": "2026-11-23T19:11:01.266Z",
        "sentAt": "2026-11-23T19:11:01.169Z",
        "timestamp": "2026-11-23T19:11:01.249Z",
        "type": "track",
        "userId": user_id,
        "originalTimestamp": "2026-11-23T19:11:01.152Z"
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
