# SPDX-License-Identifier: MIT
"""A file's state, as the task API tells it (`waitd -s show`, `-s list`).

`state_of` names where one file of one record stands, from what waitd
knows of it: whether it is in the spool, its latest history event (of
that version), whether a run works on it now and whether that run is
paused, and why it is held if it is.  The states:

    waiting    in the spool, not handled yet, and it will run
    held       in the spool, not handled yet, and it will not run by
               itself (its group, its companion, its name, paused)
    running    a run works on it (or its start is the latest line)
    paused     a run works on it and is stopped (`waitd -s pause`)
    retrying   its latest run failed for now; it runs again at retry_at
    handled    its latest run ended with exit 0 (or it was published)
    skipped    its latest run ended with exit 0 and its response said skip
    cancelled  an operator cancelled it (`waitd -s cancel`)
    failed     its latest run failed for good (or ended in an unknown state)
    unknown    neither in the spool nor in the history

`attempts` folds a file's history lines into its attempts: each start
(status 0) with the end that follows it, and an end with no start of its
own (a run that could not start, a cancelled waiting file, a publication)
alone.

This module is pure: facts in, names out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from waitd.formats.history_line import Event, Status

STATES = ("waiting", "held", "running", "paused", "retrying", "handled", "skipped", "cancelled", "failed", "unknown")


def state_of(present: bool, event: Event | None, running: bool, paused: bool, held_why: str | None) -> str:
    """The state of a file of a record (the rules above, in their order)."""
    if running:
        return "paused" if paused else "running"
    if present and (event is None or not event.consumed):
        return "held" if held_why is not None else "waiting"
    if event is None:
        return "unknown"
    if event.retry_at is not None:
        return "retrying"
    if event.status is Status.STARTED:
        return "running"  # its start is the latest line: a run not (or no longer) ours
    if event.succeeded:
        return "skipped" if event.outcome == "skipped" else "handled"
    if event.error == "cancelled":
        return "cancelled"
    return "failed"


class Attempt(NamedTuple):
    start: Event | None  # its status 0 line; None: it never started
    end: Event | None  # the line that ended it; None: it runs (or ran) with no end written


def attempts(events: Iterable[Event]) -> list[Attempt]:
    """A file's history lines (of one process, in order) as attempts."""
    out: list[Attempt] = []
    start: Event | None = None
    for event in events:
        if event.status is Status.STARTED:
            if start is not None:
                out.append(Attempt(start, None))  # a start with no end (a crash), then another
            start = event
            continue
        out.append(Attempt(start, event))
        start = None
    if start is not None:
        out.append(Attempt(start, None))
    return out
