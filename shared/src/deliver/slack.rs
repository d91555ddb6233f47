//! Slack: a Block Kit message to an incoming webhook (`SLACK_WEBHOOK_URL`; the Slack app that
//! made the URL fixes the channel, name and icon).
//!
//! The message names the rule, the event, the user, the credits and the record key, then the
//! result: a persona's name and id, or the research or generated text. Slack's limits (50
//! blocks, 3000 characters per section, 10 fields of 2000, 150 for a header, and an
//! undocumented ~12,000 characters of block text in all, `msg_blocks_too_long`) are kept by
//! construction: a long text is cut on a word boundary, split over sections, and followed by a
//! note saying where the whole of it is. A long answer is never a rejected message.
//!
//! Slack has no idempotency key, so a post that timed out may have arrived: it is recorded
//! `failed` and not posted again (see `send::SendError::Uncertain`).

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::context::Context;
use super::options::SlackOptions;
use super::result::ResultKind;
use super::send::{Port, SendError};
use super::transport::{self, exchange};
use super::{InvalidSetting, checked_url};
use crate::domain::truncate_chars;
use crate::vars;

/// Slack's limits, in characters.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
/// Slack's undocumented combined limit on block text is about 12,000 characters; the
/// message stays well under it.
pub const MAX_BLOCK_TEXT_TOTAL: usize = 11_000;
/// At most this much of a research or generated text goes into the message.
pub const MAX_RESULT_TEXT: usize = 8_000;
/// Sections are filled to this, a margin under the 3000 limit.
const SECTION_FILL: usize = 2_900;
const MAX_HEADLINE: usize = 1_500;
const MAX_FIELD_VALUE: usize = 150;
/// Slack answers within a few seconds; a post that takes longer is treated as lost.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The message, as posted.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    pub payload: Value,
}

/// Builds the message for one job.
pub fn message(ctx: &Context<'_>, options: &SlackOptions) -> SlackMessage {
    let noun = ctx.kind.noun();
    let user = ctx.event.user_id.as_deref();
    let headline = match &options.text {
        Some(t) => t.render(ctx),
        None => format!("*{}* fired on `{}` for user `{}`", ctx.rule, ctx.event.name, user.unwrap_or("(none)")),
    };
    let headline = escape(truncate_chars(&headline, MAX_HEADLINE));
    let header = truncate_chars(&format!("Mavera {noun}: {}", ctx.rule), MAX_HEADER_TEXT).to_owned();

    let mut fields = vec![
        field("Rule", ctx.rule.as_str()),
        field("Event", &format!("{} ({})", ctx.event.name, ctx.event.id)),
        field("User", user.unwrap_or("(none)")),
        field("Credits", &ctx.result.credits().map_or("(not reported)".to_owned(), |c| c.to_string())),
        field("Record", ctx.key.as_str()),
    ];
    match ctx.kind {
        ResultKind::Persona => {
            if let Some(id) = ctx.result.persona_id() {
                fields.push(field("Persona id", id));
            }
        }
        ResultKind::Research => {
            if let Some(thread) = ctx.result.thread_id() {
                fields.push(field("Mave thread", thread));
            }
        }
        ResultKind::Generation => {
            if let Some(id) = ctx.result.generation_id() {
                fields.push(field("Generation id", id));
            }
        }
    }
    fields.truncate(MAX_FIELDS);

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header}}),
        section(&headline),
        json!({"type": "section", "fields": fields.iter().map(|f| json!({"type": "mrkdwn", "text": f})).collect::<Vec<_>>()}),
    ];
    let used =
        header.chars().count() + headline.chars().count() + fields.iter().map(|f| f.chars().count()).sum::<usize>();

    if ctx.result.is_dry_run() {
        let path = ctx.result.raw().pointer("/request/path").and_then(Value::as_str).unwrap_or("?");
        blocks.push(section(&format!(
            "_Dry run: Mavera was not called. The relay would have sent `POST {}`._",
            escape(path)
        )));
    } else if ctx.kind == ResultKind::Persona {
        let name = escape(ctx.result.persona_name().unwrap_or("(unnamed)"));
        let text = if ctx.result.already_existed() {
            format!(
                "Persona *{name}* already existed in Mavera (an earlier call created it); its id is not known here."
            )
        } else {
            format!("Persona *{name}* created.")
        };
        blocks.push(section(&text));
    } else {
        let text = ctx.result.text().unwrap_or("");
        // Room for the note, then the text gets what is left, up to its own cap.
        let budget = MAX_RESULT_TEXT.min(MAX_BLOCK_TEXT_TOTAL.saturating_sub(used + 600));
        let (kept, cut) = cut_clean(text, budget);
        if kept.is_empty() {
            blocks.push(section(&format!("_The {noun} came back empty._")));
        }
        for chunk in chunks(kept, SECTION_FILL) {
            blocks.push(section(&escape(chunk)));
        }
        if cut || ctx.result.truncated() {
            let total = text.chars().count();
            let shown = kept.chars().count();
            let mut note = format!(
                "Cut to fit Slack: {shown} of {total} characters shown. The record `{}` keeps the text",
                escape(ctx.key.as_str())
            );
            if ctx.result.truncated() {
                note.push_str(" (its first 100,000 characters)");
            }
            match (ctx.kind, ctx.result.thread_id(), ctx.result.generation_id()) {
                (ResultKind::Research, Some(thread), _) => {
                    note.push_str(&format!("; Mavera keeps all of it in Mave thread `{}`.", escape(thread)))
                }
                (ResultKind::Generation, _, Some(id)) => {
                    note.push_str(&format!("; Mavera keeps all of it in generation `{}`.", escape(id)))
                }
                _ => note.push('.'),
            }
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate_chars(&note, MAX_FIELD_TEXT)}]}));
        }
    }
    blocks.truncate(MAX_BLOCKS);
    SlackMessage { payload: json!({"text": headline, "blocks": blocks}) }
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate_chars(text, MAX_SECTION_TEXT)}})
}

