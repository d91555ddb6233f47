//! Enrichment in a dry run without `CIO_APP_KEY`: the lookup is reported as unavailable, as
//! the worker treats a failed lookup. The rule runs with `customer.*` unknown (templates
//! read `unknown`) and its `customer.*` conditions unchecked, and the record says so.
//! `relay serve` uses this only when nothing is sent to Mavera; with a Mavera key it
//! refuses to start instead, since the unchecked conditions would let every event through.

use async_trait::async_trait;
use shared::domain::Event;
use shared::worker::{Enrich, Enriched};
use tokio::time::Instant;

pub struct AttributesUnavailable;

#[async_trait]
impl Enrich for AttributesUnavailable {
    async fn enrich(&self, _event: &mut Event, _deadline: Instant) -> Enriched {
        Enriched {
            notes: vec![
                "CIO_APP_KEY is not set, so Customer.io attributes were not looked up: customer.* reads `unknown` and conditions on it were not checked".into(),
            ],
            known: false,
            not_found: false,
        }
    }
}
