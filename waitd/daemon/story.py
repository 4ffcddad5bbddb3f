# SPDX-License-Identifier: MIT
"""The task API's questions: one file's story, and the files by state.

`show` answers `waitd -s show PATH` (and HTTP's /files/PATH): for each
record that takes the path, the file's state (`decide.taskstate`), why it
is held or when it is ready or retried, its run now (pid or Celery task,
age, paused), each attempt the history still holds (start, end, exit or
signal, error, its log file if that log is still about it, and the run's
response: `logfiles/incoming.N.L.response` beside the log, if there is
one) and the history lines themselves.  A path no record takes and the
history does not know is an error that says so.

`listing` answers `waitd -s list [--state S] [--record N]`: every file of
the spool each record knows (and those a run works on, those retried in
a queue's pending), with its state and what it waits for.

The history keeps the latest line of a file after a compaction: the
attempts before it are gone from the story then.  The history file is
read (and searched for the file's lines as bytes) only for `show`.

This module changes nothing; file names are escaped as in the history.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Callable
from typing import Any

from waitd.config.passdir import handler_log_path
from waitd.daemon.records import Entry, Works
from waitd.decide.facts import FileFact
from waitd.decide.taskstate import STATES, attempts, state_of
from waitd.formats import handler_log, response
from waitd.formats.history_line import Event, escape, parse_line
from waitd.journal.history import History
from waitd.run import runner
from waitd.run.runs import Run, Runs
from waitd.spool import ready
from waitd.spool.state import FileState

MAX_RESPONSE = response.MOST
LOG_SLACK_S = 2.0  # a log's header stamp and its start line's at= differ by less


class Story:
    """The questions of the task API, asked of the daemon's state."""

    def __init__(self, passdir: str, works: Works, runs: Runs, history: History) -> None:
        self.passdir = passdir
        self.works = works
        self.runs = runs
        self.history = history

    # -- show -------------------------------------------------------------------

    def show(self, path: str) -> dict[str, Any]:
        path = os.path.normpath(path)
        entries = self.works.owners(path)
        stories = [self._story(entry, path) for entry in entries]
        if not stories or all(s["state"] == "unknown" and not s["attempts"] for s in stories):
            where = "no record of the table takes this file" if not entries else "waitd knows nothing of this file"
            return {"ok": False, "error": f"{escape(path)}: {where} (not in the spool, not in the history)"}
        return {"ok": True, "path": escape(path), "records": stories}

    def _story(self, entry: Entry, path: str) -> dict[str, Any]:
        files, process = entry.files, entry.record.process
        found = files.known(path)
        where = found[1] if found is not None else files.claimed_as(path) or path
        lines = self._lines(where, process)
        fact = found[0] if found is not None else None
        run = self._run(where, process)
        story: dict[str, Any] = {"record": entry.number, "telem": entry.record.telem, "process": process}
        story.update(
            _stands(files, where, fact, self._latest(where, process, fact), run, _Reasons(files, self.history))
        )
        if fact is not None:
            story["size"], story["mtime"] = fact.size, fact.mtime_ns / 1e9
        if run is not None:
            story["run"] = _run_now(run)
        story["attempts"] = [self._attempt(entry.number, where, a.start, a.end) for a in attempts(lines)]
        story["history"] = [_event(e) for e in lines]
        return story

    def _latest(self, path: str, process: str, fact: FileFact | None) -> Event | None:
        """The file's latest event, if it is about this version of it."""
        event = self.history.latest(path, process)
        return None if event is None or (fact is not None and not event.same_version(fact)) else event

    def _run(self, path: str, process: str) -> Run | None:
        return next((r for r in self.runs.live() if path in r.job.paths and r.job.process == process), None)

    def _lines(self, path: str, process: str) -> list[Event]:
        """The history's lines of one file and process, in order."""
        head = f"{escape(path)} {escape(process)} ".encode()
        try:
            with open(self.history.path, "rb") as f:
                data = f.read()
        except OSError:
            return []
        data = b"\n" + data
        needle = b"\n" + head
        found = []
        at = data.find(needle)
        while at >= 0:
            end = data.find(b"\n", at + 1)
            if end < 0:
                break  # a line being written
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                found.append(parse_line(data[at + 1 : end].decode("ascii")))
            at = data.find(needle, end)
        return found

    def _attempt(self, number: int, path: str, start: Event | None, end: Event | None) -> dict[str, Any]:
        last = end or start
        assert last is not None
        out: dict[str, Any] = {
            "attempt": last.runs,
            "start": start.at if start is not None else None,
            "end": end.at if end is not None else None,
            "pid": last.pid,
            "task": last.task,
            "exit": end.exit if end is not None else None,
            "signal": end.signal if end is not None else None,
            "error": end.error if end is not None else None,
            "took": end.took if end is not None else None,
            "retry_at": end.retry_at if end is not None else None,
            "group": last.group,
            "outcome": end.outcome if end is not None else None,  # skipped, or None
        }
        log_name = self._log_of(number, path, start.at) if start is not None and start.at is not None else None
        out["log"] = log_name
        out["response"] = _response(log_name) if log_name is not None else None
        return out

    def _log_of(self, number: int, path: str, at: float) -> str | None:
        """The log of record `number` that a run on `path` started at `at`
        wrote, if no later run has taken its letter since."""
        escaped = escape(path)
        for name in glob.glob(glob.escape(handler_log_path(self.passdir, number, "")) + "[A-Z]"):
            try:
                with open(name, "rb") as f:
                    first = f.readline(8192).decode("ascii", "replace").rstrip("\n")
            except OSError:
                continue
            header = handler_log.parse_header(first)
            if header is not None and escaped in header.files and header.at is not None:
                if abs(header.at - at) < LOG_SLACK_S:
                    return name
        return None

    # -- list -------------------------------------------------------------------

    def listing(self, state: str | None, number: int | None) -> dict[str, Any]:
        if state is not None and state not in STATES:
            return {"ok": False, "error": f"list: no state {state!r} (known: {', '.join(STATES)})"}
        entries = [e for e in self.works.entries if number is None or e.number == number]
        if number is not None and not entries:
            return {"ok": False, "error": f"list: no record {number} in the table"}
        items: list[dict[str, Any]] = []
        for entry in entries:
            items.extend(i for i in self._files(entry) if state is None or i["state"] == state)
        return {"ok": True, "files": items}

    def _files(self, entry: Entry) -> list[dict[str, Any]]:
        files, process = entry.files, entry.record.process
        reasons = _Reasons(files, self.history)
        running = {p: r for r in self.runs.live() if r.job.process == process for p in r.job.paths}
        out = []
        number, latest, companions = entry.number, self.history.latest, files.companions
        fresh = _Fresh(entry, reasons)
        for name, fact in files.cands.facts.items():
            if name in companions:
                continue
            path = files.path_of(name)
            run = running.pop(path, None) if running else None
            event = latest(path, process)
            if run is None and event is None:
                out.append(fresh(name, path, fact))  # never run: the common case, quickly
            else:
                event = event if event is None or event.same_version(fact) else None
                out.append({"record": number, **_stands(files, path, fact, event, run, reasons)})
        for name, (_, at) in files.retries.items():  # claim=yes: in pending, for their retry
            pending = escape(f"{files.pending}/{name}")
            out.append({"record": entry.number, "file": pending, "state": "retrying", "retry_at": at})
        for path, run in running.items():  # a run on a file no longer listed (a queue's, in pending)
            if files.owns(path):
                out.append({"record": entry.number, **_stands(files, path, None, None, run, reasons)})
        return out


