//! The real Mavera client against the Mavera stand-in: what goes over the wire, and how
//! each documented failure is retried or not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay_tests::mavera_standin::{MaveraStandIn, Reply};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use shared::mavera::{
    CreatePersonaRequest, ErrorClass, GenerationRequest, MaveChatRequest, MaveraApi, MaveraClient, MaveraConfig,
    MaveraError, MaveraRequest, MaveraResponse,
};
use tokio::time::Instant;

/// Enough for any retry sequence in these tests.
const ROOMY: Duration = Duration::from_secs(30);

fn client_for(mavera: &MaveraStandIn) -> MaveraClient {
    client_with(mavera, mavera.api_key(), 10)
}

fn client_with(mavera: &MaveraStandIn, key: &str, mave_concurrency: usize) -> MaveraClient {
    MaveraClient::new(MaveraConfig { base_url: mavera.base_url(), api_key: SecretString::from(key), mave_concurrency })
        .expect("a stand-in config is valid")
}

fn after(duration: Duration) -> Instant {
    Instant::now() + duration
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn persona(name: &str) -> MaveraRequest {
    MaveraRequest::CreatePersona(CreatePersonaRequest {
        name: name.to_owned(),
        description: "Real-time persona created when user usr_k8m2n started a trial. Plan: pro.".to_owned(),
        pipeline_type: None,
        persona_type: None,
        extra: object(
            json!({"psychographic": {"trigger_event": "trial_started", "user_id": "usr_k8m2n", "plan": "pro"}}),
        ),
    })
}

fn research(message: &str) -> MaveraRequest {
    MaveraRequest::Research(MaveChatRequest { message: message.to_owned(), thread_id: None, workspace_id: None })
}

fn generation() -> MaveraRequest {
    MaveraRequest::Generate(GenerationRequest {
        app_id: "blog-post-generator".to_owned(),
        input_data: object(json!({"topic": "Win-back for churned pro users", "tone": "warm"})),
        title: Some("Win-back email".to_owned()),
        brand_voice_id: None,
        persona_id: Some("clx1abc2d0001abcdef123456".to_owned()),
        workspace_id: None,
    })
}

fn header<'a>(request: &'a relay_tests::mavera_standin::RecordedRequest, name: &str) -> Vec<&'a str> {
    request.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
}

// ---- what goes over the wire ------------------------------------------------------------

#[tokio::test]
async fn create_persona_posts_the_rendered_body_with_the_bearer_key() {
    let mavera = MaveraStandIn::start().await;
    let request = persona("Segment RT: Trial User — usr_k8m2n");

    let response = client_for(&mavera).send(&request, after(ROOMY)).await.unwrap();

    let MaveraResponse::Persona(created) = response else { panic!("expected a persona, got {response:?}") };
    assert!(!created.id.is_empty());
    assert_eq!(created.name.as_deref(), Some("Segment RT: Trial User — usr_k8m2n"));
    assert_eq!(created.credits_charged, Some(300.0));

    let sent = mavera.requests_to("/personas");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert!(sent[0].auth_valid);
    assert_eq!(header(&sent[0], "authorization"), [format!("Bearer {}", mavera.api_key())]);
    assert_eq!(header(&sent[0], "content-type"), ["application/json"]);
    assert_eq!(sent[0].body.as_ref(), Some(&request.body()));
}

#[tokio::test]
async fn research_posts_the_message_and_returns_maves_answer() {
    let mavera = MaveraStandIn::start().await;
    let request = research("Research retention strategies for trial users on the pro plan");

    let response = client_for(&mavera).send(&request, after(ROOMY)).await.unwrap();

    let MaveraResponse::Research(answer) = response else { panic!("expected a Mave message, got {response:?}") };
    assert!(answer.thread_id.starts_with("mave_thread_"), "{}", answer.thread_id);
    assert!(answer.content.contains("Research retention strategies"), "{}", answer.content);
    assert_eq!(answer.usage.and_then(|u| u.credits_used), Some(25.0));

    let sent = mavera.requests_to("/mave/chat");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert!(sent[0].auth_valid);
    assert_eq!(sent[0].body, Some(json!({"message": "Research retention strategies for trial users on the pro plan"})));
}

