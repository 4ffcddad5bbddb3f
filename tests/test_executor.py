# SPDX-License-Identifier: MIT
"""The local executor's adoption of handlers a dead waitd left running, and the release of their pidfds."""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from waitd.decide.facts import FileFact
from waitd.decide.outcome import Job
from waitd.journal.history import Event, Status
from waitd.run.executors.local import Local
from waitd.run.runs import Run, RunState


def adopted_run(event: Event, executor: Local) -> Run:
    job = Job(("/in", "*", "h"), "h", (FileFact(0, "a", 0, 0, 0),), ("/in/a",))
    run = Run(1, job, 1, event.at or 0.0, time.monotonic(), executor, pid=event.pid, adopted=True)
    run.transition(RunState.RUNNING)
    return run


@pytest.mark.parametrize("pid", [-1, 0, 2**31, 2**64, 10**30])
def test_an_impossible_pid_is_not_adopted_and_not_an_error(pid: int) -> None:
    # psutil raises ValueError for a negative pid; no pid may stop the start.
    event = Event("/in/a", "h", 5, Status.STARTED, pid=pid, at=time.time())
    executor = Local()
    assert executor.adopt(event) is False
    assert executor.wakeup_fds() == []


def test_a_live_handler_is_watched_until_it_ends() -> None:
    child = subprocess.Popen(["sleep", "30"])
    executor = Local()
    forgotten: list[int] = []
    try:
        started = psutil.Process(child.pid).create_time()
        event = Event("/in/a", "h", 5, Status.STARTED, pid=child.pid, at=started)
        assert executor.adopt(event) is True
        (fd,) = executor.wakeup_fds()
        run = adopted_run(event, executor)
        assert executor.poll(run) is None
        executor.release(forgotten.append)
        assert forgotten == [], "a pidfd is let go of only once its handler ended"
    finally:
        child.kill()
        child.wait()
    outcome = executor.poll(run)
    assert outcome is not None and outcome.status is Status.UNKNOWN and outcome.exit is None
    assert executor.wakeup_fds() == []
    executor.release(forgotten.append)  # the loop's selector forgets it, then it is closed
    assert forgotten == [fd]
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_pid_reused_by_another_process_is_not_adopted() -> None:
    # Same pid, but created long after the run started: not our handler.
    event = Event("/in/a", "h", 5, Status.STARTED, pid=psutil.Process().pid, at=1_000_000.0)
    assert Local().adopt(event) is False