fn field(label: &str, value: &str) -> String {
    format!("*{label}*\n{}", escape(truncate_chars(value, MAX_FIELD_VALUE)))
}

/// Slack's three control characters in text, escaped as Slack asks.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters `c` takes once escaped.
fn escaped_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
}

/// The longest start of `text` whose escaped form fits `budget` characters, cut after a
/// word when one ends near the limit; and whether anything was cut.
fn cut_clean(text: &str, budget: usize) -> (&str, bool) {
    let mut used = 0;
    for (at, c) in text.char_indices() {
        used += escaped_len(c);
        if used > budget {
            let kept = &text[..at];
            let clean = kept.rfind(char::is_whitespace).filter(|&ws| kept[ws..].chars().count() <= 300);
            return (clean.map_or(kept, |ws| &kept[..ws]).trim_end(), true);
        }
    }
    (text.trim_end(), false)
}

/// `text` in pieces whose escaped form fits `size` (at least a few characters), each ending
/// after a word, or a line when one ends in its second half.
fn chunks(mut text: &str, size: usize) -> Vec<&str> {
    let mut out = Vec::new();
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return out;
        }
        let (head, cut) = cut_clean(text, size);
        if !cut {
            out.push(head);
            return out;
        }
        let end = head.rfind('\n').filter(|&nl| nl > head.len() / 2).unwrap_or(head.len());
        // A piece holds at least one character, so the loop always moves on.
        let end = if end == 0 { text.chars().next().map_or(text.len(), char::len_utf8) } else { end };
        out.push(text[..end].trim_end());
        text = &text[end..];
    }
}

/// `SLACK_WEBHOOK_URL`, checked: `https` (or `http` to a loopback stand-in). `Debug` hides
/// it: the URL is the credential.
#[derive(Clone)]
pub struct SlackConfig {
    url: SecretString,
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackConfig { url: [REDACTED] }")
    }
}

impl SlackConfig {
    pub fn new(url: &str) -> Result<Self, InvalidSetting> {
        let url = checked_url(vars::SLACK_WEBHOOK_URL, url)?;
        Ok(SlackConfig { url: SecretString::from(url.to_string()) })
    }
}

/// The incoming-webhook adapter.
pub struct SlackWebhook {
    http: reqwest::Client,
    url: SecretString,
}

impl SlackWebhook {
    pub fn new(config: SlackConfig) -> Result<Self, reqwest::Error> {
        Ok(SlackWebhook { http: transport::client(reqwest::Client::builder())?, url: config.url })
    }
}

