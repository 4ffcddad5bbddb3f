# SPDX-License-Identifier: MIT
"""waitd's Celery application as both ends build it: the task's name, its settings.

The executor (`executors.celery`) sends runs with the app `make` builds
from waitd.conf's `[celery]`, and `waitd worker` (`worker.app`) runs them
with the same app and the task's body registered: the settings are one
definition for both.  The broker is also the result backend (Redis).  The
settings that matter:

- early acknowledgement (`task_acks_late` off, the default, said aloud):
  a message is acknowledged before its task runs, so a worker that dies
  mid-run loses the run, and it is never redelivered (at most once);
- STARTED stored when a task starts: another worker that gets a revoke
  of it then leaves its state alone (Celery marks a PENDING task REVOKED),
  so REVOKED "terminated" means the handler was killed, and a task whose
  worker died stays STARTED, without a result;
- one message reserved at a time per pool process (prefetch 1), and a
  task carries `expires=` (its start plus its timeout): a message that
  waited too long, or that the broker restored after a dead worker, is
  discarded, never run late;
- JSON only; short socket timeouts, so that nothing waits long on a
  broker that is down; results stored with retries (a worker whose handler
  ends while Redis is down keeps the result until Redis is back).

Importing Celery takes a while: only `make` does it, when a record has
`run=celery` or `waitd worker` starts.

Also the ends of the task's contract that need no broker: `problem`
(what `run=celery` needs: waitd.conf's [celery] and Celery itself, else an
error of the record's line), `result_of` (a task's stored state, SUCCESS,
FAILURE or REVOKED, as an outcome, its output and waitd's line about it
for the log; the worker's side of it is `worker.task.run`'s result) and
`shown_url` (a broker URL without its password, for logs and `--check`).

This module imports nothing of the worker: the worker imports it.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from waitd.config import conf
from waitd.config.passdir import conf_path
from waitd.decide.outcome import Outcome
from waitd.formats.history_line import Status

TASK = "waitd.run"
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0


def make(broker: str, queue: str, results: bool = True) -> Any:
    """The Celery app for this broker and queue: what sends waitd's task
    (`TASK`, by name) and reads its results; `worker.app` adds its body.
    `results=False`: an app that only sends (waitd's sender thread: its
    receiver reads the results from Redis itself), without Celery's result
    consumer, which would subscribe to each task's result channel at its
    `send_task` for nothing (the worker stores the results all the same:
    its own app has the backend)."""
    from celery import Celery

    app = Celery("waitd", broker=broker, backend=broker if results else "disabled", set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=False,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_track_started=True,  # a started task is left alone by the revokes of the other workers
        task_default_queue=queue,
        task_publish_retry=False,  # waitd's sender retries, without blocking the loop
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_transport_options={
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        },
        redis_socket_timeout=SOCKET_TIMEOUT_S,
        redis_socket_connect_timeout=CONNECT_TIMEOUT_S,
        redis_retry_on_timeout=False,
        result_backend_always_retry=True,
        result_backend_max_retries=1_000_000,
        result_backend_max_sleep_between_retries_ms=1000,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        result_extended=False,
    )
    return app


def install_hint() -> str:
    """How to install Celery where this waitd runs: into its own virtual
    environment after `make install` (LIBDIR, /usr/local/lib/waitd), with
    the pip of that environment."""
    pip = os.path.join(sys.prefix, "bin", "pip")
    return f"install it with {pip} install 'celery[redis]' (or, with waitd itself: pip install 'waitd[celery]')"


def problem(passdir: str) -> str | None:
    """What a `run=celery` record of this PASSDIR lacks, if anything: Celery
    itself, or waitd.conf's [celery] broker.  The table makes it an error
    of each such record's line (`table.parse`'s `celery`)."""
    if importlib.util.find_spec("celery") is None:
        return f"run=celery needs Celery, which is not installed; {install_hint()}"
    path = conf_path(passdir)
    settings, errors = conf.read(path)
    if settings.celery is not None or errors:
        return None  # waitd.conf's own errors are told on their own
    return f"run=celery needs a broker: {path} has no [celery] section"


@dataclass(frozen=True, slots=True)
class Result:
    """What waitd makes of a task's stored state."""

    outcome: Outcome
    output: bytes
    note: str  # waitd's line about it in the log (where it ran, what was lost)


def _response(text: Any) -> bytes | None:
    """The response a worker sent back (base64), or None."""
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text)
    except ValueError:
        return None


def result_of(meta: dict[str, Any], revoked: set[int]) -> Result:
    """The outcome of a task's stored state (SUCCESS, FAILURE, REVOKED)."""
    status, value = meta.get("status"), meta.get("result")
    if status == "REVOKED":
        reason = _flat(value.get("exc_message") if isinstance(value, dict) else value)
        if revoked and reason == "terminated":  # waitd's revoke: its pool process and handler's group killed
            from waitd.run.executors.local import signal_name  # not at import: `--check` needs no psutil

            sent = signal.SIGTERM if signal.SIGTERM in revoked else min(revoked)
            return Result(Outcome(Status.UNKNOWN, signal=signal_name(sent)), b"", "waitd: revoked (terminated)")
        note = f"waitd: lost: revoked ({reason}) before a worker ran it"
        return Result(Outcome(Status.UNKNOWN, lost=True), b"", note)
    if status != "SUCCESS" or not isinstance(value, dict):
        what = value.get("exc_message") if isinstance(value, dict) else value
        kind = value.get("exc_type", "") if isinstance(value, dict) else ""
        return Result(Outcome(Status.UNKNOWN, lost=True), b"", f"waitd: lost: {kind} {_flat(what)}".rstrip())
    try:
        output = base64.b64decode(value.get("output", ""))
    except ValueError:
        output = b""
    where = f"host={value.get('host', '?')} pid={value.get('pid', '?')} took={value.get('took', 0)}"
    note = f"waitd: ran on {where}"
    size = value.get("size", len(output))
    if isinstance(size, int) and size > len(output):
        note = f"waitd: output cut to its first {len(output)} bytes of {size}\n{note}"
    if value.get("lost"):
        return Result(Outcome(Status.UNKNOWN, lost=True), output, f"{note}\nwaitd: lost: {value['lost']}")
    response = _response(value.get("response"))
    if value.get("signal"):
        return Result(Outcome(Status.UNKNOWN, signal=str(value["signal"]), response=response), output, note)
    code = value.get("exit")
    if isinstance(code, int) and 0 <= code <= 255:
        return Result(Outcome(Status.KNOWN, exit=code, response=response), output, note)
    return Result(Outcome(Status.UNKNOWN, lost=True), output, f"{note}\nwaitd: lost: no exit status")


def _flat(what: Any) -> str:
    if isinstance(what, list | tuple):
        return " ".join(map(str, what))
    return str(what)


def shown_url(url: str) -> str:
    """A broker URL without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url
