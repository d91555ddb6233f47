//! Records through a running `relay serve`: its records API on loopback, with the token it
//! wrote in the data directory.

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use shared::domain::JobKey;
use shared::store::{JobRecord, JobStatus, ListPage, ListQuery, Requeue};

use super::Records;
use super::running::Running;
use crate::console::api::{ListParams, ReplayAnswer, ReplayRequest};
use crate::error::RelayError;

pub struct Remote {
    server: Running,
    http: reqwest::Client,
}

impl Remote {
    pub fn new(server: Running) -> Result<Self, RelayError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(RelayError::HttpClient)?;
        Ok(Remote { server, http })
    }

    async fn call<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<Option<T>, RelayError> {
        let unreachable = |source| RelayError::Unreachable {
            url: self.server.url.clone(),
            source,
            hint: " (relay serve holds the data directory; is it still running?)",
        };
        let response = request.bearer_auth(&self.server.token).send().await.map_err(unreachable)?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(response.json().await.map_err(unreachable)?)),
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(RelayError::ServerRefused { url: self.server.url.clone(), status: status.as_u16(), body })
            }
        }
    }
}

#[async_trait]
impl Records for Remote {
    fn describe(&self) -> String {
        format!("relay serve at {}", self.server.url)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, RelayError> {
        let url = format!("{}/console/api/jobs", self.server.url);
        let page = self.call(self.http.get(url).query(&ListParams::from_query(query))).await?;
        Ok(page.unwrap_or_default())
    }

    async fn get(&self, key: &JobKey) -> Result<Option<JobRecord>, RelayError> {
        let url = format!("{}/console/api/job", self.server.url);
        self.call(self.http.get(url).query(&[("key", key.as_str())])).await
    }

    async fn replay(&self, key: &JobKey, seen: JobStatus) -> Result<Requeue, RelayError> {
        let url = format!("{}/console/api/replay", self.server.url);
        let request = ReplayRequest { key: key.clone(), seen };
        let answer: Option<ReplayAnswer> = self.call(self.http.post(url).json(&request)).await?;
        Ok(answer.map(ReplayAnswer::into_requeue).unwrap_or(Requeue::Changed(None)))
    }
}
