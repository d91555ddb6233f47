//! The Customer.io App API client (`shared::customerio`) against the local App API stand-in:
//! rate limit, retries, deadlines, paging, encoding, and the documented response shapes.

use std::time::{Duration, SystemTime};

use futures::future::join_all;
use relay_tests::cio_standin::{CampaignSeed, CioIdPath, CioStandIn, Person, RATE_LIMIT_MESSAGE, Reply};
use secrecy::SecretString;
use shared::customerio::{
    CioClient, CioConfig, CioError, CioIdForm, CioRegion, CustomerIoApi, IdType, Identifiers, MetricsWindow,
    Resolution, ScanStop,
};
use tokio::time::Instant;

fn client_for(cio: &CioStandIn) -> CioClient {
    client_with_key(cio, cio.app_key())
}

fn client_with_key(cio: &CioStandIn, key: &str) -> CioClient {
    let config = CioConfig::new(SecretString::from(key.to_owned()), CioRegion::Us).with_base_url(cio.base_url());
    CioClient::new(config).expect("a valid client configuration")
}

fn within(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn statuses(cio: &CioStandIn, prefix: &str) -> Vec<Option<u16>> {
    cio.requests_to(prefix).iter().map(|r| r.status).collect()
}

fn gaps(cio: &CioStandIn, prefix: &str) -> Vec<Duration> {
    cio.requests_to(prefix).windows(2).map(|pair| pair[1].arrived - pair[0].arrived).collect()
}

/// When each call attempt left the client's rate gate (its "Customer.io call starts" line),
/// on this thread: what the client decided, free of how late a loaded machine delivers the
/// request to the stand-in.
#[derive(Clone, Default)]
struct CallStarts(std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>);

impl CallStarts {
    fn gaps(&self) -> Vec<Duration> {
        self.0.lock().unwrap().windows(2).map(|pair| pair[1] - pair[0]).collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CallStarts {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let now = std::time::Instant::now();
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}") == "Customer.io call starts" {
                    self.0 = true;
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            self.0.lock().unwrap().push(now);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_clones_never_exceeds_ten_requests_a_second() {
    let cio = CioStandIn::start().await;
    for n in 0..35 {
        cio.add_person(Person::new(&format!("c{n}")).id(&format!("user-{n}")).attribute("plan", "pro"));
    }
    let client = client_for(&cio);
    let started = Instant::now();

    let lookups = (0..35).map(|n| {
        let client = client.clone();
        tokio::spawn(async move { client.customer_attributes(&format!("user-{n}"), IdType::Id, within(20)).await })
    });
    let results = join_all(lookups).await;

    for (n, result) in results.into_iter().enumerate() {
        let attributes =
            result.expect("the lookup task ran").expect("the lookup succeeded").expect("the person exists");
        assert_eq!(attributes.id, Some(format!("user-{n}")));
        assert_eq!(attributes.text("plan").as_deref(), Some("pro"));
    }
    assert_eq!(cio.requests().len(), 35, "one request each, no retries needed");
    assert_eq!(cio.throttled(), 0, "the stand-in's 10-per-second window refused a request");
    let busiest = cio.max_arrivals_within(Duration::from_secs(1));
    assert!(busiest <= 10, "{busiest} requests arrived within one second");
    // Paced rather than sent at once: 35 starts at 10 per second need at least 3.4 s.
    assert!(started.elapsed() >= Duration::from_millis(3400), "took only {:?}", started.elapsed());
}

/// One client per process, configured from `CIO_REQUESTS_PER_SECOND` as a cold start reads it.
fn process_client(cio: &CioStandIn, per_second: Option<i64>) -> CioClient {
    let (url, rate) = (cio.base_url(), per_second.map(|r| r.to_string()).unwrap_or_default());
    let vars = [("CIO_APP_KEY", cio.app_key()), ("CIO_APP_API_URL", url.as_str()), ("CIO_REQUESTS_PER_SECOND", &rate)];
    let config = shared::config::customerio(&vars, true).unwrap().unwrap();
    CioClient::new(config).unwrap()
}

/// Every client looks people up as fast as its gate allows, 5 at a time, until `deadline`.
async fn flood(clients: &[CioClient], deadline: Instant) {
    join_all(clients.iter().map(|client| async move {
        join_all(
            (0..5)
                .map(|_| async move { while client.customer_attributes("p1", IdType::Id, deadline).await.is_ok() {} }),
        )
        .await
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_and_cio_sync_together_stay_within_ten_a_second_as_the_template_splits_it() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("p1"));
    // As many processes as the template lets run at once, each with its own gate.
    let mut clients = Vec::new();
    for share in crate::template::cio_budget() {
        clients.extend((0..share.processes).map(|_| process_client(&cio, Some(share.per_second))));
    }
    assert!(clients.len() >= 4, "two workers and two cio-sync runs");

    flood(&clients, within(3)).await;

    assert_eq!(cio.throttled(), 0, "the stand-in's 10-per-second window refused requests");
    let most = cio.max_arrivals_within(Duration::from_secs(1));
    assert!(most <= 10, "{most} requests arrived within one second");
    let sent = cio.requests().len();
    assert!(sent >= 24, "the split still uses the budget: {sent} requests in 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_split_the_same_processes_are_refused() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("p1"));
    // Each process at the whole account's 10 per second, as before the split.
    let processes: i64 = crate::template::cio_budget().iter().map(|s| s.processes).sum();
    let clients: Vec<CioClient> = (0..processes).map(|_| process_client(&cio, None)).collect();

    flood(&clients, within(2)).await;

    assert!(cio.throttled() > 0, "{processes} processes at 10/s each should overrun the account's 10/s");
}

#[tokio::test]
async fn the_stand_in_refuses_an_unpaced_burst() {
    let cio = CioStandIn::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/campaigns", cio.base_url());
    let sends = (0..15).map(|_| http.get(&url).bearer_auth(cio.app_key()).send());
    let mut refused = 0;
    for response in join_all(sends).await {
        let response = response.expect("the stand-in answers");
        if response.status() == 429 {
            refused += 1;
            assert_eq!(response.text().await.unwrap(), RATE_LIMIT_MESSAGE);
        }
    }
    assert_eq!(refused, 5);
    assert_eq!(cio.throttled(), 5);
    assert_eq!(cio.max_arrivals_within(Duration::from_secs(1)), 15);
}

#[tokio::test]
async fn retry_after_in_seconds_is_waited_out() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("u1"));
    cio.push_reply("/v1/customers/", Reply::rate_limited_retry_after("1"));

    let found = client_for(&cio).customer_attributes("u1", IdType::Id, within(10)).await.unwrap();

    assert!(found.is_some());
    assert_eq!(statuses(&cio, "/v1/customers/"), vec![Some(429), Some(200)]);
    let gap = gaps(&cio, "/v1/customers/")[0];
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}, before Retry-After: 1");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_waited_out() {
    let cio = CioStandIn::start().await;
    cio.add_campaign(CampaignSeed::new(1, "Welcome"));
    // HTTP dates have whole seconds, so "3 s from now" means more than 2 s.
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    cio.push_reply("/v1/campaigns", Reply::rate_limited_retry_after(at));

    let campaigns = client_for(&cio).campaigns(within(10)).await.unwrap();

    assert_eq!(campaigns.len(), 1);
    assert_eq!(statuses(&cio, "/v1/campaigns"), vec![Some(429), Some(200)]);
    let gap = gaps(&cio, "/v1/campaigns")[0];
    // The first backoff is under 500 ms, so only Retry-After explains a wait this long.
    assert!(gap >= Duration::from_millis(1900) && gap <= Duration::from_millis(3500), "retried after {gap:?}");
}

#[tokio::test]
async fn rate_limits_and_server_errors_without_retry_after_are_retried_with_backoff() {
    let cio = CioStandIn::start().await;
    cio.add_campaign(CampaignSeed::new(1, "Welcome"));
    cio.push_reply("/v1/campaigns", Reply::rate_limited());
    cio.push_reply("/v1/campaigns", Reply::status(500));
    cio.push_reply("/v1/campaigns", Reply::status(503));
    let starts = CallStarts::default();
    let _on_this_thread = tracing::subscriber::set_default(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::registry(),
        starts.clone(),
    ));
    // Other tests' subscribers come and go on other threads; recompute which of them (this
    // one included) want each callsite, so the client's debug line is not skipped on a stale
    // "nobody listens" cached before this subscriber existed.
    tracing::callsite::rebuild_interest_cache();

    let campaigns = client_for(&cio).campaigns(within(15)).await.unwrap();

    assert_eq!(campaigns.len(), 1);
    assert_eq!(statuses(&cio, "/v1/campaigns"), vec![Some(429), Some(500), Some(503), Some(200)]);
    // Full jitter under doubling ceilings (500 ms, 1 s, 2 s); never under the gate's spacing.
    // Measured where the client starts each attempt: at the stand-in, a loaded machine can
    // deliver one request late and the next on time.
    let gaps = starts.gaps();
    assert_eq!(gaps.len(), 3, "four attempts started");
    for (gap, ceiling_ms) in gaps.into_iter().zip([500u64, 1000, 2000]) {
        assert!(gap >= Duration::from_millis(100), "{gap:?} is under the 10-per-second spacing");
        assert!(gap < Duration::from_millis(ceiling_ms + 250), "{gap:?} is over the {ceiling_ms} ms ceiling");
    }
}

#[tokio::test]
async fn retries_stop_after_three() {
    let cio = CioStandIn::start().await;
    cio.add_campaign(CampaignSeed::new(1, "Welcome"));
    for _ in 0..5 {
        cio.push_reply("/v1/campaigns", Reply::status(503));
    }

    let error = client_for(&cio).campaigns(within(15)).await.unwrap_err();

    assert!(matches!(error, CioError::Server { status: 503, .. }), "{error:?}");
    assert!(error.is_transient());
    assert_eq!(cio.requests_to("/v1/campaigns").len(), 4, "one attempt and three retries");
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_returns_the_last_error_at_once() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("u1"));
    cio.push_reply("/v1/customers/", Reply::rate_limited_retry_after("5"));
    let started = Instant::now();

    let error = client_for(&cio).customer_attributes("u1", IdType::Id, within(2)).await.unwrap_err();

    assert!(
        matches!(error, CioError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(5)),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(started.elapsed() < Duration::from_millis(500), "waited {:?} for nothing", started.elapsed());
    assert_eq!(cio.requests_to("/v1/customers/").len(), 1);
}

#[tokio::test]
async fn a_slow_answer_past_the_deadline_is_a_transient_timeout() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("u1"));
    cio.push_reply("/v1/customers/", Reply::slow(Duration::from_secs(3)));
    let started = Instant::now();

    let error = client_for(&cio)
        .customer_attributes("u1", IdType::Id, Instant::now() + Duration::from_millis(600))
        .await
        .unwrap_err();

    assert!(matches!(error, CioError::DeadlineExceeded { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(started.elapsed() < Duration::from_millis(1500), "returned after {:?}", started.elapsed());
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    let cio = CioStandIn::start().await;
    cio.push_reply("/v1/campaigns", Reply::status(400));

    let error = client_for(&cio).campaigns(within(10)).await.unwrap_err();

    assert!(matches!(error, CioError::BadRequest { .. }), "{error:?}");
    assert!(!error.is_transient());
    assert_eq!(cio.requests().len(), 1);
}

#[tokio::test]
async fn a_wrong_key_is_refused_once_and_never_shown() {
    let cio = CioStandIn::start().await;
    let client = client_with_key(&cio, "sk_wrong_hunter2");

    let error = client.campaigns(within(10)).await.unwrap_err();

    assert!(matches!(error, CioError::Unauthorized { .. }), "{error:?}");
    assert!(!error.is_transient());
    assert_eq!(cio.requests().len(), 1, "401 is not retried");
    let shown = format!("{error} {error:?} {client:?}");
    assert!(shown.contains("CIO_APP_KEY"), "{shown}");
    assert!(!shown.contains("hunter2"), "the key leaked: {shown}");
}

#[tokio::test]
async fn a_missing_person_is_none_and_a_missing_campaign_is_not_found() {
    let cio = CioStandIn::start().await;
    let client = client_for(&cio);

    assert_eq!(client.customer_attributes("nobody", IdType::Id, within(10)).await.unwrap(), None);
    let window = MetricsWindow::new(1_700_000_000, 1_700_086_400, Resolution::Days).unwrap();
    let error = client.campaign_metrics(404, &window, within(10)).await.unwrap_err();
    assert!(matches!(error, CioError::NotFound { .. }), "{error:?}");
    assert_eq!(cio.requests().len(), 2, "404s are not retried");
}

/// The attribute paths requested, in order.
fn attribute_paths(cio: &CioStandIn) -> Vec<String> {
    cio.requests_to("/v1/customers/").iter().map(|r| r.path.clone()).collect()
}

#[tokio::test]
async fn a_cio_id_is_tried_in_the_other_spelling_on_a_404_and_the_one_that_works_is_kept() {
    let cio = CioStandIn::start().await;
    cio.set_cio_id_path(CioIdPath::Prefixed);
    cio.add_person(Person::new("a3000001").attribute("plan_type", "pro"));
    cio.add_person(Person::new("a3000002").attribute("plan_type", "team"));
    let client = client_for(&cio);

    let found = client.customer_attributes("a3000001", IdType::CioId, within(10)).await.unwrap().unwrap();
    assert_eq!(found.attributes["plan_type"], "pro");
    assert_eq!(client.cio_id_form(), Some(CioIdForm::Prefixed));
    // Known now: one request each, in the working spelling, whichever spelling comes in.
    let found = client.customer_attributes("cio_a3000002", IdType::CioId, within(10)).await.unwrap().unwrap();
    assert_eq!(found.attributes["plan_type"], "team");
    assert_eq!(client.customer_attributes("a3000009", IdType::CioId, within(10)).await.unwrap(), None);
    assert_eq!(
        attribute_paths(&cio),
        [
            "/v1/customers/a3000001/attributes",
            "/v1/customers/cio_a3000001/attributes",
            "/v1/customers/cio_a3000002/attributes",
            "/v1/customers/cio_a3000009/attributes",
        ]
    );
}

#[tokio::test]
async fn a_bare_cio_id_endpoint_is_asked_once_and_a_prefixed_input_is_stripped() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("a3000001").attribute("plan_type", "pro"));
    let client = client_for(&cio);

    assert!(client.customer_attributes("cio_a3000001", IdType::CioId, within(10)).await.unwrap().is_some());
    assert_eq!(client.cio_id_form(), Some(CioIdForm::Bare));
    assert_eq!(attribute_paths(&cio), ["/v1/customers/a3000001/attributes"]);
}

#[tokio::test]
async fn until_a_spelling_has_worked_nobody_costs_both_and_ids_are_never_rewritten() {
    let cio = CioStandIn::start().await;
    cio.set_cio_id_path(CioIdPath::Prefixed);
    let client = client_for(&cio);

    assert_eq!(client.customer_attributes("zz", IdType::CioId, within(10)).await.unwrap(), None);
    assert_eq!(client.cio_id_form(), None, "nothing learned from two 404s");
    // A person's `id` that happens to start with `cio_` is sent as it is.
    assert_eq!(client.customer_attributes("cio_7", IdType::Id, within(10)).await.unwrap(), None);
    assert_eq!(
        attribute_paths(&cio),
        ["/v1/customers/zz/attributes", "/v1/customers/cio_zz/attributes", "/v1/customers/cio_7/attributes"]
    );
}

#[tokio::test]
async fn campaigns_expose_active_and_state() {
    let cio = CioStandIn::start().await;
    cio.add_campaign(CampaignSeed::new(1, "Welcome").tags(&["new"]));
    cio.add_campaign(CampaignSeed::new(2, "Old").inactive("stopped"));
    cio.add_campaign(CampaignSeed::new(3, "Draft").inactive("draft"));

    let campaigns = client_for(&cio).campaigns(within(10)).await.unwrap();

    let active: Vec<(u64, &str)> = campaigns.iter().filter(|c| c.active).map(|c| (c.id, c.state.as_str())).collect();
    assert_eq!(active, vec![(1, "running")]);
    assert!(campaigns.iter().all(|c| c.state != "active"), "no campaign is in state `active`");
    assert_eq!(campaigns[0].tags, vec!["new"]);
    assert_eq!(campaigns[1].state, "stopped");
}

#[tokio::test]
async fn metrics_ask_for_version_2_and_total_the_series() {
    let cio = CioStandIn::start().await;
    cio.add_campaign(CampaignSeed::new(7, "Onboarding"));
    cio.set_campaign_metrics(
        7,
        &[("sent", &[100, 50, 0]), ("delivered", &[90, 50, 0]), ("clicked", &[9, 5, 0]), ("converted", &[3, 4, 0])],
    );
    let window =
        MetricsWindow::new(1_700_000_000, 1_700_259_200, Resolution::Days).unwrap().in_time_zone("America/New_York");

    let metrics = client_for(&cio).campaign_metrics(7, &window, within(10)).await.unwrap();

    assert_eq!((metrics.sent(), metrics.delivered(), metrics.clicked(), metrics.converted()), (150, 140, 14, 7));
    assert_eq!(metrics.series("delivered"), &[90, 50, 0]);
    assert_eq!(metrics.conversion_rate(), Some(0.05));
    assert_eq!(metrics.click_rate(), Some(0.1));
    let sent = &cio.requests_to("/v1/campaigns/7/metrics")[0];
    assert_eq!(sent.query_param("version").as_deref(), Some("2"));
    assert_eq!(sent.query_param("res").as_deref(), Some("days"));
    assert_eq!(sent.query_param("start").as_deref(), Some("1700000000"));
    assert_eq!(sent.query_param("end").as_deref(), Some("1700259200"));
    assert_eq!(sent.query_param("tz").as_deref(), Some("America/New_York"));
}

#[tokio::test]
async fn the_stand_in_refuses_metrics_without_a_version() {
    let cio = CioStandIn::start().await;
    cio.add_campaign(CampaignSeed::new(7, "Onboarding"));
    let response = reqwest::Client::new()
        .get(format!("{}/v1/campaigns/7/metrics?res=days", cio.base_url()))
        .bearer_auth(cio.app_key())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn email_lookup_percent_encodes_the_address() {
    let cio = CioStandIn::start().await;
    let email = "jane+notifications@example.com";
    cio.add_person(Person::new("a1").id("42").email(email));
    cio.add_person(Person::new("a2").email(email));
    cio.add_person(Person::new("a3").id("43").email("jane notifications@example.com"));

    let found = client_for(&cio).customers_by_email(email, within(10)).await.unwrap();

    let jane = |id: Option<&str>, cio_id: &str| Identifiers {
        id: id.map(str::to_owned),
        email: Some(email.to_owned()),
        cio_id: Some(cio_id.to_owned()),
    };
    assert_eq!(found, vec![jane(Some("42"), "a1"), jane(None, "a2")]);
    let sent = &cio.requests_to("/v1/customers")[0];
    assert_eq!(sent.query.as_deref(), Some("email=jane%2Bnotifications%40example.com"));
}

#[tokio::test]
async fn attribute_lookups_percent_encode_emails_and_phones_in_the_path() {
    let cio = CioStandIn::start().await;
    cio.add_person(
        Person::new("a1").id("42").email("jane+x@example.com").phone("+15551234567").attribute("plan", "pro"),
    );
    let client = client_for(&cio);

    let by_email = client.customer_attributes("jane+x@example.com", IdType::Email, within(10)).await.unwrap();
    let by_phone = client.customer_attributes("+15551234567", IdType::Phone, within(10)).await.unwrap();
    let by_cio_id = client.customer_attributes("a1", IdType::CioId, within(10)).await.unwrap();

    for found in [by_email, by_phone, by_cio_id] {
        assert_eq!(found.expect("found").text("plan").as_deref(), Some("pro"));
    }
    let sent = cio.requests();
    assert_eq!(sent[0].path, "/v1/customers/jane%2Bx%40example.com/attributes");
    assert_eq!(sent[0].query.as_deref(), Some("id_type=email"));
    assert_eq!(sent[1].path, "/v1/customers/%2B15551234567/attributes");
    assert_eq!(sent[1].query.as_deref(), Some("id_type=phone"));
    assert_eq!(sent[2].query.as_deref(), Some("id_type=cio_id"));
}

#[tokio::test]
async fn an_email_lookup_where_email_is_not_an_identifier_says_where_to_enable_it() {
    let cio = CioStandIn::start().await;
    cio.set_email_identifier(false);
    cio.add_person(Person::new("a1").email("jane@example.com"));

    let error = client_for(&cio).customer_attributes("jane@example.com", IdType::Email, within(10)).await.unwrap_err();

    assert!(matches!(error, CioError::BadRequest { .. }), "{error:?}");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("workspace settings"), "{error}");
    assert_eq!(cio.requests().len(), 1);
}

fn members(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| {
            let person = Person::new(&format!("c{i}")).email(&format!("p{i}@example.com"));
            // Every third member has no id, as happens where email is the main identifier.
            if i % 3 == 0 { person } else { person.id(&i.to_string()) }
        })
        .collect()
}

