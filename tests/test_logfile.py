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
