# SPDX-License-Identifier: MIT
"""Records that claim their files from a queue (`claim=yes`).

What the filer protocol (`queue`) means for a run of such a record:

- `take`: a job is claimed just before its start is recorded: its file is
  renamed from the queue's incoming into pending/INSTANCE, and the run
  works on it there.  A file another instance claimed first is stepped
  over quietly.
- `dispose`: once a run's end is in the history, its file leaves pending:
  deleted after a success, or handed on to `next=`'s queue; into errors
  after a final failure or an unknown outcome; back into incoming when
  the handler could not be executed, or when an unknown outcome has
  retries left.  A temporary failure with a retry left stays in pending,
  and this instance runs it again at its retry time: so the retry's delay
  and its attempt count hold (they are in this instance's history), and
  no instance takes it back at once while the cause of the failure lasts.
- `recover`: at start, what a previous life of this instance left in
  pending: a file with no recorded start was claimed but never run and
  goes back into incoming; an open run is adopted or recorded as status
  1 by the launcher first, then disposed of; a finished run whose file
  is still there is disposed of now; one waiting for a retry waits on.
- `Outflow`: `out-limit=`, no claim while the next queue's incoming holds
  that many files, looked at again every `out-wait=` seconds.
- `expire_errors`: hours-too-old also expires the files in errors/.

Every move is logged.  A move that fails is logged and the file left
where it is (the next start looks at pending again).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from waitd import queue as q
from waitd.history import Event, History, Status, escape
from waitd.jobs import Job, Verdict
from waitd.scan import FileFact
from waitd.state import Entry
from waitd.view import View

log = logging.getLogger("waitd")


def queue_of(view: View) -> q.Queue:
    return q.Queue.of_incoming(view.record.directory)


def take(view: View, job: Job, instance: str) -> Job | None:
    """Claim the job's file; the job working on its pending path, or None."""
    if job.path.startswith(queue_of(view).pending(instance) + "/"):
        view.retries.pop(job.fact.name, None)  # a retry, claimed already: it runs now
        return job
    try:
        claimed = q.claim(queue_of(view), job.fact.name, instance, job.fact.ino)
    except OSError as exc:
        log.error("record %d: %s: cannot claim it: %s", view.number, escape(job.path), exc.strerror or exc)
        return None
    view.forget(job.fact.name)  # it left incoming, whoever has it now
    if claimed is None:
        return None  # another instance was first
    return replace(job, paths=(claimed,))


def unclaim(view: View, job: Job) -> None:
    """A claimed file whose start could not be made goes back to incoming."""
    try:
        q.release(job.path, queue_of(view))
    except OSError as exc:
        log.error("record %d: %s: cannot put it back: %s", view.number, escape(job.path), exc.strerror or exc)


def dispose(view: View, job: Job, end: Event, verdict: Verdict) -> None:
    """Move a finished run's file out of pending, by its outcome."""
    path = job.path
    queue = queue_of(view)
    options = view.record.options
    try:
        if end.retry_at is not None:
            view.retries[job.fact.name] = (job.fact, end.retry_at)
            return  # waits in pending for its retry, run by this instance
        if verdict is Verdict.NOT_STARTED or (
            verdict is Verdict.UNKNOWN and end.status is Status.UNKNOWN and end.runs <= options.retries
        ):
            where = q.release(path, queue)
            log.info("record %d: %s: back in the queue as %s", view.number, escape(path), escape(where))
        elif verdict is Verdict.SUCCESS:
            if options.next is not None:
                where = q.forward(path, q.Queue(options.next))
                log.info("record %d: %s: handed on to %s", view.number, escape(path), escape(where))
            else:
                os.unlink(path)
                log.info("record %d: removed %s: handled with exit 0", view.number, escape(path))
        else:
            where = q.to_errors(path, queue)
            log.warning("record %d: %s: moved to %s", view.number, escape(path), escape(where))
    except FileNotFoundError:
        log.warning("record %d: %s: gone from pending before it could be moved", view.number, escape(path))
    except OSError as exc:
        log.error(
            "record %d: %s: cannot move it out of pending: %s; the next start tries again",
            view.number,
            escape(path),
            exc.strerror or exc,
        )


