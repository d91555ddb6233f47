//! AWS SDK set-up shared by the functions and the tools: the SDK's own configuration
//! chain (so `AWS_ENDPOINT_URL` points everything at moto locally), plus timeouts that
//! keep every call well inside a function's own timeout — a hung call becomes an error
//! that ingest can answer with 503 instead of a Lambda timeout.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

/// Per attempt, and for a whole call with its retries.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts()).load().await
}

/// The functions' timeouts, also for tests that break AWS calls on purpose.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
