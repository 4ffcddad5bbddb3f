# SPDX-License-Identifier: MIT
"""The ISIS autoreduction replies: what a `format = isis` STOMP sink sends.

ISIS's reduction worker tells its queue processor about each run with a
message to one of four destinations, `started`, `complete`, `error` and
`skipped` (the keys of `DEFAULTS`, ISIS's default queues).
Each body is the message the run came from (a JSON object: `instrument`,
`run_number`, `rb_number`, `run_version`, `data` or `file_path`,
`reduction_script`, `reduction_arguments`, `facility`, `started_by`...),
with the run's outcome in ISIS's own fields:

    message        why it failed or was skipped (the response's `message`
                   if it has one; else the exit, the signal or the error)
    retry_in       seconds until waitd's retry of it; null when none is set
    reduction_log  the tail of the run's log
    admin_log      waitd's log lines about the run

and the response's other fields (the output directories `waitd reduce`
reports, say).  The message is the event's `body`: the JSON object in the
run's file, nested values as they were, which waitd reads when a run of
a record such a sink takes starts; for a file that is no JSON object,
the event's `fields`.

`body_of` reads a run's file (a source message) as the JSON object the
events carry as `body`, or None when it is no JSON object (or bigger
than BODY_MOST).

`reply` turns one event (its JSON object, as the outbox holds it) into
(destination kind, body), or None for an event ISIS has no reply for.

This module is pure: it builds JSON objects, it sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

BODY_MOST = 1 << 20  # bytes of a run's file read as its message

DEFAULTS = {
    "started": "/queue/ReductionStarted",
    "complete": "/queue/ReductionComplete",
    "error": "/queue/ReductionError",
    "skipped": "/queue/ReductionSkipped",
}
_OURS = ("skip", "retry_in")  # a response's keys waitd acts on: told in ISIS's words instead
_KIND = {"ok": "complete", "skipped": "skipped", "failed": "error", "retrying": "error"}


def reply(event: Mapping[str, Any], now: float) -> tuple[str, dict[str, Any]] | None:
    """(destination kind, body) of the ISIS reply to an event, or None."""
    kind = event.get("type")
    message = event.get("body")
    if not isinstance(message, Mapping):
        message = event.get("fields")
    body: dict[str, Any] = dict(message) if isinstance(message, Mapping) else {}
    if kind == "started":
        return "started", body
    if kind != "ended":
        return None
    outcome = str(event.get("outcome"))
    response = event.get("response")
    said: Mapping[str, Any] = response if isinstance(response, Mapping) else {}
    body.update((k, v) for k, v in said.items() if k not in _OURS)
    retry_at = event.get("retry_at")
    body["retry_in"] = round(max(0.0, float(retry_at) - now), 3) if retry_at is not None else None
    body["message"] = _message(event, outcome, said)
    body["reduction_log"] = event.get("log") or ""
    body["admin_log"] = event.get("admin_log") or ""
    return _KIND.get(outcome, "error"), body


def body_of(data: bytes) -> dict[str, Any] | None:
    """A run's file as a message: its JSON object, or None."""
    if len(data) > BODY_MOST:
        return None
    try:
        found = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _message(event: Mapping[str, Any], outcome: str, said: Mapping[str, Any]) -> str | None:
    """ISIS's `message`: the response's own, the skip's reason, or what
    ended the run; None for a run that went well and said nothing."""
    if said.get("message") is not None:
        return str(said["message"])
    if outcome == "skipped":
        return str(said.get("skip") or "skipped")
    if outcome == "ok":
        return None
    if event.get("error") is not None:
        return f"error: {event['error']}"
    if event.get("signal") is not None:
        return f"killed by signal {event['signal']}"
    if event.get("exit") is not None:
        return f"exit status {event['exit']}"
    return "ended in an unknown state"
