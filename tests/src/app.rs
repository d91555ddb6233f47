//! The ingest router served on 127.0.0.1:0, and a client that speaks to it the way the
//! senders do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared::ingest::{self, Settings};
use shared::queue::JobQueue;
use shared::rules::Rules;
use shared::store::ClaimStore;
use shared::telemetry::Metrics;
use shared::triggers::Triggers;
use shared::verify::{self, CustomerIoVerifier, SegmentVerifier, SigningSecrets, Verifiers};

pub const SEGMENT_SECRET: &str = "test-segment-secret";
pub const CIO_SECRET: &str = "test-cio-secret";

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub body: Value,
}

impl TestResponse {
    /// The `error.message` of an error answer.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Verifiers with the test secrets; `allow_first_event` as `SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE`.
pub fn verifiers(allow_first_event: bool) -> Verifiers {
    Verifiers {
        segment: Some(SegmentVerifier::new(
            &SigningSecrets::single("SEGMENT_SHARED_SECRET", SEGMENT_SECRET).unwrap(),
            allow_first_event,
        )),
        customerio: Some(CustomerIoVerifier::new(
            &SigningSecrets::single("CIO_WEBHOOK_SECRET", CIO_SECRET).unwrap(),
            verify::customerio::DEFAULT_MAX_AGE,
        )),
    }
}

impl TestApp {
    /// The shipped rules and the test secrets over the given store and queue.
    pub async fn spawn(claims: Arc<dyn ClaimStore>, queue: Arc<dyn JobQueue>) -> Self {
        Self::spawn_with(Triggers::embedded().unwrap().rules, verifiers(false), claims, queue).await
    }

    pub async fn spawn_with(
        rules: Rules,
        verifiers: Verifiers,
        claims: Arc<dyn ClaimStore>,
        queue: Arc<dyn JobQueue>,
    ) -> Self {
        crate::logs::init();
        Self::serve(Settings { rules: Arc::new(rules), verifiers, cio_sources: None }, claims, queue).await
    }

    /// [`TestApp::spawn`], with `/healthz` reading the other functions' reports from `health`,
    /// as the deployed ingest does.
    pub async fn spawn_reporting(
        claims: Arc<dyn ClaimStore>,
        queue: Arc<dyn JobQueue>,
        health: Arc<dyn shared::store::CacheStore>,
    ) -> Self {
        crate::logs::init();
        let rules = Arc::new(Triggers::embedded().unwrap().rules);
        let settings = Settings { rules, verifiers: verifiers(false), cio_sources: None };
        Self::serve_router(ingest::build_reporting(settings, claims, queue, health, Metrics::disabled())).await
    }

    /// Serves ingest with `settings` as `relay serve` does, with each request's peer address.
    pub async fn serve(settings: Settings, claims: Arc<dyn ClaimStore>, queue: Arc<dyn JobQueue>) -> Self {
        Self::serve_router(ingest::build(settings, claims, queue, Metrics::disabled())).await
    }

    async fn serve_router(app: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        TestApp { addr, http: reqwest::Client::new(), server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> TestResponse {
        let mut request = self.http.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the app answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        TestResponse { status, body }
    }

    /// A body signed the way Segment signs it.
    pub async fn post_segment(&self, body: &str) -> TestResponse {
        let signature = verify::segment::sign(SEGMENT_SECRET, body.as_bytes());
        self.post(
            "/webhooks/segment",
            &[("content-type", "application/json".into()), ("x-signature", signature)],
            body.as_bytes().to_vec(),
        )
        .await
    }

    /// A body signed the way Customer.io signs it, with the current time.
    pub async fn post_customerio(&self, body: &str) -> TestResponse {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        self.post_customerio_at(body, now).await
    }

    pub async fn post_customerio_at(&self, body: &str, timestamp: u64) -> TestResponse {
        let ts = timestamp.to_string();
        let signature = verify::customerio::sign(CIO_SECRET, &ts, body.as_bytes());
        self.post(
            "/webhooks/customerio",
            &[("content-type", "application/json".into()), ("x-cio-timestamp", ts), ("x-cio-signature", signature)],
            body.as_bytes().to_vec(),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        TestResponse { status, body }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}
