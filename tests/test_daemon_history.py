# SPDX-License-Identifier: MIT
"""The history file as the real waitd finds it at start: a history that is
not a regular file is refused, naming it, in the foreground and detached."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import Station, wait_for, waitd_cmd

from waitd.daemon import pidfile

KINDS = {
    "directory": ("a directory", lambda path: os.mkdir(path)),
    "fifo": ("a FIFO", lambda path: os.mkfifo(path)),
    "device": ("a character device", lambda path: os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))),
}


# Each kind with -f; -g (which detaches only once the history is open) with
# the FIFO, the kind that could block its start: the refusal is the
# history's open (journal/replay.py), the same for both modes.
@pytest.mark.parametrize(("kind", "mode"), [*((kind, "-f") for kind in KINDS), ("fifo", "-g")])
def test_history_that_is_not_a_regular_file_is_refused(station: Station, mode: str, kind: str) -> None:
    what, make = KINDS[kind]
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    history = station.passdir / "incoming.history"
    make(history)
    station.drop("a.g8", age_s=5)
    try:
        # A FIFO must not block the start: the timeout fails the test first.
        done = subprocess.run(
            waitd_cmd(mode, "--passdir", str(station.passdir), "--interval", "0.1"),
            env=station.env,
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        _stop_any_daemon(station.passdir)
    assert done.returncode == 1, done
    assert done.stderr == (f"waitd: {history}: is not a regular file ({what}); the history must be a regular file\n"), (
        done.stderr
    )
    assert not (station.passdir / "waitd.pid").exists()
    assert station.ran() == []
    assert stat.S_IFMT(os.lstat(history).st_mode) == stat.S_IFMT(_mode_of(kind))


def _mode_of(kind: str) -> int:
    return {"directory": stat.S_IFDIR, "fifo": stat.S_IFIFO, "device": stat.S_IFCHR}[kind]


def _stop_any_daemon(passdir: Path) -> None:
    """Kill a daemon a failing test left behind (a detached one is not our child)."""
    pid = pidfile.running_pid(str(passdir))
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 10, f"waitd pid {pid} to go")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
