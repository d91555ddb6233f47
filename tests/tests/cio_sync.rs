//! The scheduled Customer.io jobs end to end: `cio-sync` reads the Customer.io stand-in over
//! HTTP (10 requests a second, 429s, pages), claims and checkpoints in DynamoDB and queues on
//! SQS (moto); the worker's batch handler then calls the Mavera stand-in.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relay_tests::aws::{Aws, text};
use relay_tests::cio_standin::{CampaignSeed, CioIdPath, CioStandIn, Person, Reply as CioReply};
use relay_tests::env::Env;
use relay_tests::mavera_standin::{MaveraStandIn, Reply};
use relay_tests::sqs_driver::drive;
use serde_json::{Value, json};
use shared::cio_sync::{self, CioSync, RunRequest, RunStatus, Summary, SyncJob};
use shared::customerio::{CioClient, CioConfig, CioRegion};
use shared::domain::{EventId, JobKey, Source};
use shared::queue::{Job, JobMessage};
use shared::store::{DynamoStore, JobRecord, JobStatus, JobStore};
use shared::telemetry::{Metric, Metrics};
use shared::triggers::Triggers;
use shared::worker::{self, CioEnricher, Disposition, Enrich, Worker};
use tokio::time::Instant;

const JOB_TIME: Duration = Duration::from_secs(30);

/// Wednesday 2026-03-04, 15:00 UTC: its 7-day run window is 2026-03-02 to 2026-03-08.
fn wednesday() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_636_400)
}

fn week(n: u64) -> SystemTime {
    wednesday() + Duration::from_secs(n * 7 * 86_400)
}

const STRATEGY: &str = r#"
[cio_sync.campaign_strategy]
enabled = true
top_n = 2
min_delivered = 100
[cio_sync.campaign_strategy.generate]
app_id = "email-variations"
input = { brief = "{mave.content}", campaigns = "{winner_count}" }
"#;

const PERSONAS: &str = r#"
[cio_sync.attribute_personas]
enabled = true
segment_id = 42
page_size = 10
clusters = 3
min_cluster_size = 4
cluster_by = [{ attribute = "plan_type", name = "plan" }, { attribute = "industry" }]
describe = ["country"]
# The cluster's facts as an object too, as Mavera's Stripe page sends them.
persona = { context_field = "attributes" }
"#;

struct Rig {
    aws: Aws,
    cio: CioStandIn,
    mavera: MaveraStandIn,
    store: DynamoStore,
    sync: CioSync,
    worker: Worker,
}

async fn rig(triggers: &str) -> Rig {
    rig_from(Triggers::parse(triggers, "t.toml").unwrap()).await
}

async fn rig_from(triggers: Triggers) -> Rig {
    // maxReceiveCount 3 and a 1 s visibility timeout, so a redelivery comes quickly.
    let aws = Aws::fresh_with(3, 1).await;
    let cio = CioStandIn::start().await;
    let mavera = MaveraStandIn::start().await;
    let store = aws.store();
    // Two functions, as deployed: cio-sync and the worker, each with its own clients.
    let env = Env::new().aws(&aws).mavera(&mavera).customerio(&cio).set("CIO_REGION", "eu");
    let settings = cio_sync::Settings::from_vars(&env, triggers.for_cio_sync()).unwrap();
    let sync = cio_sync::build(settings, Arc::new(store.clone()), Arc::new(aws.queue())).unwrap();
    let settings = worker::Settings::from_vars(&env, triggers.for_worker()).unwrap();
    let worker = worker::build(settings, Arc::new(store.clone())).unwrap();
    Rig { aws, cio, mavera, store, sync, worker }
}

impl Rig {
    async fn run(&self, job: SyncJob, now: SystemTime) -> Summary {
        self.run_until(job, now, Instant::now() + JOB_TIME).await
    }

    async fn run_until(&self, job: SyncJob, now: SystemTime, deadline: Instant) -> Summary {
        self.sync.run(RunRequest { job, dry_run: false }, now, deadline).await
    }

    async fn work(&self) {
        drive(&self.aws, &self.worker, 10, JOB_TIME, Duration::from_secs(60)).await;
    }

