//! `template.yaml` against the code, so the two cannot drift apart: the environment each
//! function gets, the table's key and TTL attribute, each secret's keys, the worker's queue
//! wiring and timeouts, IAM scoped to named resources, the alarms and the dashboard against
//! the metrics the code emits, the release and state settings, and samconfig.toml and the
//! docs against the template. The template is read as plain YAML (CloudFormation's `!Ref`,
//! `!GetAtt`, `!Sub`, `!If` stay tagged nodes), so this needs neither AWS nor the SAM CLI;
//! `scripts/check-template` lints the same file and creates it in moto's CloudFormation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use saphyr::{LoadableYamlNode, YamlOwned as Yaml};
use shared::config::vars;
use shared::domain::Source;

const TEMPLATE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

pub(crate) static TEMPLATE: LazyLock<Yaml> = LazyLock::new(|| {
    let text = std::fs::read_to_string(TEMPLATE_PATH).unwrap_or_else(|e| panic!("reading {TEMPLATE_PATH}: {e}"));
    let mut docs = Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("{TEMPLATE_PATH} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "template.yaml holds one YAML document");
    docs.remove(0)
});

/// Every name in `shared::config::vars`. A constant renamed there stops this compiling.
const KNOWN_VARS: [&str; 30] = [
    vars::EVENTS_TABLE,
    vars::JOBS_QUEUE_URL,
    vars::TRIGGERS_PATH,
    vars::SECRETS_ARN,
    vars::SEGMENT_SHARED_SECRET,
    vars::CIO_WEBHOOK_SECRET,
    vars::MAVERA_API_KEY,
    vars::CIO_APP_KEY,
    vars::SEGMENT_ALLOW_FIRST_EVENT_SIGNATURE,
    vars::CIO_TIMESTAMP_TOLERANCE_SECS,
    vars::MAVERA_BASE_URL,
    vars::DRY_RUN,
    vars::MAVE_CONCURRENCY,
    vars::CIO_REGION,
    vars::CIO_APP_API_URL,
    vars::STAGE,
    vars::FUNCTION_TIMEOUT_SECS,
    vars::CIO_ALLOWED_SOURCE_IPS,
    vars::CIO_REQUESTS_PER_SECOND,
    vars::SLACK_WEBHOOK_URL,
    vars::CIO_SITE_ID,
    vars::CIO_TRACK_API_KEY,
    vars::SEGMENT_WRITE_KEY,
    vars::SEGMENT_REGION,
    vars::RESULT_WEBHOOK_URL,
    vars::RESULT_WEBHOOK_SECRET,
    vars::RESULT_WEBHOOK_SECRET_PREVIOUS,
    vars::RESULT_WEBHOOK_ALLOW_LOCAL,
    vars::CIO_TRACK_API_URL,
    vars::SEGMENT_API_URL,
];

// ----------------------------------------------------------------- reading the template

pub(crate) fn get<'a>(node: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    node.as_mapping_get(key)
}

/// The node at `path`, or a panic naming the path.
pub(crate) fn at<'a>(node: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().enumerate().fold(node, |node, (i, key)| {
        get(node, key).unwrap_or_else(|| panic!("template.yaml has no {}", path[..=i].join(".")))
    })
}

pub(crate) fn text<'a>(node: &'a Yaml, path: &[&str]) -> &'a str {
    let node = at(node, path);
    node.as_str().unwrap_or_else(|| panic!("{} is not a string: {node:?}", path.join(".")))
}

pub(crate) fn integer(node: &Yaml, path: &[&str]) -> i64 {
    let node = at(node, path);
    node.as_integer().unwrap_or_else(|| panic!("{} is not a number: {node:?}", path.join(".")))
}

pub(crate) fn resource(name: &str) -> &'static Yaml {
    at(&TEMPLATE, &["Resources", name])
}

pub(crate) fn properties(name: &str) -> &'static Yaml {
    at(resource(name), &["Properties"])
}

/// The intrinsic function of a node, short form (`!GetAtt X.Arn`) or long form
/// (`{"Fn::GetAtt": [X, Arn]}`), as (`"GetAtt"`, argument).
pub(crate) fn intrinsic(node: &Yaml) -> Option<(&str, &Yaml)> {
    match node {
        Yaml::Tagged(tag, inner) if tag.handle == "!" => Some((tag.suffix.as_str(), inner)),
        Yaml::Mapping(map) if map.len() == 1 => {
            let (key, value) = map.iter().next()?;
            let key = key.as_str()?;
            let name = key.strip_prefix("Fn::").or((key == "Ref").then_some("Ref"))?;
            Some((name, value))
        }
        _ => None,
    }
}

/// `!Ref X` → `X`.
pub(crate) fn reference(node: &Yaml) -> Option<&str> {
    match intrinsic(node)? {
        ("Ref", name) => name.as_str(),
        _ => None,
    }
}

/// `!GetAtt X.Arn` → `X.Arn`.
pub(crate) fn get_att(node: &Yaml) -> Option<String> {
    match intrinsic(node)? {
        ("GetAtt", Yaml::Sequence(parts)) => Some(parts.iter().filter_map(Yaml::as_str).collect::<Vec<_>>().join(".")),
        ("GetAtt", name) => name.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Every plain string in a node, through intrinsics (`!If [c, a, b]` gives a and b).
pub(crate) fn strings(node: &Yaml, out: &mut Vec<String>) {
    match node {
        Yaml::Tagged(_, inner) => strings(inner, out),
        Yaml::Sequence(items) => items.iter().for_each(|n| strings(n, out)),
        Yaml::Mapping(map) => map.values().for_each(|n| strings(n, out)),
        other => out.extend(other.as_str().map(str::to_owned)),
    }
}

/// The serverless functions by their binary (`Metadata.BuildProperties.Binary`).
fn functions() -> BTreeMap<String, (&'static str, &'static Yaml)> {
    let resources = at(&TEMPLATE, &["Resources"]).as_mapping().expect("Resources is a mapping");
    resources
        .iter()
        .filter(|(_, r)| get(r, "Type").and_then(Yaml::as_str) == Some("AWS::Serverless::Function"))
        .map(|(name, r)| {
            let name = name.as_str().expect("resource names are strings");
            (text(r, &["Metadata", "BuildProperties", "Binary"]).to_owned(), (name, r))
        })
        .collect()
}

fn function(binary: &str) -> &'static Yaml {
    functions().remove(binary).unwrap_or_else(|| panic!("template.yaml has no function with Binary: {binary}")).1
}

/// A function's environment, with the Globals' under it as SAM merges them.
fn environment(binary: &str) -> BTreeMap<String, &'static Yaml> {
    let mut env = BTreeMap::new();
    let globals = get(&TEMPLATE, "Globals").and_then(|g| get(g, "Function"));
    for source in [globals, Some(at(function(binary), &["Properties"]))].into_iter().flatten() {
        if let Some(variables) = get(source, "Environment").and_then(|e| get(e, "Variables")) {
            for (name, value) in variables.as_mapping().expect("Variables is a mapping") {
                env.insert(name.as_str().expect("variable names are strings").to_owned(), value);
            }
        }
    }
    env
}

/// A number a function sets in its environment (`"5"`).
fn env_number(binary: &str, name: &str) -> i64 {
    let env = environment(binary);
    let value = env.get(name).unwrap_or_else(|| panic!("{binary} does not set {name}"));
    value
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{binary}'s {name} is not a number: {value:?}"))
}

// ----------------------------------------------------------------- the checks

#[test]
fn the_three_functions_build_from_the_workspace_binaries() {
    let binaries: BTreeSet<String> = functions().into_keys().collect();
    assert_eq!(binaries, BTreeSet::from(["cio-sync".into(), "ingest".into(), "worker".into()]));
    let globals = at(&TEMPLATE, &["Globals", "Function"]);
    assert_eq!(text(globals, &["Runtime"]), "provided.al2023");
    assert_eq!(text(globals, &["Handler"]), "bootstrap");
    assert_eq!(text(globals, &["LoggingConfig", "LogFormat"]), "JSON", "the functions log JSON in Lambda");
    for binary in &binaries {
        let f = function(binary);
        assert_eq!(text(f, &["Metadata", "BuildMethod"]), "rust-cargolambda");
        // The binary is the package of the same name under functions/.
        let manifest = format!("{}/../functions/{binary}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{manifest}: {e}"));
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "functions/{binary} is not the package {binary}");
    }
}

