# SPDX-License-Identifier: MIT
"""After a crash: the runs a dead waitd left open in the history.

`adopt` goes through the open runs (a status 0 and no end; the members of
a group run share a pid or a task id: one run for them).  A handler that
still runs (the same pid, created when the run started; or a remote task
its executor still waits for) becomes a run of its record's work again,
its timeout counted from its recorded start (a stopped one, paused by the
previous waitd, stays paused); its end is then recorded as
any other's (an adopted handler's exit status is not known: status 1).
The others are recorded as status 1 at once: their outcome is unknown,
and they are never run again, but for a queue's file with retries left
(`outcome.end_events`).  Which record a run was is asked of `owner`: the
history's line names a path and a process only.  Each open run's start
events are made again first where the outbox lacks them
(`Journal.reopened`: a power failure may have lost them), its `started`
with its file's JSON object for a record a `format = isis` sink takes.

Logs: each adoption, and each run recorded as status 1, with its files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

from waitd.decide.facts import FileFact, Identity
from waitd.decide.outcome import Job, Outcome, end_events
from waitd.journal.history import Event, Status
from waitd.run import runner
from waitd.run.executors import Executor
from waitd.run.launch import Launcher, files_of
from waitd.run.runs import Run, RunState
from waitd.run.work import Work

log = logging.getLogger("waitd")

ADOPTED_TIMEOUT_S = 60.0  # an adopted remote run of a record that has no timeout= now


def adopt(
    launcher: Launcher,
    open_runs: list[Event],
    owner: Callable[[Event], tuple[Work, int] | None],
    executor_of: Callable[[Event], Executor],
) -> None:
    """Take over the handlers a dead waitd left running (they count as
    their record's runs, `owner` says which: its work and number now);
    record the others as status 1 at once."""
    for events in _batches(open_runs):
        first = events[0]
        found = owner(first)
        record = found[0].files.record if found is not None else None
        carried = record is not None and launcher.journal.carries(record.number)
        launcher.journal.reopened(record, events, runner.read_body(first.path) if carried else None)
        executor = executor_of(first)
        if executor.adopt(first):
            _adopted(launcher, events, found, executor)
            continue
        work = found[0] if found is not None else None
        now = time.time()
        retry_at = _retry_after_crash(events, work, now)
        retry = "" if retry_at is None else f"; retry at {time.strftime('%H:%M:%S', time.localtime(retry_at))}"
        log.warning(
            "%s: waitd stopped while its handler ran; recorded as status 1 (unknown)%s", files_of(events), retry
        )
        ended = [replace(event, status=Status.UNKNOWN, at=now, retry_at=retry_at) for event in events]
        launcher.journal.ended(work.files.record if work is not None else None, ended)


def _adopted(launcher: Launcher, events: list[Event], found: tuple[Work, int] | None, executor: Executor) -> None:
    """A run of a previous waitd, still under way: its timeout counts from
    its recorded start, not from now."""
    first = events[0]
    work, number = found if found is not None else (None, 0)
    job = _job_of(events, work.files.identity if work is not None else _orphan(first))
    at = first.at if first.at is not None else time.time()
    started_mono = time.monotonic() - max(0.0, time.time() - at)
    timeout_s = work.files.record.options.timeout_s if work is not None else None
    run = Run(launcher.runs.new_id(), job, number, at, started_mono, executor, work, timeout_s, adopted=True)
    if executor.remote:
        assert first.task is not None
        run.log_name, run.log_fd = runner.task_log(launcher.passdir, number, first.task)
        run.task = first.task
        run.timeout_s = timeout_s or ADOPTED_TIMEOUT_S  # the result is waited for that long at least
        what = f"{run.describe()} of a previous waitd in flight; awaiting its result"
    else:
        run.pid = first.pid
        what = f"handler {run.describe()} of a previous waitd still runs; waiting for it"
        if first.pid is not None and _stopped(first.pid):
            run.pause(time.monotonic())  # paused (waitd -s pause) by the previous waitd: it stays so
            what += "; it is paused (waitd -s resume continues it)"
    run.transition(RunState.RUNNING)  # adopted: STARTING -> RUNNING
    launcher.runs.add(run)
    log.warning("%s: %s", files_of(events), what)


def _stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP: a run paused by `waitd -s pause`),
    or waits (uninterruptibly) for a child it vforked that was stopped
    before its exec: the STOP is pending for it, its group is paused."""
    import psutil  # only for the runs a previous waitd left: not worth every start's 3 MB

    try:
        leader = psutil.Process(pid)
        status = leader.status()
        if status == psutil.STATUS_STOPPED:
            return True
        return status == psutil.STATUS_DISK_SLEEP and any(
            c.status() == psutil.STATUS_STOPPED for c in leader.children()
        )
    except psutil.Error:
        return False


def _batches(open_runs: list[Event]) -> list[list[Event]]:
    """The open runs, one list of events a run: a group's share its pid or task."""
    by_run: dict[int | str | None, list[Event]] = {}
    for event in open_runs:
        run_of = event.pid if event.pid is not None else event.task
        by_run.setdefault(run_of if event.group is not None else None, []).append(event)
    return [[e] for e in by_run.pop(None, [])] + list(by_run.values())


def _retry_after_crash(events: list[Event], work: Work | None, now: float) -> float | None:
    """When a run that ended with waitd is tried again: never, but for a
    queue's file with retries left (`outcome.end_events`)."""
    if work is None:
        return None
    job = _job_of(events, work.files.identity)
    options = work.files.record.options
    ends, _ = end_events(job, Outcome(Status.UNKNOWN), None, options, None, 0.0, now, adopted=True)
    return ends[0].retry_at


def _orphan(event: Event) -> Identity:
    """The identity of the work of a run whose record left the table."""
    return (os.path.dirname(event.path), "", event.process)


def _job_of(events: list[Event], key: Identity) -> Job:
    """The job of an open run, from its history lines (one a file)."""
    facts = []
    for event in events:
        v = event.version
        name = os.path.basename(event.path)
        if v is not None:
            facts.append(FileFact(v.mtime_ns, name, 0, v.size, v.ino))
        else:
            facts.append(FileFact(event.mtime * 1_000_000_000, name, 0, 0, 0))
    first = events[0]
    return Job(key, first.process, tuple(facts), tuple(e.path for e in events), attempt=first.runs, group=first.group)
