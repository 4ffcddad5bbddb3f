# SPDX-License-Identifier: MIT
"""The status file, $PASSDIR/waitd.status.

`write_status` and `read_status` keep $PASSDIR/waitd.status, a small JSON
document the loop rewrites (temporary file, rename) when its state
changes, so `-s status` needs no signal; `StatusFile` decides when it is
rewritten; `format_status` turns it into the text an operator reads.

This module does not signal the daemon (`waitd -s`'s signalling and its
waiting for a stop or a reload are `cli.client`'s), does not claim the pid
file (`pidfile` does) and does not decide what the status holds
(`loop.Daemon.status` does).

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

from waitd.config.passdir import status_path

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
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_status(passdir: str) -> dict[str, Any] | None:
    try:
        with open(status_path(passdir), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def format_status(state: dict[str, Any] | None, pid: int | None, now: float | None = None) -> str:
    """The text `waitd -s status` prints.

    `state` is only believed when it was written by `pid`: a status file
    left by an earlier daemon says nothing about this one.
    """
    now = time.time() if now is None else now
    if pid is None:
        return "waitd: not running\n"
    if not state or state.get("pid") != pid:
        return f"waitd: running, pid {pid}, starting (no status written yet)\n"
    mode = state.get("mode", "?")
    lines = [
        f"waitd: running, pid {pid}, {mode}, up {_span(now - state.get('started_at', now))}",
        f"passdir: {state.get('passdir')}",
    ]
    if state.get("unwritten_events"):
        lines.append(f"history: {state['unwritten_events']} event(s) not yet written; no handler starts")
    for rec in state.get("records", []):
        lines.append(
            f"record {rec['number']} ({rec['telem']}): {rec['directory']}/{rec['template']} -> {rec['process']}"
        )
        lines.extend("  " + line for line in _record_lines(rec, mode, now))
    lines.extend(_sink_line(sink, now) for sink in state.get("sinks") or [])
    if state.get("celery"):
        lines.append(_celery_line(state["celery"], now))
    return "\n".join(lines) + "\n"


def _celery_line(broker: dict[str, Any], now: float) -> str:
    """The broker of run=celery: reachable or not, and the runs out there."""
    name = f"celery broker {broker['broker']} (queue {broker['queue']})"
    if broker.get("reachable"):
        state = "reachable"
    elif broker.get("down_since") is not None:
        state = f"unreachable since {_span(now - broker['down_since'])} ago: {broker.get('error') or 'unknown error'}"
    else:
        state = "connecting"
    return f"{name}: {state}; {broker.get('in_flight', 0)} run(s) in flight"


def _sink_line(sink: dict[str, Any], now: float) -> str:
    """A sink of waitd.conf: delivering or down, and how far behind."""
    name = f"sink {sink['name']} ({sink['type']})"
    if sink.get("down_since") is not None:
        state = f"down since {_span(now - sink['down_since'])} ago: {sink.get('error') or 'unknown error'}"
    elif sink.get("pid") is None:
        state = "not running (waitd starts it again)"
    else:
        state = f"delivering (pid {sink['pid']})"
    return f"{name}: {state}; {sink.get('backlog', 0)} events behind"


def _record_lines(rec: dict[str, Any], mode: str, now: float) -> list[str]:
    if rec.get("problem"):
        return [f"inactive: {rec['problem']}"]
    state = {
        "active": "active",
        "hibernating": "active, hibernating (no handler starts, nothing is removed)",
        "stopping": "active, stopping (no handler starts)",
    }.get(mode, mode)
    if rec.get("backoff_until"):
        state += f", backing off for {_span(rec['backoff_until'] - now)}"
    lines = [state]
    for run in rec.get("running") or []:
        extra = ""
        if run.get("attempt", 1) > 1:
            extra += f", attempt {run['attempt']}"
        if run.get("why"):
            extra += f", {run['state']} ({run['why']})"
        if run.get("adopted"):
            extra += ", started by a previous waitd"
        where = f"pid {run['pid']}" if run.get("task") is None else f"celery task {run['task']}"
        lines.append(f"running: {run['file']} ({where}, for {_span(now - (run['since'] or now))}{extra})")
    if not rec.get("running"):
        lines.append("running: nothing")
    waiting = rec.get("waiting", 0)
    oldest = rec.get("oldest_mtime")
    if waiting and oldest is not None:
        lines.append(f"waiting: {waiting} file(s), the oldest modified {_span(now - oldest)} ago")
    else:
        lines.append(f"waiting: {waiting} file(s)")
    lines.extend(_group_lines(rec, now))
    retrying = rec.get("retrying") or []
    if retrying:
        shown = [f"{item['file']} (in {_span(item['at'] - now)})" for item in retrying[:10]]
        lines.append(_listed("retrying", shown, len(retrying)))
    failed = rec.get("failed") or []
    if failed:
        lines.append(_listed("kept after a failed run", failed, rec.get("failed_count", len(failed))))
    queue = rec.get("queue")
    if queue:
        pending = ", ".join(f"{n} by {i}" for i, n in sorted(queue["pending"].items()) if n) or "none"
        held = ", claiming nothing: the next queue is full (out-limit)" if queue["held"] else ""
        lines.append(
            f"queue {queue['root']}: incoming: {queue['incoming']}, pending: {pending}, errors: {queue['errors']}{held}"
        )
    stuck = rec.get("unremovable") or []
    if stuck:
        lines.append(_listed("cannot remove", stuck, rec.get("unremovable_count", len(stuck))))
    last = rec.get("last")
    lines.append(f"last run: {last['file']}: {last['outcome']}" if last else "last run: none since start")
    c = rec.get("counters", {})
    lines.append(
        f"since start: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('retrying', 0)} retrying, "
        f"{c.get('removed', 0)} removed"
    )
    return lines


def _group_lines(rec: dict[str, Any], now: float) -> list[str]:
    """The files held and why, the groups gathering, the incomplete ones."""
    lines = []
    held = rec.get("held") or []
    if held:
        shown = [
            f"{h['file']} ({h['why']}" + (f", for {_span(h['until'] - now)} more)" if h.get("until") else ")")
            for h in held
        ]
        lines.append(_listed(f"held: {rec.get('held_count', len(held))} file(s)", shown, rec.get("held_count", 0)))
    for group in rec.get("open_groups") or []:
        has = _listed("members", group["members"], group["member_count"])
        without = _listed("missing", group["missing"], group["missing_count"]) if group["missing"] else ""
        lines.append(
            f"open group {group['group']}: {has}"
            + (f"; {without}" if without else "")
            + f"; deadline in {_span(group['deadline'] - now)}"
        )
    more = rec.get("open_groups_count", 0) - len(rec.get("open_groups") or [])
    if more > 0:
        lines.append(f"open groups: {more} more")
    incomplete = rec.get("incomplete") or []
    if incomplete:
        shown = [f"{g['group']} (without {', '.join(g['missing'])})" for g in incomplete[:10]]
        lines.append(_listed("incomplete groups", shown, len(incomplete), "; "))
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