#[test]
fn every_variable_the_template_sets_is_one_the_code_reads() {
    for binary in functions().keys() {
        for name in environment(binary).keys() {
            assert!(
                KNOWN_VARS.contains(&name.as_str()),
                "{binary} sets {name}, which shared::config::vars does not know"
            );
            assert!(
                !vars::SECRET_KEYS.contains(&name.as_str()),
                "{binary} sets the secret {name} as a plain variable; it belongs in the Secrets Manager secret"
            );
            assert_ne!(
                name,
                vars::TRIGGERS_PATH,
                "in AWS the rules are compiled in; {binary} must not set TRIGGERS_PATH"
            );
        }
    }
}

#[test]
fn each_function_gets_the_variables_it_needs() {
    let needs: [(&str, &[&str]); 3] = [
        ("ingest", &[vars::EVENTS_TABLE, vars::JOBS_QUEUE_URL, vars::SECRETS_ARN]),
        (
            "worker",
            &[
                vars::EVENTS_TABLE,
                vars::SECRETS_ARN,
                vars::MAVERA_BASE_URL,
                vars::DRY_RUN,
                vars::MAVE_CONCURRENCY,
                vars::CIO_REGION,
                vars::CIO_REQUESTS_PER_SECOND,
            ],
        ),
        (
            "cio-sync",
            &[
                vars::EVENTS_TABLE,
                vars::JOBS_QUEUE_URL,
                vars::SECRETS_ARN,
                vars::CIO_REGION,
                vars::CIO_REQUESTS_PER_SECOND,
            ],
        ),
    ];
    for (binary, needed) in needs {
        let env = environment(binary);
        for name in needed {
            assert!(env.contains_key(*name), "{binary} needs {name}");
        }
        // And they point at this stack's resources.
        if let Some(table) = env.get(vars::EVENTS_TABLE) {
            assert_eq!(reference(table), Some("EventsTable"), "{binary}'s EVENTS_TABLE");
        }
        if let Some(queue) = env.get(vars::JOBS_QUEUE_URL) {
            assert_eq!(reference(queue), Some("JobsQueue"), "{binary}'s JOBS_QUEUE_URL (Ref of a queue is its URL)");
        }
        // Each function reads the one secret it may: the stack's, or the one given.
        let mut secret = Vec::new();
        intrinsic(env[vars::SECRETS_ARN]).expect("SECRETS_ARN is an !If").1.as_vec().expect("!If takes a list")[1..]
            .iter()
            .for_each(|branch| secret.extend(reference(branch).map(str::to_owned)));
        let expected = match binary {
            "ingest" => ["SigningSecret", "ExistingSigningSecretArn"],
            _ => ["ApiKeysSecret", "ExistingApiKeysSecretArn"],
        };
        assert_eq!(secret, expected, "{binary}'s SECRETS_ARN: its own secret, the stack's or the given one");

        // The timeout reaches the code, for when the runtime's deadline is unusable.
        let timeout = integer(function(binary), &["Properties", "Timeout"]);
        assert_eq!(env_number(binary, vars::FUNCTION_TIMEOUT_SECS), timeout, "{binary}'s FUNCTION_TIMEOUT_SECS");
        // And the stage, for the metrics' Stage dimension.
        assert_eq!(env.get(vars::STAGE).and_then(|v| reference(v)), Some("Stage"), "{binary}'s STAGE");
    }
    let ingest = environment("ingest");
    assert_eq!(ingest.get(vars::CIO_ALLOWED_SOURCE_IPS).and_then(|v| reference(v)), Some("CioAllowedSourceIps"));
    assert_eq!(
        text(&TEMPLATE, &["Parameters", "CioAllowedSourceIps", "Default"]),
        "",
        "the allow-list is off by default"
    );
}

#[test]
fn the_customerio_tolerance_defaults_to_and_stops_at_what_the_code_accepts() {
    // Customer.io retries with (perhaps) the first signature for 7 days: a deployed stack must
    // accept what the code accepts, and nothing the code would cut.
    let longest = shared::verify::customerio::DEFAULT_MAX_AGE.as_secs() as i64;
    let parameter = at(&TEMPLATE, &["Parameters", "CioTimestampToleranceSecs"]);
    assert_eq!(integer(parameter, &["Default"]), longest, "CioTimestampToleranceSecs' default");
    assert_eq!(integer(parameter, &["MaxValue"]), longest, "CioTimestampToleranceSecs' maximum");
    assert!(integer(parameter, &["MinValue"]) >= 1, "the code refuses 0");
    let ingest = environment("ingest");
    assert_eq!(
        ingest.get(vars::CIO_TIMESTAMP_TOLERANCE_SECS).and_then(|v| reference(v)),
        Some("CioTimestampToleranceSecs")
    );
}

/// A parameter's default as the docs write it: `none (required)`, `empty`, or the value.
fn scalar_text(node: &Yaml) -> String {
    node.as_str()
        .map(str::to_owned)
        .or_else(|| node.as_integer().map(|n| n.to_string()))
        .or_else(|| node.as_bool().map(|b| b.to_string()))
        .unwrap_or_else(|| panic!("a default that is not a scalar: {node:?}"))
}

#[test]
fn the_docs_parameter_table_shows_the_template_defaults() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md")).unwrap();
    let table = docs.split("| Parameter | Default | Notes |").nth(1).expect("docs/deploy.md has a parameter table");
    let parameters = at(&TEMPLATE, &["Parameters"]);
    let mut rows = 0;
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, default) = (cells[1], cells[2]);
        let expected = match default {
            "none (required)" => None,
            "empty" => Some(String::new()),
            quoted => Some(quoted.trim_matches('`').to_owned()),
        };
        for name in names.split(',').map(|n| n.trim().trim_matches('`')) {
            let parameter = get(parameters, name).unwrap_or_else(|| panic!("the docs list {name}, not a parameter"));
            let actual = get(parameter, "Default").map(scalar_text);
            assert_eq!(actual, expected, "docs/deploy.md's default for {name}");
            rows += 1;
        }
    }
    assert!(rows >= 20, "read only {rows} parameters from the docs' table");
}

#[test]
fn the_table_matches_the_store() {
    let table = properties("EventsTable");
    assert_eq!(text(resource("EventsTable"), &["Type"]), "AWS::DynamoDB::Table");
    let keys = at(table, &["KeySchema"]).as_vec().expect("KeySchema is a list");
    assert_eq!(keys.len(), 1, "the store uses a partition key only");
    assert_eq!(text(&keys[0], &["AttributeName"]), shared::store::KEY_ATTRIBUTE);
    assert_eq!(text(&keys[0], &["KeyType"]), "HASH");
    let attributes = at(table, &["AttributeDefinitions"]).as_vec().expect("AttributeDefinitions is a list");
    let defined: Vec<(&str, &str)> =
        attributes.iter().map(|a| (text(a, &["AttributeName"]), text(a, &["AttributeType"]))).collect();
    assert_eq!(
        defined,
        vec![
            (shared::store::KEY_ATTRIBUTE, "S"),
            (shared::store::DAY_ATTRIBUTE, "S"),
            (shared::store::RECEIVED_ATTRIBUTE, "S")
        ],
        "the table key and the listing index's keys, all strings"
    );
    assert_eq!(text(table, &["TimeToLiveSpecification", "AttributeName"]), shared::store::TTL_ATTRIBUTE);
    assert_eq!(at(table, &["TimeToLiveSpecification", "Enabled"]).as_bool(), Some(true));
    assert_eq!(text(table, &["BillingMode"]), "PAY_PER_REQUEST");
}

