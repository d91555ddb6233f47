//! Every environment variable mavera-relay reads, by name. `template.yaml` sets the same names
//! (a test checks). A foundation module, so that any module may name a variable; reading and
//! checking them is `config`'s job (`config::vars` is this module).

pub const EVENTS_TABLE: &str = "EVENTS_TABLE";
pub const JOBS_QUEUE_URL: &str = "JOBS_QUEUE_URL";
pub const TRIGGERS_PATH: &str = "TRIGGERS_PATH";
pub const SECRETS_ARN: &str = "SECRETS_ARN";
pub const SEGMENT_SHARED_SECRET: &str = "SEGMENT_SHARED_SECRET";
pub const CIO_WEBHOOK_SECRET: &str = "CIO_WEBHOOK_SECRET";
pub const MAVERA_API_KEY: &str = "MAVERA_API_KEY";
pub const CIO_APP_KEY: &str = "CIO_APP_KEY";
pub const SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE: &str = "SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE";
pub const CIO_TIMESTAMP_TOLERANCE_SECS: &str = "CIO_TIMESTAMP_TOLERANCE_SECS";
pub const MAVERA_BASE_URL: &str = "MAVERA_BASE_URL";
pub const DRY_RUN: &str = "DRY_RUN";
pub const MAVE_CONCURRENCY: &str = "MAVE_CONCURRENCY";
pub const CIO_REGION: &str = "CIO_REGION";
pub const CIO_APP_API_URL: &str = "CIO_APP_API_URL";
/// The deployment's name (`prod`, `staging`): the `Stage` dimension of every metric.
pub const STAGE: &str = "STAGE";

/// The previous (or next) signing secret during a rotation: one secret per variable.
pub const SEGMENT_SHARED_SECRET_PREVIOUS: &str = "SEGMENT_SHARED_SECRET_PREVIOUS";
pub const CIO_WEBHOOK_SECRET_PREVIOUS: &str = "CIO_WEBHOOK_SECRET_PREVIOUS";
/// Customer.io source IPs/CIDRs ingest accepts (comma-separated; empty: any).
pub const CIO_ALLOWED_SOURCE_IPS: &str = "CIO_ALLOWED_SOURCE_IPS";
/// The function's configured timeout, for when the runtime gives no usable deadline.
pub const FUNCTION_TIMEOUT_SECS: &str = "FUNCTION_TIMEOUT_SECS";
/// This process's share of Customer.io's 10 App API requests per second per account: the
/// template splits the 10 between the worker's and cio-sync's concurrent invocations.
pub const CIO_REQUESTS_PER_SECOND: &str = "CIO_REQUESTS_PER_SECOND";

/// Destinations (`deliver = [...]` in `triggers.toml`); each in the API keys secret.
/// Slack: the incoming webhook's URL (the URL is the credential).
pub const SLACK_WEBHOOK_URL: &str = "SLACK_WEBHOOK_URL";
/// Customer.io Track API: Site ID and Track API key (not the App API key); region `CIO_REGION`.
pub const CIO_SITE_ID: &str = "CIO_SITE_ID";
pub const CIO_TRACK_API_KEY: &str = "CIO_TRACK_API_KEY";
/// Segment: an HTTP API source's write key, and its workspace's region (`us`/`eu`).
pub const SEGMENT_WRITE_KEY: &str = "SEGMENT_WRITE_KEY";
pub const SEGMENT_REGION: &str = "SEGMENT_REGION";
/// The signed webhook: its https URL, its `whsec_` secret, and the other secret in a rotation.
pub const RESULT_WEBHOOK_URL: &str = "RESULT_WEBHOOK_URL";
pub const RESULT_WEBHOOK_SECRET: &str = "RESULT_WEBHOOK_SECRET";
pub const RESULT_WEBHOOK_SECRET_PREVIOUS: &str = "RESULT_WEBHOOK_SECRET_PREVIOUS";
/// Local development only: lets the webhook go to `http` and loopback or private addresses.
pub const RESULT_WEBHOOK_ALLOW_LOCAL: &str = "RESULT_WEBHOOK_ALLOW_LOCAL";
/// Stand-ins for the Track and Segment APIs (tests, local runs): replace the regions' hosts.
pub const CIO_TRACK_API_URL: &str = "CIO_TRACK_API_URL";
pub const SEGMENT_API_URL: &str = "SEGMENT_API_URL";

/// The signing secret's keys: what ingest verifies webhooks with. Only ingest reads it.
pub const SIGNING_SECRET_KEYS: [&str; 4] =
    [SEGMENT_SHARED_SECRET, SEGMENT_SHARED_SECRET_PREVIOUS, CIO_WEBHOOK_SECRET, CIO_WEBHOOK_SECRET_PREVIOUS];
/// The API keys secret's keys: what the worker and cio-sync call out with (the destinations'
/// credentials included).
pub const API_KEYS_SECRET_KEYS: [&str; 10] = [
    MAVERA_API_KEY,
    CIO_APP_KEY,
    SLACK_WEBHOOK_URL,
    CIO_SITE_ID,
    CIO_TRACK_API_KEY,
    SEGMENT_WRITE_KEY,
    SEGMENT_REGION,
    RESULT_WEBHOOK_URL,
    RESULT_WEBHOOK_SECRET,
    RESULT_WEBHOOK_SECRET_PREVIOUS,
];
/// The keys the stack creates the API keys secret with (its `SecretString` in `template.yaml`,
/// which must never change: an update would overwrite what was stored). The destinations'
/// keys are added to the same secret by hand, when a rule delivers there.
pub const API_KEYS_SECRET_CREATED_WITH: [&str; 2] = [MAVERA_API_KEY, CIO_APP_KEY];
/// Every key a Secrets Manager secret may hold.
pub const SECRET_KEYS: [&str; 14] = [
    SEGMENT_SHARED_SECRET,
    SEGMENT_SHARED_SECRET_PREVIOUS,
    CIO_WEBHOOK_SECRET,
    CIO_WEBHOOK_SECRET_PREVIOUS,
    MAVERA_API_KEY,
    CIO_APP_KEY,
    SLACK_WEBHOOK_URL,
    CIO_SITE_ID,
    CIO_TRACK_API_KEY,
    SEGMENT_WRITE_KEY,
    SEGMENT_REGION,
    RESULT_WEBHOOK_URL,
    RESULT_WEBHOOK_SECRET,
    RESULT_WEBHOOK_SECRET_PREVIOUS,
];
