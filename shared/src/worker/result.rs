//! What a `DONE` record keeps of Mavera's answer: the ids to find the result again in
//! Mavera, the text itself (bounded, to stay under DynamoDB's 400 KB item size), and the
//! credits it cost.

use serde_json::{Value, json};

use crate::domain::truncate_chars;
use crate::mavera::MaveraResponse;

/// Longer research or generated texts are cut here; the full text stays in Mavera (thread
/// or generation id).
pub const MAX_TEXT_CHARS: usize = 100_000;

pub fn summarize(response: &MaveraResponse) -> Value {
    match response {
        MaveraResponse::Persona(p) => json!({
            "action": "create_persona",
            "persona_id": p.id,
            "name": p.name,
            "credits": p.credits_charged,
        }),
        MaveraResponse::Research(m) => {
            let (content, truncated) = bounded(&m.content, MAX_TEXT_CHARS);
            json!({
                "action": "research",
                "thread_id": m.thread_id,
                "message_id": m.id,
                "content": content,
                "truncated": truncated,
                "credits": m.usage.as_ref().and_then(|u| u.credits_used),
            })
        }
        MaveraResponse::DryRun(would) => json!({"dry_run": true, "request": would.to_json()}),
        MaveraResponse::Generation(g) => {
            let (output, truncated) = bounded(g.text().unwrap_or_default(), MAX_TEXT_CHARS);
            json!({
                "action": "generate",
                "generation_id": g.id,
                "output": output,
                "truncated": truncated,
                "credits": g.usage.as_ref().and_then(|u| u.credits_used),
            })
        }
    }
}

/// The first `max` characters of `text`, and whether anything was cut.
pub(super) fn bounded(text: &str, max: usize) -> (&str, bool) {
    let kept = truncate_chars(text, max);
    (kept, kept.len() < text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mavera::{Generation, MaveMessage, Persona, Usage};
    use crate::store::listing::summary_text;

    #[test]
    fn research_keeps_thread_content_and_credits() {
        let r = MaveraResponse::Research(MaveMessage {
            id: Some("msg_1".into()),
            thread_id: "mave_thread_1".into(),
            content: "findings".into(),
            usage: Some(Usage { credits_used: Some(25.0) }),
        });
        assert_eq!(
            summarize(&r),
            json!({"action": "research", "thread_id": "mave_thread_1", "message_id": "msg_1", "content": "findings", "truncated": false, "credits": 25.0})
        );
    }

    #[test]
    fn long_texts_are_bounded() {
        let long = "é".repeat(MAX_TEXT_CHARS + 10);
        let r = MaveraResponse::Research(MaveMessage { id: None, thread_id: "t".into(), content: long, usage: None });
        let s = summarize(&r);
        assert_eq!(s["content"].as_str().unwrap().chars().count(), MAX_TEXT_CHARS);
        assert_eq!(s["truncated"], true);
    }

    #[test]
    fn a_listing_line_shows_each_kind_of_result() {
        let line = |r: MaveraResponse| summary_text(Some(&summarize(&r)), None);
        let persona = Persona { id: "p1".into(), name: Some("Trial User — u1".into()), credits_charged: Some(300.0) };
        assert_eq!(line(MaveraResponse::Persona(persona)).as_deref(), Some("Trial User — u1"));
        let research = MaveMessage {
            id: None,
            thread_id: "t".into(),
            content: "Upgrades follow team invites.".into(),
            usage: None,
        };
        assert_eq!(line(MaveraResponse::Research(research)).as_deref(), Some("Upgrades follow team invites."));
        let generation = Generation {
            id: "g".into(),
            output: Some("Subject: come back".into()),
            content: None,
            markdown: None,
            usage: None,
        };
        assert_eq!(line(MaveraResponse::Generation(generation)).as_deref(), Some("Subject: come back"));
    }
}
