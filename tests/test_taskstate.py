# SPDX-License-Identifier: MIT
"""Unit tests of decide.taskstate: a file's state and its attempts (the task API)."""

from __future__ import annotations

from waitd.decide.taskstate import Attempt, attempts, state_of
from waitd.formats.history_line import Event, Status


def ev(status: Status, **kw) -> Event:
    return Event("/in/a", "h", 100, status, **kw)


def test_each_state_from_its_facts():
    ok = ev(Status.KNOWN, pid=5, exit=0)
    assert state_of(True, None, False, False, None) == "waiting"
    assert state_of(True, None, False, False, "paused (waitd -s pause)") == "held"
    # A run that could not start did not consume the file: it waits again.
    assert state_of(True, ev(Status.UNKNOWN, error="cannot execute"), False, False, None) == "waiting"
    assert state_of(True, ev(Status.STARTED, pid=5), True, False, None) == "running"
    assert state_of(True, ev(Status.STARTED, pid=5), True, True, None) == "paused"
    assert state_of(True, ev(Status.STARTED, pid=5), False, False, None) == "running"
    assert state_of(True, ev(Status.KNOWN, pid=5, exit=75, retry_at=200.0), False, False, None) == "retrying"
    assert state_of(True, ok, False, False, None) == "handled"
    assert state_of(True, ev(Status.KNOWN, pid=5, exit=0, outcome="skipped"), False, False, None) == "skipped"
    assert state_of(False, ok, False, False, None) == "handled"
    assert state_of(True, ev(Status.KNOWN, published=1), False, False, None) == "handled"
    assert state_of(True, ev(Status.KNOWN, error="cancelled"), False, False, None) == "cancelled"
    assert state_of(True, ev(Status.UNKNOWN, pid=5, error="cancelled"), False, False, None) == "cancelled"
    assert state_of(True, ev(Status.KNOWN, pid=5, exit=3), False, False, None) == "failed"
    assert state_of(True, ev(Status.UNKNOWN, pid=5, signal="SIGKILL"), False, False, None) == "failed"
    assert state_of(False, None, False, False, None) == "unknown"


def test_attempts_pair_each_start_with_its_end():
    s1, e1 = ev(Status.STARTED, pid=5, attempt=1), ev(Status.KNOWN, pid=5, exit=75, retry_at=1.0)
    s2 = ev(Status.STARTED, pid=6, attempt=2)  # a crash: no end
    s3, e3 = ev(Status.STARTED, pid=7, attempt=2), ev(Status.KNOWN, pid=7, exit=0)
    lone = ev(Status.KNOWN, error="cancelled")
    assert attempts([s1, e1, s2, s3, e3, lone]) == [
        Attempt(s1, e1),
        Attempt(s2, None),
        Attempt(s3, e3),
        Attempt(None, lone),
    ]
    assert attempts([s1]) == [Attempt(s1, None)]
    assert attempts([]) == []
