# SPDX-License-Identifier: MIT
"""Unit tests of waitd.recovery: which open runs are watched, which are lost."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from waitd.history import Event, Status
from waitd.recovery import Orphans


@pytest.mark.parametrize("pid", [-1, 0, 2**31, 2**64, 10**30])
def test_an_impossible_pid_is_lost_not_an_error(pid: int) -> None:
    # psutil raises ValueError for a negative pid; no pid may stop the start.
    event = Event("/in/a", "h", 5, Status.STARTED, pid=pid, at=time.time())
    orphans = Orphans()
    lost = orphans.adopt([event])
    assert [(e.key, e.status, e.pid) for e in lost] == [(event.key, Status.UNKNOWN, pid)]
    assert orphans.waiting == []


def test_a_live_handler_is_watched_until_it_ends() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = psutil.Process(child.pid).create_time()
        event = Event("/in/a", "h", 5, Status.STARTED, pid=child.pid, at=started)
        orphans = Orphans()
        assert orphans.adopt([event]) == []
        assert orphans.ended() == []
    finally:
        child.kill()
        child.wait()
    (end,) = orphans.ended()
    assert (end.key, end.status, end.pid, end.version) == (event.key, Status.UNKNOWN, child.pid, None)
    assert orphans.waiting == []


def test_a_pid_reused_by_another_process_is_lost() -> None:
    # Same pid, but created long after the run started: not our handler.
    event = Event("/in/a", "h", 5, Status.STARTED, pid=psutil.Process().pid, at=1_000_000.0)
    assert [e.status for e in Orphans().adopt([event])] == [Status.UNKNOWN]
