# SPDX-License-Identifier: MIT
"""The pid file, `waitd -s`, and the status file.

`PidFile` claims $PASSDIR/waitd.pid for one daemon with lockfile's
PIDLockFile (O_CREAT|O_EXCL, so never through a planted symlink).  A pid
file whose process is gone, or is a younger process that reused the pid
(psutil start time after the file was written), or that holds no pid, is
stale: it is replaced with a warning.  A live one raises `AlreadyRunning`
naming its pid.

`send` maps `-s reload|stop|idle|resume|wake` to HUP, TERM, INT, CONT and
ALRM for the daemon named in the pid file.  `write_status` and
`read_status` keep $PASSDIR/waitd.status, a small JSON document the loop
rewrites (temporary file, rename) when its state changes, so `-s status`
needs no signal; `format_status` turns it into the text an operator reads.

This module does not detach (`cli` does, with python-daemon) and does not
decide what the status holds (`loop.Daemon.status` does).

Diagnostics: `WaitdError` (exit 1) when no waitd runs on the PASSDIR or it
cannot be signalled or the pid file cannot be created; `AlreadyRunning`
(exit 3).  A stale pid file is logged as a warning.

Limits: liveness is judged by pid and start time only; a waitd of the same
PASSDIR in another pid namespace (a container) looks gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import lockfile
import lockfile.pidlockfile
import psutil

from waitd.errors import AlreadyRunning, WaitdError

log = logging.getLogger(__name__)

SIGNALS = {
    "reload": signal.SIGHUP,
    "stop": signal.SIGTERM,
    "idle": signal.SIGINT,
    "resume": signal.SIGCONT,
    "wake": signal.SIGALRM,
}
# psutil's create time and the pid file's mtime come from different clocks
# (boot time plus jiffies, the filesystem): allow this much disagreement.
CLOCK_SLACK_S = 1.0


def pidfile_path(passdir: str) -> str:
    return os.path.join(passdir, "waitd.pid")


def status_path(passdir: str) -> str:
    return os.path.join(passdir, "waitd.status")


def running_pid(passdir: str) -> int | None:
    """The pid of the live waitd of this PASSDIR, or None."""
    pid, why = _check(pidfile_path(passdir))
    return pid if why is None else None


def stale_reason(passdir: str) -> str | None:
    """Why the pid file is stale, or None when it is absent or live."""
    return _check(pidfile_path(passdir))[1]


def _check(path: str) -> tuple[int | None, str | None]:
    """(pid, None) for a live pid file; (pid, why) for a stale one; (None, None) for none."""
    try:
        written = os.stat(path).st_mtime
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot stat it: {exc.strerror}"
    pid = lockfile.pidlockfile.read_pid_from_pidfile(path)
    if pid is None or pid <= 0:
        return None, "it holds no pid"
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return pid, f"pid {pid} is gone"
    except psutil.AccessDenied:
        return pid, None  # it exists; assume the worst: a live waitd
    if zombie:
        return pid, f"pid {pid} is gone"
    if created > written + CLOCK_SLACK_S:
        # A process created after the pid file was written got the pid later.
        return pid, f"pid {pid} now belongs to a process started after the pid file was written"
    return pid, None


class PidFile(lockfile.pidlockfile.PIDLockFile):
    """lockfile's pid file, with stale-file replacement and our errors."""

    def __init__(self, passdir: str) -> None:
        super().__init__(pidfile_path(passdir), timeout=0)
        self.passdir = passdir

    def acquire(self, timeout: float | None = None) -> None:
        for _ in range(3):
            try:
                super().acquire(timeout=0)
                return
            except lockfile.AlreadyLocked:
                pid, why = _check(self.path)
                if why is None and pid is not None and pid != os.getpid():
                    raise AlreadyRunning(self.path, pid) from None
                log.warning("%s: stale pid file (%s); replacing it", self.path, why or "it is ours")
                self.break_lock()
            except lockfile.LockFailed as exc:
                raise WaitdError(f"{self.path}: cannot create pid file: {exc.__context__ or exc}") from exc
        raise WaitdError(f"{self.path}: cannot claim the pid file (it keeps coming back)")

    def release(self) -> None:
        """Remove the pid file if it is still ours; never raise at exit."""
        if self.read_pid() != os.getpid():
            log.warning("%s: pid file is gone or not ours any more; leaving it", self.path)
            return
        try:
            lockfile.pidlockfile.remove_existing_pidfile(self.path)
        except OSError as exc:
            log.warning("%s: cannot remove pid file: %s", self.path, exc.strerror)

    def __enter__(self) -> PidFile:
        self.acquire()
        return self


def send(passdir: str, command: str) -> int:
    """Signal the daemon of this PASSDIR; return its pid."""
    pid = running_pid(passdir)
    if pid is None:
        raise WaitdError(f"no waitd is running on {passdir} (no live pid in {pidfile_path(passdir)})")
    try:
        os.kill(pid, SIGNALS[command])
    except ProcessLookupError:
        raise WaitdError(f"no waitd is running on {passdir} (pid {pid} ended just now)") from None
    except PermissionError as exc:
        raise WaitdError(f"cannot signal waitd pid {pid}: {exc.strerror}") from exc
    return pid


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
        same = {k: v for k, v in state.items() if k != "written_at"}
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
    return "\n".join(lines) + "\n"


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
    run = rec.get("running")
    if run:
        lines.append(f"running: {run['file']} (pid {run['pid']}, for {_span(now - run['since'])})")
    else:
        lines.append("running: nothing")
    waiting = rec.get("waiting", 0)
    oldest = rec.get("oldest_mtime")
    if waiting and oldest is not None:
        lines.append(f"waiting: {waiting} file(s), the oldest modified {_span(now - oldest)} ago")
    else:
        lines.append(f"waiting: {waiting} file(s)")
    failed = rec.get("failed") or []
    if failed:
        more = rec.get("failed_count", len(failed)) - len(failed)
        lines.append(f"kept after a failed run: {', '.join(failed)}" + (f" and {more} more" if more > 0 else ""))
    last = rec.get("last")
    lines.append(f"last run: {last['file']}: {last['outcome']}" if last else "last run: none since start")
    c = rec.get("counters", {})
    lines.append(f"since start: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('removed', 0)} removed")
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
