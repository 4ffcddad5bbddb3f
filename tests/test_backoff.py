# SPDX-License-Identifier: MIT
"""Unit tests of decide.backoff: the back-off of a record whose handler keeps failing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from waitd.decide.backoff import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    FAST_FAIL_S,
    FAST_FAILS,
    RESTART_FIRST_S,
    RESTART_MAX_S,
    Backoff,
    restart_delay,
    spawn_delay,
)


def test_fast_failures_in_a_row_back_off_and_a_slow_one_starts_the_count_again() -> None:
    b = Backoff()
    for _ in range(FAST_FAILS - 1):
        b, why = b.ended(False, 0.1, 100.0)
        assert why is None and not b.holding(100.0)
    b, why = b.ended(False, FAST_FAIL_S, 100.0)  # slow: the count starts again
    assert why is None
    for _ in range(FAST_FAILS - 1):
        b, why = b.ended(False, 0.1, 100.0)
        assert why is None
    b, why = b.ended(False, 0.1, 100.0)
    assert why is not None and f"last {FAST_FAILS} runs" in why
    assert b.holding(100.0) and b.until == 100.0 + BACKOFF_FIRST_S and not b.holding(100.0 + BACKOFF_FIRST_S)


def test_the_delay_doubles_up_to_its_most_and_a_success_forgets_it() -> None:
    b = Backoff()
    delays = []
    for _ in range(10):
        b = b.not_started(0.0)
        delays.append(b.delay_s)
    assert delays[:3] == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S]
    assert delays[-1] == BACKOFF_MAX_S
    b, why = b.ended(True, 0.1, 0.0)
    assert why is None and b == Backoff() and not b.holding(0.0)
    assert b.not_started(0.0).delay_s == BACKOFF_FIRST_S


def test_a_start_failure_keeps_the_count_of_fast_failures() -> None:
    b = Backoff()
    for _ in range(FAST_FAILS - 1):
        b, _ = b.ended(False, 0.0, 0.0)
    b = b.not_started(0.0)
    b, why = b.ended(False, 0.0, 50.0)
    assert why is not None and b.delay_s == 2 * BACKOFF_FIRST_S


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 3)), max_size=40))
def test_it_holds_only_after_fast_failures(ends: list[tuple[bool, float]]) -> None:
    b = Backoff()
    fast = 0
    for ok, took in ends:
        b, why = b.ended(ok, took, 0.0)
        fast = 0 if ok or took >= FAST_FAIL_S else fast + 1
        assert (why is not None) == (fast == FAST_FAILS)
        if fast == FAST_FAILS:
            fast = 0
        if ok:
            assert not b.holding(0.0)


def test_a_helper_process_that_keeps_dying_fast_waits_longer_each_time_up_to_the_most():
    delays = []
    delay = 0.0
    for restarts in range(10):
        delay = restart_delay(delay, lived_s=0.5, restarts=restarts)
        delays.append(delay)
    assert delays[:4] == [0.0, RESTART_FIRST_S, 2 * RESTART_FIRST_S, 4 * RESTART_FIRST_S]
    assert delays[-1] == RESTART_MAX_S
    assert restart_delay(RESTART_MAX_S, lived_s=60.0, restarts=9) == 0.0  # it lived: at once again
    assert spawn_delay(0.0) == RESTART_FIRST_S and spawn_delay(RESTART_MAX_S) == RESTART_MAX_S
