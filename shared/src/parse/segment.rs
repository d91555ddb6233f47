//! Segment Spec events (track, identify, page, screen, group, alias), as the Webhooks
//! destinations send them: one object, or an Actions batch as a plain JSON array.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, value::RawValue};

use super::{Envelope, ParseError, RawFields, check_object, check_scalar, id_from, object_of, scalar_text};
use crate::domain::{Event, Source};

#[derive(Debug, Deserialize)]
pub(super) struct Raw<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "messageId", borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(borrow, default)]
    traits: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    #[serde(rename = "receivedAt", borrow, default)]
    received_at: Option<&'a RawValue>,
    #[serde(rename = "sentAt", borrow, default)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Context<'a> {
    #[serde(borrow, default)]
    traits: Option<&'a RawValue>,
}

const ID_HINT: &str = " (map `messageId` in the Segment destination's mapping)";

/// The events of a body: one object, or an array whose elements are read one by one, so a
/// bad element spoils only itself. `Err` is a body that holds no events at all.
pub(super) fn batch(body: &[u8]) -> Result<Vec<Result<Envelope<'_>, ParseError>>, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(ParseError::Json)?;
            if items.is_empty() {
                return Err(ParseError::EmptyBatch);
            }
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    if !item.get().starts_with('{') {
                        return Err(ParseError::NotAnObject { index: Some(i) });
                    }
                    let raw: Raw<'_> = serde_json::from_str(item.get())
                        .map_err(|source| ParseError::Fields { index: Some(i), source })?;
                    envelope(raw, Some(i))
                })
                .collect())
        }
        Some(b'{') => {
            let raw: Raw<'_> = serde_json::from_slice(body).map_err(ParseError::Json)?;
            Ok(vec![envelope(raw, None)])
        }
        _ => {
            // Let serde say what is wrong with it if it is not JSON at all.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(ParseError::Json)?;
            Err(ParseError::NotAnObject { index: None })
        }
    }
}

fn envelope(mut raw: Raw<'_>, index: Option<usize>) -> Result<Envelope<'_>, ParseError> {
    let id = id_from(raw.message_id.take(), "messageId", index, ID_HINT)?;
    // Mavera's sample names an event by `event`, falling back to `type`.
    let name = match (raw.event.take(), &raw.kind) {
        (Some(e), _) if !e.is_empty() => e,
        (_, Some(k)) if !k.is_empty() => k.clone(),
        _ => return Err(ParseError::MissingName { fields: "`event` nor `type`", index }),
    };
    for (value, field) in [(raw.properties, "properties"), (raw.traits, "traits"), (raw.context, "context")] {
        check_object(value, field, index)?;
    }
    for (value, field) in [(raw.user_id, "userId"), (raw.anonymous_id, "anonymousId")] {
        check_scalar(value, field, index)?;
    }
    // When Segment got it (its own clock) is the best bound on when it was first delivered;
    // the sender's `sentAt` and the event's `timestamp` stand in when a mapping drops it.
    let mut dates = Vec::with_capacity(3);
    for (value, field) in [(raw.received_at, "receivedAt"), (raw.sent_at, "sentAt"), (raw.timestamp, "timestamp")] {
        dates.push(rfc3339(value, field, index)?);
    }
    let sent_at = dates.into_iter().flatten().next();
    Ok(Envelope { source: Source::Segment, id, name, index, sent_at, raw: RawFields::Segment(raw) })
}

/// An RFC 3339 time in a JSON string, as Segment writes its dates; absent or null is none,
/// anything else an error naming the field.
fn rfc3339(
    raw: Option<&RawValue>,
    field: &'static str,
    index: Option<usize>,
) -> Result<Option<std::time::SystemTime>, ParseError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else { return Ok(None) };
    let wrong = || ParseError::WrongType { field, expected: "an RFC 3339 time, like 2026-11-23T19:11:01.266Z", index };
    let text: Cow<'_, str> = serde_json::from_str(raw.get()).map_err(|_| wrong())?;
    let at = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).map_err(|_| wrong())?;
    Ok(Some(at.into()))
}

