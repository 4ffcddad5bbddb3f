# SPDX-License-Identifier: MIT
"""The status document: what waitd is doing, as data.

`Status` and its parts are the document that waitd.status holds, that
`waitd -s status --json` prints and that the control socket answers, in
the shape doc/status.schema.json gives and waitd(8) describes.  `build`
makes it from the records (`state.Works`), the runs (`runs.Runs`) and the
history; `as_json` turns it into the JSON object, in this one place.
Times are seconds since the epoch.

This module changes nothing; `control.format_status` turns the JSON into
the text `waitd -s status` prints.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from waitd.daemon.records import Entry, Works
from waitd.journal.history import History, escape
from waitd.run.runs import Run, Runs
from waitd.spool import ready
from waitd.spool.gather import Open
from waitd.spool.queue import Queue

SCHEMA_VERSION = 1
SHOWN = 10  # open groups, and the members of each, listed; the rest are counted


@dataclass(frozen=True, slots=True)
class RunReport:
    file: str  # escaped as in the history
    pid: int | None
    attempt: int
    since: float
    age_s: float
    state: str  # running, stopping, killed
    adopted: bool  # started by a previous waitd
    log: str | None  # its log file
    why: str | None  # why waitd signalled it: timeout, cancelled, stop
    task: str | None = None  # run=celery: its Celery task id (and no pid)


@dataclass(frozen=True, slots=True)
class Retrying:
    file: str
    at: float


@dataclass(frozen=True, slots=True)
class Held:
    """A file not handled yet that will not run by itself."""

    file: str
    why: str  # its name does not parse, its group gathers or is incomplete, it came late, ...
    until: float | None  # when that may change by itself (a group's deadline); None: not by itself


@dataclass(frozen=True, slots=True)
class OpenGroup:
    """A group still gathering its members."""

    group: str
    deadline: float  # its timeliness: it runs then with what it has, if its critical members are in
    members: list[str]  # present, as CHANNEL:SEGMENT (up to 10)
    files: list[str]  # their files, in the same order
    member_count: int
    missing: list[str]  # expected (critical, wanted), not there yet (up to 10)
    missing_count: int


@dataclass(frozen=True, slots=True)
class Incomplete:
    group: str
    missing: list[str]  # its critical members not there at its timeliness


@dataclass(frozen=True, slots=True)
class QueueReport:
    root: str
    incoming: int
    pending: dict[str, int]  # by instance
    errors: int
    held: bool  # held back by out-limit=


@dataclass(frozen=True, slots=True)
class Last:
    file: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Counts:
    ok: int
    failed: int  # final failures (and unknown outcomes)
    retrying: int  # temporary failures with a retry to come
    removed: int


@dataclass(frozen=True, slots=True)
class RecordReport:
    number: int
    telem: str
    directory: str
    template: str
    process: str
    options: dict[str, Any]
    problem: str | None
    backoff_until: float | None
    running: list[RunReport]
    waiting: int  # not handled yet, and will run
    oldest_mtime: float | None  # of those waiting
    held: list[Held]  # not handled yet, and will not run by themselves (up to 10)
    held_count: int
    open_groups: list[OpenGroup]  # groups gathering, soonest deadline first (up to 10)
    open_groups_count: int
    retrying: list[Retrying]
    failed: list[str]  # final failures (up to 10), kept in the spool
    failed_count: int
    unremovable: list[str]
    unremovable_count: int
    incomplete: list[Incomplete]  # groups that will not run
    queue: QueueReport | None  # claim=yes: its queue
    last: Last | None
    counters: Counts


@dataclass(frozen=True, slots=True)
class TableReport:
    reloads: int  # HUPs acted on, valid table or not
    errors: list[str]  # of the last reload, if it was refused
    records: int
    active: int


@dataclass(frozen=True, slots=True)
class Status:
    schema: int
    pid: int
    mode: str
    passdir: str
    started_at: float
    written_at: float
    jobs: int | None  # --jobs
    stop_timeout_s: float
    kill_grace_s: float
    unwritten_events: int
    table: TableReport
    records: list[RecordReport]
    other_runs: list[RunReport] = field(default_factory=list)  # of records out of the table
    sinks: list[dict[str, Any]] = field(default_factory=list)  # waitd.conf's sinks (sinks.Sinks.report)
    celery: dict[str, Any] | None = None  # the broker of run=celery (celery_exec.Dispatch.report)


def run_report(run: Run, now_mono: float) -> RunReport:
    return RunReport(
        file=escape(run.path),
        pid=run.pid,
        attempt=run.job.attempt,
        since=run.started_at,
        age_s=round(now_mono - run.started_mono, 3),
        state=run.state.value,
        adopted=run.adopted,
        log=run.log_name or None,
        why=run.why.value if run.why is not None else None,
        task=run.task,
    )


def _queue(entry: Entry, held: bool) -> QueueReport | None:
    if not entry.record.options.claim:
        return None
    q = Queue.of_incoming(entry.record.directory)
    return QueueReport(q.root, q.count("incoming"), q.pending_counts(), q.count("errors"), held)


def record_report(
    entry: Entry, runs: list[Run], history: History, now_mono: float, now: float, held: bool = False
) -> RecordReport:
    r = entry.record
    files = ready.files(entry.files, history, int(now * 1e9))
    tally = entry.tally
    options = r.options.as_dict()
    options["topic"] = r.topic
    return RecordReport(
        number=r.number,
        telem=r.telem,
        directory=r.directory,
        template=r.template,
        process=r.process,
        options=options,
        problem=entry.problem or entry.files.dir_note,
        backoff_until=now + tally.backoff_until - now_mono if tally.backing_off(now_mono) else None,
        running=[run_report(run, now_mono) for run in runs],
        waiting=files.waiting,
        oldest_mtime=files.oldest_mtime,
        held=[Held(escape(name), why, until) for name, why, until in files.held],
        held_count=files.held_count,
        open_groups=[_open_group(g) for g in files.gathering[:SHOWN]],
        open_groups_count=len(files.gathering),
        retrying=[Retrying(escape(name), at) for name, at in files.retrying],
        failed=[escape(name) for name in files.failed],
        failed_count=files.failed_count,
        unremovable=files.unremovable,
        unremovable_count=files.unremovable_count,
        incomplete=[
            Incomplete(gid, missing) for gid, missing in sorted((ready.incomplete_groups(entry.files) or {}).items())
        ],
        queue=_queue(entry, held),
        last=Last(escape(tally.last[0]), tally.last[1]) if tally.last else None,
        counters=Counts(tally.counters.ok, tally.counters.failed, tally.counters.retrying, tally.counters.removed),
    )


def _open_group(group: Open) -> OpenGroup:
    present = sorted(group.present.items())
    return OpenGroup(
        group=group.gid,
        deadline=group.deadline_ns / 1e9,
        members=[f"{c}:{s}" for (c, s), _ in present[:SHOWN]],
        files=[escape(fact.name) for _, fact in present[:SHOWN]],
        member_count=len(present),
        missing=[f"{c}:{s}" for c, s in group.missing[:SHOWN]],
        missing_count=len(group.missing),
    )


def as_json(status: Status) -> dict[str, Any]:
    """The JSON object of the status document."""
    return dataclasses.asdict(status)


def now_pair() -> tuple[float, float]:
    """(monotonic, epoch) seconds, taken together."""
    return time.monotonic(), time.time()


def build(
    works: Works,
    runs: Runs,
    history: History,
    *,
    mode: str,
    settings: Any,
    started: float,
    unwritten: int,
    reloads: int,
    reload_errors: list[str],
    kill_grace_s: float,
    sinks: list[dict[str, Any]] | None = None,
    held: Callable[[Entry], bool] = lambda entry: False,
    celery: dict[str, Any] | None = None,
) -> Status:
    """The status document of a daemon's state."""
    now_mono, now = now_pair()
    entries = works.entries
    records = [record_report(e, runs.of(e.identity), history, now_mono, now, held(e)) for e in entries]
    listed = {e.identity for e in entries}
    others = [run_report(r, now_mono) for r in runs.live() if r.job.identity not in listed]
    return Status(
        schema=SCHEMA_VERSION,
        pid=os.getpid(),
        mode=mode,
        passdir=settings.passdir,
        started_at=started,
        written_at=now,
        jobs=settings.jobs,
        stop_timeout_s=settings.stop_timeout_s,
        kill_grace_s=kill_grace_s,
        unwritten_events=unwritten,
        table=TableReport(reloads, reload_errors, len(entries), sum(1 for e in entries if not e.problem)),
        records=records,
        other_runs=others,
        sinks=sinks or [],
        celery=celery,
    )
