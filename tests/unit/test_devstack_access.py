"""The least-privilege check of the local stack: recorded calls become the IAM actions AWS would authorize."""

from __future__ import annotations

import pytest

from devstack.access import Permission, UnmodelledCall, allows, denied, required_permissions

REGION, ACCOUNT = "eu-west-1", "111122223333"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Connectors"


def needs(service: str, operation: str, **params) -> list[Permission]:
    call = {"service": service, "operation": operation, "params": params}
    return required_permissions(call, region=REGION, account=ACCOUNT)


def test_a_transaction_needs_the_action_of_each_of_its_parts_on_each_table():
    items = [
        {"Put": {"TableName": "Connectors"}},
        {"Update": {"TableName": "Jobs"}},
        {"ConditionCheck": {"TableName": "Jobs"}},
    ]
    assert needs("dynamodb", "TransactWriteItems", TransactItems=items) == [
        Permission("dynamodb:PutItem", TABLE),
        Permission("dynamodb:UpdateItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Jobs"),
        Permission("dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Jobs"),
    ]


def test_an_index_query_is_authorized_on_the_index_arn():
    assert needs("dynamodb", "Query", TableName="Connectors", IndexName="ByDay") == [
        Permission("dynamodb:Query", f"{TABLE}/index/ByDay")
    ]


def test_s3_reads_of_a_version_and_object_lock_headers_need_their_own_actions():
    assert needs("s3", "HeadObject", Bucket="b", Key="k") == [Permission("s3:GetObject", "arn:aws:s3:::b/k")]
    assert needs("s3", "HeadObject", Bucket="b", Key="k", VersionId="v1") == [
        Permission("s3:GetObjectVersion", "arn:aws:s3:::b/k")
    ]
    assert needs("s3", "CreateMultipartUpload", Bucket="b", Key="k", ObjectLockMode="COMPLIANCE") == [
        Permission("s3:PutObject", "arn:aws:s3:::b/k"),
        Permission("s3:PutObjectRetention", "arn:aws:s3:::b/k"),
    ]


def test_batch_sends_secrets_and_schedules_map_to_what_iam_names():
    queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/replay"
    assert needs("sqs", "SendMessageBatch", QueueUrl=queue) == [
        Permission("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:replay")
    ]
    [secret] = needs("secretsmanager", "GetSecretValue", SecretId="connector-sla/dev/providers/generic")
    assert secret.resource.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:connector-sla/dev/providers/")
    assert needs("scheduler", "CreateSchedule", Name="job_1", GroupName="jobs", RoleArn="arn:aws:iam::1:role/r") == [
        Permission("scheduler:CreateSchedule", f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/jobs/job_1"),
        Permission("iam:PassRole", "arn:aws:iam::1:role/r"),
    ]


def test_a_call_nobody_modelled_is_refused_rather_than_passed():
    with pytest.raises(UnmodelledCall, match="sns Publish"):
        needs("sns", "Publish", TopicArn="arn:aws:sns:eu-west-1:1:t")


def test_allow_statements_match_wildcards_and_a_deny_wins():
    statements = [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": [TABLE, f"{TABLE}/index/*"]},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/evidence/*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/evidence/secret"},
    ]
    assert allows(statements, Permission("dynamodb:query", f"{TABLE}/index/ByDay"))  # actions ignore case
    assert not allows(statements, Permission("dynamodb:PutItem", TABLE))
    assert not allows(statements, Permission("dynamodb:GetItem", f"{TABLE}-copy"))
    assert allows(statements, Permission("s3:PutObject", "arn:aws:s3:::b/evidence/2026/x.zip"))
    assert not allows(statements, Permission("s3:PutObject", "arn:aws:s3:::b/evidence/secret"))
    assert not allows(statements, Permission("s3:PutObject", "arn:aws:s3:::b/other/x.zip"))


def test_denied_names_the_call_and_the_missing_permission():
    calls = [
        {"service": "dynamodb", "operation": "GetItem", "params": {"TableName": "Connectors"}},
        {"service": "dynamodb", "operation": "PutItem", "params": {"TableName": "Connectors"}},
    ]
    statements = [{"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": TABLE}]
    assert [permission for _, permission in denied(calls, statements, region=REGION, account=ACCOUNT)] == [
        Permission("dynamodb:PutItem", TABLE)
    ]
