# SPDX-License-Identifier: MIT
"""Publish-only records (process `-`): a ready file is published, not run.

`publish` takes the jobs of such a record that the scheduler found ready
(files, or groups; each file stat'ed once more, `observe.verify`, as for
a start) and records each as handled: one status 2 line a file with
`published=1` (and `group=` for a group), all of a turn with one sync.
The journal writes their `ready` events to the outbox before the lines to
the history, so a file is published exactly when its line is written:
once per version, across restarts (the history says it was), never twice
but for a crash in the microseconds between the outbox's write and the
history's, when the second event carries the id of the first.

Nothing is executed and no log file is written: the record has no runs,
and takes no room of `--jobs`.  keep-after counts published files as
handled with exit 0.  A history that cannot be written holds every start
and publication until the next poll, as it does for a start: `publish`
returns False then.
"""

from __future__ import annotations

import logging
import time

from waitd.config.errors import HistoryWriteError
from waitd.decide.outcome import Job
from waitd.journal.history import Event, Status, escape
from waitd.journal.writer import Journal
from waitd.run.launch import files_of
from waitd.run.work import Entry
from waitd.spool import observe

log = logging.getLogger("waitd")


def publish(entry: Entry, jobs: list[Job], journal: Journal, now_ns: int) -> bool:
    """Publish the record's jobs; False when the journal refused them."""
    files = entry.files
    jobs = [job for job in jobs if observe.verify(files, journal.history, job, now_ns)]
    if not jobs:
        return True
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
        journal.published([(entry.record, job_lines) for job_lines in lines])
    except HistoryWriteError as exc:
        # The journal starts and publishes nothing until the next poll.
        log.error("record %d: %s: %s; trying again at the next poll", entry.number, escape(jobs[0].path), exc)
        return False
    for job in jobs:
        for fact in job.facts:
            files.ran(fact)
        files.started(job)
        log.info("record %d: published %s", entry.number, files_of(job))
    entry.tally.counters.ok += len(jobs)
    entry.tally.last = (jobs[-1].path, "published")
    return True
