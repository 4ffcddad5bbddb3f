# SPDX-License-Identifier: MIT
"""`waitd worker`: a Celery worker that runs waitd's handlers (`run=celery`).

The broker and queue come from the command line, or from the `[celery]`
section of the waitd.conf of `--passdir` (or $PASSDIR).  The worker is
Celery's own (`celery worker`, prefork pool), started without mingle and
gossip (it starts in under a second and needs nothing from its peers) and
with the app of `worker.app`: waitd's settings (early acknowledgement,
prefetch 1) and the task `worker.task.run`.

Exit status: 2 for bad usage (no broker anywhere, an invalid waitd.conf,
Celery not installed), else what Celery's worker returns.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from collections.abc import Sequence

from waitd.config import conf, table
from waitd.config.confkeys import url
from waitd.config.errors import EXIT_USAGE
from waitd.config.passdir import conf_path
from waitd.run.executors.celery_app import install_hint
from waitd.worker import app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waitd worker",
        description="Run waitd's handlers for records with run=celery: a Celery worker on this host.",
        epilog="Without --broker, [celery] of PASSDIR/waitd.conf gives the broker and queue.",
    )
    p.add_argument("--broker", metavar="URL", type=_broker, help="the broker, such as redis://host:6379/0")
    p.add_argument("--queue", metavar="Q", help="the queue to take runs from (default: waitd.conf's, else waitd)")
    p.add_argument("--concurrency", metavar="N", type=_positive, help="handlers at once (default: the number of CPUs)")
    p.add_argument("--passdir", metavar="DIR", help="where waitd.conf is (default: $PASSDIR)")
    p.add_argument("--loglevel", metavar="LEVEL", default="INFO", help="Celery's log level (default INFO)")
    return p


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 1000")
    return int(text)


def _broker(text: str) -> str:
    try:
        return url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def settings(args: argparse.Namespace) -> tuple[str, str]:
    """(broker, queue) from the arguments and waitd.conf; SystemExit(2) if none."""
    celery = None
    passdir = args.passdir or os.environ.get("PASSDIR")
    if passdir:
        path = conf_path(os.path.abspath(passdir))
        parsed, errors = conf.read(path)
        if errors:
            for error in errors:
                print(error, file=sys.stderr)
            _usage(f"{path}: {table.summary(errors)}; not starting")
        celery = parsed.celery
    broker = args.broker or (celery.broker if celery else None)
    if broker is None:
        where = f" and {passdir}/waitd.conf has no [celery] broker" if passdir else ""
        _usage(f"no broker: give --broker URL{where}")
    assert broker is not None
    queue = args.queue or (celery.queue if celery else "waitd")
    return broker, queue


def _usage(message: str) -> None:
    print(f"waitd worker: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    broker, queue = settings(args)
    if importlib.util.find_spec("celery") is None:
        _usage(f"Celery is not installed; {install_hint()}")
    celery = app.make(broker, queue)
    worker_argv = [
        "worker",
        "--queues",
        queue,
        "--hostname",
        f"waitd-{os.getpid()}@{socket.gethostname()}",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "--pool",
        "prefork",
        "--loglevel",
        args.loglevel,
    ]
    if args.concurrency is not None:
        worker_argv += ["--concurrency", str(args.concurrency)]
    try:
        celery.worker_main(worker_argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0
