"""Creates the SAM-transformed template.yaml as two stacks (prod and staging) in moto's
CloudFormation, in one account, and checks what they created against the outputs.

Run by scripts/check-template with the .venv Python (moto, boto3 and the SAM translator come
from there); no network, no AWS account: moto runs in-process.

moto's CloudFormation creates the resource types it models (DynamoDB, SQS, Lambda functions,
versions, aliases and event source mappings, IAM roles, SNS, log groups) and skips the rest
(the HTTP API, CloudWatch alarms and the dashboard, Secrets Manager, CodeDeploy, the
schedules). A `Fn::GetAtt` on a skipped resource would fail the whole stack, so those are
replaced with an ARN-shaped stand-in first; cfn-lint's schemas and tests/tests/template.rs
cover the skipped resources instead.
"""

import io
import json
import logging
import re
import sys
import zipfile

import boto3
from moto import mock_aws
from moto.cloudformation.parsing import resource_class_from_type
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REGION = "us-east-1"
ACCOUNT = "123456789012"
CODE_BUCKET = "relay-code"
TIMEOUTS = {"IngestFunctionName": 15, "WorkerFunctionName": 300, "CioSyncFunctionName": 600}

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


class NoManagedPolicies:
    """The template attaches no managed policies, so none need looking up."""

    def load(self):
        return {}


def expanded(parameters):
    with open("template.yaml") as f:
        template = yaml_parse(f.read())
    template["Globals"]["Function"]["CodeUri"] = f"s3://{CODE_BUCKET}/code.zip"
    return transform(template, parameters, NoManagedPolicies())


def stand_in_unsupported(template):
    """Replaces each reference to a resource moto does not model: a Lambda alias by its
    function's ARN (moto resolves the triggers' function before the alias could exist; the
    alias itself is made through the Lambda API afterwards), anything else by a stand-in."""
    resources = template["Resources"]
    skipped = {name for name, r in resources.items() if resource_class_from_type(r["Type"]) is None}
    aliases = {
        name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Lambda::Alias"
    }

    def reference(target):
        if target in aliases:
            function = aliases[target]["FunctionName"]["Ref"]
            return {"Fn::GetAtt": [function, "Arn"]}
        return f"moto-skipped-{target}"

    def stand_in(target, attribute):
        return f"arn:aws:moto-skipped:{REGION}:{ACCOUNT}:{target}/{attribute}"

    def in_sub(text):
        # "${Alarm.Arn}" and "${HttpApi}" inside a Fn::Sub string are references too.
        def replace(m):
            if m[1] not in skipped or m[1] in aliases:
                return m[0]
            return stand_in(m[1], m[2]) if m[2] else f"moto-skipped-{m[1]}"

        return re.sub(r"\$\{([A-Za-z0-9]+)(?:\.([A-Za-z0-9.]+))?\}", replace, text)

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in skipped:
                return reference(node["Ref"])
            if set(node) == {"Fn::GetAtt"}:
                target, attribute = node["Fn::GetAtt"]
                if target in skipped:
                    return stand_in(target, attribute)
            if set(node) == {"Fn::Sub"}:
                sub = node["Fn::Sub"]
                if isinstance(sub, str):
                    return {"Fn::Sub": in_sub(sub)}
                return {"Fn::Sub": [in_sub(sub[0]), walk(sub[1])]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    template["Resources"] = {name: walk(r) for name, r in resources.items()}
    template["Outputs"] = walk(template.get("Outputs", {}))
    return template, skipped, aliases


def create(cf, name, parameters):
    template, skipped, aliases = stand_in_unsupported(expanded(parameters))
    cf.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    check(stack["StackStatus"] == "CREATE_COMPLETE", f"{name}: {stack['StackStatus']} {stack.get('StackStatusReason')}")
    # The aliases, through the Lambda API, on the version the stack published.
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
    }
    lam = boto3.client("lambda", region_name=REGION)
    for alias in aliases.values():
        function = physical[alias["FunctionName"]["Ref"]]
        versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=function)["Versions"]]
        published = [v for v in versions if v.isdigit()]
        check(published, f"{name}: no version of {function} was published")
        if published:
            lam.create_alias(FunctionName=function, Name=alias["Name"], FunctionVersion=max(published, key=int))
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return outputs, template, skipped