def recover(entry: Entry, history: History, instance: str, busy: set[str]) -> None:
    """Sort out what a previous life of this instance left in pending
    (open runs are the launcher's, and come here once recorded)."""
    queue = queue_of(entry.view)
    pending = queue.pending(instance)
    try:
        names = sorted(os.listdir(pending))
    except OSError as exc:
        log.error("record %d: %s: cannot list it: %s", entry.number, pending, exc.strerror)
        return
    for name in names:
        path = os.path.join(pending, name)
        if path in busy:
            continue  # an adopted run: disposed of when it ends
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        fact = FileFact(name, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_ino)
        event = history.latest(path, entry.record.process)
        if event is not None and not event.same_version(fact):
            event = None
        if event is None or not event.consumed:
            log.info("record %d: %s: claimed but never run; back in the queue", entry.number, escape(path))
            try:
                q.release(path, queue)
            except OSError as exc:
                log.error("record %d: %s: cannot put it back: %s", entry.number, escape(path), exc.strerror)
            continue
        job = Job(entry.identity, entry.record.process, (fact,), (path,), attempt=event.runs)
        verdict = Verdict.SUCCESS if event.succeeded else Verdict.UNKNOWN
        if event.status is Status.KNOWN and not event.succeeded:
            verdict = Verdict.FINAL
        dispose(entry.view, job, event, verdict)


def expire_errors(entry: Entry, now_ns: int) -> int:
    """hours-too-old as retention of errors/: the files expired there."""
    hours = entry.record.too_old_h
    if hours <= 0:
        return 0
    errors = queue_of(entry.view).errors
    limit = now_ns - int(hours * 3600e9)
    removed = 0
    try:
        entries = list(os.scandir(errors))
    except OSError:
        return 0
    for item in entries:
        try:
            st = item.stat(follow_symlinks=False)
            if not item.is_file(follow_symlinks=False) or max(st.st_mtime_ns, st.st_ctime_ns) > limit:
                continue
            os.unlink(item.path)
        except OSError:
            continue
        removed += 1
        log.info(
            "record %d: removed %s: expired in errors/, hours-too-old is %g", entry.number, escape(item.path), hours
        )
    return removed


class Outflow:
    """out-limit=: whether the next queue has room, looked at every out-wait."""

    def __init__(self) -> None:
        self._checked: dict[str, tuple[float, bool]] = {}  # next queue -> (when, full)
        self.held: set[str] = set()  # next queues full at the last look

    def room(self, entry: Entry, now: float, in_flight: int) -> tuple[int | None, float | None]:
        """How many more files the record may claim now (None: no limit),
        given its runs not yet handed on; and when to look again if none.
        Counted afresh while there is room, so that the next queue never
        holds more than the limit."""
        options = entry.record.options
        if options.out_limit is None or options.next is None:
            return None, None
        when, was_full = self._checked.get(options.next, (-1e18, False))
        if was_full and now - when < options.out_wait_s:
            return 0, when + options.out_wait_s
        count = q.Queue(options.next).count()
        room = max(0, options.out_limit - count - in_flight)
        full = count >= options.out_limit
        self._checked[options.next] = (now, full)
        if full and options.next not in self.held:
            log.info(
                "record %d: %s/incoming holds %d files (out-limit %d): claiming nothing for now",
                entry.number,
                options.next,
                count,
                options.out_limit,
            )
            self.held.add(options.next)
        elif not full and options.next in self.held:
            log.info("record %d: %s/incoming has room again (%d files)", entry.number, options.next, count)
            self.held.discard(options.next)
        return room, now + options.out_wait_s if room == 0 else None

    def is_held(self, entry: Entry) -> bool:
        return entry.record.options.next in self.held
