# SPDX-License-Identifier: MIT
"""Records that claim their files from a queue (`claim=yes`).

What the filer protocol (`queue`) means for a run of such a record:

- `take`: a job is claimed just before its start is recorded: its file is
  renamed from the queue's incoming into pending/INSTANCE, and the run
  works on it there.  A file another instance claimed first is stepped
  over quietly.  A claim never replaces a file: a name under way in
  pending (running, or waiting for its retry) waits in incoming (the
  view holds it back) until that file has left.
- `dispose`: once a run's end is in the history, its file leaves pending:
  deleted after a success, or handed on to `next=`'s queue; into errors
  after a final failure; back into incoming when the handler of its
  first attempt could not be executed.  A file to be run again stays in
  pending, and this instance runs it again: a temporary failure (an
  unknown outcome counts as one: `jobs.end_events`) with a retry left, at
  its retry time, and a retry that could not be executed, at once.  So
  the retry's delay and its attempt count hold (they are in this
  instance's history, under the pending path), and no instance takes it
  back at once while the cause of the failure lasts; `unclaim` leaves it
  there too when its retry's start cannot be made.
- `cancel`: a waiting file cancelled goes into errors at once (a final
  failure), so that no other instance claims it.
- `recover`: at start, what a previous life of this instance left in
  pending: a file with no recorded start was claimed but never run and
  goes back into incoming; an open run is adopted or recorded as status
  1 by the launcher first, then disposed of; a finished run whose file
  is still there is disposed of now; one waiting for a retry waits on.
- `Outflow`: `out-limit=`, no claim while the next queue's incoming holds
  that many files, looked at again every `out-wait=` seconds.
- `expire_queue`: hours-too-old also expires the files in errors/ that
  are the record's (its template matches the name, or the name without
  the number a taken name got: `queue.unnumbered`; never an operator's
  README, nor a dot file), and those producers left in tmp/ (36 hours
  at least).
- `InstanceLocks`: one daemon per instance name and queue.

Every move is logged.  A move that fails is logged and the file left
where it is (the next start looks at pending again).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace

from waitd.config import table
from waitd.daemon import pidfile
from waitd.daemon.records import Entry
from waitd.decide.outcome import Job, Verdict
from waitd.journal.history import Event, History, Status, escape
from waitd.spool import activation
from waitd.spool import queue as q
from waitd.spool.directory import FileFact
from waitd.spool.view import View

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
    except FileExistsError:
        # Not ours to replace: a file of that name left in pending (the
        # view holds back the names of the files under way or waiting for a
        # retry, so this one is left over from a failed move).
        view.note(job.fact.name, f"not claimed: {view.pending}/{job.fact.name} is there already; it waits")
        return None
    except OSError as exc:
        log.error("record %d: %s: cannot claim it: %s", view.number, escape(job.path), exc.strerror or exc)
        return None
    view.forget(job.fact.name)  # it left incoming, whoever has it now
    if claimed is None:
        return None  # another instance was first
    return replace(job, paths=(claimed,))


def unclaim(view: View, job: Job, instance: str) -> None:
    """A claimed file whose start could not be made goes back to incoming;
    a retry's file stays in pending, due again at once (the record's
    back-off spaces the attempts), so that its attempt count holds."""
    if job.attempt > 1 and job.path.startswith(queue_of(view).pending(instance) + "/"):
        view.retries[job.fact.name] = (job.fact, time.time())
        return
    try:
        q.release(job.path, queue_of(view), view.match)
    except OSError as exc:
        log.error("record %d: %s: cannot put it back: %s", view.number, escape(job.path), exc.strerror or exc)


def dispose(view: View, job: Job, end: Event, verdict: Verdict) -> None:
    """Move a finished run's file out of pending, by its outcome."""
    path = job.path
    name = job.fact.name
    queue = queue_of(view)
    options = view.record.options
    if end.retry_at is not None or (verdict is Verdict.NOT_STARTED and job.attempt > 1):
        # It runs again, here, where its attempts are counted: at its retry
        # time, or at once when a retry could not be executed (the record's
        # back-off spaces those).
        view.retries[name] = (job.fact, end.retry_at if end.retry_at is not None else time.time())
        return
    try:
        if verdict is Verdict.NOT_STARTED:
            where = q.release(path, queue, view.match)
            log.info("record %d: %s: back in the queue as %s", view.number, escape(path), escape(where))
        elif verdict is Verdict.SUCCESS:
            if options.next is not None:
                where = q.forward(path, q.Queue(options.next))
                log.info("record %d: %s: handed on to %s", view.number, escape(path), escape(where))
            else:
                os.unlink(path)
                log.info("record %d: removed %s: handled with exit 0", view.number, escape(path))
                if view.journal is not None:
                    view.journal.removed(view.record, job.fact, "handled with exit 0", os.path.dirname(path))
        else:
            where = q.to_errors(path, queue, view.match)
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
        return
    if name in view.cands.facts:
        view.due_ns = time.time_ns()  # a file of that name waits in incoming: its name is free now


def claimed_as(view: View, path: str) -> str | None:
    """The pending path of a file named by the incoming path it came from
    (when no file has that path now), else None."""
    directory, name = os.path.split(path)
    if view.pending is None or directory != view.record.directory or name in view.cands.facts:
        return None
    return f"{view.pending}/{name}" if view.match(name) else None


