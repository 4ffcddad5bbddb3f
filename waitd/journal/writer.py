# SPDX-License-Identifier: MIT
"""The journal: the one writer of what waitd does, to the history and the outbox.

The callers tell `Journal` what happened, with what they know: the record
whose work it is (None when no record of the table has it any more) and
the history lines of one job (one file, or the files of a group; the
lines of one job are one event).  The journal writes the lines to the
history (`history.History`) and the events they stand for
(`formats.events`) to the outbox (`outbox.Writer`, when there are sinks:
those events the sinks want), and shows every event to its observers (the
metrics):

    started(jobs)              status 0 of each start of a pass, one sync;
                               `ready` (a first attempt; a group: `group`
                               complete too) and `started`
    running(lines, pid)        the second status 0 lines, with the pid
    ended(record, lines, told) an end, a retry or a cancel asked with -s,
                               an end recorded after a crash: `ended`
                               (with a run's response and logs' tails)
    published(jobs)            publish-only (status 2 `published=1`), one
                               sync: `ready` (a group: `group` complete)
    removed(record, fact, ...) `removed` or `expired`: no history line
    group(record, gid, ...)    `group` incomplete or late: no history line

Order and durability (waitd(8), waitd.conf(5)): the events of a write go
to the outbox before its lines go to the history, and a synced write (a
start, a publication) syncs the outbox before the history, so that an
event whose line is on disk is on disk too; a start's status 0 is on disk
before `started` returns.  A write that is not synced (an end) is covered
by the next sync.  An event's id is a digest of what it is about
(PASSDIR, kind, process, file or group, version, attempt, retry time):
made again after a crash, it has the id of the first.

One failure policy.  A write that fails (a full disk under the history or
under events/) is cut back in the file it failed in, so that no partial
line stays (`History.append_all`, `outbox.Writer.append`); then a start
or a publication is refused (`HistoryWriteError`: nothing of it is
recorded, and its caller must not run or publish it), and anything else
is held, in order, in memory, and written before anything later.  Either
way no start and no publication is made (`may_start` is False) until the
next poll (`retry`) has written everything held.  The first failure is
logged as an error, the recovery as info.  Of events that have no history
line (removals, groups), at most HELD_MOST are held; more are dropped,
logged.  What is still held at exit (`close`) is logged as critical and
lost: the next waitd records those runs as status 1.

This module decides nothing: what to start, end or remove is the caller's.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from waitd.config.errors import HistoryWriteError
from waitd.formats import events as ev
from waitd.formats.history_line import Event as Line
from waitd.formats.history_line import Status, Versioned, escape, format_event
from waitd.journal.history import History
from waitd.journal.outbox import Writer

if TYPE_CHECKING:
    from waitd.config.table import Record

log = logging.getLogger("waitd")

HELD_MOST = 100_000  # events of no history line held on a full disk; past that, new ones are dropped
Job = tuple["Record | None", Sequence[Line]]  # whose work, and the lines of one job


class Named(Versioned, Protocol):
    """A file's name and version (a file fact)."""

    @property
    def name(self) -> str: ...


Observer = Callable[[ev.Event], None]


