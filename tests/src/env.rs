//! The variables a test rig gives the functions' settings: the stand-ins' and moto's
//! addresses, as a deployment gives the real ones. The rigs then build ingest, the worker and
//! cio-sync with the same `Settings::from_vars` and builders as the Lambda functions.

use std::collections::HashMap;

use shared::config::{Vars, vars};

use crate::aws::Aws;
use crate::cio_standin::CioStandIn;
use crate::cio_track_standin::{self, CioTrackStandIn};
use crate::mavera_standin::MaveraStandIn;
use crate::segment_standin::{self, SegmentStandIn};
use crate::slack_standin::SlackStandIn;
use crate::webhook_receiver::{self, WebhookReceiver};

#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn new() -> Self {
        Env::default()
    }

    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// `MAVERA_API_KEY` and `MAVERA_BASE_URL` of the Mavera stand-in.
    pub fn mavera(self, mavera: &MaveraStandIn) -> Self {
        self.set(vars::MAVERA_API_KEY, mavera.api_key()).set(vars::MAVERA_BASE_URL, mavera.base_url())
    }

    /// `CIO_APP_KEY` and `CIO_APP_API_URL` of the Customer.io stand-in.
    pub fn customerio(self, cio: &CioStandIn) -> Self {
        self.set(vars::CIO_APP_KEY, cio.app_key()).set(vars::CIO_APP_API_URL, cio.base_url())
    }

    pub fn unset(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }

    /// `SLACK_WEBHOOK_URL` of the Slack stand-in.
    pub fn slack(self, slack: &SlackStandIn) -> Self {
        self.set(vars::SLACK_WEBHOOK_URL, slack.webhook_url())
    }

    /// The Track API credentials of the Customer.io Track stand-in, and its host.
    pub fn cio_track(self, cio: &CioTrackStandIn) -> Self {
        self.set(vars::CIO_SITE_ID, cio_track_standin::SITE_ID)
            .set(vars::CIO_TRACK_API_KEY, cio_track_standin::TRACK_KEY)
            .set(vars::CIO_TRACK_API_URL, cio.base_url())
    }

    /// `SEGMENT_WRITE_KEY` and the Segment stand-in's host.
    pub fn segment(self, segment: &SegmentStandIn) -> Self {
        self.set(vars::SEGMENT_WRITE_KEY, segment_standin::WRITE_KEY).set(vars::SEGMENT_API_URL, segment.base_url())
    }

    /// The receiver's URL and secret; loopback, so `RESULT_WEBHOOK_ALLOW_LOCAL=true`.
    pub fn webhook(self, receiver: &WebhookReceiver) -> Self {
        self.set(vars::RESULT_WEBHOOK_URL, receiver.url())
            .set(vars::RESULT_WEBHOOK_SECRET, webhook_receiver::SECRET)
            .set(vars::RESULT_WEBHOOK_ALLOW_LOCAL, "true")
    }

    /// `EVENTS_TABLE` and `JOBS_QUEUE_URL` of a fresh table and queue on moto.
    pub fn aws(self, aws: &Aws) -> Self {
        self.set(vars::EVENTS_TABLE, aws.table.clone()).set(vars::JOBS_QUEUE_URL, aws.queue_url.clone())
    }
}

impl Vars for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}
