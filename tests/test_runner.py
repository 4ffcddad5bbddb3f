# SPDX-License-Identifier: MIT
"""The pure parts of runner: log letters and outcomes."""

from __future__ import annotations

import os

from waitd.formats.handler_log import newest_first, next_letter
from waitd.journal.history import Status
from waitd.run import runner
from waitd.run.executors.local import outcome_of


def test_newest_first_by_time():
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


def test_last_letter_from_the_headers_not_the_mtimes(tmp_path) -> None:
    logs = tmp_path / "logfiles"
    logs.mkdir()

    def write(letter: str, stamp: str, extra: str = "") -> None:
        header = f"waitd: start record=1 telem=x program=/h file=/in/a at={stamp}\n"
        (logs / f"incoming.1.{letter}").write_text(header + extra)

    write("A", "2026-11-29T10:00:00.000+0000")
    write("B", "2026-11-29T10:00:01.000+0100")  # 09:00:01 UTC: older than A
    write("C", "2026-11-29T09:59:59.999+0000")
    (logs / "incoming.1.D").write_text("not a log of waitd's\n")
    os.utime(logs / "incoming.1.C", (2e9, 2e9))  # bumped by a background child
    assert runner.last_letter(str(tmp_path), 1) == "A"
    assert runner.last_letter(str(tmp_path), 2) is None
    write("B", "2026-11-29T10:00:00.000+0000")  # the same millisecond as A: B follows A in the cycle
    assert runner.last_letter(str(tmp_path), 1) == "B"


def test_one_outcome_an_exit_code_made_once():
    assert outcome_of(0) is outcome_of(0) and outcome_of(-15) is outcome_of(-15)
    assert outcome_of(75).exit == 75 and outcome_of(-15).signal == "SIGTERM"
