//! `relay doctor --stack NAME`: what the deployed functions run with. CloudFormation's outputs
//! name the two secrets, its parameters give the settings the template passes on
//! (`CioRegion`, `MaveraBaseUrl`, `DryRun`), and each secret is read the way the functions
//! read theirs (`shared::secrets::load`), with the user's own AWS profile.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::Stack;
use shared::config::{Layered, vars};

use super::{Line, Verdict};

const CHECK: &str = "stack";

/// The stack's outputs that name its secrets, what each is called, and the keys it may hold
/// (as the functions that read it accept them).
const SECRETS: [(&str, &str, &[&str]); 2] = [
    ("ApiKeysSecretArn", "API keys secret", &vars::API_KEYS_SECRET_KEYS),
    ("SigningSecretArn", "signing secret", &vars::SIGNING_SECRET_KEYS),
];

/// The stack's parameters that reach the functions as variables.
const PARAMETERS: [(&str, &str); 3] =
    [("CioRegion", vars::CIO_REGION), ("MaveraBaseUrl", vars::MAVERA_BASE_URL), ("DryRun", vars::DRY_RUN)];

/// The stack's secrets' values and its parameters, by variable name, and a line saying what
/// was read (a failed one stops the doctor: nothing else can be checked).
pub async fn read(
    name: &str,
    profile: Option<&str>,
    region: Option<&str>,
    timeout: Duration,
) -> (HashMap<String, String>, Vec<Line>) {
    let sdk = sdk_config(profile, region, timeout).await;
    let where_ = format!("stack {name} in {}", sdk.region().map_or("the default region", |r| r.as_ref()));
    let fail =
        |what: String, fix: &str| (HashMap::new(), vec![Line { check: CHECK, verdict: Verdict::fail(what, fix) }]);

    let described = aws_sdk_cloudformation::Client::new(&sdk).describe_stacks().stack_name(name).send().await;
    let stack = match described {
        Ok(out) => match out.stacks.and_then(|s| s.into_iter().next()) {
            Some(stack) => stack,
            None => return fail(format!("CloudFormation does not know {where_}"), STACK_FIX),
        },
        Err(e) => {
            return fail(format!("CloudFormation could not describe {where_}: {}", DisplayErrorContext(&e)), STACK_FIX);
        }
    };

    let mut values = parameters(&stack);
    let mut read = Vec::new();
    for (output, label, keys) in SECRETS {
        let Some(arn) = output_value(&stack, output) else {
            return fail(
                format!("{where_} has no {output} output"),
                "deploy this version of mavera-relay's template.yaml (it outputs both secrets' ARNs)",
            );
        };
        let pointer = [(vars::SECRETS_ARN, arn.as_str())];
        match shared::secrets::load(&sdk, &pointer, keys).await {
            Ok(Layered { secrets, .. }) => {
                let mut set: Vec<&str> =
                    secrets.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, _)| k.as_str()).collect();
                set.sort_unstable();
                read.push(format!("{label}: {}", if set.is_empty() { "empty".to_owned() } else { set.join(", ") }));
                values.extend(secrets);
            }
            Err(e) => {
                return fail(
                    format!("reading the {label} ({output}): {}", shared::telemetry::chain(&e)),
                    "your AWS identity needs secretsmanager:GetSecretValue (and kms:Decrypt for a customer key) on it, \
                     and the secret must be a JSON object of its keys (docs/deploy.md, Fill in the secrets)",
                );
            }
        }
    }
    let status = stack.stack_status().map_or("unknown status", |s| s.as_str());
    let settings: Vec<String> =
        PARAMETERS.iter().filter_map(|(p, v)| values.get(*v).map(|value| format!("{p}={value}"))).collect();
    let text = format!("{where_} ({status}); {}; {}", read.join("; "), settings.join(", "));
    (values, vec![Line { check: CHECK, verdict: Verdict::Ok(text) }])
}

const STACK_FIX: &str = "check the stack's name (--stack), its region (--region or AWS_REGION) and your AWS credentials \
     (--profile or AWS_PROFILE; they need cloudformation:DescribeStacks)";

async fn sdk_config(profile: Option<&str>, region: Option<&str>, timeout: Duration) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

fn output_value(stack: &Stack, key: &str) -> Option<String> {
    stack
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn parameters(stack: &Stack) -> HashMap<String, String> {
    PARAMETERS
        .iter()
        .filter_map(|(parameter, variable)| {
            let value = stack.parameters().iter().find(|p| p.parameter_key() == Some(*parameter))?.parameter_value()?;
            Some(((*variable).to_owned(), value.to_owned()))
        })
        .collect()
}
