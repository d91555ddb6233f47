//! What every log line goes through on its way out: the values of the configured secrets are
//! replaced (an upstream error that echoes a key must not put it in the log), and in text logs
//! control characters are escaped, so a field an outsider controls (a URL path with `%0a`, an
//! event name) cannot start a forged line.

use std::io::{self, Write};
use std::sync::{PoisonError, RwLock};

use tracing_subscriber::fmt::MakeWriter;

/// Shorter values are not redacted: they would mangle ordinary words in the log, and a
/// deployed function refuses signing secrets that short anyway.
pub const MIN_REDACTED_CHARS: usize = 8;
const REDACTED: &str = "[REDACTED]";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds secret values to replace in every log line from now on.
pub fn redact(values: impl IntoIterator<Item = String>) {
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    for value in values {
        let value = value.trim().to_owned();
        if value.chars().count() >= MIN_REDACTED_CHARS && !secrets.contains(&value) {
            // As JSON logs write it, too (quotes and backslashes escaped).
            let escaped = serde_json::to_string(&value).unwrap_or_default();
            let escaped = escaped.trim_matches('"').to_owned();
            if escaped != value {
                secrets.push(escaped);
            }
            secrets.push(value);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `line` with the secrets replaced and, when `escape`, every control character but a final
/// line break written as an escape (`\n`, `\u{1b}`).
pub fn clean(line: &str, escape: bool) -> String {
    let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    let mut text = line.to_owned();
    for secret in secrets.iter() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    if !escape {
        return text;
    }
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text.as_str(), ""),
    };
    if !body.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(body.len() + 8);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push_str(end);
    out
}

/// A `MakeWriter` for stdout whose writers clean what they are given: one tracing event is
/// formatted into one buffer and written in one go, so each writer sees whole lines.
#[derive(Debug, Clone, Copy)]
pub struct SafeStdout {
    /// Escape control characters: text logs, whose formatter writes each event on one line.
    pub escape: bool,
}

impl<'a> MakeWriter<'a> for SafeStdout {
    type Writer = SafeLine;

    fn make_writer(&'a self) -> Self::Writer {
        SafeLine { buffer: Vec::new(), escape: self.escape }
    }
}

/// Collects one event's output and writes it cleaned when dropped.
pub struct SafeLine {
    buffer: Vec<u8>,
    escape: bool,
}

impl Write for SafeLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SafeLine {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let _ = io::stdout().lock().write_all(clean(&text, self.escape).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        let line = "WARN webhook rejected: unknown source `hubspot\n12:00:00  segment forged\u{1b}[2J`\n";
        assert_eq!(
            clean(line, true),
            "WARN webhook rejected: unknown source `hubspot\\n12:00:00  segment forged\\u{1b}[2J`\n"
        );
        assert_eq!(clean("plain line\n", true), "plain line\n");
        assert_eq!(clean("two\nlines\n", false), "two\nlines\n", "multi-line output is left to formats that want it");
    }

    #[test]
    fn configured_secrets_never_reach_the_log() {
        redact(["mvra_live_test-0123456789abcdef".to_owned(), "short".to_owned(), "with\"quote-secret".to_owned()]);
        let line = "Mavera answered 401: invalid key mvra_live_test-0123456789abcdef\n";
        assert_eq!(clean(line, true), "Mavera answered 401: invalid key [REDACTED]\n");
        assert_eq!(clean(r#"{"error":"with\"quote-secret"}"#, false), r#"{"error":"[REDACTED]"}"#);
        assert_eq!(clean("a short word\n", true), "a short word\n", "values under 8 characters are left");
    }
}
