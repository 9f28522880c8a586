"""Creating the template's AWS resources in moto: tables with their streams and indexes, queues, buses, the
evidence bucket with Object Lock, secrets, parameters and the job schedule group.

The same code builds the resources for the tests (in-process moto) and for the local stack (moto's server), so
neither can drift from ``template.yaml``.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from typing import Any

from devstack.template import Template

ClientFactory = Callable[[str], Any]

# Creation order: a resource may only refer to resources of earlier types (or ones never created in moto).
_ORDER = (
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::Events::EventBus",
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "AWS::Scheduler::ScheduleGroup",
    "AWS::SecretsManager::Secret",
    "AWS::SSM::Parameter",
)


def create_resources(template: Template, client: ClientFactory) -> list[str]:
    """Create every supported resource of ``template``; returns one line per resource created."""
    created = []
    for resource_type in _ORDER:
        for logical_id, resource in template.of_type(resource_type).items():
            properties = template.resolve(resource.get("Properties", {}))
            name = template.physical_name(logical_id)
            attributes = _CREATORS[resource_type](template, client, name, properties)
            template.attributes[logical_id] = attributes
            created.append(f"{resource_type.split('::', 1)[1]} {name}")
    sender = template.parameters.get("SenderEmail")
    if sender:
        client("ses").verify_email_identity(EmailAddress=sender)
        created.append(f"SES identity {sender}")
    return created


def _table(_template: Template, client: ClientFactory, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    dynamodb = client("dynamodb")
    params: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if properties.get("GlobalSecondaryIndexes"):
        params["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if properties.get("LocalSecondaryIndexes"):
        params["LocalSecondaryIndexes"] = properties["LocalSecondaryIndexes"]
    stream = properties.get("StreamSpecification")
    if stream:
        # CloudFormation infers StreamEnabled; the CreateTable API needs it spelled out.
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    if properties.get("SSESpecification", {}).get("SSEEnabled"):
        params["SSESpecification"] = {"Enabled": True}
    description = dynamodb.create_table(**params)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    attributes = {"Ref": name, "Arn": description["TableArn"]}
    if description.get("LatestStreamArn"):
        attributes["StreamArn"] = description["LatestStreamArn"]
    return attributes


def _queue(template: Template, client: ClientFactory, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    queue_attributes = {}
    for attribute in (
        "MessageRetentionPeriod", "VisibilityTimeout", "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope",
        "FifoThroughputLimit",
    ):  # fmt: skip
        if attribute in properties:
            value = properties[attribute]
            queue_attributes[attribute] = str(value).lower() if isinstance(value, bool) else str(value)
    url = client("sqs").create_queue(QueueName=name, Attributes=queue_attributes)["QueueUrl"]
    return {"Ref": url, "Arn": template.arn("sqs", name), "QueueName": name, "QueueUrl": url}


def _event_bus(_template: Template, client: ClientFactory, name: str, _properties: dict[str, Any]) -> dict[str, Any]:
    arn = client("events").create_event_bus(Name=name)["EventBusArn"]
    return {"Ref": name, "Arn": arn, "Name": name}


def _bucket(_template: Template, client: ClientFactory, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    s3 = client("s3")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=bool(properties.get("ObjectLockEnabled")))
    if properties.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=properties["VersioningConfiguration"])
    if properties.get("ObjectLockConfiguration"):
        lock = properties["ObjectLockConfiguration"]
        retention = lock["Rule"]["DefaultRetention"]
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": retention["Mode"], "Days": int(retention["Days"])}},
            },
        )
    if properties.get("BucketEncryption"):
        # CloudFormation says ServerSideEncryptionByDefault where the S3 API says ApplyServerSideEncryptionByDefault.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if properties.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    return {"Ref": name, "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}


def _bucket_policy(_template: Template, client: ClientFactory, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    client("s3").put_bucket_policy(Bucket=properties["Bucket"], Policy=json.dumps(properties["PolicyDocument"]))
    return {"Ref": name}


def lift_tls_only_denies(template: Template, client: ClientFactory) -> list[str]:
    """Remove the bucket policies' "deny unless TLS" statements; returns one line per bucket changed.

    Every request of the local stack is plain HTTP on loopback, and moto applies a Deny statement without evaluating
    its condition, so the template's TLS-only statement would refuse every request to the bucket. Other statements
    are kept; the template itself (and what the tests check of it) is unchanged.
    """
    lifted = []
    s3 = client("s3")
    for resource in template.of_type("AWS::S3::BucketPolicy").values():
        properties = template.resolve(resource.get("Properties", {}))
        statements = properties["PolicyDocument"].get("Statement", [])
        kept = [statement for statement in statements if not _denies_plain_http(statement)]
        if len(kept) == len(statements):
            continue
        if kept:
            document = {**properties["PolicyDocument"], "Statement": kept}
            s3.put_bucket_policy(Bucket=properties["Bucket"], Policy=json.dumps(document))
        else:
            s3.delete_bucket_policy(Bucket=properties["Bucket"])
        lifted.append(f"S3::BucketPolicy {properties['Bucket']}: TLS-only deny lifted (the local stack is plain HTTP)")
    return lifted


def _denies_plain_http(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and condition == {"Bool": {"aws:SecureTransport": "false"}}


def _schedule_group(
    _template: Template, client: ClientFactory, name: str, _properties: dict[str, Any]
) -> dict[str, Any]:
    arn = client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
    return {"Ref": name, "Arn": arn}


def _generated_secret(spec: dict[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "GenerateStringKey" in spec:
        document = json.loads(spec.get("SecretStringTemplate", "{}"))
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


def _secret(_template: Template, client: ClientFactory, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    value = properties.get("SecretString") or _generated_secret(properties.get("GenerateSecretString", {}))
    arn = client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
    return {"Ref": arn, "Id": arn}


def _parameter(_template: Template, client: ClientFactory, name: str, properties: dict[str, Any]) -> dict[str, Any]:
    client("ssm").put_parameter(Name=name, Type=properties.get("Type", "String"), Value=str(properties["Value"]))
    return {"Ref": name}


_CREATORS: dict[str, Callable[[Template, ClientFactory, str, dict[str, Any]], dict[str, Any]]] = {
    "AWS::DynamoDB::Table": _table,
    "AWS::SQS::Queue": _queue,
    "AWS::Events::EventBus": _event_bus,
    "AWS::S3::Bucket": _bucket,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::Scheduler::ScheduleGroup": _schedule_group,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::SSM::Parameter": _parameter,
}