def check_stack(name, stage, outputs, template):
    declared = set(template.get("Outputs", {}))
    check(set(outputs) == declared, f"{name}: outputs {sorted(set(outputs))} != declared {sorted(declared)}")
    ddb = boto3.client("dynamodb", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)

    table = ddb.describe_table(TableName=outputs["EventsTableName"])["Table"]
    check(table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}], f"{name}: key schema {table['KeySchema']}")
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
    listing = indexes.get("by-day", {})
    check(
        listing.get("KeySchema") == [{"AttributeName": "day", "KeyType": "HASH"}, {"AttributeName": "position", "KeyType": "RANGE"}],
        f"{name}: the listing index by-day is {listing or 'missing'}",
    )
    # (moto's CloudFormation leaves TTL and point-in-time recovery unset; the drift tests
    # read them from the template.)
    prod = stage == "prod"
    check(table.get("DeletionProtectionEnabled", False) == prod, f"{name}: deletion protection should be {prod}")

    attributes = sqs.get_queue_attributes(QueueUrl=outputs["JobsQueueUrl"], AttributeNames=["All"])["Attributes"]
    check(attributes["QueueArn"] == outputs["JobsQueueArn"], f"{name}: JobsQueueArn output")
    check(attributes["VisibilityTimeout"] == "1800", f"{name}: visibility {attributes['VisibilityTimeout']}")
    redrive = json.loads(attributes["RedrivePolicy"])
    check(redrive["deadLetterTargetArn"] == outputs["JobsDlqArn"], f"{name}: the jobs queue drains into {redrive}")
    sqs.get_queue_attributes(QueueUrl=outputs["JobsDlqUrl"], AttributeNames=["QueueArn"])

    secrets = {}
    for output, timeout in TIMEOUTS.items():
        function = outputs[output]
        config = lam.get_function_configuration(FunctionName=function)
        env = config["Environment"]["Variables"]
        check(config["Timeout"] == timeout, f"{name}: {function} timeout {config['Timeout']}")
        check(env.get("FUNCTION_TIMEOUT_SECS") == str(config["Timeout"]), f"{name}: {function} FUNCTION_TIMEOUT_SECS")
        check(env.get("STAGE") == stage, f"{name}: {function} STAGE={env.get('STAGE')}")
        check(env.get("EVENTS_TABLE") == outputs["EventsTableName"], f"{name}: {function} EVENTS_TABLE")
        secrets[output] = env.get("SECRETS_ARN")
        alias = lam.get_alias(FunctionName=function, Name="live")
        check(alias["FunctionVersion"] != "$LATEST", f"{name}: {function}'s live alias points at {alias['FunctionVersion']}")
    check(secrets["IngestFunctionName"] == outputs["SigningSecretArn"], f"{name}: ingest reads {secrets}")
    check(secrets["WorkerFunctionName"] == outputs["ApiKeysSecretArn"], f"{name}: worker reads {secrets}")
    check(secrets["CioSyncFunctionName"] == outputs["ApiKeysSecretArn"], f"{name}: cio-sync reads {secrets}")
    check(outputs["SigningSecretArn"] != outputs["ApiKeysSecretArn"], f"{name}: one secret for everything")

    worker_arn = lam.get_function(FunctionName=outputs["WorkerFunctionName"])["Configuration"]["FunctionArn"]
    mappings = [
        m["EventSourceArn"]
        for m in lam.list_event_source_mappings()["EventSourceMappings"]
        if m["FunctionArn"].startswith(worker_arn)
    ]
    check(mappings == [outputs["JobsQueueArn"]], f"{name}: the worker takes the jobs queue: {mappings}")
    group = outputs["ApiAccessLogGroup"]
    check(group.startswith("/aws/vendedlogs/"), f"{name}: the access log group {group} is not under /aws/vendedlogs/")
    found = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    check([g["logGroupName"] for g in found] == [group], f"{name}: log group {group} not created")

    dashboard = outputs["DashboardUrl"].split("#dashboards:name=", 1)[-1]
    body = json.loads(boto3.client("cloudwatch", region_name=REGION).get_dashboard(DashboardName=dashboard)["DashboardBody"])
    check(len(body["widgets"]) >= 10, f"{name}: the dashboard has {len(body['widgets'])} widgets")
    check(f"mavera-relay {stage} " in json.dumps(body), f"{name}: the dashboard does not name its stage")

    for output in ["SegmentWebhookUrl", "CustomerIoWebhookUrl", "HealthUrl", "DashboardUrl"]:
        check(outputs[output].startswith("https://"), f"{name}: {output} = {outputs[output]}")
    check(outputs["SegmentWebhookUrl"].endswith("/webhooks/segment"), f"{name}: SegmentWebhookUrl")
    check(outputs["CustomerIoWebhookUrl"].endswith("/webhooks/customerio"), f"{name}: CustomerIoWebhookUrl")


def main():
    # The translator logs a feature-toggle notice per function; not ours to act on.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=CODE_BUCKET)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("bootstrap", "#!/bin/sh\n")
        s3.put_object(Bucket=CODE_BUCKET, Key="code.zip", Body=archive.getvalue())

        cf = boto3.client("cloudformation", region_name=REGION)
        stacks = [
            ("mavera-relay", "prod", {"Stage": "prod", "DryRun": "false"}),
            ("mavera-relay-staging", "staging", {"Stage": "staging", "DryRun": "true", "DeploymentType": "AllAtOnce"}),
        ]
        skipped = set()
        for name, stage, parameters in stacks:
            outputs, template, skipped_here = create(cf, name, parameters)
            skipped |= {template["Resources"][r]["Type"] for r in skipped_here}
            if outputs:
                check_stack(name, stage, outputs, template)

        # Stage and DryRun have no default: a deploy that lost its overrides must fail.
        try:
            create(cf, "mavera-relay-lost-overrides", {"Arch": "x86_64"})
            problems.append("a stack without Stage and DryRun was created")
        except Exception as e:
            check("Stage" in str(e) or "DryRun" in str(e), f"a stack without Stage fails for another reason: {e}")
            problems[:] = [p for p in problems if not p.startswith("mavera-relay-lost-overrides")]

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"{len(stacks)} stacks created side by side in moto; outputs, table, queues, functions, aliases, dashboard checked")
    print(f"  (skipped by moto's CloudFormation, checked by cfn-lint and the drift tests: {', '.join(sorted(skipped))})")


main()