fn cio_ids(found: &[Identifiers]) -> Vec<String> {
    found.iter().map(|m| m.cio_id.clone().unwrap_or_default()).collect()
}

#[tokio::test]
async fn membership_pages_walk_to_the_end_and_stop() {
    for empty_next in [false, true] {
        let cio = CioStandIn::start().await;
        cio.add_segment(9, members(25));
        cio.end_pages_with_empty_next(empty_next);
        let client = client_for(&cio);

        let mut all = Vec::new();
        let mut start: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = client.segment_members(9, start.as_deref(), 10, within(10)).await.unwrap();
            pages += 1;
            all.extend(page.identifiers);
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
            assert!(pages < 10, "paging never ended");
        }

        assert_eq!(pages, 3);
        assert_eq!(cio_ids(&all), (0..25).map(|i| format!("c{i}")).collect::<Vec<_>>());
        assert_eq!(all[0].id, None, "a member without id has `id: null`, not an empty string");
        assert_eq!(all[1].id.as_deref(), Some("1"));
        let sent = cio.requests_to("/v1/segments/9/membership");
        assert_eq!(sent[0].query_param("start"), None);
        assert!(sent[1].query_param("start").is_some() && sent[2].query_param("start").is_some());
        assert!(sent.iter().all(|r| r.query_param("limit").as_deref() == Some("10")));
    }
}

