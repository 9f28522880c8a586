"""The functions of the template and how the local stack runs them.

Each function runs in a warm worker process of its own, as in Lambda: its own environment variables, its own
module state, one invocation at a time. A worker that exceeds the function's timeout is killed and replaced.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from devstack.access import ACCESS_LOG_ENV, install_recorder
from devstack.template import Template

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = ROOT / "layers" / "core"


@dataclass(frozen=True)
class ApiRoute:
    function: str
    method: str
    path: str
    open_route: bool


@dataclass(frozen=True)
class StreamMapping:
    function: str
    stream_arn: str
    batch_size: int
    batching_window: float
    max_retries: int
    max_record_age: int
    bisect: bool
    report_item_failures: bool
    filters: tuple[dict[str, Any], ...]
    on_failure_queue_arn: str | None
    starting_position: str


@dataclass(frozen=True)
class ScheduleRule:
    function: str
    event_name: str
    expression: str
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    async_retries: int = 2
    async_failure_queue_arn: str | None = None
    routes: tuple[ApiRoute, ...] = ()
    streams: tuple[StreamMapping, ...] = ()
    schedules: tuple[ScheduleRule, ...] = ()


def read_functions(template: Template) -> dict[str, FunctionSpec]:
    """Every ``AWS::Serverless::Function`` of the template with its resolved settings and event sources."""
    defaults = template.resolve(template.globals_for("Function"))
    specs = {}
    for logical_id, resource in template.of_type("AWS::Serverless::Function").items():
        properties = template.resolve(resource.get("Properties", {}))
        environment = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **properties.get("Environment", {}).get("Variables", {}),
        }
        attributes = template.default_attributes(logical_id)
        invoke_config = properties.get("EventInvokeConfig", {})
        routes, streams, schedules = [], [], []
        for event_name, event in properties.get("Events", {}).items():
            event_properties = event.get("Properties", {})
            if event["Type"] == "Api":
                auth = event_properties.get("Auth", {}).get("Authorizer")
                routes.append(
                    ApiRoute(logical_id, event_properties["Method"].upper(), event_properties["Path"], auth == "NONE")
                )
            elif event["Type"] == "DynamoDB":
                streams.append(_stream_mapping(logical_id, event_properties))
            elif event["Type"] in ("Schedule", "ScheduleV2"):
                expression = event_properties.get("Schedule") or event_properties.get("ScheduleExpression")
                enabled = event_properties.get("Enabled", event_properties.get("State", "ENABLED") != "DISABLED")
                schedules.append(ScheduleRule(logical_id, event_name, str(expression), bool(enabled)))
        failure = invoke_config.get("DestinationConfig", {}).get("OnFailure", {})
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=attributes["Ref"],
            arn=attributes["Arn"],
            code_dir=(template.path.parent / properties["CodeUri"]).resolve(),
            handler=properties.get("Handler", defaults.get("Handler", "app.lambda_handler")),
            timeout=int(properties.get("Timeout", defaults.get("Timeout", 3))),
            memory=int(properties.get("MemorySize", defaults.get("MemorySize", 128))),
            environment={key: str(value) for key, value in environment.items()},
            async_retries=int(invoke_config.get("MaximumRetryAttempts", 2)),
            async_failure_queue_arn=failure.get("Destination"),
            routes=tuple(routes),
            streams=tuple(streams),
            schedules=tuple(schedules),
        )
    return specs


def _stream_mapping(function: str, properties: dict[str, Any]) -> StreamMapping:
    filters = tuple(json.loads(item["Pattern"]) for item in properties.get("FilterCriteria", {}).get("Filters", []))
    failure = properties.get("DestinationConfig", {}).get("OnFailure", {})
    return StreamMapping(
        function=function,
        stream_arn=properties["Stream"],
        batch_size=int(properties.get("BatchSize", 100)),
        batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
        max_retries=int(properties.get("MaximumRetryAttempts", -1)),
        max_record_age=int(properties.get("MaximumRecordAgeInSeconds", -1)),
        bisect=bool(properties.get("BisectBatchOnFunctionError", False)),
        report_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
        filters=filters,
        on_failure_queue_arn=failure.get("Destination"),
        starting_position=properties.get("StartingPosition", "TRIM_HORIZON"),
    )


def handler_module_path(spec: FunctionSpec) -> tuple[Path, str]:
    module, _, attribute = spec.handler.rpartition(".")
    return spec.code_dir / (module.replace(".", "/") + ".py"), attribute


# ------------------------------------------------------------------------------------------------ Lambda context


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, deadline: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "local"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# ------------------------------------------------------------------------------------------------ worker process


class InvocationError(Exception):
    """The handler raised, timed out or its worker died; ``payload`` is what Lambda would report."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", "invocation failed"))
        self.payload = payload