#[test]
fn the_listing_index_is_the_one_the_store_queries() {
    let indexes = at(properties("EventsTable"), &["GlobalSecondaryIndexes"]).as_vec().expect("a list of indexes");
    assert_eq!(indexes.len(), 1, "one index: the listing's");
    let index = &indexes[0];
    assert_eq!(text(index, &["IndexName"]), shared::store::LISTING_INDEX);
    let keys: Vec<(&str, &str)> = at(index, &["KeySchema"])
        .as_vec()
        .expect("KeySchema is a list")
        .iter()
        .map(|k| (text(k, &["AttributeName"]), text(k, &["KeyType"])))
        .collect();
    assert_eq!(keys, vec![(shared::store::DAY_ATTRIBUTE, "HASH"), (shared::store::RECEIVED_ATTRIBUTE, "RANGE")]);
    assert_eq!(text(index, &["Projection", "ProjectionType"]), "INCLUDE", "a listing reads the index only");
    let mut projected = Vec::new();
    strings(at(index, &["Projection", "NonKeyAttributes"]), &mut projected);
    assert_eq!(projected, shared::store::LISTING_PROJECTION, "exactly what a listing line shows");
}

#[test]
fn the_worker_takes_the_jobs_queue_and_reports_partial_failures() {
    let events = at(function("worker"), &["Properties", "Events"]).as_mapping().expect("Events is a mapping");
    let sqs: Vec<&Yaml> = events.values().filter(|e| get(e, "Type").and_then(Yaml::as_str) == Some("SQS")).collect();
    assert_eq!(sqs.len(), 1, "the worker has one SQS event source");
    let event = at(sqs[0], &["Properties"]);
    assert_eq!(get_att(at(event, &["Queue"])).as_deref(), Some("JobsQueue.Arn"));
    let types = at(event, &["FunctionResponseTypes"]).as_vec().expect("FunctionResponseTypes is a list");
    assert!(
        types.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures")),
        "the worker returns batchItemFailures"
    );
    let batch = integer(event, &["BatchSize"]);
    assert!((1..=10).contains(&batch), "BatchSize {batch}");

    // At most Mavera's documented Mave concurrency across the whole fleet.
    let fleet = integer(event, &["ScalingConfig", "MaximumConcurrency"]);
    assert!(fleet >= 2, "SQS allows MaximumConcurrency 2 at least");
    let per_process = env_number("worker", vars::MAVE_CONCURRENCY);
    assert!(
        fleet * per_process <= shared::mavera::DEFAULT_MAVE_CONCURRENCY as i64,
        "{fleet} workers x MAVE_CONCURRENCY {per_process} exceeds Mavera's cap of {}",
        shared::mavera::DEFAULT_MAVE_CONCURRENCY
    );

    // Nothing else feeds the worker.
    assert_eq!(events.len(), 1, "the worker has no other triggers");
}

/// Who shares Customer.io's per-account App API budget, as the template runs them: for each
/// function, how many of its invocations can run at once and the rate each one is given.
pub(crate) struct CioShare {
    pub binary: &'static str,
    pub processes: i64,
    pub per_second: i64,
}

pub(crate) fn cio_budget() -> Vec<CioShare> {
    let worker = at(function("worker"), &["Properties", "Events"]).as_mapping().expect("Events is a mapping");
    let worker_fleet = worker
        .values()
        .filter(|e| get(e, "Type").and_then(Yaml::as_str) == Some("SQS"))
        .map(|e| integer(e, &["Properties", "ScalingConfig", "MaximumConcurrency"]))
        .sum();
    // cio-sync runs once per schedule firing: at most one run per schedule at a time.
    let cio_sync = at(function("cio-sync"), &["Properties", "Events"]).as_mapping().expect("Events is a mapping");
    let runs = cio_sync.values().filter(|e| get(e, "Type").and_then(Yaml::as_str) == Some("ScheduleV2")).count();
    vec![
        CioShare {
            binary: "worker",
            processes: worker_fleet,
            per_second: env_number("worker", vars::CIO_REQUESTS_PER_SECOND),
        },
        CioShare {
            binary: "cio-sync",
            processes: runs as i64,
            per_second: env_number("cio-sync", vars::CIO_REQUESTS_PER_SECOND),
        },
    ]
}

#[test]
fn every_process_together_stays_within_customerios_ten_a_second() {
    let budget = cio_budget();
    let total: i64 = budget.iter().map(|s| s.processes * s.per_second).sum();
    let shown: Vec<String> =
        budget.iter().map(|s| format!("{} {} x {}/s", s.binary, s.processes, s.per_second)).collect();
    assert!(
        total <= i64::from(shared::customerio::DEFAULT_REQUESTS_PER_SECOND),
        "{} = {total} App API requests a second, over Customer.io's 10 per account",
        shown.join(" + ")
    );
    assert!(budget.iter().all(|s| s.processes >= 1 && s.per_second >= 1), "{shown:?}");
}

#[test]
fn the_queue_outlasts_the_worker_and_drains_into_the_dlq() {
    let queue = properties("JobsQueue");
    let worker_timeout = integer(function("worker"), &["Properties", "Timeout"]);
    let visibility = integer(queue, &["VisibilityTimeout"]);
    assert!(visibility >= 6 * worker_timeout, "visibility {visibility} s < 6 x the worker's {worker_timeout} s");

    assert_eq!(get_att(at(queue, &["RedrivePolicy", "deadLetterTargetArn"])).as_deref(), Some("JobsDlq.Arn"));
    let receives = integer(queue, &["RedrivePolicy", "maxReceiveCount"]);
    assert!((2..=10).contains(&receives), "maxReceiveCount {receives}");
    assert!(get(properties("JobsDlq"), "RedrivePolicy").is_none(), "the DLQ is the end of the line");
    // A message keeps its first enqueue time in the DLQ, so the DLQ must keep it longer.
    let retention = |q| integer(properties(q), &["MessageRetentionPeriod"]);
    assert!(retention("JobsDlq") > retention("JobsQueue"));

    // The alarm watches the DLQ.
    let alarm = properties("JobsDlqAlarm");
    assert_eq!(text(alarm, &["Namespace"]), "AWS/SQS");
    let dimensions = at(alarm, &["Dimensions"]).as_vec().expect("Dimensions is a list");
    assert_eq!(get_att(at(&dimensions[0], &["Value"])).as_deref(), Some("JobsDlq.QueueName"));
}

#[test]
fn ingest_outlasts_its_sdk_calls_and_serves_the_webhook_routes() {
    // Claim, send and release, each bounded by the SDK's operation timeout.
    let timeout = integer(function("ingest"), &["Properties", "Timeout"]);
    let slowest = 3 * shared::aws::OPERATION_TIMEOUT.as_secs() as i64;
    assert!(timeout >= slowest, "ingest's Timeout {timeout} s < {slowest} s");

    let events = at(function("ingest"), &["Properties", "Events"]).as_mapping().expect("Events is a mapping");
    let routes: BTreeSet<(String, String)> = events
        .values()
        .map(|e| {
            assert_eq!(text(e, &["Type"]), "HttpApi");
            assert_eq!(reference(at(e, &["Properties", "ApiId"])), Some("HttpApi"));
            (text(e, &["Properties", "Method"]).to_owned(), text(e, &["Properties", "Path"]).to_owned())
        })
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from([("POST".into(), "/webhooks/{source}".into()), ("GET".into(), "/healthz".into())])
    );

    // The URLs to paste into each sender name a source the router accepts, with or
    // without the custom domain.
    for (output, source) in [("SegmentWebhookUrl", Source::Segment), ("CustomerIoWebhookUrl", Source::CustomerIo)] {
        let url = at(&TEMPLATE, &["Outputs", output, "Value"]);
        let (name, branches) = intrinsic(url).expect("the URL is an !If");
        assert_eq!(name, "If", "{output}");
        let branches = branches.as_vec().expect("!If takes a list");
        assert_eq!(branches[0].as_str(), Some("HasCustomDomain"), "{output}");
        for branch in &branches[1..] {
            let (_, url) = intrinsic(branch).expect("each URL is a !Sub");
            let path = url.as_str().expect("a !Sub string").rsplit_once("/webhooks/").map(|(_, s)| s);
            assert_eq!(path.map(Source::parse).and_then(Result::ok), Some(source), "{output}");
        }
    }
}

