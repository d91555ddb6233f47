//! Scripted replies the destination stand-ins (Slack, Customer.io Track, Segment, the webhook
//! receiver) queue per path prefix on the shared skeleton's `Script`: answer something else
//! than the real thing (429 with `Retry-After`, 5xx, a vendor's error text, a redirect), or
//! answer late.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer this instead of the real thing.
    Status { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// Wait this long first, then answer as usual (the request is taken, as a slow server
    /// that processes it would).
    Slow(Duration),
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Self {
        Reply::Status { status, headers: Vec::new(), body: body.to_owned() }
    }

    /// 429 with `Retry-After: <secs>`.
    pub fn rate_limited(retry_after_secs: u64, body: &str) -> Self {
        Reply::Status {
            status: 429,
            headers: vec![("retry-after", retry_after_secs.to_string())],
            body: body.to_owned(),
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        Reply::Status { status: 307, headers: vec![("location", location.to_owned())], body: String::new() }
    }

    /// The status this reply answers with, if it answers instead of the real thing.
    pub fn answer(&self) -> Option<u16> {
        match self {
            Reply::Status { status, .. } => Some(*status),
            Reply::Slow(_) => None,
        }
    }
}

/// A scripted status reply as an HTTP response (plain text body).
pub fn respond(status: u16, headers: &[(&'static str, String)], body: &str) -> Response {
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body.to_owned()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, v);
        }
    }
    response
}