def _worker_main(spec: FunctionSpec, extra_env: dict[str, str], connection: Connection, log_path: str) -> None:
    log = Path(log_path).open("a", buffering=1)  # noqa: SIM115 - lives as long as the worker
    sys.stdout = log
    sys.stderr = log
    for key in [key for key in os.environ if key.startswith(("AWS_", "POWERTOOLS_"))]:
        del os.environ[key]
    os.environ.update(spec.environment)
    os.environ.update(extra_env)
    access_log = os.environ.pop(ACCESS_LOG_ENV, None)
    if access_log:
        install_recorder(Path(access_log) / f"{spec.logical_id}.jsonl")
    sys.path[:0] = [str(spec.code_dir), str(LAYER_DIR)]
    module_path, attribute = handler_module_path(spec)
    try:
        module_spec = importlib.util.spec_from_file_location("app", module_path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules["app"] = module
        module_spec.loader.exec_module(module)
        handler = getattr(module, attribute)
        connection.send(("ready", None))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which shows it
        connection.send(("init_error", _error_payload(error)))
        return
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        event, timeout = message
        context = LambdaContext(spec, time.monotonic() + timeout)
        try:
            result = handler(event, context)
            connection.send(("ok", json.loads(json.dumps(result, default=str))))
        except Exception as error:  # noqa: BLE001 - the parent decides what a failed invocation means
            traceback.print_exc()
            connection.send(("error", _error_payload(error)))


def _error_payload(error: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_exception(error)[-6:],
    }


@dataclass
class Worker:
    """A function's warm worker process; ``invoke`` runs one event at a time."""

    spec: FunctionSpec
    extra_env: dict[str, str]
    log_dir: Path
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _process: Any = None
    _connection: Connection | None = None
    invocations: int = 0

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        log_path = str(self.log_dir / f"{self.spec.logical_id}.log")
        self._process = context.Process(
            target=_worker_main,
            args=(self.spec, self.extra_env, child, log_path),
            name=f"devstack-{self.spec.logical_id}",
            daemon=True,
        )
        self._process.start()
        self._connection = parent
        # Lambda bounds the init phase at 10 s; a cold import here is far below that.
        if not parent.poll(30):
            self.stop()
            raise InvocationError({"errorMessage": f"{self.spec.logical_id} did not finish init within 30 s"})
        status, payload = parent.recv()
        if status != "ready":
            self.stop()
            raise InvocationError(payload)

    def invoke(self, event: Any) -> Any:
        """Run the handler on ``event``; returns its result or raises :class:`InvocationError`."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self.start()
            assert self._connection is not None
            self.invocations += 1
            self._connection.send((event, self.spec.timeout))
            if not self._connection.poll(self.spec.timeout + 1):
                self.stop()
                message = f"Task timed out after {self.spec.timeout:.2f} seconds"
                raise InvocationError({"errorMessage": message, "errorType": "TimeoutError"})
            try:
                status, payload = self._connection.recv()
            except EOFError as error:
                self.stop()
                raise InvocationError({"errorMessage": "worker process exited", "errorType": "Runtime.Exit"}) from error
            if status != "ok":
                raise InvocationError(payload)
            return payload

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
        self._process = None
        self._connection = None
