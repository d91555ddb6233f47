//! Logs and metrics. Logs go through `tracing`: readable on a terminal, JSON in Lambda
//! when `AWS_LAMBDA_LOG_FORMAT=JSON` (the runtime's span adds the request id to each line).
//! Metrics are CloudWatch Embedded Metric Format lines on stdout, one per request or batch.

mod metrics;
mod rejection;
mod safe_writer;

pub use metrics::{Counts, Metric, Metrics, NAMESPACE, UNSET_STAGE, dimension};
pub use rejection::RejectionKind;
pub use safe_writer::{MIN_REDACTED_CHARS, SafeStdout, clean, redact};

use std::fmt;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// JSON when Lambda's advanced logging controls ask for it.
    pub fn from_env() -> Self {
        match std::env::var("AWS_LAMBDA_LOG_FORMAT") {
            Ok(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Installs the global subscriber. The level comes from `AWS_LAMBDA_LOG_LEVEL`, then
/// `RUST_LOG`, then `info`. In Lambda the time prefix is left to CloudWatch.
pub fn init(format: LogFormat) {
    let level =
        std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(level.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    // Every line has the configured secrets replaced; text lines also have control
    // characters escaped (JSON escapes them itself).
    let result = match (format, in_lambda) {
        (LogFormat::Json, _) => builder
            .with_writer(SafeStdout { escape: false })
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
        (LogFormat::Text, true) => {
            builder.with_writer(SafeStdout { escape: true }).without_time().with_ansi(false).try_init()
        }
        (LogFormat::Text, false) => builder.with_writer(SafeStdout { escape: true }).with_ansi(false).try_init(),
    };
    // Already installed (tests, or a second call): keep the first.
    let _ = result;
}

/// What a function's `main` returns when it cannot start: Rust prints a returned error with
/// `Debug`, so this one's `Debug` is the readable message and its causes
/// (`Error: SEGMENT_SHARED_SECRET is not set: ...`), not the variant tree.
pub struct Fatal(Box<dyn std::error::Error + Send + Sync>);

impl Fatal {
    /// From an already boxed error, as `lambda_runtime::run` returns.
    pub fn boxed(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Fatal(error)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Fatal {
    fn from(error: E) -> Self {
        Fatal(Box::new(error))
    }
}

impl fmt::Debug for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", chain(&*self.0))
    }
}

/// Displays an error with its whole `source()` chain: `a: b: c`.
pub fn chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Chain<'a> {
    Chain(error)
}

pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut last = self.0.to_string();
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            // Errors that already print their source (`#[error("...: {0}")]`) would repeat it.
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn fatal_errors_print_their_message_not_their_structure() {
        let fatal = Fatal::from(Outer(Inner(std::io::Error::other("disk"))));
        assert_eq!(format!("{fatal:?}"), "outer: inner: disk");
    }

    #[test]
    fn chains_sources_without_repeating() {
        let e = Outer(Inner(std::io::Error::other("disk")));
        assert_eq!(chain(&e).to_string(), "outer: inner: disk");
    }
}
