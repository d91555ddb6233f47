//! Enrichment without `CIO_APP_KEY` (a dry run of `relay serve`): the attributes are
//! unknown, for good. A rule with conditions on `customer.*` is then recorded `SKIPPED` with
//! the reason (its conditions never count as met); one without runs with `customer.*` at its
//! defaults, and the record says so.

use async_trait::async_trait;
use shared::domain::Event;
use shared::worker::{Enrich, Enriched, Unknown};
use tokio::time::Instant;

pub struct AttributesUnavailable;

#[async_trait]
impl Enrich for AttributesUnavailable {
    async fn enrich(&self, _event: &mut Event, _deadline: Instant) -> Enriched {
        let reason = "CIO_APP_KEY is not set, so Customer.io attributes cannot be looked up".to_owned();
        Enriched { notes: vec![reason.clone()], known: false, unknown: Some(Unknown { reason, transient: false }) }
    }
}
