# SPDX-License-Identifier: MIT
"""The handler log's header and footer: written and read by one module."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from waitd.formats import handler_log
from waitd.formats.history_line import escape

AT = 1_795_000_000.25


def test_header_round_trips_with_every_file() -> None:
    line = handler_log.header(3, "gvar x", "/bin/h", ["/in/a b", "/in/c"], AT)
    assert line.endswith("\n") and line.count("\n") == 1
    assert line.startswith("waitd: start record=3 telem=gvar\\040x program=/bin/h file=/in/a\\040b file=/in/c at=")
    found = handler_log.parse_header(line.rstrip("\n"))
    assert found is not None
    assert (found.record, found.telem, found.program) == ("3", "gvar\\040x", "/bin/h")
    assert found.files == ("/in/a\\040b", "/in/c")
    assert found.at == AT and found.at_ms == int(AT * 1000)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_a_stamp_reads_back_to_the_millisecond(at: float) -> None:
    back = handler_log.read_stamp(handler_log.stamp(at))
    assert back is not None and 0 <= at - back < 0.001 + 1e-6  # cut to the millisecond


@given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=5))
def test_a_stamp_is_the_local_time_of_its_second_however_many_share_it(moments: list[float]) -> None:
    """The local time of a whole second is made once and kept: a stamp is
    still its own moment's, after the stamps of the same or other seconds."""
    for at in [*moments, moments[0] + 0.5, moments[0] + 1.0]:
        local = time.localtime(at)
        own = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{int(at % 1 * 1000):03d}" + time.strftime("%z", local)
        assert handler_log.stamp(at) == own


def test_footer_says_how_the_run_ended() -> None:
    ok = handler_log.footer(1, exit=0, took=0.2041, at=AT)
    assert ok.startswith("waitd: end record=1 exit=0 took=0.204 at=") and ok.endswith("\n")
    unknown = handler_log.footer(2, took=1.0, at=AT, attempt=2)
    assert " error=unknown attempt=2 took=1.000 " in unknown
    retry = handler_log.footer(2, exit=75, took=0.0, at=AT, attempt=2, retry_at=AT + 60)
    assert f"retry_at={handler_log.stamp(AT + 60)}" in retry
    found = handler_log.parse_footer("output glued to it" + handler_log.footer(4, error="no such file", took=3, at=AT))
    assert found is not None
    assert (found.record, found.exit, found.signal, found.error, found.took) == (
        "4",
        None,
        None,
        escape("no such file"),
        3.0,
    )
    assert handler_log.parse_footer("waitd: end of it all") is None


def test_a_task_line_is_found_by_its_mark() -> None:
    line = handler_log.task_line("ab-12", "waitd")
    assert line == "waitd: task=ab-12 queue=waitd\n"
    assert line.encode().startswith(handler_log.task_mark("ab-12"))
    assert not line.encode().startswith(handler_log.task_mark("ab-1"))


def test_what_is_not_a_header_is_none() -> None:
    assert handler_log.parse_header("hello") is None
    assert handler_log.parse_header("waitd: start record=1 at=x").at is None  # type: ignore[union-attr]
    assert handler_log.not_started("waitd: not started: disk full\n") == "disk full"
    assert handler_log.not_started("waitd: end record=1") is None


def test_stamp_is_local_time_with_its_offset() -> None:
    text = handler_log.stamp(AT)
    assert text.startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(AT)) + ".250")
    assert text[-5] in "+-"