#[test]
fn each_secret_holds_exactly_its_keys_and_no_values() {
    let mut all = BTreeSet::new();
    // The API keys secret is created with its first two keys only: the destinations' keys are
    // added by hand, as a changed SecretString would overwrite the stored values on update.
    for (name, keys, created_with) in [
        ("SigningSecret", &vars::SIGNING_SECRET_KEYS[..], &vars::SIGNING_SECRET_KEYS[..]),
        ("ApiKeysSecret", &vars::API_KEYS_SECRET_KEYS[..], &vars::API_KEYS_SECRET_CREATED_WITH[..]),
    ] {
        let secret = properties(name);
        let value: serde_json::Value =
            serde_json::from_str(text(secret, &["SecretString"])).expect("SecretString is JSON");
        let object = value.as_object().expect("SecretString is a JSON object");
        let found: BTreeSet<String> = object.keys().cloned().collect();
        assert_eq!(found, created_with.iter().map(|k| k.to_string()).collect(), "{name}'s keys");
        assert!(created_with.iter().all(|k| keys.contains(k)), "{name} is created with keys it may hold");
        for (key, value) in object {
            assert_eq!(
                value, "",
                "{name}.{key} must start empty: the user fills it in, and a template value is public"
            );
        }
        all.extend(keys.iter().map(|k| k.to_string()));
        // Kept on a stack delete: the values were typed in by hand.
        assert_eq!(text(resource(name), &["DeletionPolicy"]), "Retain", "{name}");
    }
    assert_eq!(all, vars::SECRET_KEYS.iter().map(|k| k.to_string()).collect(), "the two secrets hold every key");
    // Every key added by hand is named where the user reads how to fill the secret.
    let deploy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md")).unwrap();
    for key in vars::API_KEYS_SECRET_KEYS.iter().filter(|k| !vars::API_KEYS_SECRET_CREATED_WITH.contains(k)) {
        assert!(deploy.contains(key), "docs/deploy.md does not say how to add {key} to the API keys secret");
    }
    // Nothing that looks like a real Mavera key anywhere in the template.
    let raw = std::fs::read_to_string(TEMPLATE_PATH).unwrap();
    assert!(!raw.contains("mvra_live_"), "template.yaml must not contain a Mavera key");
}

#[test]
fn iam_names_its_resources() {
    // Explicit roles everywhere: SAM then adds no managed policies (those grant on "*").
    for (binary, (name, f)) in functions() {
        assert!(get(at(f, &["Properties"]), "Role").is_some(), "{binary} ({name}) needs an explicit Role");
        assert!(get(at(f, &["Properties"]), "Policies").is_none(), "{binary} ({name}): put permissions in its Role");
    }
    let mut statements = 0;
    let mut check = |owner: &str, statement: &Yaml| {
        statements += 1;
        let mut values = Vec::new();
        for key in ["Resource", "NotResource"] {
            if let Some(v) = get(statement, key) {
                strings(v, &mut values);
            }
        }
        assert!(!values.is_empty() || get(statement, "Principal").is_some(), "{owner}: a statement without a Resource");
        assert!(!values.iter().any(|v| v.trim() == "*"), "{owner}: a statement grants on Resource \"*\"");
        let mut actions = Vec::new();
        if let Some(v) = get(statement, "Action") {
            strings(v, &mut actions);
        }
        assert!(!actions.iter().any(|a| a == "*" || a.ends_with(":*")), "{owner}: a wildcard action in {actions:?}");
    };
    fn walk(owner: &str, node: &Yaml, check: &mut dyn FnMut(&str, &Yaml)) {
        match node {
            Yaml::Mapping(map) => {
                for (key, value) in map {
                    if key.as_str() == Some("PolicyDocument") {
                        let list = get(value, "Statement").expect("a PolicyDocument has a Statement");
                        match list.as_vec() {
                            Some(items) => items.iter().for_each(|s| check(owner, s)),
                            None => check(owner, list),
                        }
                    }
                    walk(owner, value, check);
                }
            }
            Yaml::Sequence(items) => items.iter().for_each(|n| walk(owner, n, check)),
            Yaml::Tagged(_, inner) => walk(owner, inner, check),
            _ => {}
        }
    }
    for (name, r) in at(&TEMPLATE, &["Resources"]).as_mapping().unwrap() {
        walk(name.as_str().unwrap(), r, &mut check);
    }
    assert!(statements >= 6, "found only {statements} IAM statements: is the walk still finding them?");
}

#[test]
fn the_schedules_are_off_by_default_and_select_their_job() {
    let events = at(function("cio-sync"), &["Properties", "Events"]).as_mapping().expect("Events is a mapping");
    let mut jobs = BTreeSet::new();
    for event in events.values() {
        let props = at(event, &["Properties"]);
        let input: serde_json::Value = serde_json::from_str(text(props, &["Input"])).expect("Input is JSON");
        jobs.insert(input["job"].as_str().expect("Input names a job").to_owned());
        // State: !If [<Job>On, ENABLED, DISABLED], and the condition's parameter defaults to false.
        let (name, args) = intrinsic(at(props, &["State"])).expect("State is an !If");
        assert_eq!(name, "If");
        let args = args.as_vec().expect("!If takes a list");
        let condition = at(&TEMPLATE, &["Conditions", args[0].as_str().expect("a condition name")]);
        let (_, equals) = intrinsic(condition).expect("the condition is an !Equals");
        let parameter =
            reference(&equals.as_vec().expect("!Equals takes a list")[0]).expect("!Equals compares a parameter");
        assert_eq!(text(&TEMPLATE, &["Parameters", parameter, "Default"]), "false", "{parameter} must default to off");
    }
    assert_eq!(jobs, BTreeSet::from(["attribute-personas".into(), "campaign-strategy".into()]));
}

/// The sample events under `events/` (scripts/sample-events writes them; docs/deploy.md
/// invokes the functions with them) are what the code accepts: signed with the local
/// secrets scripts/local-aws sets, matching a shipped rule, and the worker's SQS body is the
/// exact job ingest queues for the Segment sample.
mod samples {
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue};
    use serde_json::Value;
    use shared::domain::{JobKey, Source};
    use shared::queue::JobMessage;
    use shared::triggers::Triggers;
    use shared::verify::{CustomerIoVerifier, SegmentVerifier, SignatureCoverage, SigningSecrets, customerio};

    fn sample(name: &str) -> Value {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
    }

    /// An HTTP API (payload 2.0) request: its headers and body.
    fn request(event: &Value, source: Source) -> (HeaderMap, String) {
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["rawPath"], format!("/webhooks/{source}"));
        assert_eq!(event["isBase64Encoded"], false);
        let mut headers = HeaderMap::new();
        for (name, value) in event["headers"].as_object().expect("headers") {
            let value = HeaderValue::from_str(value.as_str().expect("header values are strings")).unwrap();
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
        }
        (headers, event["body"].as_str().expect("a text body").to_owned())
    }

    fn secrets(name: &'static str, local: &str) -> SigningSecrets {
        SigningSecrets::single(name, local).unwrap()
    }

    fn rules_fired(source: Source, body: &str) -> Vec<(shared::domain::Event, String)> {
        let rules = Triggers::embedded().unwrap().rules;
        let mut fired = Vec::new();
        for envelope in shared::parse::envelopes(source, body.as_bytes()).expect("the sample parses") {
            let event = envelope.to_event().unwrap();
            for rule in rules.matching(&event) {
                fired.push((event.clone(), rule.name.as_str().to_owned()));
            }
        }
        fired
    }

    #[test]
    fn the_segment_sample_is_signed_and_fires_a_rule() {
        let (headers, body) = request(&sample("segment-webhook.json"), Source::Segment);
        let verifier = SegmentVerifier::new(&secrets("SEGMENT_SHARED_SECRET", "local-segment-secret"), false);
        assert_eq!(verifier.verify(&headers, body.as_bytes()), Ok(SignatureCoverage::WholeBody));
        let fired = rules_fired(Source::Segment, &body);
        assert_eq!(fired.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["segment-trial-started"]);
    }

    #[test]
    fn the_customerio_sample_is_signed_and_fires_a_rule() {
        let (headers, body) = request(&sample("customerio-webhook.json"), Source::CustomerIo);
        // Signed at a fixed time: check it as of then (scripts/sample-events re-signs for now).
        let sent: u64 = headers[customerio::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
        let verifier =
            CustomerIoVerifier::new(&secrets("CIO_WEBHOOK_SECRET", "local-cio-secret"), customerio::DEFAULT_MAX_AGE);
        verifier
            .verify(&headers, body.as_bytes(), UNIX_EPOCH + Duration::from_secs(sent))
            .expect("the signature verifies");
        let fired = rules_fired(Source::CustomerIo, &body);
        assert_eq!(fired.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["cio-high-value-alert"]);
    }

    #[test]
    fn the_worker_sample_carries_the_job_ingest_queues_for_the_segment_sample() {
        let (_, body) = request(&sample("segment-webhook.json"), Source::Segment);
        let (event, rule) = rules_fired(Source::Segment, &body).remove(0);
        let rule = shared::domain::RuleName::parse(rule).unwrap();
        let key = JobKey::for_event(Source::Segment, &event.id, &rule);
        let expected: Value = serde_json::from_str(&JobMessage::event_body(&key, &rule, &event).unwrap()).unwrap();

        let batch = sample("worker-sqs-batch.json");
        let records = batch["Records"].as_array().expect("Records");
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record["eventSource"], "aws:sqs");
        let body = record["body"].as_str().expect("a text body");
        JobMessage::from_body(body).expect("the worker can decode the body");
        let actual: Value = serde_json::from_str(body).unwrap();
        assert_eq!(actual, expected, "scripts/sample-events must build the body exactly as ingest does");
    }
}

