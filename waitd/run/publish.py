# SPDX-License-Identifier: MIT
"""Publish-only records (process `-`): a ready file is published, not run.

`ready` takes the files (or groups) of such a record that are ready now,
as a record with a handler would start them, and records each as handled:
one status 2 line a file with `published=1` (and `group=` for a group),
all of a pass with one sync.  The journal writes their `ready` events to
the outbox before the lines to the history, so a file is published
exactly when its line is written: once per version, across restarts (the
history says it was), never twice but for a crash in the microseconds
between the outbox's write and the history's, when the second event
carries the id of the first.

Nothing is executed and no log file is written: the record has no runs,
and takes no room of `--jobs`.  keep-after counts published files as
handled with exit 0.  A history that cannot be written holds every start
and publication until the next poll, as it does for a start.
"""

from __future__ import annotations

import logging
import time

from waitd.config.errors import HistoryWriteError
from waitd.daemon.records import Entry
from waitd.journal.history import Event, Status, escape
from waitd.run.launch import Launcher, _files

log = logging.getLogger("waitd")

BATCH = 1000  # files published in one pass, at most, per record


def ready(entry: Entry, launcher: Launcher, now_ns: int) -> int:
    """Publish the record's files ready now; how many jobs were published."""
    view = entry.view
    if entry.problem or view.spool is None:
        return 0
    history = launcher.history
    jobs = view.take(BATCH, history, now_ns, launcher.runs.busy_for(entry.record.process))
    if not jobs:
        return 0
    at = time.time()
    lines = [
        [
            Event(
                path,
                job.process,
                fact.mtime_ns // 1_000_000_000,
                Status.KNOWN,
                at=at,
                group=job.group,
                published=1,
                version=fact.version,
            )
            for fact, path in zip(job.facts, job.paths, strict=True)
        ]
        for job in jobs
    ]
    try:
        launcher.journal.published([(entry.record, job_lines) for job_lines in lines])
    except HistoryWriteError as exc:
        # The journal starts and publishes nothing until the next poll.
        log.error("record %d: %s: %s; trying again at the next poll", entry.number, escape(jobs[0].path), exc)
        return 0
    for job in jobs:
        for fact in job.facts:
            view.ran(fact)
        if view.drain is not None:
            for fact in job.facts:
                view.drain.pop(fact.name, None)
        log.info("record %d: published %s", entry.number, _files(job))
    entry.tally.counters.ok += len(jobs)
    entry.tally.last = (jobs[-1].path, "published")
    return len(jobs)
