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
                               complete too) and `started`, made and
                               written after the handlers start (below)
    running(lines, pid)        the second status 0 lines, with the pid: kept
                               until the next write or `flush` (the end of
                               the loop's turn), and written with it
    ended(record, lines, told) an end, a retry or a cancel asked with -s,
                               an end recorded after a crash: `ended`
                               (with a run's response and logs' tails)
    reopened(record, lines)    a run a previous waitd left open: its start's
                               `ready` and `started` again, if the outbox
                               lacks them
    published(jobs)            publish-only (status 2 `published=1`), one
                               sync: `ready` (a group: `group` complete)
    removed(record, fact, ...) `removed` or `expired`: no history line
    group(record, gid, ...)    `group` incomplete or late: no history line

Order and durability (waitd(8), waitd.conf(5)): the events of a write go
to the outbox before its lines go to the history.  A publication syncs
the outbox before the history, so that an event whose line is on disk is
on disk too.  A start's status 0 is on disk before `started` returns, all
its handler waits for (issue 21): its events are made and written with
the turn's next write (`flush`), their sync left under way in a helper
thread until anything more is written (`_settle`; in turn before a line
that ends their run in the same write), so that a run's end is never on
disk before its start's events.  A crash or a power failure meanwhile
may lose them; the next waitd finds the run open and makes them again
(`reopened`, same ids), as the outbox lacks them after an event it
holds: so only once the newest segment holds one on disk
(`outbox.Writer.anchored`); the first start of a segment writes and syncs
its events first.  A write that is not synced (an end) is covered by the
next sync.  The events are made from the lines by `made`.

One failure policy.  A write that fails (a full disk under the history or
under events/) is cut back in the file it failed in, so that no partial
line stays (`History.append_all`, `outbox.Writer.append`); then a start
or a publication is refused (`HistoryWriteError`: nothing of it is
recorded, and its caller must not run or publish it), and anything else
is held, in order, in memory, and written before anything later (a
start's events written after its handler started: synced too).  Either
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
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from waitd.config.errors import HistoryWriteError
from waitd.formats.history_line import Event as Line
from waitd.formats.history_line import Status, Versioned, escape, format_event
from waitd.journal import disk
from waitd.journal import made as mk
from waitd.journal.history import History
from waitd.journal.outbox import Writer

if TYPE_CHECKING:
    from waitd.config.table import Record
    from waitd.formats import events as ev

log = logging.getLogger("waitd")

HELD_MOST = 100_000  # events of no history line held on a full disk; past that, new ones are dropped
Job = tuple["Record | None", Sequence[Line]]  # whose work, and the lines of one job


class Named(Versioned, Protocol):
    """A file's name and version (a file fact)."""

    @property
    def name(self) -> str: ...


Observer = Callable[["ev.Event"], None]


class _Held(NamedTuple):  # a write a failure held back, for a later poll
    lines: list[Line]
    made: list[ev.Event]
    durable: bool = False  # a start's events whose sync failed: synced when written
    shown: bool = False  # the observers saw its events already


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
        self._held: deque[_Held] = deque()
        self._held_bare = 0  # of them, writes with no history line (removals, groups)
        self._failing: str | None = None  # why the last write failed; None once one works
        self._stalled = False  # a write failed: nothing starts before the next poll's retry
        self._pids: list[Line] = []  # `running`'s lines, for the turn's next write
        self._unsettled: tuple[disk.Syncing, list[ev.Event]] | None = None  # a start's events' sync under way
        self._later: list[tuple[Sequence[Job], Sequence[Mapping[str, Any] | None]]] = []  # starts' events to make

    # -- what callers tell ------------------------------------------------------

    def started(self, jobs: Sequence[Job], bodies: Sequence[Mapping[str, Any] | None] = ()) -> None:
        """Record the starts of a pass with one sync (status 0 on disk when
        this returns; their events later, see above); HistoryWriteError:
        none of them is recorded.  `bodies`: each job's file's JSON object,
        for the records `carries` names (their `started` events carry it)."""
        outbox = self.outbox
        if outbox is not None and outbox.anchored:
            self._record([line for _, job in jobs for line in job], [], durable=True)
            self._later.append((jobs, bodies))
            return
        self._record(*mk.of_starts(self.passdir, jobs, bodies, self.telling), durable=True)

    def running(self, lines: Sequence[Line], pid: int) -> None:
        """The second status 0 lines of a start, with its handler's pid (not
        synced: they matter only if waitd dies, and then the page cache has
        them).  Kept until the next write of the journal or `flush`, which
        the loop calls at the end of each turn, and written with it: one
        write(2) for the pids and the ends of a turn.  Held if they cannot
        be written."""
        self._pids.extend([mk.with_pid(line, pid) for line in lines])

    def flush(self) -> None:
        """Write what `running` keeps, and the events of the turn's starts
        (held if they cannot be written)."""
        if self._pids or self._later:
            self._record([], [], durable=False)

    def ended(self, record: Record | None, lines: Sequence[Line], told: Mapping[str, Any] | None = None) -> None:
        """Record an end (of a run, or asked with -s retry or cancel, or found
        after a crash): one `ended` event a job (the lines of a group's
        members, by their group=, are one), with what `told` adds (a run's
        response, its log's tail, waitd's lines about it); held if it
        cannot be written."""
        made: list[ev.Event] = (
            [mk.ended(self.passdir, record, job, told) for job in mk.by_job(lines)] if self.telling else []
        )
        self._record(list(lines), made, durable=False)

    def reopened(self, record: Record | None, lines: Sequence[Line], body: Mapping[str, Any] | None = None) -> None:
        """A run a previous waitd left open (its start's lines): its start's
        events (`ready`, `started`) made again, with their ids, those the
        outbox lacks (`outbox.Writer.lacks`): a start's events are synced
        at the same time as its lines, and a power failure then may keep
        the lines and lose the events.  `body`: its file's JSON object, for
        a record `carries` names (its `started` carries it, as `started`'s
        did).  Held if they cannot be written."""
        outbox = self.outbox
        if outbox is None or not lines:
            return
        made = [e for e in mk.starting(self.passdir, record, lines) if self.wants(e.type, e.about.record)]
        if body is not None:
            from waitd.formats.events import Started  # made: imported already

            made = [replace(e, body=body) if isinstance(e, Started) else e for e in made]
        missing = set(outbox.lacks([e.id for e in made], made[0].time if made else 0.0))
        if missing:
            log.info("%s: the events of its start made again (not in the outbox)", escape(lines[0].path))
            self._record([], [e for e in made if e.id in missing], durable=False)

    def published(self, jobs: Sequence[Job]) -> None:
        """Record the publications of a pass with one sync; HistoryWriteError:
        none of them is recorded (nor published)."""
        lines, made = mk.of_jobs(jobs, partial(mk.publishing, self.passdir), self.telling)
        self._record(lines, made, durable=True)

    def removed(self, record: Record, fact: Named, why: str, directory: str | None = None) -> None:
        """A file of the record was removed (after the unlink), for `why`:
        `expired` when why starts with "expired", else `removed`; `directory`
        when it was not in the record's own (a queue's errors/, pending/...).
        Held if it cannot be written."""
        if not self.telling:
            return
        path = os.path.join(record.directory if directory is None else directory, fact.name)
        made = mk.removed(self.passdir, record, path, (fact.mtime_ns, fact.size, fact.ino), why)
        self._record([], [made], durable=False)

    def group(self, record: Record, gid: str, state: str, names: Sequence[str], missing: Sequence[str]) -> None:
        """A group of the record's files (`names`, in its directory) will
        not run (`incomplete`: without `missing`), or a member came after it
        ran (`late`); held if it cannot be written."""
        if not self.telling:
            return
        self._record([], [mk.grouped(self.passdir, record, gid, state, names, missing)], durable=False)

    @property
    def telling(self) -> bool:
        """Events are made only for someone, the sinks or the metrics (what
        a caller adds to them is worth finding)."""
        return self.outbox is not None or bool(self.observers)

    # -- the failure policy -------------------------------------------------------

    @property
    def may_start(self) -> bool:
        """False from a failed write until a poll's `retry` wrote all that is held."""
        return not self._stalled and not self._held

    @property
    def unwritten(self) -> int:
        """History lines held, not written yet."""
        return sum(len(held.lines) for held in self._held)

    def retry(self) -> int:
        """Write what is held (at each poll); how many history lines still wait."""
        self._settle()
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
        self.flush()
        lost = self.retry()
        for held in self._held:
            for line in held.lines:
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
        """Write after what is held and what `running` keeps, with the
        events of the starts recorded before (`started`); a durable write
        that fails raises, anything else is held."""
        if self._unsettled is not None and (lines or made or self._later):
            self._settle()  # the last start's events on disk before anything that may end its run
        if self._pids:
            pids, self._pids = self._pids, []
            if durable:
                self._record(pids, [], durable=False)  # on their own: a refused start must not take them along
            else:
                lines = pids + lines
        later = self._made_later() if self._later else []
        if later:
            made = later + made
        try:
            if self._held:
                self._write_held()
            self._write(lines, made, durable, later=bool(later))
        except HistoryWriteError as exc:
            self._failed(exc)
            if durable:
                if later:
                    self._hold([], later, durable=True)
                raise
            self._hold(lines, made, durable=bool(later))

    def _made_later(self) -> list[ev.Event]:
        """The events of the starts `started` recorded, made now."""
        if not self._later:
            return []
        later, self._later = self._later, []
        made: list[ev.Event] = []
        for jobs, bodies in later:
            made.extend(mk.of_starts(self.passdir, jobs, bodies, self.telling)[1])
        return made

    def _write_held(self) -> None:
        count = len(self._held)
        while self._held:
            held = self._held[0]
            self._write(held.lines, held.made, held.durable, later=held.durable, shown=held.shown)
            self._held.popleft()
            self._held_bare -= not held.lines
        if count:
            log.info("%s: wrote what a failed write held back (%d write(s))", self.history.path, count)

    def _write(
        self, lines: list[Line], made: list[ev.Event], durable: bool, later: bool = False, shown: bool = False
    ) -> None:
        """The events the sinks want to the outbox, then the lines to the
        history, then the events to the observers (unless `shown`);
        HistoryWriteError.  `later`: starts' events among them (see above)."""
        outbox = self.outbox
        in_turn = durable or (later and any(line.status is not Status.STARTED for line in lines))
        wrote = outbox is not None and self._to_outbox(made, in_turn)
        if wrote and later and not in_turn and outbox is not None:
            self._unsettled = (disk.fdatasync_in_background(outbox.fd), made)
        if lines:
            seconds = self.history.append_all(lines, sync=durable)
            if seconds is not None:
                for observe in self.sync_observers:
                    observe(seconds)
        if not shown:
            for event in made:
                for see in self.observers:
                    see(event)
        if self._failing is not None and (wrote or lines):
            log.info("%s: writable again", self._failing.partition(": ")[0])
            self._failing = None

    def _settle(self) -> None:
        """Wait for the end of the outbox's sync under way; if it failed,
        take its events back (cut) and hold them (nothing starts)."""
        pending, self._unsettled = self._unsettled, None
        outbox = self.outbox
        if pending is None or outbox is None:
            return
        syncing, made = pending
        try:
            syncing.result()
        except OSError as exc:
            outbox.cut()
            failure = HistoryWriteError(outbox.directory, exc)
            failure.__cause__ = exc
            self._failed(failure)
            self._held.append(_Held([], made, durable=True, shown=True))
            self._held_bare += 1

    def _to_outbox(self, made: list[ev.Event], durable: bool) -> bool:
        """Append the events some sink wants; False if there were none."""
        outbox = self.outbox
        if outbox is None:
            return False
        from waitd.formats.events import to_json  # made: imported already

        wanted = [to_json(e) for e in made if self.wants(e.type, e.about.record)]
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

    def _hold(self, lines: list[Line], made: list[ev.Event], durable: bool = False) -> None:
        if not lines:
            if self._held_bare >= HELD_MOST:
                log.error("%s: more than %d events held back; %d dropped", self.passdir, HELD_MOST, len(made))
                return
            self._held_bare += 1
        self._held.append(_Held(lines, made, durable))