// ----------------------------------------------------------------- alarms and dashboard

fn resources_of(kind: &str) -> Vec<(&'static str, &'static Yaml)> {
    let resources = at(&TEMPLATE, &["Resources"]).as_mapping().expect("Resources is a mapping");
    resources
        .iter()
        .filter(|(_, r)| get(r, "Type").and_then(Yaml::as_str) == Some(kind))
        .map(|(name, r)| (name.as_str().expect("resource names are strings"), r))
        .collect()
}

fn alarms() -> Vec<(&'static str, &'static Yaml)> {
    let alarms = resources_of("AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 12, "only {} alarms: is the search still finding them?", alarms.len());
    alarms
}

/// `[!If [UseExistingAlarmTopic, !Ref AlarmTopicArn, !Ref AlarmTopic]]`: the one topic.
fn is_the_alarm_topic(actions: &Yaml) -> bool {
    let Some([only]) = actions.as_vec().map(Vec::as_slice) else { return false };
    let Some(("If", args)) = intrinsic(only) else { return false };
    let Some([condition, given, created]) = args.as_vec().map(Vec::as_slice) else { return false };
    condition.as_str() == Some("UseExistingAlarmTopic")
        && reference(given) == Some("AlarmTopicArn")
        && reference(created) == Some("AlarmTopic")
}

/// One metric an alarm reads.
struct AlarmMetric {
    namespace: String,
    name: String,
    dimensions: BTreeMap<String, &'static Yaml>,
}

fn dimensions_of(node: Option<&'static Yaml>) -> BTreeMap<String, &'static Yaml> {
    let Some(list) = node.and_then(Yaml::as_vec) else { return BTreeMap::new() };
    list.iter().map(|d| (text(d, &["Name"]).to_owned(), at(d, &["Value"]))).collect()
}

/// The metrics an alarm reads: its own, or each `MetricStat` of its metric math.
fn alarm_metrics(alarm: &'static Yaml) -> Vec<AlarmMetric> {
    let props = at(alarm, &["Properties"]);
    match get(props, "Metrics").and_then(Yaml::as_vec) {
        None => vec![AlarmMetric {
            namespace: text(props, &["Namespace"]).to_owned(),
            name: text(props, &["MetricName"]).to_owned(),
            dimensions: dimensions_of(get(props, "Dimensions")),
        }],
        Some(queries) => queries
            .iter()
            .filter_map(|q| get(q, "MetricStat"))
            .map(|stat| {
                let metric = at(stat, &["Metric"]);
                AlarmMetric {
                    namespace: text(metric, &["Namespace"]).to_owned(),
                    name: text(metric, &["MetricName"]).to_owned(),
                    dimensions: dimensions_of(get(metric, "Dimensions")),
                }
            })
            .collect(),
    }
}

/// One of every refusal ingest can answer with, from the code itself. The matches below
/// name every variant without a wildcard: a new reason does not compile until it is listed
/// here, so the drift tests below see it (and its kind) too.
fn every_rejection() -> Vec<shared::ingest::ApiError> {
    use shared::domain::{EventIdError, Source};
    use shared::ingest::ApiError;
    use shared::parse::ParseError;
    use shared::queue::QueueError;
    use shared::store::StoreError;
    use shared::verify::VerifyError;
    let json_error = || serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    let verify = [
        VerifyError::MissingHeader("x-signature"),
        VerifyError::MalformedSignature { header: "x-signature", expected_len: 64 },
        VerifyError::BadSignature,
        VerifyError::FirstEventOnly { events: 2 },
        VerifyError::MalformedTimestamp,
        VerifyError::StaleTimestamp { age_secs: 0, max_age_secs: 0 },
        VerifyError::FutureTimestamp { ahead_secs: 0, skew_secs: 0 },
        VerifyError::StaleEvent { age_secs: 0, max_age_secs: 0 },
        VerifyError::UndatedFirstEvent,
        VerifyError::BatchReplayed { first_event: "e".into() },
    ];
    for e in &verify {
        match e {
            VerifyError::MissingHeader(_)
            | VerifyError::MalformedSignature { .. }
            | VerifyError::BadSignature
            | VerifyError::FirstEventOnly { .. }
            | VerifyError::MalformedTimestamp
            | VerifyError::StaleTimestamp { .. }
            | VerifyError::FutureTimestamp { .. }
            | VerifyError::StaleEvent { .. }
            | VerifyError::UndatedFirstEvent
            | VerifyError::BatchReplayed { .. } => {}
        }
    }
    let parse = [
        ParseError::Json(json_error()),
        ParseError::NotAnObject { index: None },
        ParseError::EmptyBatch,
        ParseError::MissingId { field: "messageId", index: None, hint: "" },
        ParseError::InvalidId { field: "messageId", index: None, source: EventIdError::Empty },
        ParseError::MissingName { fields: "event", index: None },
        ParseError::Fields { index: None, source: json_error() },
        ParseError::WrongType { field: "properties", expected: "an object", index: None },
    ];
    for e in &parse {
        match e {
            ParseError::Json(_)
            | ParseError::NotAnObject { .. }
            | ParseError::EmptyBatch
            | ParseError::MissingId { .. }
            | ParseError::InvalidId { .. }
            | ParseError::MissingName { .. }
            | ParseError::Fields { .. }
            | ParseError::WrongType { .. } => {}
        }
    }
    let api = vec![
        ApiError::UnknownSource(Source::parse("nope").unwrap_err()),
        ApiError::SourceNotConfigured(Source::Segment),
        ApiError::SourceDisabled { sender: Source::CustomerIo, var: "CIO_WEBHOOK_SECRET" },
        ApiError::TooLarge { limit: 1 },
        ApiError::BatchTooLarge { events: 2, limit: 1 },
        ApiError::SourceIpNotAllowed { sender: Source::CustomerIo, var: "CIO_ALLOWED_SOURCE_IPS", ip: None },
        ApiError::BodyTimeout { secs: 1 },
        ApiError::UnsupportedMediaType("text/plain".into()),
        ApiError::TooLargeForQueue { event_id: "e".into(), source: QueueError::TooLarge { bytes: 1 } },
        ApiError::Store(StoreError::LeaseLost(shared::domain::JobKey::from_stored("k"))),
        ApiError::InFlight { event_id: "e".into() },
        ApiError::Queue(QueueError::Version(0)),
        ApiError::Body(axum::Error::new(json_error())),
    ];
    for e in &api {
        match e {
            ApiError::UnknownSource(_)
            | ApiError::SourceNotConfigured(_)
            | ApiError::SourceDisabled { .. }
            | ApiError::TooLarge { .. }
            | ApiError::BatchTooLarge { .. }
            | ApiError::SourceIpNotAllowed { .. }
            | ApiError::BodyTimeout { .. }
            | ApiError::UnsupportedMediaType(_)
            | ApiError::TooLargeForQueue { .. }
            | ApiError::Store(_)
            | ApiError::InFlight { .. }
            | ApiError::Queue(_)
            | ApiError::Body(_) => {}
            // Listed through the two lists above.
            ApiError::Signature(_) | ApiError::Payload(_) => unreachable!("listed below"),
        }
    }
    api.into_iter()
        .chain(verify.into_iter().map(ApiError::Signature))
        .chain(parse.into_iter().map(ApiError::Payload))
        .collect()
}

/// The `rejected` reasons ingest reports, from the code itself.
fn ingest_reasons() -> BTreeSet<&'static str> {
    every_rejection().iter().map(shared::ingest::ApiError::code).collect()
}

#[test]
fn every_reason_has_one_kind_and_every_paging_kind_its_alarm() {
    use shared::telemetry::{NAMESPACE, RejectionKind, dimension};
    // A reason means one kind, whichever error answers with it.
    let mut kinds: BTreeMap<&str, RejectionKind> = BTreeMap::new();
    for error in every_rejection() {
        let kind = *kinds.entry(error.code()).or_insert(error.kind());
        assert_eq!(kind, error.kind(), "{} is answered as both {kind} and {}", error.code(), error.kind());
        // 5xx are ours (or the normal busy answer); 4xx never are.
        let ours = matches!(kind, RejectionKind::Busy | RejectionKind::Misconfigured | RejectionKind::Unavailable);
        assert_eq!(error.is_server_error(), ours, "{}: status {} but kind {kind}", error.code(), error.status());
    }
    assert_eq!(kinds["in_flight"], RejectionKind::Busy);
    assert_eq!(kinds["source_disabled"], RejectionKind::Misconfigured);
    // Every kind some reason has is one the code declares.
    for kind in kinds.values() {
        assert!(RejectionKind::ALL.contains(kind));
    }
    // The alarm each paging kind names watches exactly that kind; busy pages no one.
    let watches = |alarm: &'static Yaml, kind: RejectionKind| {
        alarm_metrics(alarm).iter().any(|m| {
            m.namespace == NAMESPACE
                && m.name == "rejected"
                && m.dimensions.get(dimension::KIND).and_then(|v| v.as_str()) == Some(kind.as_str())
        })
    };
    for kind in RejectionKind::ALL {
        match kind.alarm() {
            Some(name) => assert!(watches(resource(name), kind), "{name} does not watch Kind={kind}"),
            None => {
                for (name, alarm) in alarms() {
                    assert!(!watches(alarm, kind), "{name} watches Kind={kind}, which is normal operation");
                }
            }
        }
    }
    // No alarm reads the total of refusals, or the API's 5xx: both count the busy answer.
    for (name, alarm) in alarms() {
        for m in alarm_metrics(alarm) {
            assert!(
                m.name != "rejected" || m.dimensions.contains_key(dimension::KIND),
                "{name} reads rejected without its Kind, so it counts busy answers (503 in_flight) too"
            );
            assert!(
                !(m.namespace == "AWS/ApiGateway" && m.name == "5xx"),
                "{name} reads the API's 5xx, which count the normal 503 in_flight"
            );
        }
    }
}