#[async_trait]
impl Port<SlackMessage> for SlackWebhook {
    async fn send(&self, message: &SlackMessage, deadline: Instant) -> Result<(), SendError> {
        let request = self.http.post(self.url.expose_secret()).json(&message.payload);
        let answer = exchange(request, TIMEOUT, deadline).await.map_err(|f| f.at_most_once("Slack"))?;
        if answer.status.is_success() {
            return Ok(());
        }
        if let Some(transient) = answer.transient("Slack") {
            return Err(transient);
        }
        let code = answer.quoted();
        let status = answer.status.as_u16();
        let hint = match (status, code.as_str()) {
            (404, "no_service") | (404, "channel_not_found") => {
                "the webhook URL no longer works (revoked, or its channel deleted): create a new incoming webhook and set SLACK_WEBHOOK_URL"
            }
            (410, _) => "the channel is archived: unarchive it, or make a webhook for another channel",
            (403, _) => {
                "Slack refuses this webhook (the app lost its permission, or posting is restricted): check the Slack app"
            }
            (400, _) => {
                "Slack refused the message itself: the rule's `[rule.slack]` text renders something Slack does not take"
            }
            (300..=399, _) => {
                "it answered a redirect, which is never followed: set SLACK_WEBHOOK_URL to the hooks.slack.com URL itself"
            }
            _ => "check the webhook in the Slack app",
        };
        Err(SendError::Permanent { reason: format!("Slack answered {status} {code}: {hint}") })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::json;

    use super::*;
    use crate::deliver::result::JobResult;
    use crate::domain::{Event, EventId, JobKey, RuleName, Source};
    use crate::template::Template;

    fn event() -> Event {
        Event {
            source: Source::Segment,
            id: EventId::parse("evt-1").unwrap(),
            name: "churn_signal".into(),
            user_id: Some("u<1>".into()),
            fields: json!({"user_id": "u<1>", "ltv": 4200}).as_object().unwrap().clone(),
        }
    }

    fn build(result: serde_json::Value, kind: ResultKind, options: &SlackOptions) -> Value {
        let (event, result) = (event(), JobResult::new(result));
        let (key, rule) = (JobKey::from_stored("segment#evt-1#churn"), RuleName::parse("churn").unwrap());
        let ctx = Context { key: &key, rule: &rule, event: &event, result: &result, kind, at: SystemTime::now() };
        message(&ctx, options).payload
    }

    /// Every text in the blocks, as Slack counts them against its limits.
    fn block_texts(payload: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for block in payload["blocks"].as_array().unwrap() {
            if let Some(t) = block.pointer("/text/text").and_then(Value::as_str) {
                out.push(t.to_owned());
            }
            for f in block["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(block["elements"].as_array().into_iter().flatten())
            {
                out.push(f["text"].as_str().unwrap().to_owned());
            }
        }
        out
    }

    fn assert_within_limits(payload: &Value) {
        let blocks = payload["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        for block in blocks {
            match block["type"].as_str().unwrap() {
                "header" => assert!(block["text"]["text"].as_str().unwrap().chars().count() <= MAX_HEADER_TEXT),
                "section" => {
                    if let Some(t) = block.pointer("/text/text").and_then(Value::as_str) {
                        assert!(t.chars().count() <= MAX_SECTION_TEXT);
                    }
                    let fields = block["fields"].as_array().map(Vec::len).unwrap_or(0);
                    assert!(fields <= MAX_FIELDS);
                }
                _ => {}
            }
        }
        let total: usize = block_texts(payload).iter().map(|t| t.chars().count()).sum();
        assert!(total <= MAX_BLOCK_TEXT_TOTAL, "{total} characters of block text");
    }

    #[test]
    fn a_research_result_names_rule_event_user_credits_and_record() {
        let payload = build(
            json!({"action": "research", "thread_id": "th_1", "content": "Offer a call & a discount.", "credits": 25.0}),
            ResultKind::Research,
            &SlackOptions::default(),
        );
        assert_within_limits(&payload);
        let text = block_texts(&payload).join("\n");
        for part in [
            "Mavera research: churn",
            "*churn* fired on `churn_signal` for user `u&lt;1&gt;`",
            "evt-1",
            "25",
            "segment#evt-1#churn",
            "th_1",
            "Offer a call &amp; a discount.",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
        assert!(payload["text"].as_str().unwrap().contains("churn_signal"), "the notification text");
    }

    #[test]
    fn long_research_is_cut_on_a_word_with_a_note_and_stays_within_slacks_limits() {
        let long: String = (0..20_000).map(|i| format!("word{i} ")).collect();
        let payload = build(
            json!({"action": "research", "thread_id": "th_9", "content": long, "credits": 75.0}),
            ResultKind::Research,
            &SlackOptions::default(),
        );
        assert_within_limits(&payload);
        let texts = block_texts(&payload);
        let note = texts.last().unwrap();
        assert!(
            note.starts_with("Cut to fit Slack:") && note.contains("th_9") && note.contains("segment#evt-1#churn"),
            "{note}"
        );
        let shown: String = texts.iter().filter(|t| t.starts_with("word")).cloned().collect::<Vec<_>>().join(" ");
        assert!(shown.len() > 6_000, "most of the budget is used: {}", shown.len());
        let last_word = shown.split_whitespace().last().unwrap();
        assert!(long.split_whitespace().any(|w| w == last_word), "cut on a word boundary, not inside `{last_word}`");
    }

    #[test]
    fn text_full_of_characters_slack_escapes_still_fits() {
        let payload = build(
            json!({"action": "research", "thread_id": "t", "content": "<&>".repeat(10_000)}),
            ResultKind::Research,
            &SlackOptions::default(),
        );
        assert_within_limits(&payload);
        for t in block_texts(&payload) {
            assert!(!t.contains('<') && !t.contains('>'), "escaped: {}", truncate_chars(&t, 40));
        }
    }

    #[test]
    fn a_persona_shows_its_name_and_id_and_a_custom_headline_leads() {
        let options = SlackOptions {
            text: Some(Template::parse("New persona for {user_id}: {result.persona.name} (LTV {ltv})").unwrap()),
        };
        let payload = build(
            json!({"action": "create_persona", "persona_id": "p_1", "name": "Trial User", "credits": 300}),
            ResultKind::Persona,
            &options,
        );
        assert_within_limits(&payload);
        assert_eq!(payload["text"], "New persona for u&lt;1&gt;: Trial User (LTV 4200)");
        let text = block_texts(&payload).join("\n");
        assert!(text.contains("Persona *Trial User* created.") && text.contains("p_1"), "{text}");
    }

    #[test]
    fn a_dry_run_says_mavera_was_not_called() {
        let payload = build(
            json!({"dry_run": true, "request": {"method": "POST", "path": "/mave/chat", "body": {}}}),
            ResultKind::Research,
            &SlackOptions::default(),
        );
        assert!(
            block_texts(&payload)
                .iter()
                .any(|t| t.contains("Dry run: Mavera was not called") && t.contains("/mave/chat"))
        );
    }

    #[test]
    fn chunks_cover_the_text_without_losing_words() {
        let text = "alpha beta\ngamma delta epsilon zeta eta theta";
        let pieces = chunks(text, 12);
        assert!(pieces.iter().all(|p| p.chars().count() <= 12), "{pieces:?}");
        assert_eq!(
            pieces.join(" ").split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
        assert_eq!(chunks("", 10), Vec::<&str>::new());
        let unbroken = "x".repeat(30);
        assert_eq!(chunks(&unbroken, 10).concat(), unbroken);
        assert_eq!(chunks("&&&", 3), ["&", "&", "&"], "a size below one escaped character still ends");
    }

    #[test]
    fn the_url_must_be_https_and_is_never_shown() {
        let config = SlackConfig::new("https://hooks.slack.com/services/T0/B0/secretpart").unwrap();
        assert!(!format!("{config:?}").contains("secretpart"));
        assert!(SlackConfig::new("http://127.0.0.1:9/services/x").is_ok(), "a loopback stand-in");
        let err = SlackConfig::new("http://hooks.slack.com/services/T0/B0/secretpart").unwrap_err();
        assert!(err.to_string().contains("https") && !err.to_string().contains("secretpart"), "{err}");
        assert!(SlackConfig::new("not a url").is_err());
    }
}