#[tokio::test]
async fn generate_posts_app_id_and_input_data() {
    let mavera = MaveraStandIn::start().await;
    let request = generation();

    let response = client_for(&mavera).send(&request, after(ROOMY)).await.unwrap();

    let MaveraResponse::Generation(generated) = response else { panic!("expected a generation, got {response:?}") };
    assert!(generated.text().is_some_and(|t| t.contains("Win-back email")), "{generated:?}");

    let sent = mavera.requests_to("/generations");
    assert_eq!(sent.len(), 1);
    assert_eq!(header(&sent[0], "content-type"), ["application/json"]);
    assert_eq!(
        sent[0].body,
        Some(json!({
            "app_id": "blog-post-generator",
            "input_data": {"topic": "Win-back for churned pro users", "tone": "warm"},
            "title": "Win-back email",
            "persona_id": "clx1abc2d0001abcdef123456",
        }))
    );
}

#[tokio::test]
async fn warm_up_lists_personas_with_the_key() {
    let mavera = MaveraStandIn::start().await;

    client_for(&mavera).warm().await;

    let sent = mavera.requests_to("/personas");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].query.as_deref(), Some("limit=1"));
    assert!(sent[0].auth_valid);
}

// ---- transient failures -----------------------------------------------------------------

#[tokio::test]
async fn rate_limit_is_waited_out_per_retry_after_then_retried() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/generations", [Reply::RateLimited { retry_after_secs: Some(1) }]);

    let result = client_for(&mavera).send(&generation(), after(ROOMY)).await;

    assert!(result.is_ok(), "{result:?}");
    let sent = mavera.requests_to("/generations");
    assert_eq!(sent.len(), 2);
    let gap = sent[1].arrived - sent[0].arrived;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}, before Retry-After");
    assert!(gap < Duration::from_secs(2), "waited {gap:?}, far beyond Retry-After");
}

#[tokio::test]
async fn rate_limit_without_retry_after_waits_until_the_reset() {
    let mavera = MaveraStandIn::start().await;
    // Reset 2 whole seconds ahead: between 1 and 2 s from the moment of the answer.
    mavera.script("/generations", [Reply::RateLimitedUntilReset { reset_in_secs: 2 }]);

    let result = client_for(&mavera).send(&generation(), after(ROOMY)).await;

    assert!(result.is_ok(), "{result:?}");
    let sent = mavera.requests_to("/generations");
    assert_eq!(sent.len(), 2);
    let gap = sent[1].arrived - sent[0].arrived;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}, before X-RateLimit-Reset");
    assert!(gap < Duration::from_secs(3), "waited {gap:?}, far beyond X-RateLimit-Reset");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_succeed() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/mave/chat", [Reply::ServerError(500), Reply::ServerError(503)]);

    let result = client_for(&mavera).send(&research("Why do pro users churn?"), after(ROOMY)).await;

    assert!(matches!(result, Ok(MaveraResponse::Research(_))), "{result:?}");
    assert_eq!(mavera.count("/mave/chat"), 3);
    assert_eq!(mavera.pending_replies("/mave/chat"), 0);
}

#[tokio::test]
async fn retries_stop_after_five_attempts_with_the_last_error() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/generations", std::iter::repeat_n(Reply::ServerError(502), 8));

    let err = client_for(&mavera).send(&generation(), after(ROOMY)).await.unwrap_err();

    assert_eq!(err.status(), Some(502));
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(mavera.count("/generations"), 5);
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_deadline_returns_a_transient_error_at_once() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/personas", [Reply::RateLimited { retry_after_secs: Some(30) }]);
    let started = Instant::now();

    let err =
        client_for(&mavera).send(&persona("Trial User — usr_1"), after(Duration::from_secs(5))).await.unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.code(), Some("rate_limit_exceeded"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(mavera.count("/personas"), 1);
}