pub(super) fn to_event(env: &Envelope<'_>, raw: &Raw<'_>) -> Result<Event, ParseError> {
    let fields_err = |source| ParseError::Fields { index: env.index, source };
    let mut fields = Map::new();
    if let Some(context) = raw.context.filter(|c| c.get() != "null") {
        let context: Context<'_> = serde_json::from_str(context.get()).map_err(fields_err)?;
        fields.extend(object_of(context.traits).map_err(fields_err)?.unwrap_or_default());
    }
    fields.extend(object_of(raw.traits).map_err(fields_err)?.unwrap_or_default());
    fields.extend(object_of(raw.properties).map_err(fields_err)?.unwrap_or_default());

    let user_id = scalar_text(raw.user_id).or_else(|| scalar_text(raw.anonymous_id));
    if let Some(user) = &user_id {
        fields.insert("user_id".into(), Value::String(user.clone()));
    }
    if let Some(kind) = &raw.kind {
        fields.entry("type").or_insert_with(|| Value::String(kind.clone().into_owned()));
    }
    Ok(Event { source: Source::Segment, id: env.id.clone(), name: env.name.clone().into_owned(), user_id, fields })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::envelopes as parse;

    fn one(body: &str) -> Event {
        let envs = parse(Source::Segment, body.as_bytes()).unwrap();
        assert_eq!(envs.len(), 1);
        envs[0].to_event().unwrap()
    }

    #[test]
    fn track_event_from_the_spec() {
        let body = r#"{"anonymousId":"23adfd82-aa0f-45a7-a756-24f2a7a4c895","context":{"library":{"name":"analytics.js","version":"2.11.1"},"page":{"path":"/academy/","referrer":"","search":"","title":"Analytics Academy","url":"https://segment.com/academy/"},"userAgent":"Mozilla/5.0","ip":"108.0.78.21"},"event":"Course Clicked","integrations":{},"messageId":"ajs-f8ca1e4de5024d9430b3928bd8ac6b96","properties":{"title":"Intro to Analytics"},"receivedAt":"2015-12-12T19:11:01.266Z","sentAt":"2015-12-12T19:11:01.169Z","timestamp":"2015-12-12T19:11:01.249Z","type":"track","userId":"AiUGstSDIg","originalTimestamp":"2015-12-12T19:11:01.152Z"}"#;
        let e = one(body);
        assert_eq!(e.id.as_str(), "ajs-f8ca1e4de5024d9430b3928bd8ac6b96");
        assert_eq!(e.name, "Course Clicked");
        assert_eq!(e.user_id.as_deref(), Some("AiUGstSDIg"));
        assert_eq!(e.fields["title"], json!("Intro to Analytics"));
        assert_eq!(e.fields["user_id"], json!("AiUGstSDIg"));
        assert_eq!(e.fields["type"], json!("track"));
    }

    #[test]
    fn identify_event_uses_type_as_name_and_traits_as_fields() {
        let body = r#"{"anonymousId":"507f191e810c19729de860ea","channel":"browser","context":{"ip":"8.8.8.8"},"messageId":"022bb90c-bbac-11e4-8dfc-aa07a5b093db","traits":{"name":"Peter Gibbons","email":"peter@example.com","plan":"premium","logins":5,"address":{"city":"San Francisco"}},"type":"identify","userId":"97980cfea0067","version":"1.1"}"#;
        let e = one(body);
        assert_eq!(e.name, "identify");
        assert_eq!(e.fields["plan"], json!("premium"));
        assert_eq!(e.fields["address"]["city"], json!("San Francisco"));
    }

    #[test]
    fn properties_beat_traits_beat_context_traits() {
        let e = one(
            r#"{"type":"track","event":"x","messageId":"m","context":{"traits":{"plan":"ctx","a":1}},"traits":{"plan":"traits","b":2},"properties":{"plan":"props"}}"#,
        );
        assert_eq!(e.fields["plan"], json!("props"));
        assert_eq!(e.fields["a"], json!(1));
        assert_eq!(e.fields["b"], json!(2));
    }

    #[test]
    fn anonymous_id_stands_in_for_a_missing_user_id() {
        let e = one(r#"{"type":"track","event":"x","messageId":"m","anonymousId":"anon-1","userId":null}"#);
        assert_eq!(e.user_id.as_deref(), Some("anon-1"));
        let e = one(r#"{"type":"track","event":"x","messageId":"m"}"#);
        assert_eq!(e.user_id, None);
        assert!(!e.fields.contains_key("user_id"));
    }

    #[test]
    fn batches_are_arrays_of_events() {
        let envs = parse(
            Source::Segment,
            br#"[{"type":"track","event":"a","messageId":"1"},{"type":"identify","messageId":"2"}]"#,
        )
        .unwrap();
        assert_eq!(envs.len(), 2);
        assert_eq!((envs[0].id.as_str(), envs[0].name.as_ref()), ("1", "a"));
        assert_eq!((envs[1].id.as_str(), envs[1].name.as_ref()), ("2", "identify"));
        assert_eq!(envs[1].index, Some(1));
    }

    #[test]
    fn errors_say_what_is_missing_and_where() {
        let err = parse(Source::Segment, br#"{"type":"track","event":"a"}"#).unwrap_err();
        assert!(matches!(err, ParseError::MissingId { field: "messageId", index: None, .. }), "{err}");
        assert!(err.to_string().contains("messageId"));

        let err = parse(Source::Segment, br#"[{"type":"track","messageId":"1"},{"event":"a"}]"#).unwrap_err();
        assert!(err.to_string().starts_with("event 1 of the batch"), "{err}");

        let err = parse(Source::Segment, br#"{"messageId":"1"}"#).unwrap_err();
        assert!(matches!(err, ParseError::MissingName { .. }), "{err}");

        assert!(matches!(parse(Source::Segment, b"[]").unwrap_err(), ParseError::EmptyBatch));
        assert!(matches!(parse(Source::Segment, b"[1]").unwrap_err(), ParseError::NotAnObject { index: Some(0) }));
        assert!(matches!(parse(Source::Segment, b"\"x\"").unwrap_err(), ParseError::NotAnObject { index: None }));
        assert!(matches!(parse(Source::Segment, b"{not json").unwrap_err(), ParseError::Json(_)));
        assert!(matches!(parse(Source::Segment, b"").unwrap_err(), ParseError::Json(_)));
        assert!(matches!(parse(Source::Segment, br#"{"messageId":""}"#).unwrap_err(), ParseError::InvalidId { .. }));
    }

    #[test]
    fn fields_that_are_not_objects_are_reported() {
        let err =
            parse(Source::Segment, br#"{"type":"track","event":"a","messageId":"1","properties":"oops"}"#).unwrap_err();
        assert!(matches!(err, ParseError::WrongType { field: "properties", .. }), "{err}");
        for (body, field) in [
            (r#"{"type":"track","event":"a","messageId":"1","userId":{"id":1}}"#, "userId"),
            (r#"{"type":"track","event":"a","messageId":"1","receivedAt":1700000000}"#, "receivedAt"),
            (r#"{"type":"track","event":"a","messageId":"1","sentAt":"yesterday"}"#, "sentAt"),
        ] {
            let err = parse(Source::Segment, body.as_bytes()).unwrap_err();
            assert!(matches!(err, ParseError::WrongType { field: f, .. } if f == field), "{field}: {err}");
        }
        let envs = parse(
            Source::Segment,
            br#"{"type":"track","event":"a","messageId":"1","properties":{"plan":"free","plan":"pro"}}"#,
        )
        .unwrap();
        assert!(matches!(envs[0].to_event(), Err(ParseError::Fields { .. })), "duplicate keys");
    }

    #[test]
    fn numeric_user_ids_become_text() {
        let e = one(r#"{"type":"track","event":"x","messageId":"m","userId":42}"#);
        assert_eq!(e.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn one_user_id_has_one_spelling() {
        // Observed: `42`, `42.0` and `4.2e1` passed once_per_user as three users.
        for user in ["42", "42.0", "4.2e1", "\"42\"", "\" 42\""] {
            let e = one(&format!(
                r#"{{"type":"track","event":"x","messageId":"m","userId":{user},"properties":{{"user_id":"other"}}}}"#
            ));
            assert_eq!(e.user_id.as_deref(), Some("42"), "{user}");
            assert_eq!(e.fields["user_id"], json!("42"), "the relay's user_id wins over a property: {user}");
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e = one(r#"{"type":"track","event":"caf\u00e9","messageId":"m\"1"}"#);
        assert_eq!(e.name, "café");
        assert_eq!(e.id.as_str(), "m\"1");
    }
}
