# SPDX-License-Identifier: MIT
"""Records that claim their files from a queue (`claim=yes`).

What the filer protocol (`queue`) means for a run of such a record:

- `take`: a job is claimed just before its start is recorded: its file is
  renamed from the queue's incoming into pending/INSTANCE, and the run
  works on it there.  A file another instance claimed first is stepped
  over quietly.  A claim never replaces a file: a name under way in
  pending (running, or waiting for its retry) waits in incoming (the
  readiness rules hold it back) until that file has left.
- `dispose`: once a run's end is in the history, its file leaves pending
  as the scheduler decided (`handoff.disposal`): deleted after a success,
  or handed on to `next=`'s queue; into errors after a final failure; back
  into incoming when the handler of its first attempt could not be
  executed; or kept in pending, to run again here (`retries`), so that
  its retry's delay and its attempt count hold (they are in this
  instance's history, under the pending path).  `unclaim` leaves a retry
  there too when its start cannot be made.
- `cancel`: a waiting file cancelled goes into errors at once (a final
  failure), so that no other instance claims it.
- `recover`: at start, what a previous life of this instance left in
  pending: a file with no recorded start was claimed but never run and
  goes back into incoming; an open run is adopted or recorded as status
  1 by the launcher first, then disposed of; a finished run whose file
  is still there is disposed of now; one waiting for a retry waits on.
- `Outflow`: out-limit=, the next queue's count (a listing) and what the
  last look said, logged when it changes (the rule: `handoff.out_room`).
- `listing`: the files of errors/ and tmp/, for their retention
  (`removal.stale`: the record's names in errors/, anything in tmp/).

Every move is logged.  A move that fails is logged and the file left
where it is (the next start looks at pending again).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

from waitd.config import table
from waitd.decide import handoff, removal
from waitd.decide.facts import FileFact
from waitd.decide.handoff import Disposal
from waitd.decide.outcome import Job
from waitd.journal.history import History, escape
from waitd.spool import activation
from waitd.spool import queue as q
from waitd.spool.state import FileState

log = logging.getLogger("waitd")


def queue_of(st: FileState) -> q.Queue:
    return q.Queue.of_incoming(st.record.directory)


def take(st: FileState, job: Job, instance: str) -> Job | None:
    """Claim the job's file; the job working on its pending path, or None."""
    if job.path.startswith(queue_of(st).pending(instance) + "/"):
        st.retries.pop(job.fact.name, None)  # a retry, claimed already: it runs now
        return job
    try:
        claimed = q.claim(queue_of(st), job.fact.name, instance, job.fact.ino)
    except FileExistsError:
        # Not ours to replace: a file of that name left in pending (the
        # readiness rules hold back the names of the files under way or
        # waiting for a retry, so this one is left over from a failed move).
        st.note(job.fact.name, f"not claimed: {st.pending}/{job.fact.name} is there already; it waits")
        return None
    except OSError as exc:
        log.error("record %d: %s: cannot claim it: %s", st.number, escape(job.path), exc.strerror or exc)
        return None
    st.forget(job.fact.name)  # it left incoming, whoever has it now
    if claimed is None:
        return None  # another instance was first
    return replace(job, paths=(claimed,))


def unclaim(st: FileState, job: Job, instance: str) -> None:
    """A claimed file whose start could not be made goes back to incoming;
    a retry's file stays in pending, due again at once (the record's
    back-off spaces the attempts), so that its attempt count holds."""
    if job.attempt > 1 and job.path.startswith(queue_of(st).pending(instance) + "/"):
        st.retries[job.fact.name] = (job.fact, time.time())
        return
    try:
        q.release(job.path, queue_of(st), st.match)
    except OSError as exc:
        log.error("record %d: %s: cannot put it back: %s", st.number, escape(job.path), exc.strerror or exc)


def dispose(st: FileState, job: Job, disposal: Disposal, retry_at: float | None) -> bool:
    """Move a finished run's file out of pending, as decided; True when it
    was removed (handled with exit 0, and no next queue)."""
    path = job.path
    if disposal is Disposal.RETRY:
        # At its retry time, or at once when a retry could not be executed
        # (the record's back-off spaces those).
        st.retries[job.fact.name] = (job.fact, retry_at if retry_at is not None else time.time())
        return False
    try:
        return _move(st, path, disposal)
    except FileNotFoundError:
        log.warning("record %d: %s: gone from pending before it could be moved", st.number, escape(path))
    except OSError as exc:
        log.error(
            "record %d: %s: cannot move it out of pending: %s; the next start tries again",
            st.number,
            escape(path),
            exc.strerror or exc,
        )
    return False


def _move(st: FileState, path: str, disposal: Disposal) -> bool:
    queue = queue_of(st)
    if disposal is Disposal.RELEASE:
        where = q.release(path, queue, st.match)
        log.info("record %d: %s: back in the queue as %s", st.number, escape(path), escape(where))
    elif disposal is Disposal.FORWARD:
        assert st.record.options.next is not None
        where = q.forward(path, q.Queue(st.record.options.next))
        log.info("record %d: %s: handed on to %s", st.number, escape(path), escape(where))
    elif disposal is Disposal.DELETE:
        os.unlink(path)
        log.info("record %d: removed %s: handled with exit 0", st.number, escape(path))
        return True
    else:
        where = q.to_errors(path, queue, st.match)
        log.warning("record %d: %s: moved to %s", st.number, escape(path), escape(where))
    return False


