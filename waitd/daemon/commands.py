# SPDX-License-Identifier: MIT
"""What the daemon does for a request of its control socket.

`answer` takes one request object and returns its reply:

- `status`: the status document (report.Status);
- `retry` of paths: a file whose run failed for good, was cancelled, or
  whose outcome is unknown (status 1), runs again as a new attempt; one
  waiting for a retry runs at once; a member of a group takes its group
  (every member that ran with it) along, in one run;
- `cancel` of paths: a running run gets TERM, then KILL after the grace,
  and is recorded as status 1 `error=cancelled` (never retried); a file
  waiting to run (or to be retried) is recorded as status 2
  `error=cancelled` and does not run (a new version of it will); a
  waiting member of a group is cancelled with the members waiting with it.
  A queue's file (claim=yes) so cancelled is a final failure: it is moved
  into the queue's errors/ first (`claims.cancel`), and if it cannot be,
  it is not cancelled.

- `pause`, `resume` of paths: `daemon.pause`;
- `show` of a path, `list` (by state, by record): `daemon.story`.

A claim=yes record's file may be named by its pending path, or by the
incoming path it came from while no file has that path
(`FileState.known`); the records that take a path are `Works.owners`.

Each path gets its own result, ok or not, with a message; the reply is ok
only if every path's is.  What is done is written to the history (so it
holds across a restart) and logged, as the operator's doing (or, when
the request says `by`, as that one's: a source's cancel message, `source
NAME`).

This module decides nothing else: the scheduler starts the retried file,
the launcher signals and records.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from waitd.daemon import pause
from waitd.daemon.records import Entry, Works
from waitd.daemon.story import Story
from waitd.decide.facts import FileFact
from waitd.decide.outcome import Why
from waitd.journal.history import Event, History, Status, escape
from waitd.run.launch import Launcher
from waitd.run.runs import Runs
from waitd.spool import claims
from waitd.spool.state import FileState

log = logging.getLogger("waitd")

VERBS = ("status", "retry", "cancel", "pause", "resume", "show", "list")


class Commands:
    def __init__(
        self, works: Works, runs: Runs, history: History, launcher: Launcher, status: Callable[[], dict[str, Any]]
    ) -> None:
        self.works = works
        self.runs = runs
        self.history = history
        self.launcher = launcher
        self.status = status
        self.story = Story(launcher.passdir, works, runs, history)
        self.asker = "waitd -s cancel"  # who asks, for the log: `by` of the request

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd in ("retry", "cancel"):
            return self._retry_or_cancel(cmd, request)
        if cmd in ("pause", "resume"):
            return self._each_path(cmd, request, pause.pause if cmd == "pause" else pause.resume)
        if cmd in ("show", "list"):
            return self._ask(cmd, request)
        return {"ok": False, "error": f"unknown command {cmd!r} (known: {', '.join(VERBS)})"}

    def _retry_or_cancel(self, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
        paths = request.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            return {"ok": False, "error": f"{cmd}: give one or more paths"}
        act = self._retry if cmd == "retry" else self._cancel
        by = request.get("by")
        by = "".join(c for c in by if c.isprintable())[:100] if isinstance(by, str) else ""
        self.asker = by or f"waitd -s {cmd}"
        results = []
        for path in paths:
            ok, message = act(os.path.normpath(path))
            results.append({"path": path, "ok": ok, "message": message})
        return {"ok": all(r["ok"] for r in results), "results": results}

    def _ask(self, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
        """The task API's questions: `daemon.story`."""
        if cmd == "show":
            path = request.get("path")
            if not isinstance(path, str) or not path:
                return {"ok": False, "error": "show: give one path"}
            return self.story.show(path)
        state, number = request.get("state"), request.get("record")
        if not isinstance(state, str | None) or not (number is None or type(number) is int):
            return {"ok": False, "error": "list: state is a name, record a number"}
        return self.story.listing(state, number)

    def _each_path(
        self, cmd: str, request: dict[str, Any], act: Callable[[Works, Runs, History, str], tuple[bool, str]]
    ) -> dict[str, Any]:
        paths = request.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            return {"ok": False, "error": f"{cmd}: give one or more paths"}
        results = []
        for path in paths:
            ok, message = act(self.works, self.runs, self.history, os.path.normpath(path))
            results.append({"path": path, "ok": ok, "message": message})
        return {"ok": all(r["ok"] for r in results), "results": results}

    def _each_record(self, path: str, act: Callable[[Entry, str], tuple[bool, str]], none: str) -> tuple[bool, str]:
        """`act` for each record that takes the file: ok if one did it."""
        entries = self.works.owners(path)
        if not entries:
            return False, none
        results = [(entry.number, *act(entry, path)) for entry in entries]
        return any(ok for _, ok, _ in results), "; ".join(f"record {n}: {message}" for n, _, message in results)

    def _retry(self, path: str) -> tuple[bool, str]:
        return self._each_record(path, self._retry_one, "no record of the table takes this file")

    def _retry_one(self, entry: Entry, path: str) -> tuple[bool, str]:
        files = entry.files
        found = files.known(path)
        if found is None:
            return False, "not in the spool (or not looked at yet)"
        fact, where = found
        # A member of a group is retried with its group: every member that
        # ran with it (a late one never did), or the run would be partial.
        gid, members = self._group(files, fact, where, lambda e: e is not None and e.consumed)
        if any(p in r.job.paths and r.job.process == entry.record.process for r in self.runs for _, p in members):
            return False, "it runs now"
        event = self.history.latest(where, entry.record.process)
        if event is None or not event.same_version(fact) or not event.consumed:
            return False, "it waits to run already"
        if event.succeeded:
            return False, "handled with exit 0: nothing to retry"
        if event.status is Status.STARTED:
            return False, "it runs now"
        now = time.time()
        events = [self._latest(entry.record.process, f, p) for f, p in members]
        again = [replace(e, at=now, retry_at=now) for e in events if e is not None and not _due(e, now)]
        if again:
            self.launcher.journal.ended(entry.record, again)  # a group's in one append
        for f, p in members:
            files.again(p, f, now)
        what = escape(where) if gid is None else f"{escape(where)}: group {gid} ({len(members)} files)"
        log.info("record %d: %s: to be run again, as asked (%s)", entry.number, what, self.asker)
        return True, "to run again now" if gid is None else f"group {gid} ({len(members)} files): to run again now"

    def _group(
        self, files: FileState, fact: FileFact, where: str, alike: Callable[[Event | None], bool]
    ) -> tuple[str | None, list[tuple[FileFact, str]]]:
        """The file's group id and the members that go with it, with their
        paths (the file, and those whose latest event is `alike`); (None,
        [the file]) for a file of no group."""
        found = files.groups.members_of(fact.name, files.cands.facts) if files.groups is not None else None
        if found is None:
            return None, [(fact, where)]
        gid, members = found
        process = files.record.process
        paths = [(f, files.path_of(f.name)) for f in members]
        return gid, [(f, p) for f, p in paths if f.name == fact.name or alike(self._latest(process, f, p))]

    def _latest(self, process: str, fact: FileFact, path: str) -> Event | None:
        event = self.history.latest(path, process)
        return event if event is not None and event.same_version(fact) else None

    def _cancel(self, path: str) -> tuple[bool, str]:
        named = {path} | {p for e in self.works if (p := e.files.claimed_as(path)) is not None}
        running = [r for r in self.runs.live() if named & set(r.job.paths)]
        for run in running:
            self.launcher.signal(run, signal.SIGTERM, Why.CANCEL)
            log.info("record %d: %s: cancelled, as asked (%s): TERM sent", run.number, escape(run.path), self.asker)
        if running:
            sent = ", ".join(r.describe() for r in running)
            return True, f"cancelled: TERM sent to {sent}"
        return self._each_record(
            path, self._cancel_waiting, "no record of the table takes this file, and nothing runs on it"
        )

    def _cancel_waiting(self, entry: Entry, path: str) -> tuple[bool, str]:
        files = entry.files
        found = files.known(path)
        if found is None:
            return False, "not in the spool (or not looked at yet)"
        fact, where = found
        event = self.history.latest(where, entry.record.process)
        if event is not None and not event.same_version(fact):
            event = None
        if event is not None and event.consumed and event.retry_at is None:
            return False, "neither waiting nor running: nothing to cancel"
        # A member of a group is cancelled with its group: the others would
        # otherwise be taken for late members of a group that ran.
        gid, members = self._group(files, fact, where, lambda e: e is None or not e.consumed or e.retry_at is not None)
        now = time.time()
        cancels = []
        for f, p in members:
            latest = self._latest(entry.record.process, f, p)
            cancels.append(
                Event(
                    p,
                    entry.record.process,
                    f.mtime_ns // 1_000_000_000,
                    Status.KNOWN,
                    error="cancelled",
                    at=now,
                    attempt=latest.attempt if latest is not None else None,
                    version=f.version,
                )
            )
        done = "it will not run" if gid is None else f"group {gid} ({len(members)} files) will not run"
        if entry.record.options.claim:
            # A final failure: into errors/ first, so that no instance claims it.
            try:
                moved = claims.cancel(files, fact, where)
            except OSError as exc:
                errors = claims.queue_of(files).errors
                return False, f"cannot move it to {escape(errors)}: {exc.strerror or exc}; not cancelled"
            if moved is None:
                return False, "another instance claimed it first; not cancelled"
            done = f"moved to {escape(moved)}"
        self.launcher.journal.ended(entry.record, cancels)
        log.info("record %d: %s: cancelled, as asked (%s): %s", entry.number, escape(where), self.asker, done)
        return True, f"cancelled: {done}"


def _due(event: Event, now: float) -> bool:
    """Its retry is due already: asking again writes nothing."""
    return event.retry_at is not None and event.retry_at <= now