#[tokio::test]
async fn a_segment_scan_stops_at_its_maximum_and_resumes_where_it_stopped() {
    let cio = CioStandIn::start().await;
    cio.add_segment(9, members(25));
    let client = client_for(&cio);

    let first = client.scan_segment(9, None, 12, 5, within(10)).await;
    assert!(matches!(first.stop, ScanStop::ReachedMax), "{:?}", first.stop);
    assert_eq!(first.members.len(), 12);
    assert!(first.resume_from.is_some());

    let rest = client.scan_segment(9, first.resume_from.clone(), 1000, 5, within(10)).await;
    assert!(rest.is_complete(), "{:?}", rest.stop);
    assert_eq!(rest.resume_from, None);

    let all: Vec<Identifiers> = first.members.into_iter().chain(rest.members).collect();
    assert_eq!(cio_ids(&all), (0..25).map(|i| format!("c{i}")).collect::<Vec<_>>(), "nothing skipped or repeated");
    let limits: Vec<String> =
        cio.requests_to("/v1/segments/9/membership").iter().filter_map(|r| r.query_param("limit")).collect();
    // The first scan asks only for the 2 members still wanted; the second for full pages.
    assert_eq!(limits, vec!["5", "5", "2", "5", "5", "5"]);
}

#[tokio::test]
async fn a_segment_scan_cut_short_by_the_deadline_can_resume() {
    let cio = CioStandIn::start().await;
    cio.add_segment(9, members(10));
    let client = client_for(&cio);
    let first = client.scan_segment(9, None, 5, 5, within(10)).await;
    cio.push_reply("/v1/segments/9/membership", Reply::slow(Duration::from_secs(3)));

    let cut =
        client.scan_segment(9, first.resume_from.clone(), 100, 5, Instant::now() + Duration::from_millis(500)).await;

    assert!(matches!(cut.stop, ScanStop::Deadline), "{:?}", cut.stop);
    assert!(cut.members.is_empty());
    assert_eq!(cut.resume_from, first.resume_from);
    let rest = client.scan_segment(9, cut.resume_from, 100, 5, within(10)).await;
    assert!(rest.is_complete());
    assert_eq!(cio_ids(&rest.members), (5..10).map(|i| format!("c{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_client_works_through_the_port_trait() {
    let cio = CioStandIn::start().await;
    cio.add_person(Person::new("c1").id("u1").attribute("plan_type", "enterprise"));
    let api: std::sync::Arc<dyn CustomerIoApi> = std::sync::Arc::new(client_for(&cio));

    let found = api.customer_attributes("u1", IdType::Id, within(10)).await.unwrap().unwrap();

    assert_eq!(found.text("plan_type").as_deref(), Some("enterprise"));
}

#[test]
fn the_region_chooses_the_host_unless_overridden() {
    let key = || SecretString::from("k".to_owned());
    let eu = CioClient::new(CioConfig::new(key(), "eu".parse().unwrap())).unwrap();
    assert_eq!(eu.base_url(), "https://api-eu.customer.io");
    let us = CioClient::new(CioConfig::new(key(), "us".parse().unwrap())).unwrap();
    assert_eq!(us.base_url(), "https://api.customer.io");
    let local = CioClient::new(CioConfig::new(key(), CioRegion::Eu).with_base_url("http://127.0.0.1:4010")).unwrap();
    assert_eq!(local.base_url(), "http://127.0.0.1:4010");
    assert!("mars".parse::<CioRegion>().is_err());
}

#[tokio::test]
async fn once_the_stand_in_is_shut_down_calls_fail_as_transient_network_errors() {
    let cio = CioStandIn::start().await;
    let client = client_for(&cio);
    cio.shutdown().await;

    let error = client.campaigns(within(3)).await.unwrap_err();

    assert!(matches!(error, CioError::Transport { .. }), "{error:?}");
    assert!(error.is_transient());
}