#[test]
fn every_alarm_notifies_the_one_topic_and_says_what_to_check_first() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md")).unwrap();
    for (name, alarm) in alarms() {
        let props = at(alarm, &["Properties"]);
        for key in ["AlarmActions", "OKActions"] {
            assert!(is_the_alarm_topic(at(props, &[key])), "{name}.{key} must be the one alarm topic");
        }
        assert_eq!(text(props, &["TreatMissingData"]), "notBreaching", "{name}: no data is no failure");
        let (_, description) = intrinsic(at(props, &["AlarmDescription"])).expect("the description is a !Sub");
        let description = description.as_str().expect("a !Sub string");
        assert!(description.contains("${Stage}"), "{name}: the description names the stage");
        assert!(description.contains("Check first:"), "{name}: the description says what to check first");
        assert!(description.len() <= 1024, "{name}: CloudWatch takes 1024 characters of description");
        assert!(docs.contains(&format!("| `{name}` |")), "docs/deploy.md's alarm table has no row for {name}");
    }
    // The topic: the given one, or the stack's; an email subscribes to whichever it is.
    assert_eq!(text(resource("AlarmTopic"), &["Condition"]), "CreateAlarmTopic");
    assert!(is_the_alarm_topic(&Yaml::Sequence(vec![at(properties("AlarmEmailSubscription"), &["TopicArn"]).clone()])));
}

#[test]
fn alarms_on_the_relays_metrics_name_what_the_code_emits() {
    use shared::store::FailureClass;
    use shared::telemetry::{Metric, NAMESPACE, dimension};
    let binaries: BTreeSet<String> = functions().into_keys().collect();
    let reasons = ingest_reasons();
    let classes: BTreeSet<&str> = FailureClass::ALL.iter().map(|c| c.as_str()).collect();
    let kinds: BTreeSet<&str> = every_rejection().iter().map(|e| e.kind().as_str()).collect();
    let mut ours = 0;
    for (name, alarm) in alarms() {
        for m in alarm_metrics(alarm).into_iter().filter(|m| m.namespace == NAMESPACE) {
            ours += 1;
            let metric = Metric::ALL
                .into_iter()
                .find(|x| x.name() == m.name)
                .unwrap_or_else(|| panic!("{name} reads {}, which the code does not emit", m.name));
            assert_eq!(reference(m.dimensions[dimension::STAGE]), Some("Stage"), "{name}: Stage dimension");
            let function = m.dimensions[dimension::FUNCTION].as_str().expect("Function is a literal");
            assert!(binaries.contains(function), "{name}: Function={function} is no function's binary");
            let extra: Vec<&String> = m
                .dimensions
                .keys()
                .filter(|k| ![dimension::STAGE, dimension::FUNCTION].contains(&k.as_str()))
                .collect();
            match extra.as_slice() {
                [] => {}
                [by] => {
                    let by_kind = metric == Metric::Rejected && by.as_str() == dimension::KIND;
                    assert!(
                        by_kind || Some(by.as_str()) == metric.breakdown(),
                        "{name}: {} is not broken down by {by}",
                        m.name
                    );
                    let value = m.dimensions[by.as_str()].as_str().expect("a literal");
                    let known = match by.as_str() {
                        dimension::REASON => &reasons,
                        dimension::KIND => &kinds,
                        _ => &classes,
                    };
                    assert!(known.contains(value), "{name}: {by}={value} is not one the code reports ({known:?})");
                }
                more => panic!("{name}: dimensions {more:?} beyond Stage and Function"),
            }
        }
        // Metric math: every id an expression uses is defined, and one query is the answer.
        if let Some(queries) = get(at(alarm, &["Properties"]), "Metrics").and_then(Yaml::as_vec) {
            let ids: BTreeSet<&str> = queries.iter().map(|q| text(q, &["Id"])).collect();
            let answers: Vec<&Yaml> =
                queries.iter().filter(|q| get(q, "ReturnData").and_then(Yaml::as_bool) == Some(true)).collect();
            assert_eq!(answers.len(), 1, "{name}: one query returns data");
            let expression = text(answers[0], &["Expression"]);
            for word in expression.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
                if word.starts_with(|c: char| c.is_ascii_lowercase()) {
                    assert!(ids.contains(word), "{name}: {expression} uses {word}, which no query defines");
                }
            }
        }
    }
    assert!(ours >= 15, "only {ours} alarm metrics on {NAMESPACE}: is the search still finding them?");
}

