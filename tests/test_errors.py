# SPDX-License-Identifier: MIT
"""The loop's last guard against its own bugs: logged once, never a spin."""

from __future__ import annotations

import logging

from waitd.config.errors import Unexpected


def boom(n: int) -> Exception:
    try:
        if n:
            raise KeyError("one place")
        raise ValueError("another place")
    except Exception as exc:
        return exc


def test_the_same_error_is_logged_once_then_counted_and_calms_the_loop(caplog):
    guard = Unexpected(logging.getLogger("waitd.test"))
    with caplog.at_level(logging.ERROR, "waitd.test"):
        calms = [guard.note(boom(1)) for _ in range(1000)]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert len(caplog.records) == 2, "one traceback, one count; the next count waits a minute"
    assert "again (2 times so far)" in caplog.records[1].getMessage()
    assert calms[:3] == [0.05, 0.1, 0.2]
    assert max(calms) == 1.0 and calms[-1] == 1.0
    assert guard.repeats == 1000


def test_a_good_turn_or_another_error_starts_the_count_again(caplog):
    guard = Unexpected(logging.getLogger("waitd.test"))
    with caplog.at_level(logging.ERROR, "waitd.test"):
        guard.note(boom(1))
        guard.note(boom(1))
        assert guard.note(boom(0)) == 0.05 and guard.repeats == 1
        guard.clear()
        assert guard.note(boom(1)) == 0.05
    assert sum(1 for r in caplog.records if r.exc_info) == 2, "each kind's traceback once"


def test_the_calm_never_overflows_however_long_an_error_repeats(caplog):
    """`2 ** (repeats - 1)` once overflowed a float after 1,025 turns of the
    same error, and the guard itself raised: waitd exited."""
    guard = Unexpected(logging.getLogger("waitd.test"))
    with caplog.at_level(logging.ERROR, "waitd.test"):
        calms = [guard.note(boom(1)) for _ in range(3000)]
    assert guard.repeats == 3000 and calms[-1] == 1.0


def test_a_subject_names_whose_error_it_is(caplog):
    guard = Unexpected(logging.getLogger("waitd.test"))
    with caplog.at_level(logging.ERROR, "waitd.test"):
        for _ in range(3):
            guard.note(boom(1), "record 3: its pass")
    assert [r.getMessage() for r in caplog.records] == [
        "record 3: its pass: unexpected error; carrying on",
        "record 3: its pass: unexpected error again (2 times so far): KeyError: 'one place'",
    ]
