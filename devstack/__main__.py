"""``python -m devstack``: start the whole service locally (``make run`` calls this)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from devstack.demo import Demo, DemoFailed
from devstack.stack import LocalStack, PortInUse, StackOptions
from devstack.template import TemplateError, parse_parameter_overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--port", type=int, default=3000, help="API port on 127.0.0.1 (default 3000)")
    parser.add_argument("--moto-port", type=int, default=3010, help="moto server port (default 3010)")
    parser.add_argument("--provider-port", type=int, default=3020, help="fake on-call provider port (default 3020)")
    parser.add_argument("--speed", type=float, default=1.0, help="run schedules this many times faster (default 1)")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE", help="template parameter")
    parser.add_argument(
        "--auto-ack",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the fake provider acknowledges each alert after SECONDS with a signed callback",
    )
    parser.add_argument("--demo", action="store_true", help="play the runbook scenario once the stack is ready")
    parser.add_argument("--verbose", action="store_true", help="also print email bodies")
    parser.add_argument("--state-dir", type=Path, default=None, help="where function logs go (default .devstack/)")
    parser.add_argument(
        "--access-log",
        type=Path,
        default=None,
        metavar="DIR",
        help="record each function's AWS calls in DIR/<Function>.jsonl; python -m devstack.access DIR checks them",
    )
    args = parser.parse_args(argv)

    # Ctrl-C only sets this: a stop in the middle of starting waits for the start to finish, then undoes it all.
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        options = StackOptions(
            port=args.port,
            moto_port=args.moto_port,
            provider_port=args.provider_port,
            speed=args.speed,
            parameters=parse_parameter_overrides(args.parameter),
            verbose=args.verbose,
            auto_ack_seconds=args.auto_ack,
            access_log_dir=args.access_log,
        )
        if args.state_dir:
            options.state_dir = args.state_dir
        stack = LocalStack(options)
        stack.check_ports()
    except (PortInUse, TemplateError) as error:
        print(str(error), file=sys.stderr)
        return 2
    demo = Demo(stack, say=stack.log) if args.demo else None
    try:
        stack.start()
        seconds = stack.wait_until_ready()
        stack.log(
            f"ready     API on {stack.api_url} ({seconds:.1f} s); fake provider on {stack.provider_url}; "
            f"function logs in {options.state_dir / 'logs'}; Ctrl-C stops"
        )
        if demo is not None and not stopping.is_set():
            # In its own thread, so Ctrl-C stops the stack at once, mid-demo too.
            threading.Thread(target=_play_demo, args=(demo,), name="demo", daemon=True).start()
        stopping.wait()
    finally:
        stack.log("stopping  ...")
        if demo is not None:
            demo.stop()
        stack.stop()
        stack.log("stopped")
    return 0


def _play_demo(demo: Demo) -> None:
    say = demo.say
    try:
        demo.run()
    except (DemoFailed, OSError) as error:
        say(f"demo      stopped: {error}")
        say("demo      the stack keeps running so you can look around; Ctrl-C stops")
        return
    say("demo      finished; the connectors keep reporting and the stack keeps running; Ctrl-C stops")


if __name__ == "__main__":
    sys.exit(main())