#[tokio::test]
async fn a_hanging_server_is_cut_off_at_the_deadline_as_transient() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/generations", [Reply::Hang]);
    let started = Instant::now();

    let err = client_for(&mavera).send(&generation(), after(Duration::from_secs(3))).await.unwrap_err();

    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2_900) && elapsed < Duration::from_millis(3_600), "took {elapsed:?}");
    assert!(matches!(err, MaveraError::Timeout { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(mavera.count("/generations"), 1, "no time was left for a retry");
    // The client hung up, so the stand-in no longer counts the request as in flight.
    let hung_up = after(Duration::from_secs(1));
    while mavera.in_flight("/generations") > 0 && Instant::now() < hung_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mavera.in_flight("/generations"), 0);
}

#[tokio::test]
async fn nothing_is_sent_when_the_deadline_is_too_close_for_an_attempt() {
    let mavera = MaveraStandIn::start().await;

    let err = client_for(&mavera).send(&research("Too late"), after(Duration::from_secs(2))).await.unwrap_err();

    assert!(matches!(err, MaveraError::NoTimeLeft { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(mavera.count("/mave/chat"), 0);
}

// ---- permanent failures -----------------------------------------------------------------

#[tokio::test]
async fn credits_exhausted_is_permanent_with_maveras_message_and_sent_once() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/mave/chat", [Reply::CreditsExhausted]);

    let err = client_for(&mavera).send(&research("Why do pro users churn?"), after(ROOMY)).await.unwrap_err();

    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.status(), Some(402));
    assert_eq!(err.code(), Some("credits_exhausted"));
    assert!(err.mavera_message().is_some_and(|m| m.starts_with("Insufficient credits")), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("credits_exhausted") && text.contains("Insufficient credits"), "{text}");
    assert_eq!(mavera.count("/mave/chat"), 1);
}

#[tokio::test]
async fn an_invalid_body_is_a_permanent_400_naming_the_field() {
    let mavera = MaveraStandIn::start().await;

    let err = client_for(&mavera).send(&persona("X"), after(ROOMY)).await.unwrap_err();

    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("invalid_field"));
    assert_eq!(err.param(), Some("name"));
    assert!(err.mavera_message().is_some_and(|m| m.contains("between 2 and 100")), "{err:?}");
    assert_eq!(mavera.count("/personas"), 1);
}

#[tokio::test]
async fn a_scripted_bad_request_is_not_retried() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/generations", [Reply::BadRequest, Reply::Success]);

    let err = client_for(&mavera).send(&generation(), after(ROOMY)).await.unwrap_err();

    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.status(), Some(400));
    assert_eq!(mavera.count("/generations"), 1);
}

#[tokio::test]
async fn a_wrong_key_is_a_permanent_401_and_stays_out_of_the_error() {
    let mavera = MaveraStandIn::start().await;
    let wrong_key = "mvra_live_wrong_key_not_real_0042";
    let client = client_with(&mavera, wrong_key, 10);

    let err = client.send(&generation(), after(ROOMY)).await.unwrap_err();

    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("invalid_api_key"));
    for shown in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!shown.contains("not_real_0042"), "key leaked: {shown}");
    }
    let sent = mavera.requests_to("/generations");
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].auth_valid);
}

#[tokio::test]
async fn a_duplicate_persona_name_reads_as_already_done() {
    let mavera = MaveraStandIn::start().await;
    let client = client_for(&mavera);
    let request = persona("Segment RT: Trial User — usr_dup");

    client.send(&request, after(ROOMY)).await.unwrap();
    let err = client.send(&request, after(ROOMY)).await.unwrap_err();

    assert_eq!(err.class(), ErrorClass::AlreadyDone);
    assert_eq!(err.status(), Some(422));
    assert_eq!(mavera.count("/personas"), 2);
    assert_eq!(mavera.persona_names(), ["Segment RT: Trial User — usr_dup"]);
}

