"""Which AWS permissions each function used, checked against the policies the template grants it.

moto does not enforce IAM, so a policy that lacks an action passes every local run and fails on the first deploy.
With ``--access-log DIR`` each worker records every AWS call its function makes (``DIR/<LogicalId>.jsonl``); the
calls are turned into the IAM actions and resource ARNs that AWS would authorize, and :func:`denied` lists those
the function's policy statements do not allow. The end-to-end tests run the demo with it on.

Only the calls the code makes are modelled; what the Lambda service does on a function's behalf (reading the
stream, writing logs and traces) is granted by SAM and is not recorded here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

from devstack.template import ACCOUNT_ID, REGION, Template

ACCESS_LOG_ENV = "DEVSTACK_ACCESS_LOG"


@dataclass(frozen=True)
class Permission:
    """One IAM action on one resource ARN."""

    action: str
    resource: str


# ------------------------------------------------------------------------------------------------ recording


def install_recorder(path: Path) -> None:
    """Record every call of the process's boto3 clients (create them after this) as a JSON line in ``path``."""
    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    sink = path.open("a", buffering=1)

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        call = {"service": model.service_model.service_name, "operation": model.name, "params": _summary(params)}
        sink.write(json.dumps(call, default=str) + "\n")

    session.events.register("before-parameter-build", record)


def _summary(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that name resources (never values such as item contents or message bodies)."""
    kept = {
        key: params[key]
        for key in (
            "TableName", "IndexName", "Bucket", "Key", "QueueUrl", "QueueName", "FunctionName", "SecretId", "Name",
            "GroupName", "Source", "EventBusName", "ObjectLockMode", "VersionId",
        )
        if key in params
    }  # fmt: skip
    if "TransactItems" in params:
        kept["TransactItems"] = [
            {kind: {"TableName": body["TableName"]}} for item in params["TransactItems"] for kind, body in item.items()
        ]
    if "RequestItems" in params:
        kept["RequestItems"] = sorted(params["RequestItems"])
    if "Entries" in params:
        kept["EventBusNames"] = sorted({str(entry.get("EventBusName", "default")) for entry in params["Entries"]})
    target = params.get("Target")
    if isinstance(target, Mapping) and "RoleArn" in target:
        kept["RoleArn"] = target["RoleArn"]
    return kept


def read_calls(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The recorded calls of each function (by logical id)."""
    calls: dict[str, list[dict[str, Any]]] = {}
    for log in sorted(directory.glob("*.jsonl")):
        calls[log.stem] = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return calls


# ------------------------------------------------------------------------------------------------ what AWS checks

_DYNAMODB_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_S3_ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "GetObjectRetention": "s3:GetObjectRetention",
    "PutObjectRetention": "s3:PutObjectRetention",
}
_S3_BUCKET_ACTIONS = {"ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket"}


class UnmodelledCall(ValueError):
    """A call whose IAM authorization this module does not know yet: add it, rather than let it pass unchecked."""


def required_permissions(call: Mapping[str, Any], *, region: str, account: str) -> list[Permission]:
    """The IAM actions and resources AWS authorizes for one recorded call."""
    service, operation, params = call["service"], call["operation"], call["params"]
    arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
    if service == "dynamodb":
        return _dynamodb(operation, params, lambda table: arn.format("dynamodb", f"table/{table}"))
    if service == "s3":
        bucket = f"arn:aws:s3:::{params['Bucket']}"
        if operation in _S3_BUCKET_ACTIONS:
            return [Permission(_S3_BUCKET_ACTIONS[operation], bucket)]
        if operation not in _S3_ACTIONS:
            raise UnmodelledCall(f"s3 {operation}")
        action = _S3_ACTIONS[operation]
        if params.get("VersionId") and action == "s3:GetObject":  # reading one version is its own action
            action = "s3:GetObjectVersion"
        found = [Permission(action, f"{bucket}/{params['Key']}")]
        if params.get("ObjectLockMode"):  # the object-lock headers need their own action
            found.append(Permission("s3:PutObjectRetention", f"{bucket}/{params['Key']}"))
        return found
    if service == "sqs":
        name = params.get("QueueName") or urlsplit(params["QueueUrl"]).path.rstrip("/").rsplit("/", 1)[-1]
        # A batch call is authorized by its single-message action (there is no sqs:SendMessageBatch).
        return [Permission(f"sqs:{operation.removesuffix('Batch')}", arn.format("sqs", name))]
    if service == "events" and operation == "PutEvents":
        return [Permission("events:PutEvents", _bus_arn(name, arn)) for name in params["EventBusNames"]]
    if service == "lambda" and operation == "Invoke":
        name = str(params["FunctionName"])
        function = name if name.startswith("arn:") else arn.format("lambda", f"function:{name}")
        return [Permission("lambda:InvokeFunction", function)]
    if service == "secretsmanager" and operation == "GetSecretValue":
        secret = str(params["SecretId"])
        # A secret's ARN ends with six random characters after its name.
        resource = secret if secret.startswith("arn:") else arn.format("secretsmanager", f"secret:{secret}-Ab12Cd")
        return [Permission("secretsmanager:GetSecretValue", resource)]
    if service == "ssm" and operation in ("GetParameter", "GetParameters"):
        return [Permission(f"ssm:{operation}", arn.format("ssm", f"parameter/{str(params['Name']).lstrip('/')}"))]
    if service == "ses" and operation in ("SendEmail", "SendRawEmail"):
        return [Permission(f"ses:{operation}", arn.format("ses", f"identity/{params['Source']}"))]
    if service == "scheduler":
        return _scheduler(operation, params, arn)
    raise UnmodelledCall(f"{service} {operation}")


