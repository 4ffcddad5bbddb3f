# SPDX-License-Identifier: MIT
"""incoming.log's writer: its line format, and a turn's lines held and
written with one write (issue 21)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from waitd.journal import logfile

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARNING|ERROR) .+")


@pytest.fixture
def waitd_log(tmp_path: Path):
    handler = logfile.setup_logging(str(tmp_path), foreground=False)
    yield tmp_path / "incoming.log", logging.getLogger("waitd")
    logging.getLogger("waitd").removeHandler(handler)
    handler.close()


def test_a_turn_is_written_when_it_is_over(waitd_log) -> None:
    path, log = waitd_log
    with logfile.held():
        log.info("record %d: started %s", 1, "a")
        log.warning("record %d: ended %s", 1, "a")
        assert path.read_text() == ""  # held until the turn is over
    log.info("after the turn")
    lines = path.read_text().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == ["record 1: started a", "record 1: ended a", "after the turn"]
    assert all(LINE.fullmatch(line) for line in lines), lines
    assert lines[1].split(" ")[2] == "WARNING"


def test_an_error_in_the_turn_still_writes(waitd_log) -> None:
    path, log = waitd_log
    with pytest.raises(RuntimeError), logfile.held():
        log.info("before the error")
        raise RuntimeError("boom")
    assert path.read_text().endswith("INFO before the error\n")


def test_say_makes_the_line_logging_makes(waitd_log) -> None:
    """`say`, a run's lines straight into a held turn, writes what
    logging would, in order with logging's own lines, and through logging
    outside a turn."""
    path, log = waitd_log
    with logfile.held():
        log.info("first")
        logfile.say(logging.WARNING, "record 1: odd name a%sb")
        log.info("third")
    logfile.say(logging.INFO, "outside a turn")
    lines = path.read_text().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == ["first", "record 1: odd name a%sb", "third", "outside a turn"]
    assert all(LINE.fullmatch(line) for line in lines), lines
    assert lines[1].split(" ")[2] == "WARNING"
    assert lines[0][:19] <= lines[1][:19] <= lines[2][:19]


def test_say_goes_through_logging_when_another_handler_listens(waitd_log) -> None:
    path, log = waitd_log
    seen: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = seen.append  # type: ignore[method-assign]
    log.addHandler(other)
    try:
        with logfile.held():
            logfile.say(logging.INFO, "seen by both")
    finally:
        log.removeHandler(other)
    assert [r.getMessage() for r in seen] == ["seen by both"]
    assert path.read_text().endswith("INFO seen by both\n")
