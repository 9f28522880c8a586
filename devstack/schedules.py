"""Schedules that fire: the template's Schedule events, and the EventBridge Scheduler schedules that moto stores
but never runs (the job schedules registered through the API).

``speed`` runs the schedule clock faster than the wall clock, so a demo does not wait minutes: with ``speed=30`` a
``rate(1 minute)`` schedule fires every 2 seconds. Only the cadence is compressed: the ``time`` of a scheduled event
is the wall clock's time when it fires, so the evaluator, the API's clock-skew checks, the escalation timers and the
callback signatures all agree on what "now" is.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connector_sla.jobs.schedule import Schedule, ScheduleError, parse_schedule
from devstack.functions import FunctionSpec

TICK_SECONDS = 0.1
SCHEDULER_POLL_SECONDS = 1.0

Invoke = Callable[[str, dict[str, Any]], Any]
InvokeAsync = Callable[[str, Any], None]


class FastClock:
    """A clock that starts at the wall clock's now and runs ``speed`` times faster."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall_start = datetime.now(UTC)
        self._started = time.monotonic()

    def now(self) -> datetime:
        return self._wall_start + timedelta(seconds=(time.monotonic() - self._started) * self.speed)


@dataclass
class _Entry:
    label: str
    schedule: Schedule
    anchor: datetime
    next_at: datetime | None
    fire: Callable[[datetime], None]


class Scheduler:
    """Fires template schedule rules and Scheduler schedules on a fast clock."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        invoke: Invoke,
        invoke_async: InvokeAsync,
        scheduler_client: Any,
        log: Callable[[str], None],
        *,
        speed: float,
        region: str,
        account_id: str,
        stack_name: str,
        schedule_groups: list[str],
    ) -> None:
        self.clock = FastClock(speed)
        self.functions = functions
        self.invoke = invoke
        self.invoke_async = invoke_async
        self.client = scheduler_client
        self.log = log
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.schedule_groups = schedule_groups
        self._entries: dict[str, _Entry] = {}
        self._remote: dict[str, tuple[str, str]] = {}  # schedule key -> (expression, state) as last seen
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.fired = 0

    def start(self) -> None:
        now = self.clock.now()
        for spec in self.functions.values():
            for rule in spec.schedules:
                if not rule.enabled:
                    continue
                schedule = parse_schedule(rule.expression)
                label = f"{spec.logical_id}.{rule.event_name}"
                self._entries[label] = _Entry(
                    label, schedule, now, schedule.next_after(now, anchor=now), self._rule_firer(spec, rule.event_name)
                )
        self._threads = [
            threading.Thread(target=self._tick_loop, name="schedules", daemon=True),
            threading.Thread(target=self._poll_scheduler_loop, name="scheduler-poll", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # -------------------------------------------------------------------------------------------- template rules

    def _rule_firer(self, spec: FunctionSpec, event_name: str) -> Callable[[datetime], None]:
        rule_name = f"{self.stack_name}-{spec.logical_id}-{event_name}"

        def fire(at: datetime) -> None:
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": self.account_id,
                "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [f"arn:aws:events:{self.region}:{self.account_id}:rule/{rule_name}"],
                "detail": {},
            }
            started = time.perf_counter()
            try:
                result = self.invoke(spec.logical_id, event)
                outcome = f"ok {json.dumps(result)[:120]}"
            except Exception as error:  # noqa: BLE001 - a failed tick is logged; the next tick still fires
                outcome = f"failed: {error}"
            elapsed = (time.perf_counter() - started) * 1000
            self.log(f"schedule  {spec.logical_id}.{event_name} fired -> {outcome} ({elapsed:.0f} ms)")

        return fire

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock.now()
            with self._lock:
                due = [entry for entry in self._entries.values() if entry.next_at is not None and entry.next_at <= now]
                for entry in due:
                    entry.next_at = entry.schedule.next_after(now, anchor=entry.anchor)
                    fired_at = datetime.now(UTC)
                    name = f"fire-{entry.label}"
                    threading.Thread(target=entry.fire, args=(fired_at,), daemon=True, name=name).start()
                    self.fired += 1
            self._stop.wait(TICK_SECONDS)

    # -------------------------------------------------------------------------------------------- Scheduler API

    def _poll_scheduler_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync_remote_schedules()
            except Exception as error:  # noqa: BLE001 - keep polling; moto may be restarting
                self.log(f"schedule  could not read EventBridge Scheduler schedules: {error}")
            self._stop.wait(SCHEDULER_POLL_SECONDS)

    def _sync_remote_schedules(self) -> None:
        seen = set()
        for group in self.schedule_groups:
            paginator = self.client.get_paginator("list_schedules")
            for page in paginator.paginate(GroupName=group):
                for summary in page.get("Schedules", []):
                    key = f"scheduler:{group}/{summary['Name']}"
                    seen.add(key)
                    detail = self.client.get_schedule(GroupName=group, Name=summary["Name"])
                    self._track(key, detail)
        with self._lock:
            for key in [key for key in self._entries if key.startswith("scheduler:") and key not in seen]:
                del self._entries[key]
                self._remote.pop(key, None)
                self.log(f"schedule  {key.removeprefix('scheduler:')} deleted")

    def _track(self, key: str, detail: dict[str, Any]) -> None:
        expression, state = detail["ScheduleExpression"], detail.get("State", "ENABLED")
        with self._lock:
            if self._remote.get(key) == (expression, state):
                return
            self._remote[key] = (expression, state)
            self._entries.pop(key, None)
            if state != "ENABLED":
                self.log(f"schedule  {key.removeprefix('scheduler:')} is {state.lower()}")
                return
            try:
                schedule = parse_schedule(expression)
            except ScheduleError as error:
                self.log(f"schedule  {key.removeprefix('scheduler:')} ignored: {error}")
                return
            now = self.clock.now()
            target = detail["Target"]
            self._entries[key] = _Entry(
                key, schedule, now, schedule.next_after(now, anchor=now), self._target_firer(key, target)
            )
            self.log(f"schedule  {key.removeprefix('scheduler:')} registered: {expression}")

    def _target_firer(self, key: str, target: dict[str, Any]) -> Callable[[datetime], None]:
        function = next((spec for spec in self.functions.values() if spec.arn == target["Arn"]), None)

        def fire(at: datetime) -> None:
            if function is None:
                self.log(f"schedule  {key.removeprefix('scheduler:')}: target {target['Arn']} is not a local function")
                return
            raw_input = target.get("Input") or "{}"
            try:
                payload = json.loads(raw_input)
            except ValueError:
                payload = raw_input
            self.invoke_async(function.logical_id, payload)
            self.log(f"schedule  {key.removeprefix('scheduler:')} fired at {at:%H:%M:%S} -> {function.logical_id}")

        return fire
