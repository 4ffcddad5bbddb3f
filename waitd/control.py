# SPDX-License-Identifier: MIT
"""The pid file, `waitd -s`, and the status file.

`PidFile` claims $PASSDIR/waitd.pid for one daemon with lockfile's
PIDLockFile (O_CREAT|O_EXCL, so never through a planted symlink).  A pid
file whose process is gone, or is a younger process that reused the pid
(psutil start time after the file was written), is stale: it is replaced
with a warning.  A live one raises `AlreadyRunning` naming its pid.

`send` maps `-s reload|stop|idle|resume|wake` to HUP, TERM, INT, CONT and
ALRM for the daemon named in the pid file.  `write_status` and
`read_status` keep $PASSDIR/waitd.status, a small JSON document the loop
rewrites atomically after a pass, so `-s status` needs no signal.

This module does not detach (`cli` does, with python-daemon).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
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


def pidfile_path(passdir: str) -> str:
    return os.path.join(passdir, "waitd.pid")


def status_path(passdir: str) -> str:
    return os.path.join(passdir, "waitd.status")


def running_pid(passdir: str) -> int | None:
    """The pid of the live waitd of this PASSDIR, or None."""
    path = pidfile_path(passdir)
    try:
        pid = lockfile.pidlockfile.read_pid_from_pidfile(path)
        written = os.stat(path).st_mtime
    except (OSError, ValueError):
        return None
    if pid is None or not _alive_since(pid, written):
        return None
    return pid


def _alive_since(pid: int, written: float) -> bool:
    try:
        proc = psutil.Process(pid)
        # A process created after the pid file was written is another one
        # that got the same pid.
        return proc.create_time() <= written + 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


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
                pid = running_pid(self.passdir)
                if pid is not None and pid != os.getpid():
                    raise AlreadyRunning(self.path, pid) from None
                log.warning("%s: stale pid file (pid %s is gone), replacing it", self.path, self.read_pid())
                self.break_lock()
            except lockfile.LockFailed as exc:
                raise WaitdError(f"{self.path}: cannot create pid file: {exc}") from exc
        raise WaitdError(f"{self.path}: cannot claim the pid file")

    def __enter__(self) -> PidFile:
        self.acquire()
        return self


def send(passdir: str, command: str) -> int:
    """Signal the daemon of this PASSDIR; return its pid."""
    pid = running_pid(passdir)
    if pid is None:
        raise WaitdError(f"{pidfile_path(passdir)}: no waitd is running on this PASSDIR")
    os.kill(pid, SIGNALS[command])
    return pid


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
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return None


def format_status(state: dict[str, Any] | None, pid: int | None, now: float | None = None) -> str:
    """The text `waitd -s status` prints."""
    now = time.time() if now is None else now
    lines = []
    if pid is None:
        lines.append("waitd: not running")
    else:
        lines.append(f"waitd: running, pid {pid}, {state.get('mode', '?') if state else 'starting'}")
    if not state:
        return "\n".join(lines) + "\n"
    age = now - state.get("written_at", now)
    lines.append(f"passdir {state.get('passdir')}, state written {age:.0f} s ago")
    for rec in state.get("records", []):
        head = f"record {rec['number']} ({rec['telem']}) {rec['directory']}/{rec['template']} -> {rec['process']}"
        lines.append(head)
        if rec.get("problem"):
            lines.append(f"  inactive: {rec['problem']}")
            continue
        run = rec.get("running")
        if run:
            lines.append(f"  running: {run['file']} (pid {run['pid']}, for {now - run['since']:.0f} s)")
        else:
            lines.append("  running: nothing")
        waiting = rec.get("waiting", 0)
        oldest = rec.get("oldest_mtime")
        if waiting and oldest is not None:
            lines.append(f"  waiting: {waiting} file(s), oldest {now - oldest:.0f} s old")
        else:
            lines.append(f"  waiting: {waiting} file(s)")
        last = rec.get("last")
        lines.append(f"  last run: {last['file']}: {last['outcome']}" if last else "  last run: none")
        if rec.get("backoff_until"):
            lines.append(f"  backing off for {max(0.0, rec['backoff_until'] - now):.0f} s")
        c = rec.get("counters", {})
        lines.append(f"  since start: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, "
                     f"{c.get('removed', 0)} removed")
    return "\n".join(lines) + "\n"
