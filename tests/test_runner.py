# SPDX-License-Identifier: MIT
"""The pure parts of runner: log letters and outcomes."""

from __future__ import annotations

from waitd.history import Status
from waitd.runner import newest_first, next_letter, outcome_of


def test_newest_first_by_mtime():
    assert newest_first({"A": 1, "B": 3, "C": 2}) == ["B", "C", "A"]


def test_logs_of_one_tick_are_ordered_by_the_cycle():
    # A, B and C written within one timestamp tick: C is the newest.
    assert newest_first({"A": 5, "B": 5, "C": 5}) == ["C", "B", "A"]
    # After the wrap: Y, Z, A of one tick, older D..X.
    mtimes = {chr(c): 1 for c in range(ord("D"), ord("Y"))} | {"Y": 9, "Z": 9, "A": 9}
    assert newest_first(mtimes)[:3] == ["A", "Z", "Y"]


def test_all_26_in_one_tick_still_gives_an_order():
    mtimes = {chr(c): 7 for c in range(ord("A"), ord("Z") + 1)}
    assert sorted(newest_first(mtimes)) == sorted(mtimes)


def test_next_letter_cycles():
    assert next_letter(None) == "A" and next_letter("A") == "B" and next_letter("Z") == "A"


def test_outcomes():
    assert outcome_of(0).status is Status.KNOWN and outcome_of(0).exit == 0
    assert outcome_of(3).describe() == "exit status 3"
    killed = outcome_of(-9)
    assert killed.status is Status.UNKNOWN and killed.describe() == "killed by signal SIGKILL"