def _dynamodb(operation: str, params: Mapping[str, Any], table_arn: Any) -> list[Permission]:
    if operation == "TransactWriteItems":
        return [
            Permission(f"dynamodb:{_DYNAMODB_TRANSACT[kind]}", table_arn(body["TableName"]))
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Permission(f"dynamodb:{operation}", table_arn(table)) for table in params["RequestItems"]]
    resource = table_arn(params["TableName"])
    if params.get("IndexName"):
        resource = f"{resource}/index/{params['IndexName']}"
    return [Permission(f"dynamodb:{operation}", resource)]


def _bus_arn(name: str, arn: str) -> str:
    return name if name.startswith("arn:") else arn.format("events", f"event-bus/{name}")


def _scheduler(operation: str, params: Mapping[str, Any], arn: str) -> list[Permission]:
    group = params.get("GroupName") or "default"
    if operation in ("CreateSchedule", "UpdateSchedule", "DeleteSchedule", "GetSchedule"):
        found = [Permission(f"scheduler:{operation}", arn.format("scheduler", f"schedule/{group}/{params['Name']}"))]
        if params.get("RoleArn"):
            found.append(Permission("iam:PassRole", str(params["RoleArn"])))
        return found
    raise UnmodelledCall(f"scheduler {operation}")


# ------------------------------------------------------------------------------------------------ what is granted


def allows(statements: Iterable[Mapping[str, Any]], permission: Permission) -> bool:
    """Whether an Allow statement (and no Deny) covers the permission; IAM's ``*`` and ``?`` wildcards apply."""
    allowed = False
    for statement in statements:
        action_matches = _matches(_listed(statement.get("Action")), permission.action, ignore_case=True)
        if not action_matches or not _matches(_listed(statement.get("Resource")), permission.resource):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _matches(patterns: Sequence[str], value: str, *, ignore_case: bool = False) -> bool:
    if ignore_case:
        return any(fnmatchcase(value.lower(), pattern.lower()) for pattern in patterns)
    return any(fnmatchcase(value, pattern) for pattern in patterns)


def denied(
    calls: Iterable[Mapping[str, Any]], statements: Sequence[Mapping[str, Any]], *, region: str, account: str
) -> Iterator[tuple[Mapping[str, Any], Permission]]:
    """Each recorded call's permissions that the statements do not allow."""
    for call in calls:
        for permission in required_permissions(call, region=region, account=account):
            if not allows(statements, permission):
                yield call, permission


def policy_statements(template: Any, logical_id: str) -> list[dict[str, Any]]:
    """A function's inline policy statements, resolved (conditions applied) as the local stack resolves them."""
    policies = template.resolve(template.body["Resources"][logical_id]["Properties"].get("Policies", []))
    return [statement for policy in policies for statement in policy.get("Statement", [])]


def check(directory: Path, template: Any, *, region: str, account: str) -> list[str]:
    """One line per call whose permission the template does not grant to the function that made it."""
    problems = []
    for logical_id, calls in read_calls(directory).items():
        statements = policy_statements(template, logical_id)
        for call, permission in denied(calls, statements, region=region, account=account):
            problems.append(
                f"{logical_id}: {call['service']} {call['operation']} needs {permission.action} on "
                f"{permission.resource}, which its policy does not allow"
            )
    return sorted(set(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.access", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="the --access-log folder of a local stack run")
    args = parser.parse_args(argv)
    template = Template.load(Path(__file__).resolve().parent.parent / "template.yaml")
    problems = check(args.directory, template, region=REGION, account=ACCOUNT_ID)
    recorded = read_calls(args.directory)
    calls = sum(len(items) for items in recorded.values())
    print(f"{calls} AWS calls of {len(recorded)} functions checked against template.yaml")
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