def cancel(view: View, fact: FileFact, path: str) -> str | None:
    """A waiting file cancelled (waitd -s cancel) is a final failure: into
    errors/ at once, out of every instance's reach; where it went, or None
    when another instance claimed it first.  OSError: it could not be
    moved, and waits as before."""
    try:
        where = q.to_errors(path, queue_of(view), view.match)
    except FileNotFoundError:
        view.forget(fact.name)
        return None
    if path == f"{view.pending}/{fact.name}":
        view.retries.pop(fact.name, None)
    else:
        view.forget(fact.name)
    return where


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
        if event is None:
            log.info("record %d: %s: claimed but never run; back in the queue", entry.number, escape(path))
            try:
                q.release(path, queue, entry.view.match)
            except OSError as exc:
                log.error("record %d: %s: cannot put it back: %s", entry.number, escape(path), exc.strerror)
            continue
        job = Job(entry.identity, entry.record.process, (fact,), (path,), attempt=event.runs)
        dispose(entry.view, job, event, _verdict(event))


def _verdict(event: Event) -> Verdict:
    """How the recorded end of a run counts (a retry's is in its retry_at=)."""
    if not event.consumed:
        return Verdict.NOT_STARTED
    if event.succeeded:
        return Verdict.SUCCESS
    return Verdict.FINAL if event.status is Status.KNOWN else Verdict.UNKNOWN


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


TMP_KEPT_H = 36.0  # a file left in tmp/ this long was dropped by its producer (maildir's rule)


def expire_queue(entry: Entry, now_ns: int) -> int:
    """hours-too-old as retention of errors/, and of what producers left in
    tmp/ (after 36 hours at least: a producer may still be writing); the
    number of files removed.  hours-too-old 0 keeps both."""
    view = entry.view
    journal = view.journal

    def removed(fact: FileFact, why: str, directory: str) -> None:
        if journal is not None:
            journal.removed(view.record, fact, why, directory)

    return expire_files(entry.number, queue_of(view), entry.record.too_old_h, now_ns, view.match, removed)


Removed = Callable[[FileFact, str, str], None]  # a file, why, its directory: after the unlink


def expire_files(
    number: int, queue: q.Queue, hours: float, now_ns: int, match: Callable[[str], bool], removed: Removed | None = None
) -> int:
    """`expire_queue` for record `number`, whose template is `match`, and
    `queue`, at `now_ns`."""
    if hours <= 0:
        return 0

    def ours(name: str) -> bool:
        return match(name) or any(match(other) for other in q.unnumbered(name))

    tmp_hours = max(hours, TMP_KEPT_H)
    return _expire_in(number, queue.errors, hours, now_ns, removed, ours) + _expire_in(
        number, queue.tmp, tmp_hours, now_ns, removed, lambda name: True
    )


def _expire_in(
    number: int, directory: str, hours: float, now_ns: int, removed: Removed | None, ours: Callable[[str], bool]
) -> int:
    limit = now_ns - int(hours * 3600e9)
    count = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for item in entries:
        if not ours(item.name):
            continue
        try:
            st = item.stat(follow_symlinks=False)
            if not item.is_file(follow_symlinks=False) or max(st.st_mtime_ns, st.st_ctime_ns) > limit:
                continue
            os.unlink(item.path)
        except OSError:
            continue
        count += 1
        why = f"expired in {os.path.basename(directory)}/ after {hours:g} hours"
        log.info("record %d: removed %s: %s", number, escape(item.path), why)
        if removed is not None:
            removed(
                FileFact(item.name, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_ino), why, directory
            )
    return count


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


class InstanceLocks:
    """One waitd per instance name and queue: a POSIX lock on
    Q/pending/.INSTANCE.lock, held while a record claims from Q.

    Two daemons with one --instance on one queue would each take the
    other's pending files for its own: the second, at start, would put the
    first's files under way back into incoming, and run them again.  The
    lock is the kernel's (the NFS server's lock manager over NFS), so it
    goes with its holder's death.  One descriptor per queue: closing any
    descriptor of a file drops a process's POSIX locks on it."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._held: dict[str, int] = {}  # queue root -> the lock file's descriptor

    def hold(self, root: str) -> str | None:
        """Lock this instance's name in queue `root`; None, or the problem."""
        if root in self._held:
            return None
        path = os.path.join(root, "pending", f".{self.instance}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return f"queue {root}: cannot open {path}: {exc.strerror or exc}"
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                who = f"instance {self.instance!r} is in use by another waitd ({holder})"
                return f"queue {root}: {who}; give each its own --instance"
            return f"queue {root}: cannot lock {path}: {exc.strerror or exc}"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # who holds it is a courtesy for the message above
        self._held[root] = fd
        return None

    def keep_only(self, roots: set[str]) -> None:
        """Let go of the queues no record claims from any more (after HUP)."""
        for root in [r for r in self._held if r not in roots]:
            os.close(self._held.pop(root))


def instance_in_use(root: str, instance: str) -> str | None:
    """Who holds this instance's name in queue `root` now, or None (a look
    before detaching, for the terminal; the daemon takes the lock itself)."""
    try:
        fd = os.open(os.path.join(root, "pending", f".{instance}.lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        locked, _ = pidfile.lock_probe(fd)
        return _read_holder(fd) if locked else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "who, unknown"