class _Fresh:
    """Where a file that never ran stands: waiting, or held and why."""

    def __init__(self, entry: Entry, reasons: _Reasons) -> None:
        self.number, self.reasons = entry.number, reasons
        self.order_ns = entry.files.cands.order_ns
        self.wait_ns = int(entry.record.wait_s * 1e9)

    def __call__(self, name: str, path: str, fact: FileFact) -> dict[str, Any]:
        why, until = self.reasons(name)
        if why is None:
            ready_at = round((self.order_ns(fact) + self.wait_ns) / 1e9, 3)
            return {"record": self.number, "file": escape(path), "state": "waiting", "ready_at": ready_at}
        return {"record": self.number, "file": escape(path), "state": "held", "why": why, "until": until}


class _Reasons:
    """Why a file is held (`ready.held_reasons`), worked out on first use."""

    def __init__(self, files: FileState, history: History) -> None:
        self.files, self.history = files, history
        self._why: Callable[[str], tuple[str | None, float | None]] | None = None

    def __call__(self, name: str) -> tuple[str | None, float | None]:
        if self._why is None:
            self._why = ready.held_reasons(self.files, self.history, time.time_ns())
        return self._why(name)


def _stands(
    files: FileState, path: str, fact: FileFact | None, event: Event | None, run: Run | None, reasons: _Reasons
) -> dict[str, Any]:
    """Where a file stands: its state and what it waits for."""
    why = until = None
    if fact is not None and run is None and (event is None or not event.consumed):
        why, until = reasons(fact.name)
    state = state_of(fact is not None, event, run is not None, run is not None and run.paused_at is not None, why)
    item: dict[str, Any] = {"file": escape(path), "state": state}
    if state == "held":
        item.update(why=why, until=until)
    elif state == "waiting" and fact is not None:
        item["ready_at"] = ready.ready_at(files, fact)
    elif state == "retrying" and event is not None:
        item["retry_at"] = event.retry_at
    return item


def _run_now(run: Run) -> dict[str, Any]:
    return {
        "pid": run.pid,
        "task": run.task,
        "attempt": run.job.attempt,
        "since": run.started_at,
        "age_s": round(time.monotonic() - run.started_mono, 3),
        "state": "paused" if run.paused_at is not None else run.state.value,
        "paused_s": round(run.paused_s, 3),
        "adopted": run.adopted,
        "log": run.log_name or None,
        "response": _response(run.log_name) if run.log_name else None,
    }


def _event(e: Event) -> dict[str, Any]:
    """A history line as JSON: its fields that are set."""
    out: dict[str, Any] = {"status": int(e.status)}
    keys = (
        "pid",
        "exit",
        "signal",
        "error",
        "at",
        "took",
        "attempt",
        "retry_at",
        "group",
        "published",
        "task",
        "outcome",
    )
    for key in keys:
        value = getattr(e, key)
        if value is not None:
            out[key] = value
    return out


def _response(log_name: str) -> Any:
    """The run's response (WAITD_RESPONSE), kept beside its log
    (`runner.response_name`): its JSON, its text if it is not JSON, None
    if there is none."""
    try:
        with open(runner.response_name(log_name), "rb") as f:
            data = f.read(MAX_RESPONSE + 1)
    except OSError:
        return None
    text = data[:MAX_RESPONSE].decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
