"""template.yaml as SAM expands it (what CloudFormation receives), checked for what the plain
YAML cannot show: IAM and the release wiring SAM generates. Run by scripts/check-template
with the .venv Python (the SAM translator comes from there); offline.

1. IAM: no statement on Resource "*", no managed policies (SAM adds some, granting on "*",
   when a function or a DeploymentPreference has no explicit role); every DynamoDB grant of
   a function's role is limited to key prefixes (dynamodb:LeadingKeys); each function's
   role reads exactly its own secret.
2. Releases: each function publishes a version behind the "live" alias, which CodeDeploy
   moves with our role, stopping and rolling back on the function's alarms; every trigger
   (API routes, the SQS mapping, the schedules) invokes the alias, not $LATEST.
"""

import logging
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# Each function's role, the secret it may read, and its function.
ROLES = {
    "IngestRole": ("SigningSecret", "IngestFunction"),
    "WorkerRole": ("ApiKeysSecret", "WorkerFunction"),
    "CioSyncRole": ("ApiKeysSecret", "CioSyncFunction"),
}
EXISTING_SECRET_PARAMETER = {"SigningSecret": "ExistingSigningSecretArn", "ApiKeysSecret": "ExistingApiKeysSecretArn"}

problems = []


class NoManagedPolicies:
    """The template names no managed policies, so none need looking up."""

    def load(self):
        return {}


def refs(node):
    """Every Ref inside a node (through Fn::If and lists)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return {node["Ref"]}
        return set().union(*(refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements(role):
    for policy in role["Properties"].get("Policies", []):
        yield from as_list(policy["PolicyDocument"]["Statement"])


def walk_for_stars(node, path):
    if isinstance(node, dict):
        for key, value in node.items():
            here = path + [str(key)]
            if key in ("Resource", "NotResource") and "*" in as_list(value):
                problems.append(f"{'.'.join(here)} grants on \"*\"")
            if key == "ManagedPolicyArns" and value:
                problems.append(f"{'.'.join(here)} attaches managed policies {value}")
            walk_for_stars(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk_for_stars(value, path + [str(i)])


def check_iam(resources):
    walk_for_stars(resources, ["Resources"])
    for role, (secret, _) in ROLES.items():
        read = set()
        for s in statements(resources[role]):
            actions = as_list(s["Action"])
            if any(a.startswith("dynamodb:") for a in actions):
                condition = s.get("Condition", {})
                keys = [v.get("dynamodb:LeadingKeys") for v in condition.values() if isinstance(v, dict)]
                if not any(keys) or not all(op.startswith("ForAllValues:") for op in condition):
                    problems.append(f"{role}: {actions} on the whole table, not limited by dynamodb:LeadingKeys")
                for patterns in keys:
                    for pattern in as_list(patterns or []):
                        if pattern in ("*", "") or pattern.startswith("*"):
                            problems.append(f"{role}: the key pattern {pattern!r} matches every key")
            if "secretsmanager:GetSecretValue" in actions:
                read |= refs(s["Resource"])
        expected = {secret, EXISTING_SECRET_PARAMETER[secret]}
        if read != expected:
            problems.append(f"{role} reads the secrets {sorted(read)}, expected exactly {sorted(expected)}")


def check_releases(resources):
    functions = [n for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    aliases = {}
    for name, r in resources.items():
        if r["Type"] == "AWS::Lambda::Alias":
            function = r["Properties"]["FunctionName"]["Ref"]
            if r["Properties"]["Name"] != "live":
                problems.append(f"{name}: alias {r['Properties']['Name']}, expected live")
            update = r.get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate", {})
            group = update.get("DeploymentGroupName", {}).get("Ref")
            if group not in resources:
                problems.append(f"{name}: no CodeDeploy deployment group moves this alias")
                continue
            aliases[function] = name
            props = resources[group]["Properties"]
            if props.get("ServiceRoleArn") != {"Fn::GetAtt": ["DeployRole", "Arn"]}:
                problems.append(f"{group}: CodeDeploy runs with {props.get('ServiceRoleArn')}, not DeployRole")
            alarms = props.get("AlarmConfiguration", {})
            names = [a["Name"].get("Ref") for a in alarms.get("Alarms", [])]
            if not alarms.get("Enabled") or not names or not all(n in resources for n in names):
                problems.append(f"{group}: rollback alarms {names}")
            if "DEPLOYMENT_STOP_ON_ALARM" not in props.get("AutoRollbackConfiguration", {}).get("Events", []):
                problems.append(f"{group}: does not roll back when an alarm fires")
    for function in functions:
        if function not in aliases:
            problems.append(f"{function}: no live alias moved by CodeDeploy")

    def target(node):
        ref = node.get("Ref") if isinstance(node, dict) else None
        return ref

    for name, r in resources.items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::Lambda::Permission" or r["Type"] == "AWS::Lambda::EventSourceMapping":
            invoked = target(props["FunctionName"])
        elif r["Type"] == "AWS::Scheduler::Schedule":
            invoked = target(props["Target"]["Arn"])
        else:
            continue
        if invoked not in aliases.values():
            problems.append(f"{name} ({r['Type']}) invokes {invoked}, not a live alias")


def main():
    # The translator logs a feature-toggle notice per function; not ours to act on.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    with open("template.yaml") as f:
        template = yaml_parse(f.read())
    # The transform wants an S3 location; `sam build`/`sam deploy` put one there.
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/key"
    expanded = transform(template, {"Stage": "prod", "DryRun": "false"}, NoManagedPolicies())
    resources = expanded["Resources"]
    check_iam(resources)
    check_releases(resources)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    roles = [k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"]
    print(f"{len(roles)} roles, every statement scoped to named resources, table grants by key prefix, one secret each")
    print("every function behind a live alias that CodeDeploy moves and rolls back on its alarms; triggers call the alias")


main()
