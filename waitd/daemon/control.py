# SPDX-License-Identifier: MIT
"""The status file, $PASSDIR/waitd.status.

`write_status` and `read_status` keep $PASSDIR/waitd.status, the status
document (`formats.status`, read back into its types) that the loop
rewrites (temporary file, rename) when its state changes, so `-s status`
needs no signal; `StatusFile` decides when it is rewritten;
`format_status` turns the document into the text an operator reads.

This module does not signal the daemon (`waitd -s`'s signalling and its
waiting for a stop or a reload are `cli.client`'s), does not claim the pid
file (`pidfile` does) and does not decide what the status holds
(`daemon.status.build` does).

Diagnostics: a status file that cannot be written is logged once (warning)
until it can be again; one that cannot be read is None to its reader.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from waitd.config.passdir import TMP, status_path
from waitd.formats.status import CeleryReport, RecordReport, RunReport, SinkReport, SourceReport, Status, from_json

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
STATUS_COST_SHARE = 50


class StatusFile:
    """waitd.status, rewritten when what it says changed, at most once a
    second (less often when building it is slow).

    A change right after a quiet spell (a signal, a handler's end) is
    written at once; later ones within STATUS_EVERY_S wait for `due`, a
    deadline the loop wakes up for.  An unchanged state is not rewritten and
    sets no deadline, so an idle daemon does not wake up for its status file.
    """

    def __init__(self, passdir: str) -> None:
        self.passdir = passdir
        self.due = 0.0  # monotonic time of the next write; 0: at once
        self._quiet_until = 0.0  # not even built before then (no wake-up)
        self._written: dict[str, Any] | None = None
        self._failed = False

    def update(self, build: Callable[[], dict[str, Any]], force: bool = False) -> None:
        now = time.monotonic()
        if not force and (now < self.due or now < self._quiet_until):
            return
        state = build()
        # Building it looks at every file waiting: with a big spool it is
        # spaced out so that it costs at most about 1/STATUS_COST_SHARE of
        # waitd's time (a 20,000-file backlog: every 3 s, not every second).
        spacing = (time.monotonic() - now) * STATUS_COST_SHARE
        same = _steady(state)
        if not force and same == self._written:
            self.due = 0.0
            self._quiet_until = now + spacing
            return
        self._written = same
        self.due = now + max(STATUS_EVERY_S, spacing)
        try:
            write_status(self.passdir, state)
        except OSError as exc:
            if not self._failed:
                log.warning("%s: cannot write the status file: %s", self.passdir, exc.strerror or exc)
            self._failed = True
        else:
            self._failed = False


def _steady(value: Any) -> Any:
    """The status without what only says that time passes (`written_at`,
    each run's `age_s`): what must change for the file to be rewritten."""
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if k not in ("written_at", "age_s")}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return value


def write_status(passdir: str, state: dict[str, Any]) -> None:
    """Replace the status file atomically (no fsync: it is a cache)."""
    path = status_path(passdir)
    tmp = path + TMP
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        # One line: the C encoder (indent= takes the Python one, ten times slower).
        os.write(fd, (json.dumps(state, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_status(passdir: str) -> Status | None:
    """The status document of the status file; None if there is none, or
    it cannot be read (one being replaced is read whole: it is renamed)."""
    try:
        with open(status_path(passdir), encoding="utf-8") as f:
            return from_json(json.load(f))
    except (OSError, ValueError):
        return None


def format_status(state: Status | None, pid: int | None, now: float | None = None) -> str:
    """The text `waitd -s status` prints.

    `state` is only believed when it was written by `pid`: a status file
    left by an earlier daemon says nothing about this one.
    """
    now = time.time() if now is None else now
    if pid is None:
        return "waitd: not running\n"
    if state is None or state.pid != pid:
        return f"waitd: running, pid {pid}, starting (no status written yet)\n"
    lines = [
        f"waitd: running, pid {pid}, {state.mode}, up {_span(now - state.started_at)}",
        f"passdir: {state.passdir}",
    ]
    if state.unwritten_events:
        lines.append(f"history: {state.unwritten_events} event(s) not yet written; no handler starts")
    for rec in state.records:
        lines.append(f"record {rec.number} ({rec.telem}): {rec.directory}/{rec.template} -> {rec.process}")
        lines.extend("  " + line for line in _record_lines(rec, state.mode, now))
    lines.extend(_sink_line(sink, now) for sink in state.sinks)
    lines.extend(_source_line(source, now) for source in state.sources)
    if state.celery is not None:
        lines.append(_celery_line(state.celery, now))
    return "\n".join(lines) + "\n"


def _celery_line(broker: CeleryReport, now: float) -> str:
    """The broker of run=celery: reachable or not, and the runs out there."""
    name = f"celery broker {broker.broker} (queue {broker.queue})"
    if broker.reachable:
        state = "reachable"
    elif broker.down_since is not None:
        state = f"unreachable since {_span(now - broker.down_since)} ago: {broker.error or 'unknown error'}"
    else:
        state = "connecting"
    return f"{name}: {state}; {broker.in_flight} run(s) in flight"


def _sink_line(sink: SinkReport, now: float) -> str:
    """A sink of waitd.conf: delivering or down, and how far behind."""
    name = f"sink {sink.name} ({sink.type})"
    if sink.down_since is not None:
        state = f"down since {_span(now - sink.down_since)} ago: {sink.error or 'unknown error'}"
    elif sink.pid is None:
        state = "not running (waitd starts it again)"
    else:
        state = f"delivering (pid {sink.pid})"
    return f"{name}: {state}; {sink.backlog} events behind"


def _source_line(source: SourceReport, now: float) -> str:
    """A source of waitd.conf: connected or not, and its messages."""
    name = f"source {source.name} ({source.type}) -> {source.queue}"
    if source.down_since is not None:
        state = f"not connected since {_span(now - source.down_since)} ago: {source.error or 'unknown error'}"
    elif source.pid is None:
        state = "not running (waitd starts it again)"
    elif not source.connected:
        state = f"connecting (pid {source.pid})"
    else:
        state = f"connected (pid {source.pid})"
    counts = f"{source.taken} taken, {source.repeated} repeated, {source.refused} to errors, {source.cancels} cancels"
    return f"{name}: {state}; {counts}"


_MODES = {
    "active": "active",
    "hibernating": "active, hibernating (no handler starts, nothing is removed)",
    "stopping": "active, stopping (no handler starts)",
}


def _record_lines(rec: RecordReport, mode: str, now: float) -> list[str]:
    if rec.problem:
        return [f"inactive: {rec.problem}"]
    state = _MODES.get(mode, mode)
    if rec.backoff_until:
        state += f", backing off for {_span(rec.backoff_until - now)}"
    lines = [state]
    lines.extend(_run_line(run, now) for run in rec.running)
    if not rec.running:
        lines.append("running: nothing")
    if rec.waiting and rec.oldest_mtime is not None:
        lines.append(f"waiting: {rec.waiting} file(s), the oldest modified {_span(now - rec.oldest_mtime)} ago")
    else:
        lines.append(f"waiting: {rec.waiting} file(s)")
    lines.extend(_group_lines(rec, now))
    lines.extend(_kept_lines(rec, now))
    last = rec.last
    lines.append(f"last run: {last.file}: {last.outcome}" if last else "last run: none since start")
    c = rec.counters
    lines.append(f"since start: {c.ok} ok, {c.failed} failed, {c.retrying} retrying, {c.removed} removed")
    return lines


def _run_line(run: RunReport, now: float) -> str:
    extra = ""
    if run.attempt > 1:
        extra += f", attempt {run.attempt}"
    if run.why:
        extra += f", {run.state} ({run.why})"
    elif run.state == "paused":
        extra += ", paused (waitd -s resume)"
    if run.adopted:
        extra += ", started by a previous waitd"
    where = f"pid {run.pid}" if run.task is None else f"celery task {run.task}"
    return f"running: {run.file} ({where}, for {_span(now - (run.since or now))}{extra})"


def _kept_lines(rec: RecordReport, now: float) -> list[str]:
    """The files retrying, failed for good, in a queue, that cannot be removed."""
    lines = []
    if rec.retrying:
        shown = [f"{item.file} (in {_span(item.at - now)})" for item in rec.retrying[:10]]
        lines.append(_listed("retrying", shown, len(rec.retrying)))
    if rec.failed:
        lines.append(_listed("kept after a failed run", rec.failed, rec.failed_count))
    queue = rec.queue
    if queue is not None:
        pending = ", ".join(f"{n} by {i}" for i, n in sorted(queue.pending.items()) if n) or "none"
        held = ", claiming nothing: the next queue is full (out-limit)" if queue.held else ""
        lines.append(
            f"queue {queue.root}: incoming: {queue.incoming}, pending: {pending}, errors: {queue.errors}{held}"
        )
    if rec.unremovable:
        lines.append(_listed("cannot remove", rec.unremovable, rec.unremovable_count))
    return lines


def _group_lines(rec: RecordReport, now: float) -> list[str]:
    """The files held and why, the groups gathering, the incomplete ones."""
    lines = []
    if rec.held:
        shown = [
            f"{h.file} ({h.why}" + (f", for {_span(h.until - now)} more)" if h.until else ")") for h in rec.held[:10]
        ]
        lines.append(_listed(f"held: {rec.held_count} file(s)", shown, rec.held_count))
    for group in rec.open_groups:
        has = _listed("members", group.members, group.member_count)
        without = _listed("missing", group.missing, group.missing_count) if group.missing else ""
        lines.append(
            f"open group {group.group}: {has}"
            + (f"; {without}" if without else "")
            + f"; deadline in {_span(group.deadline - now)}"
        )
    more = rec.open_groups_count - len(rec.open_groups)
    if more > 0:
        lines.append(f"open groups: {more} more")
    if rec.incomplete:
        shown = [f"{g.group} (without {', '.join(g.missing)})" for g in rec.incomplete[:10]]
        lines.append(_listed("incomplete groups", shown, len(rec.incomplete), "; "))
    return lines


def _span(seconds: float) -> str:
    """A duration as an operator reads it: 42 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _listed(label: str, shown: list[str], total: int, sep: str = ", ") -> str:
    """`label: a, b and N more` (N: those of `total` not shown)."""
    more = total - len(shown)
    return f"{label}: {sep.join(shown)}" + (f" and {more} more" if more > 0 else "")