    async fn record(&self, key: &str) -> JobRecord {
        self.store.get(&JobKey::from_stored(key)).await.unwrap().unwrap_or_else(|| panic!("no record {key}"))
    }

    /// App API requests that were answered (found or not found), not refused with 429 or 5xx.
    fn answered(&self, prefix: &str) -> usize {
        self.cio.requests_to(prefix).iter().filter(|r| matches!(r.status, Some(200 | 404))).count()
    }

    /// Never more than 10 requests in any second at the stand-in, so it never refused one.
    fn assert_within_rate_limit(&self) {
        assert_eq!(self.cio.throttled(), 0, "the stand-in's 10-per-second window refused requests");
        let most = self.cio.max_arrivals_within(Duration::from_secs(1));
        assert!(most <= 10, "{most} requests arrived within one second");
    }
}

fn seed_campaigns(cio: &CioStandIn) {
    cio.add_campaign(CampaignSeed::new(1, "Welcome series").tags(&["onboarding", "email"]));
    cio.add_campaign(CampaignSeed::new(2, "Winback 30 days").tags(&["retention"]));
    cio.add_campaign(CampaignSeed::new(3, "Tiny test"));
    cio.add_campaign(CampaignSeed::new(4, "Old promo").inactive("stopped"));
    cio.add_campaign(CampaignSeed::new(5, "Newsletter"));
    cio.set_campaign_metrics(
        1,
        &[
            ("sent", &[310, 420, 310]),
            ("delivered", &[300, 400, 300]),
            ("opened", &[150, 210, 140]),
            ("clicked", &[40, 60, 20]),
            ("converted", &[20, 20, 10]),
        ],
    );
    cio.set_campaign_metrics(2, &[("sent", &[500]), ("delivered", &[500]), ("clicked", &[90]), ("converted", &[40])]);
    cio.set_campaign_metrics(3, &[("delivered", &[20]), ("converted", &[15])]);
    cio.set_campaign_metrics(4, &[("delivered", &[9000]), ("converted", &[8000])]);
    cio.set_campaign_metrics(5, &[("delivered", &[2000]), ("clicked", &[300]), ("converted", &[20])]);
}

