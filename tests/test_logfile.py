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


def test_a_reply_writes_the_lines_held_so_far_and_the_turn_goes_on_holding(waitd_log) -> None:
    # The control socket's reply comes after the lines of what it did.
    path, log = waitd_log
    with logfile.held():
        log.warning("waitd.sock: refused a request of uid 65534")
        logfile.write_held()
        assert path.read_text().endswith("WARNING waitd.sock: refused a request of uid 65534\n")
        log.info("later in the turn")
        assert "later" not in path.read_text()
    assert path.read_text().endswith("INFO later in the turn\n")
    assert path.read_text().count("refused") == 1


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


def test_a_turn_goes_to_each_stream_as_its_own_writes_would(tmp_path: Path) -> None:
    """The held lines go straight to each handler's descriptor, encoded as
    its stream encodes (made once when two streams encode alike), after
    what the stream still buffered; a stream with no descriptor (a test's
    capture) gets them through its own write."""
    import io

    log = logging.getLogger("waitd")
    main = logfile.setup_logging(str(tmp_path), foreground=False)
    alike = open(tmp_path / "alike", "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    ascii_ = open(tmp_path / "ascii", "w", encoding="ascii", errors="backslashreplace")  # noqa: SIM115
    captured = io.StringIO()
    others = [logfile._Holding(s) for s in (alike, ascii_, captured)]
    for other in others:
        other.setFormatter(logfile._FORMATTER)
        log.addHandler(other)
    try:
        alike.write("before, buffered\n")
        with logfile.held():
            logfile.say(logging.INFO, "caf\u00e9 \udcff")
            log.warning("second")
    finally:
        for handler in (main, *others):
            log.removeHandler(handler)
            handler.close()
    texts = {
        name: (tmp_path / name).read_bytes().decode("utf-8", "surrogateescape") for name in ("incoming.log", "alike")
    }
    assert texts["alike"].startswith("before, buffered\n") and texts["alike"].endswith(texts["incoming.log"])
    assert "INFO caf\u00e9 \\udcff\n" in texts["incoming.log"] and texts["incoming.log"].endswith("WARNING second\n")
    assert "INFO caf\\xe9 \\udcff\n" in (tmp_path / "ascii").read_text("ascii")
    assert captured.getvalue().endswith("WARNING second\n") and "caf\u00e9" in captured.getvalue()
