# SPDX-License-Identifier: MIT
"""Unit tests of decide.handoff: a queue's file after its run, and out-limit."""

from __future__ import annotations

import pytest

from waitd.decide.handoff import Disposal, Outlook, disposal, out_room, recorded
from waitd.decide.outcome import Verdict
from waitd.formats.history_line import Event, Status


@pytest.mark.parametrize(
    ("verdict", "retry_at", "attempt", "forward", "expected"),
    [
        (Verdict.SUCCESS, None, 1, False, Disposal.DELETE),
        (Verdict.SUCCESS, None, 1, True, Disposal.FORWARD),
        (Verdict.FINAL, None, 3, True, Disposal.ERRORS),
        (Verdict.UNKNOWN, None, 1, False, Disposal.ERRORS),
        (Verdict.TEMPORARY, 99.0, 1, False, Disposal.RETRY),
        (Verdict.NOT_STARTED, None, 1, False, Disposal.RELEASE),
        (Verdict.NOT_STARTED, None, 2, False, Disposal.RETRY),  # a retry that could not start: here, at once
    ],
)
def test_where_a_claimed_file_goes(verdict, retry_at, attempt, forward, expected):
    assert disposal(verdict, retry_at, attempt, forward) is expected


def test_the_verdict_of_a_recorded_end():
    def end(status: Status, **kw) -> Event:
        return Event("/q/pending/i/a", "h", 0, status, **kw)

    assert recorded(end(Status.KNOWN, exit=0)) is Verdict.SUCCESS
    assert recorded(end(Status.KNOWN, exit=3)) is Verdict.FINAL
    assert recorded(end(Status.UNKNOWN)) is Verdict.UNKNOWN
    assert recorded(end(Status.UNKNOWN, error="cannot execute")) is Verdict.NOT_STARTED


def test_out_limit_counts_while_there_is_room_and_waits_when_full():
    counts = iter([3, 10, 4])
    room, look, files = out_room(Outlook(), 0.0, 10, 5.0, 2, lambda: next(counts))
    assert (room, look, files) == (5, Outlook(0.0, False), 3)
    room, look, files = out_room(look, 1.0, 10, 5.0, 0, lambda: next(counts))
    assert (room, look, files) == (0, Outlook(1.0, True), 10)
    room, same, files = out_room(look, 5.9, 10, 5.0, 0, lambda: next(counts))
    assert (room, same, files) == (0, look, -1), "not counted again before out-wait"
    assert out_room(look, 6.0, 10, 5.0, 0, lambda: next(counts)) == (6, Outlook(6.0, False), 4)
