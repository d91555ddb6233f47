//! `relay doctor` as a user runs it: against the Mavera and Customer.io stand-ins, the
//! destinations' stand-ins (Track API region, Slack, a verifying webhook receiver), and, with
//! `--stack`, a CloudFormation stack and its secrets in moto (started by scripts/test).

use std::process::Output;

use aws_sdk_cloudformation::types::Parameter;
use relay_tests::aws::{endpoint, sdk_config};
use relay_tests::cio_standin::CioStandIn;
use relay_tests::cio_track_standin::{CioTrackStandIn, Region, SITE_ID, TRACK_KEY};
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::reply::Reply;
use relay_tests::slack_standin::SlackStandIn;
use relay_tests::webhook_receiver::WebhookReceiver;
use serde_json::json;

use crate::support::{run, text};

/// A Standard Webhooks secret: `whsec_` and the base64 of 32 bytes.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Every peer a fully configured relay talks to.
struct Peers {
    mavera: MaveraStandIn,
    cio: CioStandIn,
    track: CioTrackStandIn,
    slack: SlackStandIn,
    receiver: WebhookReceiver,
}

impl Peers {
    async fn start() -> Self {
        Peers {
            mavera: MaveraStandIn::start().await,
            cio: CioStandIn::start().await,
            track: CioTrackStandIn::start().await,
            slack: SlackStandIn::start().await,
            receiver: WebhookReceiver::start_with(WEBHOOK_SECRET).await,
        }
    }

    /// The environment of a relay configured for all of them.
    fn env(&self) -> Vec<(String, String)> {
        [
            ("MAVERA_API_KEY", self.mavera.api_key().to_owned()),
            ("MAVERA_BASE_URL", self.mavera.base_url()),
            ("CIO_APP_KEY", self.cio.app_key().to_owned()),
            ("CIO_APP_API_URL", self.cio.base_url()),
            ("CIO_SITE_ID", SITE_ID.to_owned()),
            ("CIO_TRACK_API_KEY", TRACK_KEY.to_owned()),
            ("CIO_TRACK_API_URL", self.track.base_url()),
            ("SLACK_WEBHOOK_URL", self.slack.webhook_url()),
            ("RESULT_WEBHOOK_URL", self.receiver.url()),
            ("RESULT_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("RESULT_WEBHOOK_ALLOW_LOCAL", "true".to_owned()),
            ("SEGMENT_SHARED_SECRET", "segment-secret-value".to_owned()),
            ("CIO_WEBHOOK_SECRET", "cio-secret-value".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// Runs `relay doctor` off the runtime's threads (the stand-ins keep serving meanwhile).
async fn doctor(args: &[&str], env: Vec<(String, String)>) -> (Output, String) {
    let args: Vec<String> = std::iter::once("doctor").chain(args.iter().copied()).map(str::to_owned).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&args, &env)
    })
    .await
    .unwrap();
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out, printed)
}

/// The report line of `check`.
fn line<'a>(printed: &'a str, check: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no line for {check}:\n{printed}"))
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
}

