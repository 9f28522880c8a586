"""The local stack: moto's server, the template's resources, the functions' workers, the gateway, the stream
pumps, the schedules and the fake on-call provider, started and stopped together."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends
from werkzeug.serving import BaseWSGIServer, make_server

from connector_sla.sla.events import EVENT_SOURCE
from devstack.access import ACCESS_LOG_ENV
from devstack.fake_provider import FakeProvider
from devstack.functions import ROOT, FunctionSpec, InvocationError, Worker, read_functions
from devstack.gateway import Gateway
from devstack.lambda_api import LambdaApi
from devstack.resources import create_resources, lift_tls_only_denies
from devstack.schedules import Scheduler
from devstack.streams import StreamPump
from devstack.template import ACCOUNT_ID, REGION, Template

HOST = "127.0.0.1"


class PortInUse(Exception):
    """A port the stack needs is taken; the message names it and the option that changes it."""


@dataclass
class StackOptions:
    port: int = 3000
    moto_port: int = 3010
    provider_port: int = 3020
    speed: float = 1.0
    parameters: dict[str, str] = field(default_factory=dict)
    template_path: Path = ROOT / "template.yaml"
    state_dir: Path = ROOT / ".devstack"
    verbose: bool = False
    auto_ack_seconds: float | None = None
    prewarm: bool = True
    # Record every AWS call of every function under this folder (devstack.access checks them against the template).
    access_log_dir: Path | None = None


def check_port(port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise PortInUse(
                f"error: port {port} on {HOST} is already in use; choose another with {option} N"
            ) from error


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class _Server:
    def __init__(self, app: Any, port: int, name: str) -> None:
        self.server: BaseWSGIServer = make_server(HOST, port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


class LocalStack:
    """Everything ``make run`` starts. ``start()`` returns once the API answers; ``stop()`` undoes it all."""

    def __init__(self, options: StackOptions, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.log = log or _print_line
        self.api_url = f"http://{HOST}:{options.port}"
        self.moto_url = f"http://{HOST}:{options.moto_port}"
        self.provider_url = f"http://{HOST}:{options.provider_port}"
        self.lambda_port = _free_port()
        self.workers: dict[str, Worker] = {}
        self.functions: dict[str, FunctionSpec] = {}
        self.pumps: list[StreamPump] = []
        self.servers: list[_Server] = []
        self.scheduler: Scheduler | None = None
        self.lambda_api: LambdaApi | None = None
        self.provider: FakeProvider | None = None
        self.template: Template | None = None
        self._moto: Any = None
        self._clients: dict[str, Any] = {}
        self.sla_events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -------------------------------------------------------------------------------------------- lifecycle

    def check_ports(self) -> None:
        """Raise :class:`PortInUse` naming the first port that is taken and the option that changes it."""
        check_port(self.options.port, "--port")
        check_port(self.options.moto_port, "--moto-port")
        check_port(self.options.provider_port, "--provider-port")

    def start(self) -> None:
        options = self.options
        self.check_ports()
        options.state_dir.mkdir(parents=True, exist_ok=True)
        if options.access_log_dir:
            options.access_log_dir.mkdir(parents=True, exist_ok=True)
        (options.state_dir / "logs").mkdir(exist_ok=True)
        self._start_moto()
        parameters = {
            "OncallWebhookUrl": f"{self.provider_url}/webhook/generic",
            "BridgeWebhookUrl": f"{self.provider_url}/bridge",
            **options.parameters,
        }
        self.template = Template.load(options.template_path, parameters)
        for line in create_resources(self.template, self.client) + lift_tls_only_denies(self.template, self.client):
            self.log(f"resource  {line}")
        self.functions = read_functions(self.template)
        for spec in self.functions.values():
            self.workers[spec.logical_id] = Worker(spec, self._worker_env(spec), options.state_dir / "logs")
        self.lambda_api = LambdaApi(self.functions, self.invoke, self.client("sqs"), self.log)
        self._start_servers()
        self._start_pumps()
        self._start_scheduler()
        self._start_email_printer()
        self._start_event_tap()
        if options.prewarm:
            self._prewarm()

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler:
            self.scheduler.stop()
        for pump in self.pumps:
            pump.stop()
        if self.lambda_api:
            self.lambda_api.stop()
        for server in self.servers:
            server.stop()
        for worker in self.workers.values():
            worker.stop()
        if self._moto is not None:
            self._moto.stop()

    # -------------------------------------------------------------------------------------------- AWS side

    def _start_moto(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address=HOST, port=self.options.moto_port, verbose=False)
        self._moto.start()
        # moto's backends live in the process: a stack started after another one in the same process (the e2e
        # tests) would otherwise find the earlier stack's tables. Every stack starts from an empty account.
        reset = urllib.request.Request(f"{self.moto_url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(reset, timeout=10):  # noqa: S310 - moto's own loopback endpoint
            pass
        self.log(f"moto      AWS emulated at {self.moto_url}")

    def client(self, service: str) -> Any:
        """A boto3 client of the stack's moto server (fake credentials; nothing leaves this machine)."""
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                region_name=REGION,
                endpoint_url=self.moto_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            )
        return self._clients[service]

    def _worker_env(self, spec: FunctionSpec) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_LAMBDA": f"http://{HOST}:{self.lambda_port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "POWERTOOLS_TRACE_DISABLED": "true",
            # Local-only relaxations, never set by the template: the fake provider is plain HTTP on loopback.
            "OUTBOUND_ALLOWED_LOCAL_TARGETS": f"{HOST}:{self.options.provider_port}",
            "RECONCILE_FILE_BASE_DIR": str(ROOT / "devstack" / "data"),
            **({ACCESS_LOG_ENV: str(self.options.access_log_dir)} if self.options.access_log_dir else {}),
        }

    # -------------------------------------------------------------------------------------------- invoking

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run one invocation of a function in its worker (one at a time per function, as Lambda)."""
        return self.workers[logical_id].invoke(event)

    def invoke_async(self, logical_id: str, payload: Any) -> None:
        assert self.lambda_api is not None
        self.lambda_api.invoke_async(logical_id, payload)

    def _prewarm(self) -> None:
        def warm() -> None:
            for worker in self.workers.values():
                if self._stop.is_set():
                    return
                try:
                    with worker._lock:
                        if worker._process is None:
                            worker.start()
                except InvocationError as error:
                    self.log(f"function  {worker.spec.logical_id} failed to start: {error}")

        thread = threading.Thread(target=warm, name="prewarm", daemon=True)
        thread.start()
        self._threads.append(thread)

    # -------------------------------------------------------------------------------------------- event sources

    def _start_servers(self) -> None:
        assert self.template is not None and self.lambda_api is not None
        routes = [route for spec in self.functions.values() for route in spec.routes]
        gateway = Gateway(routes, self.invoke, stage=self.template.parameters.get("Stage", "dev"), log=self._http_log)
        secret_name = (
            f"{self.template.parameters['ProviderSecretsPath']}/{self.template.parameters['OncallProviderName']}"
        )
        self.provider = FakeProvider(
            secret=lambda: _read_signing_secret(self.client("secretsmanager"), secret_name),
            callback_url=f"{self.api_url}/alerts/oncall/callback",
            log=self.log,
            auto_ack_seconds=self.options.auto_ack_seconds,
        )
        self.servers = [
            _Server(gateway, self.options.port, "gateway"),
            _Server(self.lambda_api, self.lambda_port, "lambda-api"),
            _Server(self.provider, self.options.provider_port, "fake-provider"),
        ]
        for server in self.servers:
            server.start()

    def _http_log(self, line: str) -> None:
        self.log(line)

    def _start_pumps(self) -> None:
        assert self.template is not None
        streams = self.client("dynamodbstreams")
        for spec in self.functions.values():
            for mapping in spec.streams:
                table = mapping.stream_arn.split(":table/", 1)[1].split("/", 1)[0]
                label = table.removeprefix(f"{self.template.stack_name}-")
                pump = StreamPump(
                    mapping, spec, streams, self.client("sqs"), self.invoke, self.log, region=REGION, table_label=label
                )
                pump.start()
                self.pumps.append(pump)

    def _start_scheduler(self) -> None:
        assert self.template is not None
        groups = [self.template.physical_name(key) for key in self.template.of_type("AWS::Scheduler::ScheduleGroup")]
        self.scheduler = Scheduler(
            self.functions,
            self.invoke,
            self.invoke_async,
            self.client("scheduler"),
            self.log,
            speed=self.options.speed,
            region=REGION,
            account_id=ACCOUNT_ID,
            stack_name=self.template.stack_name,
            schedule_groups=groups,
        )
        self.scheduler.start()

    def _start_email_printer(self) -> None:
        def watch() -> None:
            seen = 0
            while not self._stop.wait(0.5):
                messages = ses_backends[ACCOUNT_ID][REGION].sent_messages
                for message in messages[seen:]:
                    recipients = ", ".join(message.destinations.get("ToAddresses", []))
                    self.log(f"email     to {recipients}: {message.subject}")
                    if self.options.verbose:
                        for line in str(message.body).splitlines():
                            self.log(f"          | {line}")
                seen = len(messages)

        thread = threading.Thread(target=watch, name="ses-printer", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_event_tap(self) -> None:
        """Print every event published to the SLA bus, as a rule targeting a local queue would receive it.

        The tap (a rule and a queue) exists only in the local stack; in AWS, subscribers add their own rules.
        """
        assert self.template is not None
        bus = self.template.physical_name("SlaEventBus")
        sqs, events = self.client("sqs"), self.client("events")
        queue_url = sqs.create_queue(QueueName=f"{self.template.stack_name}-devstack-sla-event-tap")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rule = "devstack-sla-event-tap"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "tap", "Arn": queue_arn}])

        def watch() -> None:
            while not self._stop.is_set():
                try:
                    answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                except Exception as error:  # noqa: BLE001 - moto stopping under the thread ends the tap
                    if not self._stop.is_set():
                        self.log(f"event     the SLA event tap stopped: {error}")
                    return
                for message in answer.get("Messages", []):
                    event = json.loads(message["Body"])
                    self.sla_events.append(event)
                    self.log(f"event     {_describe_event(event)}")
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

        thread = threading.Thread(target=watch, name="sla-event-tap", daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait_until_ready(self, path: str = "/events/connectors/overview", timeout: float = 30.0) -> float:
        """Block until ``GET path`` answers; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                with urllib.request.urlopen(f"{self.api_url}{path}", timeout=5) as response:  # noqa: S310
                    if response.status < 500:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{self.api_url}{path} did not answer within {timeout:.0f} s")


def _read_signing_secret(secrets_client: Any, name: str) -> str:
    document = json.loads(secrets_client.get_secret_value(SecretId=name)["SecretString"])
    return str(document.get("signing_secret") or (document.get("signing_secrets") or [""])[0])


def _describe_event(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    moved = detail.get("from_level") is not None and detail.get("from_level") != detail.get("to_level")
    fields = [
        str(event.get("detail-type")),
        str(detail.get("connector_id")),
        f"level {detail.get('from_level')} -> {detail.get('to_level')}" if moved else f"level {detail.get('level')}",
        str(detail.get("severity")) if detail.get("severity") else None,
        f"incident {detail.get('incident_id')}" if detail.get("incident_id") else None,
        f"after {detail.get('duration_seconds')} s" if "duration_seconds" in detail else None,
    ]
    return " ".join(field for field in fields if field)


def _print_line(line: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {line}\n")
    sys.stdout.flush()
