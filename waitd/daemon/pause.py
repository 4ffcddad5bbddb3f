# SPDX-License-Identifier: MIT
"""`waitd -s pause PATH` and `-s resume PATH`: hold a file, stop a run.

`pause` of a file that waits to run (or for its retry) holds it (`FileState.paused`: the
readiness rules hold it for ever, the status names it held, "paused")
until `resume`; a member of a group holds its group.  `pause` of a file a
run works on stops the run's process group (SIGSTOP) and its `timeout=`
clock with it (`Run.pause`: the scheduler gives a paused run no timeout,
and counts its time from its start less its pauses); `resume` continues it
(SIGCONT).  A run on a Celery worker cannot be paused: waitd does not
reach its process (refused, saying so).  A cancel or waitd's stop sends
TERM and then CONT to a paused run, so that it ends.

A paused file is kept in memory: a HUP keeps it (records keep their
file state), a new waitd does not (the file is waiting again).  A paused
run stays stopped: a new waitd adopts it paused (`run.adopt`).

Each is logged as the operator's doing.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from waitd.daemon.records import Entry, Works
from waitd.formats.history_line import escape
from waitd.journal.history import History
from waitd.run.runs import Run, Runs, RunState

log = logging.getLogger("waitd")


def pause(works: Works, runs: Runs, history: History, path: str) -> tuple[bool, str]:
    running = _running(works, runs, path)
    if running:
        return _each_run(running, stop=True)
    entries = [e for e in works.owners(path) if e.files.known(path) is not None]
    if not entries:
        return False, _nothing(works, path)
    entries = [e for e in entries if _to_run(e, history, path)]
    if not entries:
        return False, "neither waiting nor running: nothing to pause"
    for entry in entries:
        name = os.path.basename(path)
        if name in entry.files.paused:
            continue
        entry.files.paused.add(name)
        log.info("record %d: %s: paused, as asked (waitd -s pause): held until resumed", entry.number, escape(path))
    return True, "paused: held until resumed (waitd -s resume)"


def resume(works: Works, runs: Runs, history: History, path: str) -> tuple[bool, str]:
    running = [r for r in _running(works, runs, path) if r.paused_at is not None]
    if running:
        return _each_run(running, stop=False)
    name = os.path.basename(path)
    entries = [e for e in works.owners(path) if name in e.files.paused]
    if not entries:
        return False, "not paused: nothing to resume"
    for entry in entries:
        entry.files.paused.discard(name)
        entry.files.requeue(name)  # back in line: it left the heap as held (a retry in pending: due again)
        log.info("record %d: %s: resumed, as asked (waitd -s resume)", entry.number, escape(path))
    return True, "resumed: it runs when ready"


def _to_run(entry: Entry, history: History, path: str) -> bool:
    """The file of the spool will run: not handled yet, or to be retried."""
    found = entry.files.known(path)
    if found is None:
        return False
    fact, where = found
    event = history.latest(where, entry.record.process)
    return event is None or not event.same_version(fact) or not event.consumed or event.retry_at is not None


def _running(works: Works, runs: Runs, path: str) -> list[Run]:
    named = {path} | {p for e in works if (p := e.files.claimed_as(path)) is not None}
    return [r for r in runs.live() if named & set(r.job.paths) and r.state is RunState.RUNNING]


def _each_run(running: list[Run], stop: bool) -> tuple[bool, str]:
    done, refused = [], []
    now = time.monotonic()
    for run in running:
        if run.executor.remote or run.pid is None:
            refused.append(f"{run.describe()} runs on a Celery worker: waitd cannot stop it")
            continue
        if stop and run.paused_at is not None:
            done.append(f"{run.describe()} is paused already")
            continue
        run.executor.signal(run, signal.SIGSTOP if stop else signal.SIGCONT)
        if stop:
            run.pause(now)
        else:
            run.resume(now)
        verb = "paused" if stop else "resumed"
        log.info(
            "record %d: %s: %s, as asked (waitd -s %s): %s sent to %s",
            run.number,
            escape(run.path),
            verb,
            "pause" if stop else "resume",
            "STOP" if stop else "CONT",
            run.describe(),
        )
        done.append(f"{verb}: {'STOP' if stop else 'CONT'} sent to {run.describe()}")
    return bool(done), "; ".join(done + refused)


def _nothing(works: Works, path: str) -> str:
    if not works.owners(path):
        return "no record of the table takes this file, and nothing runs on it"
    return "not in the spool (or not looked at yet), and nothing runs on it"
