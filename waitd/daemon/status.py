# SPDX-License-Identifier: MIT
"""The status document built from the daemon's state.

`build` makes `formats.status.Status` from the records (`records.Works`:
each record's file state and the tally of its runs), the runs
(`runs.Runs`), the history, and what the loop knows of itself (its mode,
settings, reloads, the journal's unwritten lines, the sinks and the
Celery broker).  It looks at every file waiting, so the loop builds it at
most once a second (`control.StatusFile`).  Lists are cut at SHOWN
entries, with the whole count beside them.

This module changes nothing; the document's types and their JSON are
`formats.status`'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from waitd.daemon.records import Entry, Works
from waitd.formats.status import (
    SCHEMA_VERSION,
    CeleryReport,
    Counts,
    Held,
    Incomplete,
    Last,
    OpenGroup,
    QueueReport,
    RecordReport,
    Retrying,
    RunReport,
    SinkReport,
    SourceReport,
    Status,
    TableReport,
    Waiting,
)
from waitd.journal.history import History, escape
from waitd.run.runs import Run, Runs
from waitd.spool import ready
from waitd.spool.gather import Open
from waitd.spool.queue import Queue

SHOWN = 10  # open groups, and the members of each, listed; the rest are counted


def run_report(run: Run, now_mono: float) -> RunReport:
    return RunReport(
        file=escape(run.path),
        pid=run.pid,
        attempt=run.job.attempt,
        since=run.started_at,
        age_s=round(now_mono - run.started_mono, 3),
        state="paused" if run.paused_at is not None else run.state.value,
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
        waiting_files=[Waiting(escape(name), at) for name, at in files.waiting_files],
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
    sinks: list[SinkReport] | None = None,
    held: Callable[[Entry], bool] = lambda entry: False,
    celery: dict[str, Any] | None = None,
    sources: list[SourceReport] | None = None,
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
        celery=CeleryReport(**celery) if celery is not None else None,
        sources=sources or [],
    )
