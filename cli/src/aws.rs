//! AWS settings for the operator commands (`events`, `show`, `replay`, `redrive`,
//! `console`): the SDK's usual chain (environment, `AWS_PROFILE` and `~/.aws`, including
//! `credential_process`; `AWS_ENDPOINT_URL` for moto), with timeouts sized for a person
//! waiting at a terminal rather than for a Lambda's budget.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}