#[tokio::test]
async fn an_existing_persona_is_found_by_its_exact_name_for_free() {
    let mavera = MaveraStandIn::start().await;
    let client = client_for(&mavera);
    let near = mavera.add_persona("Segment RT: Trial User — usr_dup 2");
    let id = mavera.add_persona("Segment RT: Trial User — usr_dup");

    let found = client.find_persona("Segment RT: Trial User — usr_dup", after(ROOMY)).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_ne!(found.id, near, "the stand-in's search also lists the longer name; only the exact one counts");
    assert_eq!(client.find_persona("Segment RT: Trial User", after(ROOMY)).await.unwrap(), None);
    // Mavera's base persona shares the list, but is never the workspace's own.
    assert_eq!(client.find_persona("Gen Z Consumer", after(ROOMY)).await.unwrap(), None);

    let lookups = mavera.requests_to("/personas");
    assert!(lookups.iter().all(|r| r.method == "GET"), "GET /personas only: it costs no credits");
    assert_eq!(
        lookups[0].query.as_deref(),
        Some("name=Segment%20RT%3A%20Trial%20User%20%E2%80%94%20usr_dup&limit=100")
    );
}

#[tokio::test]
async fn a_lookup_still_finds_the_persona_when_the_name_filter_is_ignored() {
    let mavera = MaveraStandIn::start().await;
    mavera.ignore_name_filter(true);
    let id = mavera.add_persona("Customer.io cluster: plan: pro");
    mavera.add_persona("Customer.io cluster: plan: free");

    let found = client_for(&mavera).find_persona("Customer.io cluster: plan: pro", after(ROOMY)).await.unwrap();
    assert_eq!(found.map(|p| p.id), Some(id));
}

#[tokio::test]
async fn a_refused_lookup_is_an_error_of_the_get() {
    let mavera = MaveraStandIn::start().await;
    let client = client_with(&mavera, "mvra_live_wrong_key_not_real_0042", 10);

    let err = client.find_persona("x", after(ROOMY)).await.unwrap_err();

    assert_eq!((err.status(), err.class()), (Some(401), ErrorClass::Permanent));
    assert!(err.to_string().contains("on GET /personas"), "{err}");
}

