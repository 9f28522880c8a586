"""What starts a job run: its EventBridge Scheduler schedule, or an on-demand asynchronous invocation.

Each job has one schedule named after its id in the stack's schedule group; its target is the job runner function
with the input ``{"job_id": ..., "trigger": "schedule"}``. Pausing a job disables the schedule. A manual run is
an ``Event`` invocation of the runner with ``{"job_id": ..., "trigger": "manual", "run_id": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError


class TriggerFailed(Exception):
    """AWS refused to create, change or invoke a trigger; the message carries its error code."""


def schedule_input(job_id: str) -> str:
    return json.dumps({"job_id": job_id, "trigger": "schedule"}, separators=(",", ":"))


class JobSchedules:
    """Storage adapter for the jobs' EventBridge Scheduler schedules."""

    def __init__(self, scheduler: Any, *, group: str, target_arn: str, role_arn: str) -> None:
        self.scheduler = scheduler
        self.group = group
        self.target_arn = target_arn
        self.role_arn = role_arn

    def _params(self, job_id: str, expression: str, *, enabled: bool, description: str) -> dict[str, Any]:
        return {
            "Name": job_id,
            "GroupName": self.group,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if enabled else "DISABLED",
            "Description": description[:512],
            "Target": {
                "Arn": self.target_arn,
                "RoleArn": self.role_arn,
                "Input": schedule_input(job_id),
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 3600},
            },
        }

    def create(self, job_id: str, expression: str, *, enabled: bool, description: str = "") -> None:
        self._call("create_schedule", self._params(job_id, expression, enabled=enabled, description=description))

    def update(self, job_id: str, expression: str, *, enabled: bool, description: str = "") -> None:
        self._call("update_schedule", self._params(job_id, expression, enabled=enabled, description=description))

    def delete(self, job_id: str) -> None:
        """Delete the job's schedule; one that is already gone is fine."""
        try:
            self.scheduler.delete_schedule(Name=job_id, GroupName=self.group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise TriggerFailed(_code(error)) from error

    def state(self, job_id: str) -> str | None:
        """``ENABLED``, ``DISABLED``, or ``None`` when the job has no schedule."""
        try:
            return str(self.scheduler.get_schedule(Name=job_id, GroupName=self.group).get("State", "ENABLED"))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise TriggerFailed(_code(error)) from error

    def _call(self, operation: str, params: Mapping[str, Any]) -> None:
        try:
            getattr(self.scheduler, operation)(**params)
        except ClientError as error:
            raise TriggerFailed(_code(error)) from error


class RunnerInvoker:
    """Starts a run now: an asynchronous (``Event``) invocation of the job runner function."""

    def __init__(self, lambda_client: Any, function_arn: str) -> None:
        self.lambda_client = lambda_client
        self.function_arn = function_arn

    def start(self, payload: Mapping[str, Any]) -> None:
        try:
            self.lambda_client.invoke(
                FunctionName=self.function_arn, InvocationType="Event", Payload=json.dumps(dict(payload)).encode()
            )
        except ClientError as error:
            raise TriggerFailed(_code(error)) from error


def _code(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".strip()
