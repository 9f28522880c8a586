"""Reading ``template.yaml``: parameters, conditions, physical names and the intrinsic functions we use.

cfn-lint's decoder turns the short tags (``!Ref``, ``!Sub``...) into their long form; :class:`Template` resolves
them against parameter values, pseudo parameters and the attributes of resources created so far.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "connector-sla-local"
NO_VALUE = object()

_SUB_VARIABLE = re.compile(r"\${([^}!][^}]*)}")


class TemplateError(Exception):
    """The template uses something the local stack cannot resolve."""


def _plain(node: Any) -> Any:
    """cfn-lint's node types as plain dicts, lists and strings."""
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if isinstance(node, str):
        return str(node)
    return node


@dataclass
class Template:
    """A parsed template with its parameter values; resource attributes are filled in as resources are created."""

    path: Path
    body: dict[str, Any]
    parameters: dict[str, str]
    stack_name: str = STACK_NAME
    region: str = REGION
    account_id: str = ACCOUNT_ID
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, overrides: Mapping[str, str] | None = None, **kwargs: Any) -> Template:
        """Parse ``path`` and take each parameter's default unless ``overrides`` sets it."""
        decoded, matches = decode(str(path))
        if decoded is None:
            raise TemplateError(f"cannot read {path}: {'; '.join(str(match) for match in matches)}")
        body = _plain(decoded)
        overrides = dict(overrides or {})
        declared = body.get("Parameters", {})
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"unknown template parameters: {', '.join(unknown)}")
        parameters = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default; pass it with --parameter {name}=...")
            parameters[name] = str(value)
        return cls(path=path, body=body, parameters=parameters, **kwargs)

    # ------------------------------------------------------------------------------------------ structure

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """Resources whose condition holds, by logical id."""
        return {
            logical_id: resource
            for logical_id, resource in self.body.get("Resources", {}).items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value.get("Type") == resource_type}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.body.get("Conditions", {})[name]))

    def globals_for(self, section: str) -> dict[str, Any]:
        return self.body.get("Globals", {}).get(section, {})

    # ------------------------------------------------------------------------------------------ names

    def physical_name(self, logical_id: str) -> str:
        """The name a resource gets locally: its declared name, else ``<stack>-<LogicalId>`` as CloudFormation."""
        resource = self.body["Resources"][logical_id]
        properties = resource.get("Properties", {})
        kind = resource["Type"]
        declared_key = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::Events::EventBus": "Name",
            "AWS::SecretsManager::Secret": "Name",
            "AWS::SSM::Parameter": "Name",
            "AWS::Scheduler::ScheduleGroup": "Name",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Serverless::LayerVersion": "LayerName",
            "AWS::IAM::Role": "RoleName",
            "AWS::Cognito::UserPoolDomain": "Domain",
        }.get(kind)
        if declared_key and declared_key in properties:
            return str(self.resolve(properties[declared_key]))
        name = f"{self.stack_name}-{logical_id}"
        if kind == "AWS::SQS::Queue" and self.resolve(properties.get("FifoQueue")) is True:
            return f"{name}.fifo"  # CloudFormation names a FIFO queue so, as SQS requires
        return name.lower() if kind == "AWS::S3::Bucket" else name

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def default_attributes(self, logical_id: str) -> dict[str, Any]:
        """Ref and GetAtt values of a resource that the local stack does not create in moto."""
        kind = self.body["Resources"][logical_id]["Type"]
        name = self.physical_name(logical_id)
        if kind == "AWS::Serverless::Function":
            return {"Ref": name, "Arn": self.arn("lambda", f"function:{name}")}
        if kind == "AWS::Serverless::LayerVersion":
            return {"Ref": self.arn("lambda", f"layer:{name}:1")}
        if kind == "AWS::IAM::Role":
            return {"Ref": name, "Arn": f"arn:aws:iam::{self.account_id}:role/{name}"}
        if kind == "AWS::Serverless::Api":
            return {"Ref": "local", "RootResourceId": "root"}
        if kind == "AWS::Cognito::UserPool":
            return {"Ref": f"{self.region}_local", "Arn": self.arn("cognito-idp", f"userpool/{self.region}_local")}
        if kind == "AWS::Cognito::UserPoolClient":
            return {"Ref": "localoperatorclient0123456"}
        # Before creation (e.g. when only the routes are needed), the ARNs resources would get.
        if kind == "AWS::DynamoDB::Table":
            arn = self.arn("dynamodb", f"table/{name}")
            return {"Ref": name, "Arn": arn, "StreamArn": f"{arn}/stream/not-created"}
        if kind == "AWS::SQS::Queue":
            return {
                "Ref": f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}",
                "Arn": self.arn("sqs", name),
            }
        if kind == "AWS::Events::EventBus":
            return {"Ref": name, "Arn": self.arn("events", f"event-bus/{name}"), "Name": name}
        if kind == "AWS::S3::Bucket":
            return {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
        if kind == "AWS::Scheduler::ScheduleGroup":
            return {"Ref": name, "Arn": self.arn("scheduler", f"schedule-group/{name}")}
        return {"Ref": name}

    def attribute(self, logical_id: str, name: str) -> Any:
        if logical_id not in self.body.get("Resources", {}):
            raise TemplateError(f"unknown resource {logical_id}")
        values = self.attributes.get(logical_id) or self.default_attributes(logical_id)
        if name not in values:
            raise TemplateError(f"{logical_id}.{name} is not known yet (create {logical_id} first)")
        return values[name]

    # ------------------------------------------------------------------------------------------ intrinsics

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.attribute(name, "Ref")

    def resolve(self, node: Any) -> Any:
        """``node`` with every intrinsic function replaced by its value; ``AWS::NoValue`` entries are dropped."""
        if isinstance(node, list):
            return [value for value in (self.resolve(item) for item in node) if value is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, value)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _sub(self, value: Any) -> str:
        text, variables = (value, {}) if isinstance(value, str) else (value[0], self.resolve(value[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, _, attribute = name.partition(".")
                return str(self.attribute(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _get_att(self, value: Any) -> Any:
        logical_id, attribute = value.split(".", 1) if isinstance(value, str) else self.resolve(value)
        return self.attribute(logical_id, attribute)

    def _if(self, value: Any) -> Any:
        name, when_true, when_false = value
        return self.resolve(when_true if self.condition(name) else when_false)


def _equals(template: Template, value: Any) -> bool:
    left, right = template.resolve(value)
    return str(left) == str(right)


_INTRINSICS = {
    "Ref": lambda template, value: template.ref(value),
    "Fn::Sub": Template._sub,
    "Fn::GetAtt": Template._get_att,
    "Fn::Join": lambda template, value: value[0].join(str(item) for item in template.resolve(value[1])),
    "Fn::If": Template._if,
    "Fn::Equals": _equals,
    "Fn::Not": lambda template, value: not template.resolve(value[0]),
    "Fn::And": lambda template, value: all(template.resolve(item) for item in value),
    "Fn::Or": lambda template, value: any(template.resolve(item) for item in value),
    "Condition": lambda template, value: template.condition(value),
    "Fn::Select": lambda template, value: template.resolve(value[1])[int(template.resolve(value[0]))],
    "Fn::Split": lambda template, value: str(template.resolve(value[1])).split(value[0]),
}


def parse_parameter_overrides(pairs: list[str]) -> dict[str, str]:
    """``Name=value`` pairs from the command line."""
    overrides = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise TemplateError(f"--parameter expects Name=value, got {pair!r}")
        overrides[name] = value
    return overrides
