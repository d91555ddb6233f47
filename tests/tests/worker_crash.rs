//! The worker killed at each step of a job, then started again, as after `kill -9` or a
//! Lambda timeout: each store call of the job is the last thing the process does, either
//! before the call reaches the store or after the store applied it. The job must end `DONE`
//! on the next delivery; a persona is created once; a research call repeats only when the
//! process died between Mavera's answer and recording it (the README's at-least-once).

use std::sync::Arc;
use std::time::Duration;

use relay_tests::faults::{Death, Dying};
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::payloads::segment_track;
use serde_json::json;
use shared::domain::{EventId, JobKey, PersonaName, RuleName, Source};
use shared::mavera::MaveraConfig;
use shared::queue::JobMessage;
use shared::store::{JobStatus, JobStore, MemoryStore};
use shared::triggers::Triggers;
use shared::worker::{Disposition, LEASE_MARGIN, Worker};
use tokio::time::Instant;

/// The first delivery's time: enough to send a Mave call (at least 5 s left) with the 5 s
/// the worker keeps back to record the outcome.
const FIRST_DELIVERY: Duration = Duration::from_secs(11);

struct Case {
    rule: &'static str,
    event: &'static str,
    /// The store call the process dies at; the last one is `finish`.
    at: usize,
    calls: usize,
    death: Death,
}

impl Case {
    fn id(&self) -> String {
        format!("crash-{}-{}-{:?}", self.event, self.at, self.death).to_lowercase()
    }

    fn key(&self) -> JobKey {
        JobKey::for_event(Source::Segment, &EventId::parse(self.id()).unwrap(), &RuleName::parse(self.rule).unwrap())
    }

    fn body(&self) -> String {
        let id = self.id();
        let props = json!({"plan": "pro", "previous_plan": "basic", "new_plan": id});
        let raw = segment_track(&id, self.event, &format!("user-{id}"), props).to_string();
        let event = shared::parse::envelopes(Source::Segment, raw.as_bytes()).unwrap().remove(0).to_event().unwrap();
        JobMessage::event_body(&self.key(), &RuleName::parse(self.rule).unwrap(), &event).unwrap()
    }

    /// Died after Mavera answered and before the outcome was recorded.
    fn died_after_the_call(&self) -> bool {
        self.at == self.calls && self.death == Death::Before
    }
}

fn worker<S: JobStore + shared::worker::WorkerState + 'static>(store: Arc<S>, mavera: &MaveraStandIn) -> Worker {
    let config = MaveraConfig { base_url: mavera.base_url(), ..MaveraConfig::new(mavera.api_key().to_owned().into()) };
    let settings = shared::worker::Settings {
        triggers: Triggers::embedded().unwrap().for_worker(),
        mavera: shared::worker::Mavera::Live(config),
        enrichment: shared::worker::Enrichment::NotNeeded,
        // The shipped rules deliver nowhere.
        deliveries: shared::worker::Deliveries::Print,
    };
    shared::worker::build(settings, store).unwrap()
}

#[tokio::test]
async fn a_worker_killed_at_each_step_loses_no_job_and_makes_no_persona_twice() {
    let mavera = MaveraStandIn::start().await;
    let mut cases = Vec::new();
    for death in [Death::Before, Death::After] {
        // Persona: start, once_per_user, daily cap, finish. Research: start, daily cap, finish.
        for at in 1..=4 {
            cases.push(Case { rule: "segment-trial-started", event: "trial_started", at, calls: 4, death });
        }
        for at in 1..=3 {
            cases.push(Case { rule: "segment-plan-upgraded", event: "plan_upgraded", at, calls: 3, death });
        }
    }
    let store = MemoryStore::new();

    // The first delivery of each job, killed at its step.
    let first = cases.iter().map(|case| {
        let dying = Arc::new(Dying::new(store.clone(), case.at, case.death));
        let worker = worker(dying.clone(), &mavera);
        let body = case.body();
        async move {
            let run = worker.process(&body, Instant::now() + FIRST_DELIVERY);
            let ended = tokio::time::timeout(Duration::from_secs(3), run).await;
            assert!(ended.is_err(), "{}: the process was to die at store call {}", case.id(), case.at);
            assert_eq!(dying.calls(), case.at, "{}", case.id());
        }
    });
    futures::future::join_all(first).await;

    // The message comes back once the dead worker's lease has run out.
    tokio::time::sleep(FIRST_DELIVERY + LEASE_MARGIN + Duration::from_millis(500)).await;
    let restarted = worker(Arc::new(store.clone()), &mavera);
    for case in &cases {
        let disposition = restarted.process(&case.body(), Instant::now() + Duration::from_secs(30)).await;
        assert!(
            matches!(
                disposition,
                Disposition::Finished(JobStatus::Done) | Disposition::AlreadyFinished(JobStatus::Done)
            ),
            "{}: {disposition:?}",
            case.id()
        );
        assert_eq!(store.get(&case.key()).await.unwrap().unwrap().status, JobStatus::Done, "{}", case.id());
    }

    let (mut repeated_research, mut personas_posted) = (0, 0);
    for case in &cases {
        if case.event == "trial_started" {
            let name = PersonaName::for_job(&format!("Segment RT: Trial User — user-{}", case.id()), &case.key());
            let created = mavera.persona_names().iter().filter(|n| *n == name.as_str()).count();
            assert_eq!(created, 1, "{}: one persona", case.id());
            personas_posted += mavera
                .requests_to("/personas")
                .iter()
                .filter(|r| r.body.as_ref().is_some_and(|b| b["name"] == name.as_str()))
                .count();
        } else {
            let calls = mavera
                .requests_to("/mave/chat")
                .iter()
                .filter(|r| r.body.as_ref().is_some_and(|b| b["message"].as_str().unwrap_or("").contains(&case.id())))
                .count();
            let expected = if case.died_after_the_call() { 2 } else { 1 };
            assert_eq!(calls, expected, "{}: research calls", case.id());
            repeated_research += calls - 1;
        }
    }
    eprintln!(
        "worker killed at each step: {} jobs, 0 lost, {} personas created once each ({personas_posted} requests), {repeated_research} research call repeated (died between Mavera's answer and the record)",
        cases.len(),
        cases.iter().filter(|c| c.event == "trial_started").count()
    );
}
