//! The console: a small read-only web page of the job records on 127.0.0.1. `relay serve`
//! shows its own records at `/console`; `relay console --stack NAME` (or `--table`,
//! `--data-dir`) serves the page for a deployment, from this machine with the user's AWS
//! credentials. Rendered on the server, no script, nothing fetched from elsewhere, no secret
//! on it (records hold events and results, never keys). Only loopback names are served
//! (a page on another site cannot reach it by DNS rebinding) and the browser is told to
//! load nothing else.

pub mod api;
mod chart;
mod html;
mod page;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use shared::domain::JobKey;
use shared::store::{JobSummary, ListFilter, ListQuery};

use crate::error::RelayError;
use crate::records::{Records, Where};
use crate::selection::parse_status;
use crate::since;

/// Jobs the list page reads for its totals and charts, at most.
pub const MAX_JOBS: usize = 5_000;

pub struct ConsoleState {
    pub records: Arc<dyn Records>,
    /// The records API's token; `None` closes the API (`relay console`).
    pub token: Option<String>,
    /// The options a replay of these records takes (`--data-dir DIR`, `--stack NAME`), or
    /// `None` when no other process can reach them (`relay serve` without `--data-dir`).
    pub replay_with: Option<String>,
}

/// The console's routes, for `relay serve` and `relay console`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(list))
        .route("/console/job", get(job))
        .route("/console/api/jobs", get(api::jobs))
        .route("/console/api/job", get(api::job))
        .route("/console/api/replay", post(api::replay))
        .layer(middleware::from_fn(loopback_only))
        .with_state(Arc::new(state))
}

/// Refuses a request whose `Host` is not a loopback name, and tells the browser to load
/// nothing beyond the page and to keep it out of frames and caches.
async fn loopback_only(request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        return (StatusCode::FORBIDDEN, "the console answers only on 127.0.0.1 / localhost").into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (status, Html(html::page("mavera-relay", "error", &format!("<p>{}</p>", html::esc(message))))).into_response()
}

async fn list(State(state): State<Arc<ConsoleState>>, Query(filters): Query<page::Filters>) -> Response {
    let window = filters.since.as_deref().filter(|s| !s.is_empty()).unwrap_or(page::DEFAULT_WINDOW);
    let since = match since::parse(window) {
        Ok(d) => d,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let statuses = match filters.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => match parse_status(s) {
            Ok(status) => vec![status],
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
        },
        None => vec![],
    };
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let filter = ListFilter { statuses, rule: nonempty(&filters.rule), user: nonempty(&filters.user) };
    match window_jobs(state.records.as_ref(), since, filter).await {
        Ok((jobs, capped)) => {
            let days = days_of(SystemTime::now() - since, SystemTime::now());
            Html(page::list_page(&state.records.describe(), &filters, &jobs, capped, &days)).into_response()
        }
        Err(e) => error_page(StatusCode::BAD_GATEWAY, &shared::telemetry::chain(&e).to_string()),
    }
}

/// The UTC days from `since` to `until`, oldest first (the charts' columns).
fn days_of(since: SystemTime, until: SystemTime) -> Vec<String> {
    let mut days = Vec::new();
    let mut t = since;
    while shared::store::utc_day(t) <= shared::store::utc_day(until) {
        let day = shared::store::utc_day(t);
        if days.last() != Some(&day) {
            days.push(day);
        }
        t += Duration::from_secs(3600);
    }
    days
}

/// The window's jobs, newest first, at most [`MAX_JOBS`] (and whether there were more).
async fn window_jobs(
    records: &dyn Records,
    since: Duration,
    filter: ListFilter,
) -> Result<(Vec<JobSummary>, bool), RelayError> {
    let now = SystemTime::now();
    let mut query = ListQuery { since: now - since, until: now, filter, limit: MAX_JOBS, after: None };
    let mut jobs = Vec::new();
    loop {
        let page = records.list(&query).await?;
        jobs.extend(page.jobs);
        match page.next {
            Some(next) if jobs.len() < MAX_JOBS => {
                query.limit = MAX_JOBS - jobs.len();
                query.after = Some(next);
            }
            next => return Ok((jobs, next.is_some())),
        }
    }
}

async fn job(State(state): State<Arc<ConsoleState>>, Query(p): Query<api::KeyParam>) -> Response {
    let key = JobKey::from_stored(p.key);
    match state.records.get(&key).await {
        Ok(Some(record)) => {
            let hint = match &state.replay_with {
                Some(options) => format!("relay replay '{key}' {options}"),
                None => "This relay serve keeps its records in memory, where no other command can reach them: \
                         start it with --data-dir DIR, then relay replay KEY --data-dir DIR"
                    .to_owned(),
            };
            Html(page::job_page(&state.records.describe(), &record, &hint)).into_response()
        }
        Ok(None) => error_page(StatusCode::NOT_FOUND, &format!("No job {key} (records live 8 days).")),
        Err(e) => error_page(StatusCode::BAD_GATEWAY, &shared::telemetry::chain(&e).to_string()),
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    place: Where,
    /// Port on 127.0.0.1 (the console never listens beyond this machine)
    #[arg(long, default_value_t = 3001)]
    port: u16,
}

/// `relay console`: the page for a deployment (or a data directory), until Ctrl-C.
pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    crate::output::init(crate::output::LogFormat::Text);
    let records: Arc<dyn Records> = Arc::from(args.place.open().await?);
    let replay_with = Some(replay_option(&args.place));
    let app = Router::new().route("/", get(|| async { Redirect::to("/console") })).merge(router(ConsoleState {
        records: records.clone(),
        token: None,
        replay_with,
    }));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| RelayError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| RelayError::Bind { addr, source })?;
    tracing::info!("console of {} on http://{addr}/console (read only; Ctrl-C stops)", records.describe());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(RelayError::Serve)?;
    Ok(ExitCode::SUCCESS)
}

/// The option a replay of these records needs, for the job page's hint.
pub fn replay_option(place: &Where) -> String {
    match (&place.data_dir, &place.stack, &place.table) {
        (Some(dir), _, _) => format!("--data-dir '{}'", dir.display()),
        (_, Some(stack), _) => format!("--stack {stack}"),
        (_, _, Some(table)) => format!("--table {table} --queue-url URL"),
        _ => String::new(),
    }
}
