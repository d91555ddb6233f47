//! Where the App API lives and how the client is set up: region (`CIO_REGION`), the App API
//! key (`CIO_APP_KEY`) and the request rate.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;

/// "Most endpoints … are limited to 10 requests per second."
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 10;

/// The data center a Customer.io workspace lives in; App API keys only work in their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CioRegion {
    /// Customer.io's default data center.
    #[default]
    Us,
    Eu,
}

impl CioRegion {
    /// The App API host; paths start with `/v1/`.
    pub fn base_url(self) -> &'static str {
        match self {
            CioRegion::Us => "https://api.customer.io",
            CioRegion::Eu => "https://api-eu.customer.io",
        }
    }
}

impl fmt::Display for CioRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CioRegion::Us => "us",
            CioRegion::Eu => "eu",
        })
    }
}

/// `CIO_REGION` held something other than `us` or `eu`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CIO_REGION must be `us` or `eu` (the data center your Customer.io account is hosted in), not `{0}`")]
pub struct RegionError(String);

impl FromStr for CioRegion {
    type Err = RegionError;

    /// Accepts `us` and `eu` in any case, surrounding whitespace ignored.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "us" => Ok(CioRegion::Us),
            "eu" => Ok(CioRegion::Eu),
            _ => Err(RegionError(value.to_owned())),
        }
    }
}

/// Everything [`CioClient::new`](super::CioClient::new) needs. `Debug` redacts the key.
#[derive(Debug, Clone)]
pub struct CioConfig {
    /// The App API key (bearer token), from `CIO_APP_KEY`.
    pub app_key: SecretString,
    pub region: CioRegion,
    /// Replaces the region's host, e.g. a local stand-in server in tests.
    pub base_url: Option<String>,
    /// Request starts allowed per second across every clone of the client, retries included.
    pub requests_per_second: u32,
}

impl CioConfig {
    /// A configuration for `region` at the documented 10 requests per second.
    pub fn new(app_key: SecretString, region: CioRegion) -> Self {
        CioConfig { app_key, region, base_url: None, requests_per_second: DEFAULT_REQUESTS_PER_SECOND }
    }

    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    pub fn with_requests_per_second(mut self, requests_per_second: u32) -> Self {
        self.requests_per_second = requests_per_second;
        self
    }

    /// The override when set, else the region's host; without a trailing `/`.
    pub fn effective_base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(self.region.base_url()).trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn regions_map_to_their_hosts() {
        assert_eq!("us".parse::<CioRegion>().unwrap().base_url(), "https://api.customer.io");
        assert_eq!("eu".parse::<CioRegion>().unwrap().base_url(), "https://api-eu.customer.io");
        assert_eq!(" EU ".parse::<CioRegion>().unwrap(), CioRegion::Eu);
        assert_eq!(CioRegion::default(), CioRegion::Us);
    }

    #[test]
    fn an_unknown_region_names_the_variable_and_the_choices() {
        let err = "apac".parse::<CioRegion>().unwrap_err().to_string();
        assert!(err.contains("CIO_REGION") && err.contains("`us` or `eu`") && err.contains("`apac`"), "{err}");
        assert!("".parse::<CioRegion>().is_err());
    }

    #[test]
    fn the_override_wins_over_the_region() {
        let key = SecretString::from("k");
        let config = CioConfig::new(key.clone(), CioRegion::Eu);
        assert_eq!(config.effective_base_url(), "https://api-eu.customer.io");
        assert_eq!(config.requests_per_second, 10);
        let config = config.with_base_url("http://127.0.0.1:9/");
        assert_eq!(config.effective_base_url(), "http://127.0.0.1:9");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = CioConfig::new(SecretString::from("sk_live_very_secret"), CioRegion::Us);
        let shown = format!("{config:?}");
        assert!(!shown.contains("very_secret"), "{shown}");
    }
}
