//! A fault-injecting HTTP proxy in front of the local AWS endpoint (moto). Clients built
//! from [`FaultProxy::sdk_config`] talk to it through the real AWS SDK, with the same
//! timeouts the functions use; the test tells it which calls to break and how:
//!
//! - [`Fault::Fail`]: answer an error status without forwarding (nothing applied);
//! - [`Fault::Delay`]: forward after a pause;
//! - [`Fault::Stall`]: never answer (the SDK's attempt timeout fires; nothing applied);
//! - [`Fault::LoseResponse`]: forward, so the write *is applied*, then answer 500 as if the
//!   response had been lost: the SDK retries a call that already took effect;
//! - [`Fault::ApplyThenStall`]: forward, then never answer (the same, by timeout).
//!
//! Calls are named by their `X-Amz-Target` operation (`PutItem`, `UpdateItem`,
//! `SendMessage`, …); every call is counted by that name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail(u16),
    Delay(Duration),
    Stall,
    LoseResponse,
    ApplyThenStall,
}

/// A rule: the next `times` calls of `operation` get `fault`.
#[derive(Debug, Clone)]
struct Rule {
    operation: String,
    fault: Fault,
    times: usize,
}

#[derive(Default)]
struct Plan {
    rules: Vec<Rule>,
    /// Calls seen, by operation.
    calls: HashMap<String, usize>,
    /// Faults injected, by operation.
    injected: HashMap<String, usize>,
}

#[derive(Clone)]
struct Shared {
    plan: Arc<Mutex<Plan>>,
    upstream: String,
    http: reqwest::Client,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    plan: Arc<Mutex<Plan>>,
    server: tokio::task::JoinHandle<()>,
}

/// How long a stalled call is held (longer than any SDK timeout the tests use).
const STALL: Duration = Duration::from_secs(60);

impl FaultProxy {
    /// A proxy to the moto endpoint that `scripts/test` started.
    pub async fn start() -> Self {
        let plan = Arc::new(Mutex::new(Plan::default()));
        let shared = Shared { plan: plan.clone(), upstream: crate::aws::endpoint(), http: reqwest::Client::new() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FaultProxy { addr, plan, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `times` calls of `operation` (e.g. `PutItem`) get `fault`.
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        self.plan.lock().unwrap().rules.push(Rule { operation: operation.to_owned(), fault, times });
    }

    /// Drops every pending fault.
    pub fn heal(&self) {
        self.plan.lock().unwrap().rules.clear();
    }

    pub fn calls(&self, operation: &str) -> usize {
        self.plan.lock().unwrap().calls.get(operation).copied().unwrap_or(0)
    }

    pub fn injected(&self, operation: &str) -> usize {
        self.plan.lock().unwrap().injected.get(operation).copied().unwrap_or(0)
    }

    /// SDK configuration through this proxy, with the functions' own timeouts (so a stalled
    /// call fails as it would in Lambda) and dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::BehaviorVersion;
        use aws_sdk_dynamodb::config::{Credentials, Region};
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "relay-tests"))
            .endpoint_url(self.url())
            .timeout_config(shared::aws::timeouts())
            .load()
            .await
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn operation(headers: &HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_owned()
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let op = operation(&parts.headers);
    let fault = {
        let mut plan = shared.plan.lock().unwrap();
        *plan.calls.entry(op.clone()).or_default() += 1;
        let fault = plan.rules.iter_mut().find(|r| r.operation == op && r.times > 0).map(|r| {
            r.times -= 1;
            r.fault
        });
        if fault.is_some() {
            *plan.injected.entry(op.clone()).or_default() += 1;
        }
        fault
    };
    match fault {
        None => upstream(&shared, &parts, body).await,
        Some(Fault::Fail(status)) => injected_error(status),
        Some(Fault::Delay(pause)) => {
            tokio::time::sleep(pause).await;
            upstream(&shared, &parts, body).await
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(STALL).await;
            injected_error(504)
        }
        Some(Fault::LoseResponse) => {
            let _applied = upstream(&shared, &parts, body).await;
            injected_error(500)
        }
        Some(Fault::ApplyThenStall) => {
            let _applied = upstream(&shared, &parts, body).await;
            tokio::time::sleep(STALL).await;
            injected_error(504)
        }
    }
}

async fn upstream(shared: &Shared, parts: &axum::http::request::Parts, body: Bytes) -> Response {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = shared.http.request(parts.method.clone(), format!("{}{path}", shared.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.body(body).send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.unwrap_or_default();
            let mut out = Response::new(Body::from(bytes));
            *out.status_mut() = status;
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    out.headers_mut().insert(name, value.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the proxy could not reach moto: {e}")).into_response(),
    }
}

/// An error the SDK reads as a server-side failure it may retry.
fn injected_error(status: u16) -> Response {
    let body = serde_json::json!({"__type": "InternalServerError", "message": "injected by the test's fault proxy"});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/x-amz-json-1.0")], body.to_string()).into_response()
}