#[tokio::test]
async fn campaign_strategy_queues_one_analysis_and_the_worker_asks_mave_then_generate() {
    let r = rig(STRATEGY).await;
    seed_campaigns(&r.cio);
    r.cio.push_reply("/v1/campaigns/2/metrics", CioReply::rate_limited());

    let summary = r.run(SyncJob::CampaignStrategy, wednesday()).await;
    assert_eq!(summary.status, RunStatus::Done, "{summary:?}");
    assert_eq!(summary.window.as_deref(), Some("2026-03-02_7d"));
    assert_eq!((summary.counts["running_campaigns"], summary.counts["queued"]), (4, 1));
    r.assert_within_rate_limit();

    let metrics = r.cio.requests_to("/v1/campaigns/");
    assert!(metrics.iter().all(|q| q.path != "/v1/campaigns/4/metrics"), "the stopped campaign is not read");
    for q in &metrics {
        assert_eq!(q.query_param("version").as_deref(), Some("2"), "{q:?}");
        assert_eq!(q.query_param("res").as_deref(), Some("days"));
        // The 30 finished days before the run window: 2026-01-31 00:00 to 2026-03-02 00:00 UTC.
        assert_eq!(q.query_param("start").as_deref(), Some("1769817600"));
        assert_eq!(q.query_param("end").as_deref(), Some("1772409600"));
    }

    r.work().await;
    let asked = r.mavera.requests_to("/mave/chat");
    assert_eq!(asked.len(), 1);
    let prompt = asked[0].body.as_ref().unwrap()["message"].as_str().unwrap().to_owned();
    assert!(prompt.contains("These are our 2 best Customer.io campaigns by conversion rate"), "{prompt}");
    assert!(
        prompt.contains(
            "1. \"Winback 30 days\" (campaign 2; tags: retention): conversion rate 8.0%; 500 sent, 500 delivered"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("2. \"Welcome series\" (campaign 1; tags: onboarding, email): conversion rate 5.0%; 1040 sent, 1000 delivered, 500 opened (50%), 120 clicked (12%), 50 converted (5%)"),
        "{prompt}"
    );
    for absent in ["Tiny test", "Old promo", "Newsletter"] {
        assert!(!prompt.contains(absent), "{absent} is not a winner: {prompt}");
    }

    let record = r.record("cio-sync#campaign-strategy#2026-03-02_7d").await;
    assert_eq!(record.status, JobStatus::Done);
    let result = record.result.unwrap();
    let content = result["mave"]["content"].as_str().unwrap();
    assert!(content.contains("Stand-in research answering"), "{result}");
    assert!(result["mave"]["thread_id"].as_str().is_some_and(|t| t.starts_with("mave_thread_")), "{result}");

    let generated = r.mavera.requests_to("/generations");
    assert_eq!(generated.len(), 1);
    let body = generated[0].body.as_ref().unwrap();
    assert_eq!(body["app_id"], "email-variations");
    assert_eq!(body["input_data"], json!({"brief": content, "campaigns": "2"}));
    assert!(result["generation"]["generation_id"].as_str().is_some_and(|g| g.starts_with("gen_")), "{result}");
    assert!(result["generation"]["output"].as_str().is_some_and(|o| o.contains("email-variations")), "{result}");
    assert_eq!(result["winners"], json!([2, 1]));
    assert_eq!(result["credits"], 40.0, "Mave 25 + Generate 15");

    // A second run in the same window: nothing read, nothing queued, nothing asked.
    let requests = r.cio.requests().len();
    let again = r.run(SyncJob::CampaignStrategy, wednesday() + Duration::from_secs(2 * 86_400)).await;
    assert_eq!(again.status, RunStatus::AlreadyDone, "{again:?}");
    assert_eq!(r.cio.requests().len(), requests);
    assert_eq!(r.aws.depth(&r.aws.queue_url).await, 0);
    assert_eq!(r.mavera.count("/mave/chat"), 1);
}

#[tokio::test]
async fn a_generate_failure_after_mave_is_retried_without_asking_mave_again() {
    let r = rig(STRATEGY).await;
    seed_campaigns(&r.cio);
    r.run(SyncJob::CampaignStrategy, wednesday()).await;
    let body = r.aws.drain(&r.aws.queue_url).await.remove(0);
    // Generate asks to wait ten minutes: more than the job has, so it goes back to the queue.
    r.mavera.script("/generations", [Reply::RateLimited { retry_after_secs: Some(600) }]);

    let first = r.worker.process(&body, Instant::now() + JOB_TIME).await;
    assert!(matches!(first, Disposition::Retry { ref reason } if reason.contains("Generate")), "{first:?}");
    let key = "cio-sync#campaign-strategy#2026-03-02_7d";
    let retrying = r.record(key).await;
    assert_eq!(retrying.status, JobStatus::Retrying);
    assert!(retrying.error.unwrap().contains("retry asks Generate only"));

    assert_eq!(r.worker.process(&body, Instant::now() + JOB_TIME).await, Disposition::Finished(JobStatus::Done));
    assert_eq!(r.mavera.count("/mave/chat"), 1, "Mave's answer was kept, not asked for again");
    assert_eq!(r.mavera.count("/generations"), 2);
    let done = r.record(key).await;
    assert!(done.notes.iter().any(|n| n.contains("kept from an earlier attempt")), "{:?}", done.notes);
    let result = done.result.unwrap();
    let brief = r.mavera.requests_to("/generations")[1].body.as_ref().unwrap()["input_data"]["brief"].clone();
    assert_eq!(result["mave"]["content"], brief, "the retry generated from the kept analysis");
}

#[tokio::test]
async fn an_analysis_whose_generate_fails_still_counts_what_mave_cost() {
    let r = rig(STRATEGY).await;
    seed_campaigns(&r.cio);
    r.run(SyncJob::CampaignStrategy, wednesday()).await;
    let body = r.aws.drain(&r.aws.queue_url).await.remove(0);
    // Generate first asks to wait past the job's time (a retry, nothing counted yet), then
    // refuses the request for good.
    r.mavera.script("/generations", [Reply::RateLimited { retry_after_secs: Some(600) }, Reply::BadRequest]);

    let (first, tally) = r.worker.process_tallied(&body, Instant::now() + JOB_TIME).await;
    assert!(matches!(first, Disposition::Retry { .. }), "{first:?}");
    assert_eq!(tally.credits, None, "a job that goes back to the queue counts nothing yet");

    let (second, tally) = r.worker.process_tallied(&body, Instant::now() + JOB_TIME).await;
    assert_eq!(second, Disposition::Finished(JobStatus::Failed));
    assert_eq!(r.mavera.count("/mave/chat"), 1, "Mave was asked once");
    assert_eq!(tally.credits, Some(25.0), "the stand-in charges 25 per Mave answer, spent on the first attempt");
    assert!(tally.failure.is_some());
    let record = r.record("cio-sync#campaign-strategy#2026-03-02_7d").await;
    assert!(record.notes.iter().any(|n| n.contains("cost 25 credits")), "{:?}", record.notes);
}

/// 15 pro/saas, 10 free/retail, 6 team/saas, 3 enterprise/fintech, and 2 members Customer.io
/// has no attributes for; identifiers and value spellings vary as they do in real workspaces.
fn seed_segment(cio: &CioStandIn) -> Vec<Person> {
    let mut members = Vec::new();
    let mut add = |n: usize, plan: &str, industry: &str, country: &str| {
        for _ in 0..n {
            let i = members.len();
            let mut person = Person::new(&format!("cio{i:02}"))
                .attribute("plan_type", plan)
                .attribute("industry", industry)
                .attribute("country", country);
            // Every third member has no `id`: looked up by cio_id instead.
            if i % 3 != 0 {
                person = person.id(&format!("cust-{i:02}"));
            }
            cio.add_person(person.clone());
            members.push(person);
        }
    };
    add(15, "Pro", "SaaS", "US");
    add(10, "free", " Retail", "DE");
    add(6, "team", "saas", "US");
    add(3, "enterprise", "fintech", "UK");
    // In the segment, unknown to the attributes endpoint (404).
    members.push(Person::new("gone1").id("gone-1"));
    members.push(Person::new("gone2").id("gone-2"));
    cio.add_segment(42, members.clone());
    members
}

fn persona_names(r: &Rig) -> Vec<String> {
    r.mavera
        .requests_to("/personas")
        .iter()
        .map(|q| q.body.as_ref().unwrap()["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn attribute_personas_cluster_a_segment_within_the_rate_limit_and_make_each_persona_once() {
    let r = rig(PERSONAS).await;
    let members = seed_segment(&r.cio);
    r.cio.push_reply("/v1/customers/", CioReply::rate_limited());
    r.cio.push_reply("/v1/customers/", CioReply::rate_limited_retry_after("1"));
    r.cio.push_reply("/v1/segments/42/membership", CioReply::status(503));

    let started = Instant::now();
    let summary = r.run(SyncJob::AttributePersonas, wednesday()).await;
    assert_eq!(summary.status, RunStatus::Done, "{summary:?}");
    assert_eq!(summary.counts["members_read"], 36);
    assert_eq!(summary.counts["without_attributes"], 2);
    assert_eq!(summary.counts["queued"], 3);
    r.assert_within_rate_limit();
    assert_eq!(r.answered("/v1/customers/"), members.len(), "each member looked up once");
    assert_eq!(r.answered("/v1/segments/42/membership"), 4, "36 members in pages of 10");
    let id_type = |path: &str| r.cio.requests_to(path)[0].query_param("id_type");
    assert_eq!(id_type("/v1/customers/cio00/attributes").as_deref(), Some("cio_id"), "no id: looked up by cio_id");
    assert_eq!(id_type("/v1/customers/cust-01/attributes").as_deref(), Some("id"));
    assert!(started.elapsed() >= Duration::from_secs(3), "about 45 requests cannot pass 10 a second faster");

    r.work().await;
    let mut names = persona_names(&r);
    names.sort();
    assert_eq!(
        names,
        [
            "Customer.io cluster: plan: free, industry: retail",
            "Customer.io cluster: plan: pro, industry: saas",
            "Customer.io cluster: plan: team, industry: saas",
        ],
        "enterprise (3 members) is below min_cluster_size"
    );
    let pro = r
        .mavera
        .requests_to("/personas")
        .into_iter()
        .find(|q| q.body.as_ref().unwrap()["name"].as_str().unwrap().contains("pro"))
        .unwrap();
    let body = pro.body.unwrap();
    assert_eq!(
        body["description"],
        "15 of the 34 people read from Customer.io segment 42 (44%) share plan: pro, industry: saas. country: us 100%"
    );
    assert_eq!(body["attributes"]["customer_count"], 15);
    let queued_keys: Vec<String> = r
        .aws
        .items()
        .await
        .iter()
        .filter_map(|i| text(i, "pk"))
        .filter(|k| k.starts_with("cio-sync#attribute-personas#seg42#c"))
        .map(str::to_owned)
        .collect();
    assert_eq!(queued_keys.len(), 3, "{queued_keys:?}");
    for key in &queued_keys {
        let record = r.record(key).await;
        assert_eq!(record.status, JobStatus::Done);
        assert!(record.result.unwrap()["persona_id"].as_str().is_some());
    }

    // Again this week: the window is done.
    let requests = r.cio.requests().len();
    let again = r.run(SyncJob::AttributePersonas, wednesday() + Duration::from_secs(86_400)).await;
    assert_eq!(again.status, RunStatus::AlreadyDone);
    assert_eq!(r.cio.requests().len(), requests);

    // Next week: the same clusters, their jobs claimed already; attributes come from the cache.
    let next = r.run(SyncJob::AttributePersonas, week(1)).await;
    assert_eq!(next.status, RunStatus::Done, "{next:?}");
    assert_eq!((next.counts["queued"], next.counts["already_queued"]), (0, 3));
    assert_eq!(r.answered("/v1/customers/"), members.len(), "nobody's attributes were fetched twice");
    assert_eq!(r.aws.depth(&r.aws.queue_url).await, 0);

    // Once the job records have expired (8 days), Mavera's duplicate-name guard still holds.
    for key in &queued_keys {
        r.aws
            .dynamo
            .delete_item()
            .table_name(&r.aws.table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(key.clone()))
            .send()
            .await
            .unwrap();
    }
    let later = r.run(SyncJob::AttributePersonas, week(2)).await;
    assert_eq!(later.counts["queued"], 3);
    r.work().await;
    assert_eq!(r.mavera.persona_names().len(), 3, "no second persona for any cluster");
    for key in &queued_keys {
        let record = r.record(key).await;
        assert_eq!(record.status, JobStatus::Done);
        assert_eq!(record.result.unwrap()["already_existed"], true);
    }
}

#[tokio::test]
async fn a_run_cut_short_by_its_deadline_resumes_and_completes_on_the_next_run() {
    let r = rig(PERSONAS).await;
    let members = seed_segment(&r.cio);

    // About 1.5 s: room for some 15 of the 40 requests at 10 a second.
    let cut = r.run_until(SyncJob::AttributePersonas, wednesday(), Instant::now() + Duration::from_millis(1500)).await;
    assert_eq!(cut.status, RunStatus::Partial, "{cut:?}");
    let read = cut.counts["members_read"];
    assert!((1..36).contains(&read), "part of the segment was counted: {read}");
    assert_eq!(r.aws.depth(&r.aws.queue_url).await, 0, "nothing is queued before the segment is read");
    let answered_before = r.answered("/v1/customers/");
    // What the run received (and cached). A lookup the stand-in answered just as the deadline
    // cut the run short may never have reached it: that one is asked again, as it should be.
    let obtained = cut.counts["attributes_fetched"];
    assert!(obtained > read, "the unfinished page's lookups were made (and cached)");
    assert!(answered_before as u64 >= obtained, "the run counted only lookups Customer.io answered");

    let rest = r.run(SyncJob::AttributePersonas, wednesday() + Duration::from_secs(3600)).await;
    assert_eq!(rest.status, RunStatus::Done, "{rest:?}");
    assert_eq!(rest.counts["members_read"], 36);
    assert_eq!(rest.counts["queued"], 3);
    // The resumed run fetched nobody the first run had obtained: at the stand-in, exactly the
    // others; from the cache, exactly those.
    let answered_after = r.answered("/v1/customers/") - answered_before;
    assert_eq!(answered_after as u64, members.len() as u64 - obtained, "the resumed run fetched nobody twice");
    assert_eq!(
        rest.counts["attributes_cached"],
        obtained - read,
        "the unfinished page's lookups, from the cache: {rest:?}"
    );
    assert_eq!(rest.counts["attributes_fetched"], answered_after as u64, "{rest:?}");
    r.assert_within_rate_limit();
    r.work().await;
    assert_eq!(r.mavera.persona_names().len(), 3);
}

#[tokio::test]
async fn the_persona_job_reuses_what_enrichment_cached() {
    let r = rig(PERSONAS).await;
    seed_segment(&r.cio);
    // A webhook alert enriched cust-01 a moment ago.
    let triggers = Triggers::parse(PERSONAS, "t.toml").unwrap();
    let store = Arc::new(r.store.clone());
    let config = CioConfig::new(r.cio.app_key().to_owned().into(), CioRegion::Us).with_base_url(r.cio.base_url());
    let enricher = CioEnricher::new(Arc::new(CioClient::new(config).unwrap()), store, triggers.enrichment.clone());
    let mut event = shared::domain::Event {
        source: Source::CustomerIo,
        id: EventId::parse("e-1").unwrap(),
        name: "unsubscribed".into(),
        user_id: Some("cust-01".into()),
        fields: json!({"user_id": "cust-01"}).as_object().unwrap().clone(),
    };
    enricher.enrich(&mut event, Instant::now() + JOB_TIME).await;
    assert_eq!(event.fields["customer"]["plan"], "pro");

    r.run(SyncJob::AttributePersonas, wednesday()).await;
    assert_eq!(r.answered("/v1/customers/cust-01/attributes"), 1, "looked up once, by the enrichment");
}

#[tokio::test]
async fn members_without_an_id_are_found_when_the_endpoint_wants_cio_ids_prefixed() {
    let r = rig(PERSONAS).await;
    r.cio.set_cio_id_path(CioIdPath::Prefixed);
    let members = seed_segment(&r.cio);

    let summary = r.run(SyncJob::AttributePersonas, wednesday()).await;

    assert_eq!(summary.status, RunStatus::Done, "{summary:?}");
    assert_eq!(summary.counts["not_found"], 2, "only the two members Customer.io no longer has: {summary:?}");
    assert_eq!(summary.counts["queued"], 3);
    assert!(!summary.message.as_deref().unwrap_or_default().contains("found nobody"), "most were found: {summary:?}");
    let by_cio_id: Vec<String> = r
        .cio
        .requests_to("/v1/customers/")
        .into_iter()
        .filter(|q| q.query_param("id_type").as_deref() == Some("cio_id") && q.status == Some(200))
        .map(|q| q.path)
        .collect();
    let without_id = members.iter().filter(|m| m.id.is_none()).count();
    assert_eq!(by_cio_id.len(), without_id, "each member without an id found once");
    assert!(by_cio_id.iter().all(|p| p.starts_with("/v1/customers/cio_cio")), "{by_cio_id:?}");
    r.assert_within_rate_limit();
}

#[tokio::test]
async fn a_run_whose_lookups_mostly_find_nobody_says_to_check_the_identifier() {
    let r = rig(PERSONAS).await;
    let members: Vec<Person> = (0..8).map(|i| Person::new(&format!("x{i}")).id(&format!("u{i}"))).collect();
    for known in &members[..2] {
        r.cio.add_person(known.clone().attribute("plan_type", "pro"));
    }
    r.cio.add_segment(42, members);

    let summary = r.run(SyncJob::AttributePersonas, wednesday()).await;

    assert_eq!((summary.counts["not_found"], summary.counts["without_attributes"]), (6, 6), "{summary:?}");
    let message = summary.message.clone().unwrap();
    assert!(message.contains("found nobody for 6 of 8 attribute lookups (by id)"), "{message}");
    let mut counts = Metrics::to_stdout("cio-sync", Some("test"), None).counts();
    summary.count_into(&mut counts);
    assert_eq!(counts.get(Metric::CustomersNotFound), 6.0);
}

#[tokio::test]
async fn the_shipped_cluster_persona_body_passes_a_strict_mavera() {
    let mut triggers = Triggers::parse(PERSONAS, "t.toml").unwrap();
    let shipped = Triggers::embedded().unwrap().cio_sync.attribute_personas.persona;
    triggers.cio_sync.attribute_personas.persona = shipped;
    let r = rig_from(triggers).await;
    r.mavera.strict_personas(true);
    seed_segment(&r.cio);

    assert_eq!(r.run(SyncJob::AttributePersonas, wednesday()).await.counts["queued"], 3);
    r.work().await;

    assert_eq!(r.mavera.persona_names().len(), 3, "all three created: none refused");
    for request in r.mavera.requests_to("/personas") {
        let body = request.body.unwrap();
        assert_eq!((&body["pipeline_type"], &body["type"]), (&json!("north_star"), &json!("B2B")));
        assert!(body["description"].as_str().unwrap().contains("people read from Customer.io segment 42"), "{body}");
    }
}

#[tokio::test]
async fn disabled_jobs_read_nothing_and_queue_nothing() {
    let r = rig("").await;
    seed_campaigns(&r.cio);
    seed_segment(&r.cio);
    for job in [SyncJob::CampaignStrategy, SyncJob::AttributePersonas] {
        let summary = r.run(job, wednesday()).await;
        assert_eq!(summary.status, RunStatus::Disabled);
        assert!(summary.message.as_deref().unwrap().contains("enabled = true"), "{summary:?}");
        assert_eq!(summary.to_json()["status"], "disabled");
    }
    assert!(r.cio.requests().is_empty());
    assert!(r.aws.items().await.is_empty());
    assert_eq!(r.aws.depth(&r.aws.queue_url).await, 0);

    // A persona job queued before the job was switched off is skipped, not run.
    let job = JobMessage {
        v: shared::queue::MESSAGE_VERSION,
        key: JobKey::from_stored("cio-sync#attribute-personas#seg42#c0000000000000000"),
        rule: SyncJob::AttributePersonas.rule(),
        job: Job::ClusterPersona(shared::queue::ClusterPersona {
            segment_id: 42,
            cluster_id: "c0000000000000000".into(),
            values: vec![],
            size: 5,
            members: 9,
            distribution: vec![],
            run_window: "2026-03-02_7d".into(),
        }),
    };
    let d = r.worker.process(&job.to_body().unwrap(), Instant::now() + JOB_TIME).await;
    assert_eq!(d, Disposition::Finished(JobStatus::Skipped));
    assert_eq!(r.mavera.count("/personas"), 0);
}

#[tokio::test]
async fn a_dry_run_reports_what_it_would_queue_and_leaves_no_trace_but_the_cache() {
    let r = rig(&format!("{STRATEGY}\n{PERSONAS}")).await;
    seed_campaigns(&r.cio);
    seed_segment(&r.cio);
    let strategy = r
        .sync
        .run(RunRequest { job: SyncJob::CampaignStrategy, dry_run: true }, wednesday(), Instant::now() + JOB_TIME)
        .await;
    assert!(strategy.dry_run);
    let winners: Vec<&Value> = strategy.planned[0]["winners"].as_array().unwrap().iter().map(|w| &w["name"]).collect();
    assert_eq!(winners, [&json!("Winback 30 days"), &json!("Welcome series")]);
    let personas = r
        .sync
        .run(RunRequest { job: SyncJob::AttributePersonas, dry_run: true }, wednesday(), Instant::now() + JOB_TIME)
        .await;
    let labels: Vec<&Value> = personas.planned.iter().map(|p| &p["label"]).collect();
    assert_eq!(
        labels,
        [
            &json!("plan: pro, industry: saas"),
            &json!("plan: free, industry: retail"),
            &json!("plan: team, industry: saas")
        ]
    );
    assert_eq!(personas.planned[0]["persona"], "Customer.io cluster: plan: pro, industry: saas");
    assert_eq!(r.aws.depth(&r.aws.queue_url).await, 0);
    let keys: Vec<String> = r.aws.items().await.iter().filter_map(|i| text(i, "pk")).map(str::to_owned).collect();
    assert!(keys.iter().all(|k| k.starts_with("cache#cio-attributes#")), "{keys:?}");

    // The real run afterwards does the work, and fetches nobody again.
    let fetched = r.answered("/v1/customers/");
    let real = r.run(SyncJob::AttributePersonas, wednesday()).await;
    assert_eq!(real.counts["queued"], 3);
    assert_eq!(r.answered("/v1/customers/"), fetched);
}
