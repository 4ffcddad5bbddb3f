# SPDX-License-Identifier: MIT
"""Events: what waitd did, as JSON objects, into the outbox and to observers.

`Outbox` turns what waitd does into events, writes those the sinks want to
the segment files (`segments.Writer`), and shows every one to its
observers (the metrics).  It is fed in three places, and nowhere else:

- the history (`History.mirror`): each append of events calls `before`
  with them, before they are written; the events are appended to the
  outbox first, and when the history's append is synced (a start, a
  publication) the outbox is synced before it.  So a kill of waitd never
  loses an event (it may leave one whose line was not written, which is
  then written again with the same id), and an event whose synced line
  is on disk is on disk too.  An append the history does not sync (an
  end: the next sync covers it) is not synced here either, the cost of a
  second fdatasync each run: the next sync of the outbox, before the
  history's, covers it, and only a power failure in between can keep
  the end's line and lose its event.  Status 0
  lines are `started` (and, at a first attempt, `ready`; for a group,
  `group` complete), the second status 0 line with the pid is nothing,
  a line with `published=1` is `ready`, any other line is `ended`.  The
  lines of one group in one append are one event with `paths`;
- the removal rules (`sweep`), after each removal: `removed` or `expired`;
- the groups (`gather`): `group` incomplete, `group` late.

The last two mirror no history line: they are written when they happen,
without a sync (a power failure right after the removal may lose its
event); when they cannot be (a full disk), they are held in memory and
written before the next events, or at the next turn of the loop
(`flush`), at most HELD_MOST of them (a kill of waitd meanwhile loses
them).

Every event has `id`, `type`, `time`, `record`, `telem`, `topic`,
`process`, and `path` (or `paths` and `group`); then its own fields (the
table in waitd.conf(5)).  The id is a digest of what the event is about
(PASSDIR, type, process, file or group, version, attempt, retry time), so
an event made again after a crash has the id of the first: a consumer
that drops ids it has seen sees each once.

Failures: an outbox that cannot be written (a full disk; what was written
of the append is cut off again, see `segments`) raises `HistoryWriteError`
from `before`, synced or not: the history line is not written either, and
its caller keeps it to write later, as for a full history disk, so that a
line in the history always has its event in the outbox.  The first
failure is logged as an error, the recovery as info.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from waitd.config.errors import HistoryWriteError
from waitd.formats.history_line import Event, Status
from waitd.journal.outbox import Writer

if TYPE_CHECKING:
    from waitd.daemon.records import Works
    from waitd.spool.directory import FileFact
    from waitd.spool.view import View

log = logging.getLogger("waitd")

HELD_MOST = 100_000  # events held back on a full disk; past that, new ones are dropped (logged)
TYPES = ("ready", "started", "ended", "removed", "expired", "group")
Observer = Callable[[dict[str, Any]], None]


def event_id(*parts: object) -> str:
    """A 128-bit id, the same for the same parts."""
    return hashlib.blake2b("\0".join(map(str, parts)).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _plain(value: Any) -> Any:
    """A pattern field as JSON holds it: a time in ISO 8601."""
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class Outbox:
    def __init__(self, passdir: str, works: Works) -> None:
        self.passdir = passdir
        self.works = works
        self.writer: Writer | None = None  # None: no sink, nothing written
        self.wants: Callable[[str, int | None], bool] = lambda kind, record: False
        self.observers: list[Observer] = []
        self.sync_observers: list[Callable[[float], None]] = []
        self.held: list[dict[str, Any]] = []  # events of no history line that could not be written yet
        self.failing: str | None = None  # why the last write failed; None once one works

    # -- the history's mirror -------------------------------------------------

    def before(self, events: list[Event], sync: bool) -> None:
        """The history is about to append `events`: write theirs first."""
        out = self._of_history(events)
        if out:
            self._emit(out, durable=sync)

    def synced(self, seconds: float) -> None:
        for observe in self.sync_observers:
            observe(seconds)

    def _of_history(self, events: list[Event]) -> list[dict[str, Any]]:
        bundles: dict[tuple[str, str, str], list[Event]] = {}
        for event in events:
            if event.status is Status.STARTED and event.pid is not None:
                continue  # the pid of a start already told
            kind = "ready" if event.published else "started" if event.status is Status.STARTED else "ended"
            key = (kind, event.process, event.group if event.group is not None else "\0" + event.path)
            bundles.setdefault(key, []).append(event)
        out = []
        for (kind, _, _), members in bundles.items():
            base = self._about(members)
            first = members[0]
            if kind == "ready" or (kind == "started" and first.runs == 1):
                out.append(self._made(base, "ready", ()))  # handed on for the first time
                if first.group is not None:
                    out.append(self._made(base, "group", ("complete",), state="complete"))
            if kind == "started":
                out.append(self._made(base, "started", (first.runs,), attempt=first.runs))
            elif kind == "ended":
                out.append(self._ended(base, first))
        return out

    def _ended(self, base: dict[str, Any], end: Event) -> dict[str, Any]:
        if end.retry_at is not None:
            outcome = "retrying"
        elif end.succeeded:
            outcome = "ok"
        else:
            outcome = "failed"
        fields: dict[str, Any] = {"outcome": outcome, "attempt": end.runs}
        for name in ("exit", "signal", "error", "took", "retry_at"):
            value = getattr(end, name)
            if value is not None:
                fields[name] = value
        if end.status is Status.UNKNOWN and end.error is None and end.signal is None:
            fields["error"] = "unknown"  # waitd died while it ran, or it was stopped with waitd
        return self._made(base, "ended", (end.runs, end.retry_at), **fields)

    def _about(self, members: list[Event]) -> dict[str, Any]:
        """What every event of these history lines says: the record, the file(s)."""
        first = members[0]
        directory, name = os.path.split(first.path)
        entry = self._entry(directory, first.process, name)
        about: dict[str, Any] = {
            "record": entry.number if entry is not None else None,
            "telem": entry.record.telem if entry is not None else None,
            "topic": entry.record.topic if entry is not None else None,
            "process": first.process,
        }
        if first.group is None:
            about["path"] = first.path
            if first.version is not None:
                about["mtime"] = first.version.mtime_ns / 1e9
                about["size"] = first.version.size
        else:
            about["paths"] = sorted(e.path for e in members)
            about["group"] = first.group
        if entry is not None and entry.record.options.pattern is not None:
            fields = entry.record.options.fields(name, directory, entry.record.telem)
            if fields is not None:
                about["fields"] = {k: _plain(v) for k, v in fields.items() if k not in _BUILTIN}
        versions = sorted((e.path, e.version) for e in members)
        about["_key"] = (first.process, first.group or first.path, versions)
        about["_time"] = first.at
        return about

    def _entry(self, directory: str, process: str, name: str) -> Any:
        for entry in self.works.entries:
            r = entry.record
            if r.directory == directory and r.process == process and entry.view.match(name):
                return entry
        return None

    def _made(self, base: dict[str, Any], kind: str, key: tuple[object, ...], **fields: Any) -> dict[str, Any]:
        about = {k: v for k, v in base.items() if k[0] != "_"}
        at = base.get("_time")
        event = {"id": event_id(self.passdir, kind, *base["_key"], *key), "type": kind, "time": at or time.time()}
        event.update(about)
        event.update(fields)
        return event

    # -- what mirrors no history line ----------------------------------------

    def removed(self, view: View, fact: FileFact, why: str, directory: str | None = None) -> None:
        """A file was removed (after the unlink): `expired` or `removed`;
        `directory` when it was not in the record's own (a queue's)."""
        kind = "expired" if why.startswith("expired") else "removed"
        base = self._of_view(view, [fact.name], fact, directory=directory)
        self._emit_later([self._made(base, kind, (), reason=why)])

    def group(self, view: View, gid: str, state: str, names: list[str], missing: list[str]) -> None:
        """A group will not run (`incomplete`), or a member came `late`."""
        base = self._of_view(view, names, None, gid)
        self._emit_later([self._made(base, "group", (state, *names), state=state, missing=missing)])

    def _of_view(
        self, view: View, names: list[str], fact: FileFact | None, gid: str | None = None, directory: str | None = None
    ) -> dict[str, Any]:
        record = view.record
        about: dict[str, Any] = {
            "record": record.number,
            "telem": record.telem,
            "topic": record.topic,
            "process": record.process,
        }
        paths = sorted(view.path_of(n) if directory is None else os.path.join(directory, n) for n in names)
        if gid is None and len(paths) == 1:
            about["path"] = paths[0]
        else:
            about["paths"] = paths
            about["group"] = gid
        version = (fact.mtime_ns, fact.size, fact.ino) if fact is not None else None
        about["_key"] = (record.process, gid or paths[0], version)
        return about

    # -- out --------------------------------------------------------------------

    def _emit(self, events: list[dict[str, Any]], durable: bool) -> None:
        """Write the events the sinks want, after those held back, and show
        them to the observers; HistoryWriteError if they cannot be written
        (the held ones stay held; these are the caller's to make again, and
        are observed then)."""
        wanted = [e for e in events if self.wants(e["type"], e["record"])]
        if wanted and self.writer is not None:
            self._write([*self.held, *wanted], durable)
        self._observe(events)

    def _observe(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for observe in self.observers:
                observe(event)

    def _emit_later(self, events: list[dict[str, Any]]) -> None:
        """Events that mirror no history line: held when they cannot be
        written now, and written before the next ones (or by `flush`)."""
        try:
            self._emit(events, durable=False)
        except HistoryWriteError:
            wanted = [e for e in events if self.wants(e["type"], e["record"])]
            if len(self.held) + len(wanted) > HELD_MOST:
                log.error("%s: more than %d events held back; %d dropped", self._where, HELD_MOST, len(wanted))
            else:
                self.held.extend(wanted)
            self._observe(events)

    def flush(self) -> None:
        """Write the events held back, if there is room now (each turn of the loop)."""
        if self.held and self.writer is not None:
            with contextlib.suppress(HistoryWriteError):
                self._write(list(self.held), durable=False)

    def _write(self, events: list[dict[str, Any]], durable: bool) -> None:
        assert self.writer is not None
        try:
            self.writer.append(events, sync=durable)
        except OSError as exc:
            if self.failing is None:
                self.failing = exc.strerror or str(exc)
                log.error(
                    "%s: cannot write events: %s; what they tell waits until they can be", self._where, self.failing
                )
            raise HistoryWriteError(self.writer.directory, exc) from exc
        if self.failing is not None:
            log.info("%s: writable again (%d held event(s) written)", self._where, len(self.held))
            self.failing = None
        self.held = []

    @property
    def _where(self) -> str:
        return self.writer.directory if self.writer is not None else self.passdir


_BUILTIN = frozenset(("name", "stem", "suffix", "dir", "telem"))