#[test]
fn every_silent_failure_has_an_alarm() {
    let all: Vec<(&str, AlarmMetric)> =
        alarms().into_iter().flat_map(|(name, a)| alarm_metrics(a).into_iter().map(move |m| (name, m))).collect();
    let watched = |namespace: &str, metric: &str, dimension: &str, value: &dyn Fn(&Yaml) -> bool| {
        all.iter().any(|(_, m)| {
            m.namespace == namespace && m.name == metric && m.dimensions.get(dimension).is_some_and(|v| value(v))
        })
    };
    let literal = |expected: &'static str| move |v: &Yaml| v.as_str() == Some(expected);
    let refers = |expected: &'static str| move |v: &Yaml| reference(v) == Some(expected);
    let attribute = |expected: &'static str| move |v: &Yaml| get_att(v).as_deref() == Some(expected);

    // Mavera refusing every call: permanent failures, never in the DLQ.
    for class in ["unauthorized", "forbidden", "credits_exhausted", "budget_exceeded"] {
        assert!(watched("MaveraRelay", "failed", "Class", &literal(class)), "no alarm on failed jobs of class {class}");
    }
    // ...and every other class, through the total.
    assert!(
        all.iter().any(|(_, m)| m.name == "failed" && !m.dimensions.contains_key("Class")),
        "no alarm on the total of failed jobs"
    );
    // A sender with the wrong signing key or clock, a replay refused, a source left without
    // its secret, ingest answering 5xx of its own: every refusal but the normal busy one,
    // through its kind (every_reason_has_one_kind_and_every_paging_kind_its_alarm).
    for error in every_rejection() {
        if error.kind() != shared::telemetry::RejectionKind::Busy {
            let kind = error.kind().as_str();
            assert!(
                watched("MaveraRelay", "rejected", "Kind", &literal(kind)),
                "no alarm on {} ({kind})",
                error.code()
            );
        }
    }
    // Throttles and errors of every function.
    for (_, (name, _)) in functions() {
        assert!(watched("AWS/Lambda", "Throttles", "FunctionName", &refers(name)), "no alarm on {name}'s throttles");
        assert!(watched("AWS/Lambda", "Errors", "FunctionName", &refers(name)), "no alarm on {name}'s errors");
    }
    // The queue backing up, and jobs in the DLQ.
    assert!(
        watched("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", &attribute("JobsQueue.QueueName")),
        "no alarm on the age of the oldest job"
    );
    assert!(
        watched("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", &attribute("JobsDlq.QueueName")),
        "no alarm on the DLQ"
    );
}

/// The variables of a `!Sub` string: `${Name}` and `${Resource.Attribute}`.
fn sub_variables(text: &str) -> Vec<&str> {
    text.split("${").skip(1).filter_map(|rest| rest.split_once('}').map(|(var, _)| var)).collect()
}

#[test]
fn the_dashboard_shows_every_count_and_its_url_is_an_output() {
    use shared::telemetry::Metric;
    let (_, body) = intrinsic(at(properties("Dashboard"), &["DashboardBody"])).expect("the body is a !Sub");
    let body = body.as_str().expect("a !Sub string");
    // Every variable resolves, and the body is JSON once they are substituted.
    let mut json = body.to_owned();
    for var in sub_variables(body) {
        let base = var.split('.').next().unwrap();
        assert!(
            base.starts_with("AWS::")
                || get(at(&TEMPLATE, &["Parameters"]), base).is_some()
                || get(at(&TEMPLATE, &["Resources"]), base).is_some(),
            "the dashboard names ${{{var}}}, which the template does not define"
        );
        json = json.replace(&format!("${{{var}}}"), &format!("<{var}>"));
    }
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("the dashboard body is JSON");
    let widgets = dashboard["widgets"].as_array().expect("widgets");

    let mut rows = Vec::new();
    let mut searches = Vec::new();
    let mut listed_alarms = BTreeSet::new();
    for widget in widgets {
        for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let row = row.as_array().expect("a metric row is a list");
            match row[0].as_str() {
                Some(_) => rows.push(row.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>()),
                None => searches.push(row[0]["expression"].as_str().expect("an expression").to_owned()),
            }
        }
        for alarm in widget["properties"]["alarms"].as_array().into_iter().flatten() {
            listed_alarms.insert(alarm.as_str().unwrap().trim_start_matches('<').trim_end_matches(".Arn>").to_owned());
        }
    }
    let shows = |namespace: &str, metric: &str, dimension_value: &str| {
        rows.iter().any(|r| r[0] == namespace && r[1] == metric && r[2..].contains(&dimension_value))
    };
    for metric in ["received", "rejected", "duplicate", "queued", "ignored"] {
        assert!(shows("MaveraRelay", metric, "ingest"), "the dashboard does not show ingest's {metric}");
    }
    for metric in ["done", "failed", "retried", "skipped"] {
        assert!(shows("MaveraRelay", metric, "worker"), "the dashboard does not show the worker's {metric}");
    }
    for row in rows.iter().filter(|r| r[0] == "MaveraRelay") {
        assert!(Metric::ALL.iter().any(|m| m.name() == row[1]), "the dashboard shows {}, which nothing emits", row[1]);
        assert!(row.windows(2).any(|w| w == ["Stage", "<Stage>"]), "{row:?} is not this stage's");
    }
    for (metric, by) in [("rejected", "Reason"), ("failed", "Class"), ("credits", "Rule")] {
        assert!(
            searches.iter().any(|s| s.contains(&format!("Function,{by}}}"))
                && s.contains(&format!("MetricName=\"{metric}\""))
                && s.contains("Stage=\"<Stage>\"")),
            "the dashboard does not break {metric} down by {by} for this stage: {searches:?}"
        );
    }
    assert!(shows("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<JobsDlq.QueueName>"), "DLQ depth");
    for (_, (name, _)) in functions() {
        let placeholder = format!("<{name}>");
        assert!(shows("AWS/Lambda", "Errors", &placeholder), "{name}'s errors");
        assert!(shows("AWS/Lambda", "Duration", &placeholder), "{name}'s durations");
    }
    let every_alarm: BTreeSet<String> = alarms().into_iter().map(|(n, _)| n.to_owned()).collect();
    assert_eq!(listed_alarms, every_alarm, "the dashboard's alarm widget lists every alarm");

    let (_, url) = intrinsic(at(&TEMPLATE, &["Outputs", "DashboardUrl", "Value"])).expect("a !Sub");
    assert!(sub_variables(url.as_str().unwrap()).contains(&"Dashboard"), "DashboardUrl names the dashboard");
}

// ----------------------------------------------------------------- releases and state