class Journal:
    """The history and the outbox, written together, with one failure policy."""

    def __init__(self, passdir: str, history: History) -> None:
        self.passdir = passdir
        self.history = history
        self.outbox: Writer | None = None  # None: no sink, nothing written there
        self.wants: Callable[[str, int | None], bool] = lambda kind, record: False
        # Records whose run events carry their file's JSON object (`body`:
        # a `format = isis` sink replies with the source message).
        self.carries: Callable[[int | None], bool] = lambda record: False
        self.observers: list[Observer] = []
        self.sync_observers: list[Callable[[float], None]] = []  # the history's fdatasync, in seconds
        self._held: deque[tuple[list[Line], list[ev.Event]]] = deque()
        self._held_bare = 0  # of them, writes with no history line (removals, groups)
        self._failing: str | None = None  # why the last write failed; None once one works
        self._stalled = False  # a write failed: nothing starts before the next poll's retry

    # -- what callers tell ------------------------------------------------------

    def started(self, jobs: Sequence[Job], bodies: Sequence[Mapping[str, Any] | None] = ()) -> None:
        """Record the starts of a pass with one sync (status 0 on disk when
        this returns); HistoryWriteError: none of them is recorded.
        `bodies`: each job's file's JSON object, for the records `carries`
        names (their `started` events carry it)."""
        lines, made = self._of_jobs(jobs, self._starting)
        if any(b is not None for b in bodies):
            at = [(i, e) for i, e in enumerate(made) if isinstance(e, ev.Started)]  # one a job, in order
            for (i, started), body in zip(at, bodies, strict=False):
                if body is not None:
                    made[i] = replace(started, body=body)
        self._record(lines, made, durable=True)

    def running(self, lines: Sequence[Line], pid: int) -> None:
        """The second status 0 lines of a start, with its handler's pid (not
        synced: they matter only if waitd dies, and then the page cache has
        them); held if they cannot be written."""
        self._record([replace(line, pid=pid) for line in lines], [], durable=False)

    def ended(self, record: Record | None, lines: Sequence[Line], told: Mapping[str, Any] | None = None) -> None:
        """Record an end (of a run, or asked with -s retry or cancel, or found
        after a crash): one `ended` event a job (the lines of a group's
        members, by their group=, are one), with what `told` adds (a run's
        response, its log's tail, waitd's lines about it); held if it
        cannot be written."""
        made: list[ev.Event] = [self._ended(record, job, told) for job in _by_job(lines)] if self._telling else []
        self._record(list(lines), made, durable=False)

    def published(self, jobs: Sequence[Job]) -> None:
        """Record the publications of a pass with one sync; HistoryWriteError:
        none of them is recorded (nor published)."""
        lines, made = self._of_jobs(jobs, self._publishing)
        self._record(lines, made, durable=True)

    def removed(self, record: Record, fact: Named, why: str, directory: str | None = None) -> None:
        """A file of the record was removed (after the unlink), for `why`:
        `expired` when why starts with "expired", else `removed`; `directory`
        when it was not in the record's own (a queue's errors/, pending/...).
        Held if it cannot be written."""
        if not self._telling:
            return
        kind: type[ev.Removed | ev.Expired] = ev.Expired if why.startswith("expired") else ev.Removed
        path = os.path.join(record.directory if directory is None else directory, fact.name)
        about = self._about_files(record, [path], None)
        key = (fact.mtime_ns, fact.size, fact.ino)
        made = kind(ev.event_id(self.passdir, kind.type, record.process, path, key), time.time(), about, reason=why)
        self._record([], [made], durable=False)

    def group(self, record: Record, gid: str, state: str, names: Sequence[str], missing: Sequence[str]) -> None:
        """A group of the record's files (`names`, in its directory) will
        not run (`incomplete`: without `missing`), or a member came after it
        ran (`late`); held if it cannot be written."""
        if not self._telling:
            return
        paths = [os.path.join(record.directory, name) for name in names]
        about = self._about_files(record, paths, gid)
        made = ev.Grouped(
            ev.event_id(self.passdir, ev.Grouped.type, record.process, gid, None, state, *names),
            time.time(),
            about,
            state=state,
            missing=tuple(missing),
        )
        self._record([], [made], durable=False)

    @property
    def telling(self) -> bool:
        """Events are made (what a caller adds to them is worth finding)."""
        return self._telling

    @property
    def _telling(self) -> bool:
        """Events are made only for someone: the sinks or the metrics."""
        return self.outbox is not None or bool(self.observers)

    # -- the failure policy -------------------------------------------------------

    @property
    def may_start(self) -> bool:
        """False from a failed write until a poll's `retry` wrote all that is held."""
        return not self._stalled and not self._held

    @property
    def unwritten(self) -> int:
        """History lines held, not written yet."""
        return sum(len(lines) for lines, _ in self._held)

    def retry(self) -> int:
        """Write what is held (at each poll); how many history lines still wait."""
        try:
            self._write_held()
        except HistoryWriteError as exc:
            self._failed(exc)
            return self.unwritten
        self._stalled = False
        return 0

    def close(self) -> int:
        """A last try, then what is still held is lost: logged as critical;
        how many history lines were lost."""
        lost = self.retry()
        for lines, _ in self._held:
            for line in lines:
                # Not on disk: the next waitd records these runs as status 1.
                log.critical(
                    "%s: exiting with an event not written: %s %s",
                    self.history.path,
                    escape(line.path),
                    format_event(line).strip(),
                )
        if self.outbox is not None:
            self.outbox.close()
        return lost

    def _record(self, lines: list[Line], made: list[ev.Event], durable: bool) -> None:
        """Write after what is held; a durable write that fails raises,
        anything else is held."""
        try:
            self._write_held()
            self._write(lines, made, durable)
        except HistoryWriteError as exc:
            self._failed(exc)
            if durable:
                raise
            self._hold(lines, made)

    def _write_held(self) -> None:
        count = len(self._held)
        while self._held:
            lines, made = self._held[0]
            self._write(lines, made, durable=False)
            self._held.popleft()
            self._held_bare -= not lines
        if count:
            log.info("%s: wrote what a failed write held back (%d write(s))", self.history.path, count)

    def _write(self, lines: list[Line], made: list[ev.Event], durable: bool) -> None:
        """The events the sinks want to the outbox, then the lines to the
        history, then the events to the observers; HistoryWriteError."""
        wrote = self._to_outbox(made, durable)
        if lines:
            seconds = self.history.append_all(lines, sync=durable)
            if seconds is not None:
                for observe in self.sync_observers:
                    observe(seconds)
        for event in made:
            for see in self.observers:
                see(event)
        if self._failing is not None and (wrote or lines):
            log.info("%s: writable again", self._failing.partition(": ")[0])
            self._failing = None

    def _to_outbox(self, made: list[ev.Event], durable: bool) -> bool:
        """Append the events some sink wants; False if there were none."""
        outbox = self.outbox
        if outbox is None:
            return False
        wanted = [ev.to_json(e) for e in made if self.wants(e.type, e.about.record)]
        if not wanted:
            return False
        try:
            outbox.append(wanted, sync=durable)
        except OSError as exc:
            raise HistoryWriteError(outbox.directory, exc) from exc
        return True

    def _failed(self, exc: HistoryWriteError) -> None:
        self._stalled = True
        if self._failing is None:
            self._failing = str(exc)
            if self.outbox is not None and exc.path == self.outbox.directory:
                cause = exc.__cause__
                why = (cause.strerror if isinstance(cause, OSError) else None) or str(cause)
                self._failing = f"{exc.path}: cannot write events: {why}"
            log.error(
                "%s; what waitd did is kept and written at a later poll, and no handler starts until then",
                self._failing,
            )

    def _hold(self, lines: list[Line], made: list[ev.Event]) -> None:
        if not lines:
            if self._held_bare >= HELD_MOST:
                log.error("%s: more than %d events held back; %d dropped", self.passdir, HELD_MOST, len(made))
                return
            self._held_bare += 1
        self._held.append((lines, made))

    # -- the events of the history's lines -----------------------------------------

    def _of_jobs(
        self, jobs: Sequence[Job], make: Callable[[Record | None, Sequence[Line]], list[ev.Event]]
    ) -> tuple[list[Line], list[ev.Event]]:
        lines: list[Line] = []
        made: list[ev.Event] = []
        for record, job in jobs:
            lines.extend(job)
            if self._telling:
                made.extend(make(record, job))
        return lines, made

    def _starting(self, record: Record | None, job: Sequence[Line]) -> list[ev.Event]:
        about, key, at = self._about_lines(record, job)
        first = job[0]
        made: list[ev.Event] = []
        if first.runs == 1:
            made.extend(self._handed_on(about, key, at))  # handed on for the first time
        made.append(ev.Started(ev.event_id(self.passdir, ev.Started.type, *key, first.runs), at, about, first.runs))
        return made

    def _publishing(self, record: Record | None, job: Sequence[Line]) -> list[ev.Event]:
        about, key, at = self._about_lines(record, job)
        return self._handed_on(about, key, at)

    def _handed_on(self, about: ev.About, key: tuple[object, ...], at: float) -> list[ev.Event]:
        made: list[ev.Event] = [ev.Ready(ev.event_id(self.passdir, ev.Ready.type, *key), at, about)]
        if about.group is not None:
            made.append(
                ev.Grouped(ev.event_id(self.passdir, ev.Grouped.type, *key, "complete"), at, about, state="complete")
            )
        return made

    def _ended(self, record: Record | None, job: Sequence[Line], told: Mapping[str, Any] | None) -> ev.Ended:
        about, key, at = self._about_lines(record, job)
        end = job[0]
        told = told or {}
        if end.retry_at is not None:
            outcome = "retrying"
        elif end.outcome == "skipped" and end.succeeded:
            outcome = "skipped"
        elif end.succeeded:
            outcome = "ok"
        else:
            outcome = "failed"
        error = end.error
        if end.status is Status.UNKNOWN and error is None and end.signal is None:
            error = "unknown"  # waitd died while it ran, or it was stopped with waitd
        return ev.Ended(
            ev.event_id(self.passdir, ev.Ended.type, *key, end.runs, end.retry_at),
            at,
            about,
            outcome=outcome,
            attempt=end.runs,
            exit=end.exit,
            signal=end.signal,
            error=error,
            took=end.took,
            retry_at=end.retry_at,
            body=told.get("body"),
            response=told.get("response"),
            log=told.get("log"),
            admin_log=told.get("admin_log"),
        )

    def _about_lines(self, record: Record | None, job: Sequence[Line]) -> tuple[ev.About, tuple[object, ...], float]:
        """What the events of one job's lines are about (with the pattern's
        fields, and the version of a single file), the parts of their ids,
        and their time."""
        first = job[0]
        about = self._about_files(record, [line.path for line in job], first.group, first.process)
        if first.group is None and first.version is not None:
            about = replace(about, mtime=first.version.mtime_ns / 1e9, size=first.version.size)
        if record is not None and record.options.pattern is not None:
            directory, name = os.path.split(first.path)
            found = record.options.fields(name, directory, record.telem)
            if found is not None:
                about = replace(about, fields=ev.pattern_fields(found))
        versions = sorted((line.path, line.version) for line in job)
        key = (first.process, first.group or first.path, versions)
        return about, key, first.at or time.time()

    def _about_files(
        self, record: Record | None, paths: Sequence[str], group: str | None, process: str | None = None
    ) -> ev.About:
        one = group is None and len(paths) == 1
        return ev.About(
            record=record.number if record is not None else None,
            telem=record.telem if record is not None else None,
            topic=record.topic if record is not None else None,
            process=process if process is not None else record.process if record is not None else "",
            path=paths[0] if one else None,
            paths=None if one else tuple(sorted(paths)),
            group=None if one else group,
        )


def _by_job(lines: Sequence[Line]) -> list[list[Line]]:
    """The lines of each job: a group's members together, any other line alone."""
    jobs: dict[str, list[Line]] = {}
    for line in lines:
        jobs.setdefault(line.group if line.group is not None else "\0" + line.path, []).append(line)
    return list(jobs.values())
