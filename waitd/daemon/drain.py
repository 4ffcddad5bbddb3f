# SPDX-License-Identifier: MIT
"""`waitd --once`: the drain of the files ready when it starts.

`begin` notes, for each record, the files (and their versions) ready at
start: those are the drain; files that become ready later wait for the
next one.  `over` says when it is done: every file of the drain started,
changed, gone, or handled otherwise, or its record backing off (a handler
that cannot start ends its record's part) or its Celery broker found
unreachable (the files are left for the next drain); a file whose retry is due
only later is left for a later drain.  The loop exits then, once the
runs it started have ended.

This module starts nothing: the scheduler takes only the files of the
drain (`View.drain`) while there is one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from waitd.daemon.records import Entry
from waitd.journal.history import History


def begin(entries: list[Entry], history: History, busy: Callable[[str], bool]) -> None:
    """Note the files ready now as each record's drain."""
    now_ns = time.time_ns()
    for entry in entries:
        view = entry.view
        view.drain = None
        ready = []
        if not entry.problem:
            view.refresh(history, now_ns)
            ready = view.take(len(view.cands), history, now_ns, busy)
        view.drain = {fact.name: fact.version for job in ready for fact in job.facts}


def over(entries: list[Entry], history: History, held: Callable[[Entry], bool] = lambda entry: False) -> bool:
    """True when no record has a file of its drain left to start (`held`:
    a record that cannot start any now, its broker unreachable, is done)."""
    now_ns = time.time_ns()
    for entry in entries:
        view = entry.view
        if view.drain is None:
            continue
        for name, version in list(view.drain.items()):
            fact = view.cands.facts.get(name)
            if fact is None or fact.version != version or view.consumed(history, fact):
                del view.drain[name]
                continue
            event = view.latest(history, fact)
            if event is not None and event.retry_at is not None and event.retry_at * 1e9 > now_ns:
                del view.drain[name]  # its retry is for a later drain
        if view.drain and not entry.tally.backing_off(time.monotonic()) and not held(entry):
            return False
    return True


def left(entries: list[Entry]) -> int:
    """How many files of the drain were not started (for the exit status)."""
    return sum(len(entry.view.drain or {}) for entry in entries)