#[tokio::test]
async fn an_undecodable_success_is_permanent_and_not_repeated() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/mave/chat", [Reply::Malformed]);

    let err = client_for(&mavera).send(&research("Why do pro users churn?"), after(ROOMY)).await.unwrap_err();

    assert!(matches!(err, MaveraError::Decode { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(mavera.count("/mave/chat"), 1);
}

#[tokio::test]
async fn a_server_error_then_a_permanent_error_stops_at_the_permanent_one() {
    let mavera = MaveraStandIn::start().await;
    mavera.script("/generations", [Reply::ServerError(503), Reply::CreditsExhausted, Reply::Success]);

    let err = client_for(&mavera).send(&generation(), after(ROOMY)).await.unwrap_err();

    assert_eq!(err.status(), Some(402));
    assert_eq!(mavera.count("/generations"), 2);
}

// ---- the Mave concurrency cap -----------------------------------------------------------

async fn fire_research(client: &MaveraClient, calls: usize) -> Vec<Result<MaveraResponse, MaveraError>> {
    let requests: Vec<_> = (0..calls).map(|i| research(&format!("Research question {i}"))).collect();
    let deadline = after(ROOMY);
    futures::future::join_all(requests.iter().map(|r| client.send(r, deadline))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mave_cap_holds_across_concurrent_calls() {
    let mavera = MaveraStandIn::start().await;
    mavera.set_path_latency("/mave/chat", Duration::from_millis(300));
    let client = client_with(&mavera, mavera.api_key(), 10);
    let started = Instant::now();

    let results = fire_research(&client, 25).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(mavera.count("/mave/chat"), 25);
    assert_eq!(mavera.peak_in_flight("/mave/chat"), 10);
    // 25 calls through 10 slots take three rounds of 300 ms.
    assert!(started.elapsed() >= Duration::from_millis(900), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_mave_cap() {
    let mavera = MaveraStandIn::start().await;
    mavera.set_path_latency("/mave/chat", Duration::from_millis(300));
    let client = client_with(&mavera, mavera.api_key(), 4);
    let (a, b) = (client.clone(), client.clone());

    let (left, right) = tokio::join!(fire_research(&a, 6), fire_research(&b, 6));

    assert!(left.iter().chain(&right).all(Result::is_ok));
    assert_eq!(mavera.peak_in_flight("/mave/chat"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_sees_every_concurrent_call_when_the_cap_allows_it() {
    // Checks the instrument the cap tests rely on.
    let mavera = MaveraStandIn::start().await;
    mavera.set_path_latency("/mave/chat", Duration::from_millis(300));
    let client = client_with(&mavera, mavera.api_key(), 25);

    let results = fire_research(&client, 25).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(mavera.peak_in_flight("/mave/chat"), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_mave_slot_gives_up_in_time_for_the_deadline() {
    let mavera = MaveraStandIn::start().await;
    mavera.set_path_latency("/mave/chat", Duration::from_millis(2_500));
    let client = client_with(&mavera, mavera.api_key(), 1);
    let holder = tokio::spawn({
        let client = client.clone();
        async move { client.send(&research("Holds the only slot"), after(ROOMY)).await }
    });
    while mavera.in_flight("/mave/chat") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();

    // 6 s left, 5 s needed for a Mave attempt: it may wait for a slot for 1 s at most.
    let err = client.send(&research("Waits for a slot"), after(Duration::from_secs(6))).await.unwrap_err();

    let waited = started.elapsed();
    assert!(matches!(err, MaveraError::NoMaveSlot { limit: 1, .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(1_500), "waited {waited:?}");
    assert!(holder.await.unwrap().is_ok());
    assert_eq!(mavera.count("/mave/chat"), 1);
}

// ---- the stand-in itself ----------------------------------------------------------------

#[tokio::test]
async fn the_stand_in_answers_like_mavera_without_the_key() {
    let mavera = MaveraStandIn::start().await;
    let http = reqwest::Client::new();

    let answer =
        http.post(format!("{}/mave/chat", mavera.base_url())).json(&json!({"message": "hello"})).send().await.unwrap();

    assert_eq!(answer.status(), 401);
    for name in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert!(answer.headers().contains_key(name), "missing {name}");
    }
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(mavera.count("/mave/chat"), 1);
}

#[tokio::test]
async fn the_stand_in_enforces_a_rate_limit_when_asked() {
    let mavera = MaveraStandIn::start().await;
    mavera.enforce_rate_limit(Some(2));
    let client = client_for(&mavera);
    // Keep all three calls inside one 60 s window.
    let into_window = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() % 60;
    if into_window >= 57 {
        tokio::time::sleep(Duration::from_secs(61 - into_window)).await;
    }

    client.send(&generation(), after(ROOMY)).await.unwrap();
    client.send(&generation(), after(ROOMY)).await.unwrap();
    // The window resets 1–60 s later; with 2.5 s left the 429 comes back instead of a wait.
    let err = client.send(&generation(), after(Duration::from_millis(2_500))).await.unwrap_err();

    assert_eq!(err.status(), Some(429));
    assert_eq!(mavera.count("/generations"), 3);
    assert!(err.retry_after().is_some_and(|w| w >= Duration::from_secs(1)), "{err:?}");
}
