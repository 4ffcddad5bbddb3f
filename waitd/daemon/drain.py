# SPDX-License-Identifier: MIT
"""`waitd --once`: the drain of the files ready when it starts.

`begin` notes, for each record, the files (and their versions) ready at
start: those are the drain; files that become ready later wait for the
next one.  `over` says when it is done: every file of the drain started,
changed, gone, or handled otherwise (`readiness.in_drain`), or its record
backing off (a handler that cannot start ends its record's part) or its
executor found unable to start any (a Celery broker unreachable: the
files are left for the next drain); a file whose retry is due only later
is left for a later drain.  The loop exits then, once the runs it
started have ended.

This module starts nothing: the readiness rules take only the files of
the drain (`FileState.drain`) while there is one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from waitd.decide.outcome import Job
from waitd.decide.readiness import in_drain
from waitd.journal.history import History
from waitd.run.work import Entry
from waitd.spool import observe, ready


def begin(entries: list[Entry], history: History, busy: Callable[[str], bool]) -> None:
    """Note the files ready now as each record's drain."""
    now_ns = time.time_ns()
    for entry in entries:
        files = entry.files
        files.drain = None
        jobs: list[Job] = []
        if not entry.problem:
            observe.refresh(files, history, now_ns)
            jobs, _, _ = ready.take(files, len(files.cands), history, now_ns, busy)
        files.drain = {fact.name: fact.version for job in jobs for fact in job.facts}


def over(entries: list[Entry], history: History, held: Callable[[Entry], bool] = lambda entry: False) -> bool:
    """True when no record has a file of its drain left to start (`held`:
    a record that cannot start any now, its broker unreachable, is done)."""
    now_ns = time.time_ns()
    for entry in entries:
        files = entry.files
        if files.drain is None:
            continue
        for name, version in list(files.drain.items()):
            fact = files.cands.facts.get(name)
            event = None
            if fact is not None:
                event = history.latest(files.path_of(name), files.record.process)
                event = event if event is not None and event.same_version(fact) else None
            if not in_drain(fact, version, event, now_ns):
                del files.drain[name]
        if files.drain and not entry.tally.backing_off(time.monotonic()) and not held(entry):
            return False
    return True


def left(entries: list[Entry]) -> int:
    """How many files of the drain were not started (for the exit status)."""
    return sum(len(entry.files.drain or {}) for entry in entries)