#[test]
fn releases_go_through_an_alias_and_roll_back_on_the_error_alarms() {
    let globals = at(&TEMPLATE, &["Globals", "Function"]);
    assert_eq!(text(globals, &["AutoPublishAlias"]), "live");
    assert_eq!(reference(at(globals, &["DeploymentPreference", "Type"])), Some("DeploymentType"));
    assert_eq!(get_att(at(globals, &["DeploymentPreference", "Role"])).as_deref(), Some("DeployRole.Arn"));
    let default = text(&TEMPLATE, &["Parameters", "DeploymentType", "Default"]);
    assert!(default.starts_with("Canary") || default.starts_with("Linear"), "prod shifts traffic gradually: {default}");

    let mut rollback_alarms = BTreeSet::new();
    for (binary, (name, f)) in functions() {
        let listed = at(f, &["Properties", "DeploymentPreference", "Alarms"]).as_vec().expect("a list of alarms");
        assert!(!listed.is_empty(), "{binary}: no alarm rolls a release back");
        for alarm in listed {
            let alarm = reference(alarm).expect("alarms by !Ref");
            // The alarm watches this function: Lambda's metrics of it, or the relay's own.
            let metrics = alarm_metrics(resource(alarm));
            let watches = metrics.iter().any(|m| {
                m.dimensions.get("FunctionName").and_then(|v| reference(v)) == Some(name)
                    || (m.namespace == "MaveraRelay"
                        && m.dimensions.get("Function").and_then(|v| v.as_str()) == Some(binary.as_str()))
            });
            assert!(watches, "{binary}'s release rolls back on {alarm}, which does not watch it");
            // Nothing a rollback cannot fix, or that is normal, rolls a release back.
            for m in &metrics {
                let kind = m.dimensions.get("Kind").and_then(|v| v.as_str());
                assert!(!matches!(kind, Some("busy" | "misconfigured")), "{alarm} rolls back on Kind={kind:?}");
            }
            rollback_alarms.insert(format!("{alarm}.Arn"));
        }
    }
    // CodeDeploy's role may read exactly those alarms.
    let statements = at(properties("DeployRole"), &["Policies"]).as_vec().unwrap()[0].clone();
    let statements = at(&statements, &["PolicyDocument", "Statement"]).as_vec().unwrap().clone();
    let describe =
        statements.iter().find(|s| text(s, &["Action"]) == "cloudwatch:DescribeAlarms").expect("DescribeAlarms");
    let readable: BTreeSet<String> = at(describe, &["Resource"]).as_vec().unwrap().iter().filter_map(get_att).collect();
    assert_eq!(readable, rollback_alarms);
}

#[test]
fn prod_keeps_the_table_recoverable_and_log_groups_outlive_the_stack() {
    let table = properties("EventsTable");
    let if_condition = |node: &Yaml| {
        let (name, args) = intrinsic(node).expect("an !If");
        assert_eq!(name, "If");
        args.as_vec().unwrap()[0].as_str().unwrap().to_owned()
    };
    for (path, condition, parameter) in [
        (
            &["PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"][..],
            "PointInTimeRecoveryOn",
            "EventsTablePointInTimeRecovery",
        ),
        (&["DeletionProtectionEnabled"][..], "DeletionProtectionOn", "EventsTableDeletionProtection"),
    ] {
        assert_eq!(if_condition(at(table, path)), condition);
        assert_eq!(text(&TEMPLATE, &["Parameters", parameter, "Default"]), "auto");
        // auto means: on for prod.
        let mut words = Vec::new();
        strings(at(&TEMPLATE, &["Conditions", condition]), &mut words);
        assert!(words.contains(&"IsProd".to_owned()) && words.contains(&"auto".to_owned()), "{condition}: {words:?}");
    }
    let (_, is_prod) = intrinsic(at(&TEMPLATE, &["Conditions", "IsProd"])).unwrap();
    let is_prod = is_prod.as_vec().unwrap();
    assert_eq!((reference(&is_prod[0]), is_prod[1].as_str()), (Some("Stage"), Some("prod")));

    for (name, group) in resources_of("AWS::Logs::LogGroup") {
        assert_eq!(text(group, &["DeletionPolicy"]), "Retain", "{name}");
        assert_eq!(text(group, &["UpdateReplacePolicy"]), "Retain", "{name}");
        assert_eq!(reference(at(group, &["Properties", "RetentionInDays"])), Some("LogRetentionDays"), "{name}");
    }
    // The API's access log: under /aws/vendedlogs/, so it stays out of the account's shared
    // log resource policy; unique per stack, since it outlives the stack.
    let (_, name) = intrinsic(at(properties("HttpApiAccessLogs"), &["LogGroupName"])).expect("a !Sub");
    let name = name.as_vec().map(|v| v[0].clone()).unwrap_or_else(|| name.clone());
    let name = name.as_str().unwrap();
    assert!(name.starts_with("/aws/vendedlogs/"), "{name}");
    assert!(name.contains("${AWS::StackName}") && name.contains("${Id}"), "{name}");
    assert_eq!(
        get_att(at(properties("HttpApi"), &["AccessLogSettings", "DestinationArn"])).as_deref(),
        Some("HttpApiAccessLogs.Arn")
    );
}

#[test]
fn reserved_concurrency_and_the_custom_domain_are_optional() {
    let (name, args) = intrinsic(at(function("ingest"), &["Properties", "ReservedConcurrentExecutions"])).unwrap();
    let args = args.as_vec().unwrap();
    assert_eq!((name, args[0].as_str()), ("If", Some("ReserveIngestConcurrency")));
    assert_eq!(reference(&args[1]), Some("IngestReservedConcurrency"));
    assert_eq!(reference(&args[2]), Some("AWS::NoValue"));
    assert_eq!(integer(&TEMPLATE, &["Parameters", "IngestReservedConcurrency", "Default"]), 0);
    for (resource_name, condition) in [
        ("CustomDomain", "HasCustomDomain"),
        ("CustomDomainMapping", "HasCustomDomain"),
        ("CustomDomainRecord", "HasCustomDomainZone"),
    ] {
        assert_eq!(text(resource(resource_name), &["Condition"]), condition);
    }
    for parameter in ["CustomDomainName", "CustomDomainCertificateArn", "CustomDomainHostedZoneId"] {
        assert_eq!(text(&TEMPLATE, &["Parameters", parameter, "Default"]), "", "{parameter} is off by default");
    }
}

/// Lines of the docs' shell blocks that run `sam deploy` or `sam sync`.
fn deploy_commands(markdown: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        let command = line.split('#').next().unwrap_or("");
        if inside && (command.contains("sam deploy") || command.contains("sam sync")) {
            lines.push(line.to_owned());
        }
    }
    lines
}

#[test]
fn a_deploy_cannot_mix_up_stage_dry_run_or_architecture() {
    // No default: a deploy that lost samconfig.toml's overrides fails on a new stack.
    for parameter in ["Stage", "DryRun"] {
        assert!(
            get(at(&TEMPLATE, &["Parameters", parameter]), "Default").is_none(),
            "{parameter} must have no default"
        );
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../samconfig.toml");
    let config: toml::Table = std::fs::read_to_string(path).unwrap().parse().expect("samconfig.toml is TOML");
    let mut stacks = BTreeSet::new();
    let mut stages = BTreeMap::new();
    for (env, section) in &config {
        let Some(section) = section.as_table() else { continue };
        let stack = section["global"]["parameters"]["stack_name"].as_str().expect("each section names its stack");
        assert!(stacks.insert(stack.to_owned()), "two sections deploy the stack {stack}");
        for command in ["deploy", "sync"] {
            let Some(overrides) = section.get(command).and_then(|c| c["parameters"].get("parameter_overrides")) else {
                continue;
            };
            let overrides: BTreeMap<&str, &str> = overrides
                .as_str()
                .expect("parameter_overrides is a string")
                .split_whitespace()
                .map(|kv| kv.split_once('=').expect("Key=Value"))
                .collect();
            assert!(!overrides.contains_key("Arch"), "[{env}.{command}]: the architecture comes from the build");
            let stage = overrides.get("Stage").unwrap_or_else(|| panic!("[{env}.{command}] sets no Stage"));
            let dry = overrides.get("DryRun").unwrap_or_else(|| panic!("[{env}.{command}] sets no DryRun"));
            assert_eq!(*dry == "false", *stage == "prod", "[{env}.{command}]: only prod spends credits");
            stages.insert(env.as_str(), *stage);
        }
    }
    assert_eq!(stages.get("default"), Some(&"prod"));
    assert_eq!(stages.get("staging"), Some(&"staging"));

    // No documented command replaces those overrides.
    for doc in ["docs/deploy.md", "README.md", "examples/github-actions/deploy.yml"] {
        let text = std::fs::read_to_string(format!("{}/../{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let commands = if doc.ends_with(".md") {
            deploy_commands(&text)
        } else {
            text.lines().filter(|l| l.contains("sam deploy") || l.contains("sam sync")).map(str::to_owned).collect()
        };
        for line in commands {
            assert!(!line.contains("--parameter-overrides"), "{doc}: `{line}` replaces samconfig.toml's overrides");
        }
    }
}