fn unset(env: &mut Vec<(String, String)>, name: &str) {
    env.retain(|(k, _)| k != name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_credential_is_proved_with_one_free_call() {
    let peers = Peers::start().await;

    let (out, printed) = doctor(&[], peers.env()).await;

    assert!(out.status.success(), "{printed}");
    for check in ["mavera", "customerio-app", "customerio-track", "signing-segment", "signing-customerio"] {
        assert!(line(&printed, check).starts_with("ok "), "{check}:\n{printed}");
    }
    // Mavera: one free GET, nothing created.
    let asked = peers.mavera.requests();
    assert_eq!(asked.len(), 1, "{printed}");
    assert_eq!((asked[0].method.as_str(), asked[0].path.as_str()), ("GET", "/personas"));
    assert_eq!(asked[0].query.as_deref(), Some("limit=1"));
    assert_eq!(peers.cio.requests().len(), 1, "one App API read");
    assert_eq!(peers.track.requests().len(), 1, "one Track API read");
    assert!(line(&printed, "customerio-track").contains("the account is in us, as CIO_REGION says"), "{printed}");
    // Nothing is posted without --send-test-messages.
    assert!(line(&printed, "slack").starts_with("skip ") && line(&printed, "slack").contains("--send-test-messages"));
    assert!(line(&printed, "result-webhook").starts_with("skip "), "{printed}");
    assert!(peers.slack.posts().is_empty() && peers.receiver.deliveries().is_empty());
    assert!(printed.contains("0 failed"), "{printed}");
    for (name, value) in peers.env() {
        if name.contains("KEY") || name.contains("SECRET") || name == "SLACK_WEBHOOK_URL" {
            assert!(!printed.contains(&value), "{name}'s value was printed:\n{printed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_each_fail_with_their_fix_and_the_exit_code_says_so() {
    let peers = Peers::start().await;
    let mut env = peers.env();
    set(&mut env, "MAVERA_API_KEY", "mvra_live_revoked_key_0000000000000");
    set(&mut env, "CIO_APP_KEY", "a-track-key-by-mistake");
    set(&mut env, "CIO_TRACK_API_KEY", "wrong-track-key");

    let (out, printed) = doctor(&[], env).await;

    assert_eq!(out.status.code(), Some(1), "{printed}");
    let mavera = line(&printed, "mavera");
    assert!(mavera.starts_with("FAIL") && mavera.contains("401 invalid_api_key"), "{mavera}");
    assert!(mavera.contains("fix: set MAVERA_API_KEY in the environment to a valid, unrevoked key"), "{mavera}");
    let app = line(&printed, "customerio-app");
    assert!(app.starts_with("FAIL") && app.contains("(401)") && app.contains("not a Track API key"), "{app}");
    assert!(app.contains("CIO_REGION"), "the region is the other usual cause: {app}");
    let track = line(&printed, "customerio-track");
    assert!(track.starts_with("FAIL") && track.contains("CIO_SITE_ID") && track.contains("(401)"), "{track}");
    for secret in ["mvra_live_revoked_key_0000000000000", "a-track-key-by-mistake", "wrong-track-key"] {
        assert!(!printed.contains(secret), "printed a key:\n{printed}");
    }
    assert!(printed.contains("3 failed"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_in_the_other_region_says_to_set_cio_region() {
    let peers = Peers::start().await;
    // An EU account, asked at the US host.
    let eu_account = CioTrackStandIn::start_for(Region::Eu, Region::Us).await;
    let mut env = peers.env();
    set(&mut env, "CIO_TRACK_API_URL", &eu_account.base_url());

    let (out, printed) = doctor(&[], env.clone()).await;
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let track = line(&printed, "customerio-track");
    assert!(
        track.contains("the account is in eu, but CIO_REGION is us") && track.contains("set CIO_REGION"),
        "{track}"
    );

    // Told the right region, it passes (the App API stand-in serves both).
    set(&mut env, "CIO_REGION", "eu");
    let (out, printed) = doctor(&[], env).await;
    assert!(out.status.success(), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_messages_go_out_only_when_asked_and_the_event_is_signed() {
    let peers = Peers::start().await;

    let (out, printed) = doctor(&["--send-test-messages"], peers.env()).await;

    assert!(out.status.success(), "{printed}");
    assert!(line(&printed, "slack").starts_with("ok "), "{printed}");
    assert!(line(&printed, "result-webhook").starts_with("ok "), "{printed}");
    let posts = peers.slack.messages();
    assert_eq!(posts.len(), 1);
    assert!(posts[0]["text"].as_str().unwrap().contains("relay doctor"), "{posts:?}");
    let events = peers.receiver.messages();
    assert_eq!(events.len(), 1, "the receiver verified the signature");
    assert_eq!(events[0].json()["type"], json!("relay.doctor.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_test_message_says_why() {
    let peers = Peers::start().await;
    let mut env = peers.env();
    set(&mut env, "SLACK_WEBHOOK_URL", &peers.slack.revoked_url());
    set(&mut env, "RESULT_WEBHOOK_SECRET", OTHER_WEBHOOK_SECRET);

    let (out, printed) = doctor(&["--send-test-messages"], env).await;

    assert_eq!(out.status.code(), Some(1), "{printed}");
    let slack = line(&printed, "slack");
    assert!(slack.starts_with("FAIL") && slack.contains("no_service") && slack.contains("revoked"), "{slack}");
    let webhook = line(&printed, "result-webhook");
    assert!(webhook.starts_with("FAIL") && webhook.contains("(401"), "{webhook}");
    assert!(webhook.contains("RESULT_WEBHOOK_SECRET is the secret the receiver verifies with"), "{webhook}");

    // A receiver that asks to be disabled.
    let gone = WebhookReceiver::start_with(WEBHOOK_SECRET).await;
    gone.script([Reply::status(410, "")]);
    let mut env = peers.env();
    set(&mut env, "RESULT_WEBHOOK_URL", &gone.url());
    let (_, printed) = doctor(&["--send-test-messages"], env).await;
    assert!(line(&printed, "result-webhook").contains("410"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_the_rules_need_fails_and_one_they_do_not_is_skipped() {
    let peers = Peers::start().await;
    let mut env = peers.env();
    for name in ["MAVERA_API_KEY", "CIO_APP_KEY", "CIO_SITE_ID", "CIO_TRACK_API_KEY", "SEGMENT_SHARED_SECRET"] {
        unset(&mut env, name);
    }

    let (out, printed) = doctor(&[], env.clone()).await;

    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(line(&printed, "mavera").contains("MAVERA_API_KEY is not set"), "{printed}");
    // The shipped rules enrich with Customer.io attributes.
    assert!(line(&printed, "customerio-app").starts_with("FAIL"), "{printed}");
    assert!(line(&printed, "customerio-track").starts_with("skip "), "no Track destination: {printed}");
    assert!(line(&printed, "signing-segment").contains("4 rule(s) listen to segment"), "{printed}");

    // In a dry run nothing is sent to Mavera, and rules without enrichment need no App API key.
    let rules = std::env::temp_dir().join(format!("doctor-rules-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"r\"\nsource = \"customerio\"\nevent = \"bounced\"\naction = \"research\"\nresearch = { prompt = \"p\" }\n",
    )
    .unwrap();
    set(&mut env, "DRY_RUN", "true");
    let (out, printed) = doctor(&["--triggers", rules.to_str().unwrap()], env).await;
    let _ = std::fs::remove_file(&rules);
    assert!(out.status.success(), "{printed}");
    assert!(line(&printed, "mavera").starts_with("skip ") && line(&printed, "mavera").contains("DRY_RUN=true"));
    assert!(line(&printed, "customerio-app").starts_with("skip "), "{printed}");
    assert!(line(&printed, "signing-segment").starts_with("skip "), "no Segment rule: {printed}");
}

// ----------------------------------------------------------------- --stack, against moto

/// A stack in moto shaped like the template's outputs for existing secrets: the two secrets'
/// ARNs as outputs, and the parameters the functions get.
async fn stack_with(
    name: &str,
    api_keys: serde_json::Value,
    signing: serde_json::Value,
    mavera_url: &str,
    region: &str,
) {
    let sdk = sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut arns = Vec::new();
    for (label, value) in [("api-keys", api_keys), ("signing", signing)] {
        let created = secrets
            .create_secret()
            .name(format!("{name}-{label}"))
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
        arns.push(created.arn.unwrap());
    }
    let template = json!({
        "Parameters": {
            "ExistingApiKeysSecretArn": {"Type": "String"},
            "ExistingSigningSecretArn": {"Type": "String"},
            "MaveraBaseUrl": {"Type": "String"},
            "CioRegion": {"Type": "String"},
            "DryRun": {"Type": "String"},
        },
        "Resources": {"Jobs": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            "ApiKeysSecretArn": {"Value": {"Ref": "ExistingApiKeysSecretArn"}},
            "SigningSecretArn": {"Value": {"Ref": "ExistingSigningSecretArn"}},
        },
    });
    let parameter = |k: &str, v: &str| Parameter::builder().parameter_key(k).parameter_value(v).build();
    aws_sdk_cloudformation::Client::new(&sdk)
        .create_stack()
        .stack_name(name)
        .template_body(template.to_string())
        .parameters(parameter("ExistingApiKeysSecretArn", &arns[0]))
        .parameters(parameter("ExistingSigningSecretArn", &arns[1]))
        .parameters(parameter("MaveraBaseUrl", mavera_url))
        .parameters(parameter("CioRegion", region))
        .parameters(parameter("DryRun", "false"))
        .send()
        .await
        .unwrap();
}

/// The doctor's environment for `--stack`: moto, and only the hosts' test overrides.
fn aws_env(peers: &Peers) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("CIO_APP_API_URL", peers.cio.base_url()),
        ("CIO_TRACK_API_URL", peers.track.base_url()),
        // A developer's own key in the shell must not stand in for the stack's.
        ("MAVERA_API_KEY", "mvra_live_someone_elses_key_000000000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn stack_name(tag: &str) -> String {
    format!("relay-{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacks_secrets_and_parameters_are_what_is_checked() {
    let peers = Peers::start().await;
    let name = stack_name("doctor");
    // (The destinations' keys join this secret with issue 11; until then the functions refuse them.)
    let api_keys = json!({"MAVERA_API_KEY": peers.mavera.api_key(), "CIO_APP_KEY": peers.cio.app_key()});
    let signing = json!({"SEGMENT_SHARED_SECRET": "s", "SEGMENT_SHARED_SECRET_PREVIOUS": "", "CIO_WEBHOOK_SECRET": "c", "CIO_WEBHOOK_SECRET_PREVIOUS": ""});
    stack_with(&name, api_keys, signing, &peers.mavera.base_url(), "us").await;

    let (out, printed) = doctor(&["--stack", &name], aws_env(&peers)).await;

    assert!(out.status.success(), "{printed}");
    let stack = line(&printed, "stack");
    assert!(stack.starts_with("ok ") && stack.contains(&name) && stack.contains("CioRegion=us"), "{stack}");
    assert!(stack.contains("API keys secret: CIO_APP_KEY, MAVERA_API_KEY"), "{stack}");
    assert!(line(&printed, "mavera").starts_with("ok "), "the stack's key, not the shell's: {printed}");
    assert!(peers.mavera.requests().iter().all(|r| r.auth_valid), "only the stack's key was sent");
    assert!(line(&printed, "customerio-app").starts_with("ok "), "{printed}");
    assert!(line(&printed, "signing-customerio").starts_with("ok "), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfilled_stack_secret_says_which_secret_to_fill() {
    let peers = Peers::start().await;
    let name = stack_name("empty");
    // As the stack creates them: every key empty.
    let api_keys = json!({"MAVERA_API_KEY": "", "CIO_APP_KEY": ""});
    let signing = json!({"SEGMENT_SHARED_SECRET": "", "CIO_WEBHOOK_SECRET": ""});
    stack_with(&name, api_keys, signing, &peers.mavera.base_url(), "us").await;

    let (out, printed) = doctor(&["--stack", &name], aws_env(&peers)).await;

    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(line(&printed, "stack").contains("API keys secret: empty"), "{printed}");
    let mavera = line(&printed, "mavera");
    assert!(mavera.contains("put MAVERA_API_KEY in the API keys secret"), "{mavera}");
    assert!(line(&printed, "signing-segment").contains("put SEGMENT_SHARED_SECRET in the signing secret"), "{printed}");
    assert!(peers.mavera.requests().is_empty(), "the shell's key was not used instead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_that_cannot_be_read_is_one_failed_line() {
    let peers = Peers::start().await;

    let (out, printed) = doctor(&["--stack", "no-such-stack-here"], aws_env(&peers)).await;

    assert_eq!(out.status.code(), Some(1), "{printed}");
    let stack = line(&printed, "stack");
    assert!(stack.starts_with("FAIL") && stack.contains("no-such-stack-here") && stack.contains("--region"), "{stack}");
    assert!(peers.mavera.requests().is_empty() && peers.cio.requests().is_empty());
}
