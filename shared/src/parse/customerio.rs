//! Customer.io reporting webhooks: one event object per request, with `event_id`,
//! `object_type`, `metric` and a `data` object whose shape depends on them.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue};

use super::{Envelope, ParseError, RawFields, check_object, id_from, object_of};
use crate::domain::{Event, Source};

#[derive(Debug, Deserialize)]
pub(super) struct Raw<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metric: Option<Cow<'a, str>>,
    /// Not in Customer.io's spec; Mavera's page says some versions send it instead of `metric`.
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

pub(super) fn envelope(body: &[u8]) -> Result<Envelope<'_>, ParseError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(ParseError::Json)?;
        return Err(ParseError::NotAnObject { index: None });
    }
    let mut raw: Raw<'_> = serde_json::from_slice(body).map_err(ParseError::Json)?;
    let id = id_from(raw.event_id.take(), "event_id", None, "")?;
    let name = match (raw.metric.take(), raw.event_type.take()) {
        (Some(m), _) if !m.is_empty() => m,
        (_, Some(t)) if !t.is_empty() => t,
        _ => return Err(ParseError::MissingName { fields: "`metric` nor `event_type`", index: None }),
    };
    check_object(raw.data, "data", None)?;
    // The signed `X-CIO-Timestamp` dates a Customer.io request; the body's time is not needed.
    Ok(Envelope { source: Source::CustomerIo, id, name, index: None, sent_at: None, raw: RawFields::CustomerIo(raw) })
}

pub(super) fn to_event(env: &Envelope<'_>, raw: &Raw<'_>) -> Result<Event, ParseError> {
    let fields_err = |source| ParseError::Fields { index: None, source };
    let data = object_of(raw.data).map_err(fields_err)?.unwrap_or_default();

    // `data` first: the top-level `metric`, `object_type` and `timestamp` (what the rule
    // matched on) win over keys of the same name inside `data`.
    let mut fields = Map::new();
    // `cio_subscription_preferences_changed` spells it `object_type_type` in the spec.
    let object_type = raw
        .object_type
        .as_deref()
        .map(str::to_owned)
        .or_else(|| data.get("object_type_type").and_then(Value::as_str).map(str::to_owned));
    fields.extend(data);
    fields.insert("metric".into(), Value::String(env.name.clone().into_owned()));
    if let Some(object_type) = object_type {
        fields.insert("object_type".into(), Value::String(object_type));
    }
    if let Some(ts) = raw.timestamp {
        fields.insert("timestamp".into(), serde_json::from_str(ts.get()).map_err(fields_err)?);
    }

    // `identifiers.id` is current; `customer_id` is deprecated and blank for deleted people.
    let identifiers = fields.get("identifiers").and_then(Value::as_object);
    let user_id = identifiers
        .and_then(|ids| ids.get("id"))
        .and_then(|v| match v {
            Value::String(s) => super::canonical_id(s),
            Value::Number(n) => Some(super::canonical_number_id(&n.to_string())),
            _ => None,
        })
        .or_else(|| fields.get("customer_id").and_then(Value::as_str).and_then(super::canonical_id));
    if let Some(user) = &user_id {
        fields.insert("user_id".into(), Value::String(user.clone()));
    }
    Ok(Event { source: Source::CustomerIo, id: env.id.clone(), name: env.name.clone().into_owned(), user_id, fields })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::envelopes as parse;

    fn event(body: &str) -> Event {
        parse(Source::CustomerIo, body.as_bytes()).unwrap().remove(0).to_event().unwrap()
    }

    #[test]
    fn email_sent_example_from_the_spec() {
        let e = event(
            r#"{"metric":"sent","event_id":"01E4C4CT6YDC7Y5M7FE1GWWPQJ","object_type":"email","timestamp":1613063089,
            "data":{"action_id":42,"broadcast_id":9,"customer_id":"0200000001","delivery_id":"RPILAgUBcRhIBqSfeiIwdIYJKxTY",
            "identifiers":{"id":"42","email":"test@example.com","cio_id":"d9c106000001"},"recipient":"test@example.com"}}"#,
        );
        assert_eq!(e.id.as_str(), "01E4C4CT6YDC7Y5M7FE1GWWPQJ");
        assert_eq!(e.name, "sent");
        assert_eq!(e.user_id.as_deref(), Some("42"));
        assert_eq!(e.fields["object_type"], json!("email"));
        assert_eq!(e.fields["timestamp"], json!(1613063089));
        assert_eq!(e.fields["identifiers"]["email"], json!("test@example.com"));
        assert_eq!(e.fields["recipient"], json!("test@example.com"));
    }

    #[test]
    fn deprecated_customer_id_is_the_fallback_user() {
        let e = event(
            r#"{"metric":"subscribed","event_id":"e1","object_type":"customer","data":{"customer_id":"0200000001","identifiers":{"id":null}}}"#,
        );
        assert_eq!(e.user_id.as_deref(), Some("0200000001"));
        let e = event(r#"{"metric":"subscribed","event_id":"e1","object_type":"customer","data":{"customer_id":""}}"#);
        assert_eq!(e.user_id, None);
    }

    #[test]
    fn the_top_level_metric_wins_over_data_and_ids_are_canonical() {
        let e = event(
            r#"{"metric":"bounced","event_id":"e1","object_type":"email","data":{"metric":"sent","object_type":"sms","identifiers":{"id":42.0}}}"#,
        );
        assert_eq!(e.fields["metric"], json!("bounced"));
        assert_eq!(e.fields["object_type"], json!("email"));
        assert_eq!(e.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn event_type_stands_in_for_metric() {
        let e = event(r#"{"event_type":"unsubscribed","event_id":"e1","data":{}}"#);
        assert_eq!(e.name, "unsubscribed");
    }

    #[test]
    fn object_type_type_quirk_is_accepted() {
        let e = event(
            r#"{"metric":"cio_subscription_preferences_changed","event_id":"e1","data":{"object_type_type":"email"}}"#,
        );
        assert_eq!(e.fields["object_type"], json!("email"));
    }

    #[test]
    fn missing_id_or_metric_and_bad_shapes_are_errors() {
        let err = parse(Source::CustomerIo, br#"{"metric":"sent","data":{}}"#).unwrap_err();
        assert!(matches!(err, ParseError::MissingId { field: "event_id", .. }), "{err}");
        let err = parse(Source::CustomerIo, br#"{"event_id":"e","data":{}}"#).unwrap_err();
        assert!(matches!(err, ParseError::MissingName { .. }), "{err}");
        assert!(matches!(
            parse(Source::CustomerIo, br#"[{"event_id":"e"}]"#).unwrap_err(),
            ParseError::NotAnObject { .. }
        ));
        assert!(matches!(parse(Source::CustomerIo, b"{").unwrap_err(), ParseError::Json(_)));
        let err = parse(Source::CustomerIo, br#"{"metric":"sent","event_id":"e","data":[1]}"#).unwrap_err();
        assert!(matches!(err, ParseError::WrongType { field: "data", .. }), "{err}");
        let env = parse(Source::CustomerIo, br#"{"metric":"sent","event_id":"e","data":{"a":1,"a":2}}"#).unwrap();
        assert!(matches!(env[0].to_event(), Err(ParseError::Fields { .. })), "duplicate keys");
    }
}
