//! `--stack NAME`: the table and queues a deployed stack created, from its outputs
//! (CloudFormation `DescribeStacks`), so nothing else needs configuring.

use std::collections::HashMap;

use crate::error::RelayError;

/// The outputs `relay` uses (named in `template.yaml`).
#[derive(Debug, Clone)]
pub struct StackOutputs {
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

pub const TABLE_OUTPUT: &str = "EventsTableName";
pub const QUEUE_OUTPUT: &str = "JobsQueueUrl";
pub const DLQ_OUTPUT: &str = "JobsDlqUrl";

pub async fn outputs(stack: &str) -> Result<StackOutputs, RelayError> {
    let sdk = crate::aws::sdk_config().await;
    let client = aws_sdk_cloudformation::Client::new(&sdk);
    let described = client.describe_stacks().stack_name(stack).send().await.map_err(|e| RelayError::Stack {
        stack: stack.to_owned(),
        problem: shared::telemetry::chain(&e).to_string(),
    })?;
    let found = described.stacks().first().ok_or_else(|| RelayError::Stack {
        stack: stack.to_owned(),
        problem: "no such stack in this account and region".into(),
    })?;
    let outputs: HashMap<&str, &str> =
        found.outputs().iter().filter_map(|o| Some((o.output_key()?, o.output_value()?))).collect();
    let get = |name: &str| {
        outputs.get(name).map(|v| (*v).to_owned()).ok_or_else(|| RelayError::Stack {
            stack: stack.to_owned(),
            problem: format!(
                "it has no output {name} (is it a mavera-relay stack, deployed from this version's template.yaml?)"
            ),
        })
    };
    Ok(StackOutputs { table: get(TABLE_OUTPUT)?, queue_url: get(QUEUE_OUTPUT)?, dlq_url: get(DLQ_OUTPUT)? })
}