def cancel(st: FileState, fact: FileFact, path: str) -> str | None:
    """A waiting file cancelled (waitd -s cancel) is a final failure: into
    errors/ at once, out of every instance's reach; where it went, or None
    when another instance claimed it first.  OSError: it could not be
    moved, and waits as before."""
    try:
        where = q.to_errors(path, queue_of(st), st.match)
    except FileNotFoundError:
        st.forget(fact.name)
        return None
    if path == f"{st.pending}/{fact.name}":
        st.retries.pop(fact.name, None)
    else:
        st.forget(fact.name)
    return where


def recover(st: FileState, history: History, instance: str, busy: set[str]) -> list[tuple[FileFact, str]]:
    """Sort out what a previous life of this instance left in pending
    (open runs are the launcher's, and come here once recorded); the files
    removed (handled with exit 0), with their directory."""
    queue = queue_of(st)
    pending = queue.pending(instance)
    removed: list[tuple[FileFact, str]] = []
    try:
        names = sorted(os.listdir(pending))
    except OSError as exc:
        log.error("record %d: %s: cannot list it: %s", st.number, pending, exc.strerror)
        return removed
    for name in names:
        path = os.path.join(pending, name)
        if path in busy:
            continue  # an adopted run: disposed of when it ends
        try:
            s = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        fact = FileFact(s.st_mtime_ns, name, s.st_ctime_ns, s.st_size, s.st_ino)
        event = history.latest(path, st.record.process)
        if event is None or not event.same_version(fact):
            log.info("record %d: %s: claimed but never run; back in the queue", st.number, escape(path))
            try:
                q.release(path, queue, st.match)
            except OSError as exc:
                log.error("record %d: %s: cannot put it back: %s", st.number, escape(path), exc.strerror)
            continue
        job = Job(st.identity, st.record.process, (fact,), (path,), attempt=event.runs)
        forward = st.record.options.next is not None
        disposal = handoff.disposal(handoff.recorded(event), event.retry_at, job.attempt, forward)
        if dispose(st, job, disposal, event.retry_at):
            removed.append((fact, pending))
    return removed


def listing(queue: q.Queue) -> tuple[tuple[str, list[removal.Entry]], tuple[str, list[removal.Entry]]]:
    """The files of a queue's errors/ and tmp/, for their retention."""
    return (queue.errors, _listed(queue.errors)), (queue.tmp, _listed(queue.tmp))


def ours(match: Callable[[str], bool]) -> Callable[[str], bool]:
    """Whether a name in errors/ is a record's (whose template is `match`):
    its template matches it, or the name without the number a taken name
    got (`queue.unnumbered`)."""
    return lambda name: match(name) or any(match(other) for other in q.unnumbered(name))


def _listed(directory: str) -> list[removal.Entry]:
    out: list[removal.Entry] = []
    try:
        items = list(os.scandir(directory))
    except OSError:
        return out
    for item in items:
        try:
            s = item.stat(follow_symlinks=False)
            regular = item.is_file(follow_symlinks=False)
        except OSError:
            continue
        out.append(removal.Entry(FileFact(s.st_mtime_ns, item.name, s.st_ctime_ns, s.st_size, s.st_ino), regular))
    return out


def unmade(root: str, reason: str) -> str:
    """Why a record is inactive when its queue cannot be made."""
    return f"queue {root}: cannot make its subdirectories: {reason}"


def preview(record: table.Record, passdir: str, path_env: str) -> str | None:
    """Why a claim=yes record would be inactive at start, making nothing
    (the daemon makes the missing subdirectories of its queue and of its
    next queue): what --check and -g say before the daemon does."""
    for root in (os.path.dirname(record.directory), record.options.next):
        reason = q.Queue(root).cannot_make() if root is not None else None
        if reason is not None:
            return unmade(root or "", reason)
    if os.path.isdir(record.directory):
        return activation.activate(record, passdir, path_env).problem
    return activation.activate_handler(record, passdir, path_env).problem


class Outflow:
    """out-limit=: what the last look at each next queue said."""

    def __init__(self) -> None:
        self._looks: dict[str, handoff.Outlook] = {}  # next queue -> its last look
        self._held: set[str] = set()  # next queues full at the last look

    def last(self, next_queue: str) -> handoff.Outlook:
        return self._looks.get(next_queue, handoff.Outlook())

    def looked(self, number: int, next_queue: str, look: handoff.Outlook, files: int, limit: int) -> None:
        """Remember a look (`files` -1: not counted); say when the queue
        becomes full or has room again."""
        self._looks[next_queue] = look
        if files < 0:
            return
        if look.full and next_queue not in self._held:
            log.info(
                "record %d: %s/incoming holds %d files (out-limit %d): claiming nothing for now",
                number,
                next_queue,
                files,
                limit,
            )
            self._held.add(next_queue)
        elif not look.full and next_queue in self._held:
            log.info("record %d: %s/incoming has room again (%d files)", number, next_queue, files)
            self._held.discard(next_queue)

    def is_held(self, record: table.Record) -> bool:
        return record.options.next in self._held

    @staticmethod
    def count(next_queue: str) -> Callable[[], int]:
        """The files in a next queue's incoming now, when asked (a listing)."""
        return lambda: q.Queue(next_queue).count()
