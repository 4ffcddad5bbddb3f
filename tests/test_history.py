# SPDX-License-Identifier: MIT
"""Unit tests of waitd.event and waitd.history: escaping, the line format, load, append, compact."""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from waitd.config.errors import HistoryWriteError, WaitdError
from waitd.formats.history_fast import format_line
from waitd.journal.history import (
    BadValue,
    Event,
    History,
    Status,
    Version,
    _plain_handled,
    _status,
    escape,
    format_event,
    parse_line,
    parse_plain,
    unescape,
)
from waitd.spool.directory import Listings

# -- escape / unescape ------------------------------------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=40))
@example(b"")
@example(b"a b\tc\nd\\e")
@example(bytes(range(256)))
@example("café".encode())
@example(b"\\101")
def test_escape_round_trips_any_bytes(raw: bytes) -> None:
    name = os.fsdecode(raw)
    escaped = escape(name)
    assert all(0x21 <= ord(c) <= 0x7E for c in escaped)
    assert os.fsencode(unescape(escaped)) == raw
    assert unescape(escaped) == name


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("plain.dat", "plain.dat"),
        ("a b", "a\\040b"),
        ("tab\there", "tab\\011here"),
        ("new\nline", "new\\012line"),
        ("back\\slash", "back\\134slash"),
        ("caf\u00e9", "caf\\303\\251"),
        ("caf\udce9", "caf\\351"),
        ("del\x7f", "del\\177"),
        ("=x=", "=x="),
    ],
)
def test_escape_examples(name: str, escaped: str) -> None:
    assert escape(name) == escaped
    assert unescape(escaped) == name


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=20))
@example([b"", b"a b", b"a b", b"plain", b"caf\xc3\xa9", b"plain"])
def test_remembered_escape_is_escape(raws: list[bytes]) -> None:
    """`history_fast.escaped` (a run's path escaped once for its lines,
    header and log lines: issue 21) says what `escape` says, asked again,
    and past its bound (its memory forgotten)."""
    from waitd.formats import history_fast

    names = [os.fsdecode(raw) for raw in raws]
    for name in names + names:
        assert history_fast.escaped(name) == escape(name)
        assert (history_fast.ESCAPED.get(name) or history_fast.escaped(name)) == escape(name)
    for i in range(history_fast.ESCAPED_MOST + 5):
        assert history_fast.escaped(f"f {i}") == f"f\\040{i}"
    assert len(history_fast.ESCAPED) <= history_fast.ESCAPED_MOST
    assert all(history_fast.escaped(name) == escape(name) for name in names)


@pytest.mark.parametrize("bad", ["a\\", "a\\01", "a\\0x1", "a\\400", "a\\999", "caf\u00e9", "a\\040b\x01", "é\\040"])
def test_unescape_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        unescape(bad)


# -- format_event / parse_line ------------------------------------------------------


def _encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


_NAME = st.binary(min_size=1, max_size=20).map(os.fsdecode)
_INT = st.integers(-(2**63), 2**63)
_TIME = st.floats(0, 1e12, allow_nan=False).map(lambda x: round(x, 3))
_EXTRA_KEY = st.from_regex(r"[a-z_]{1,8}", fullmatch=True).filter(
    lambda k: k not in {"pid", "exit", "signal", "error", "at", "took", "mtime_ns", "size", "ino"}
)
_EXTRA = st.tuples(_EXTRA_KEY, st.from_regex(r"[!-~]{0,8}", fullmatch=True)).map("=".join)

_VERSIONS = st.builds(Version, _INT, st.integers(0, 2**40), st.integers(0, 2**64))
_EXTRAS = st.lists(_EXTRA, max_size=3).map(tuple)
# The keys that the round-trip events and the any-key events draw alike.
_SHARED = {
    "path": _NAME,
    "process": _NAME,
    "mtime": _INT,
    "status": st.sampled_from(Status),
    "pid": st.none() | st.integers(1, 2**31 - 1),
    "exit": st.none() | st.integers(0, 255),
    "error": st.none() | st.text(max_size=30).filter(_encodable),
    "at": st.none() | _TIME,
    "version": st.none() | _VERSIONS,
    "extra": _EXTRAS,
}
_EVENTS = st.builds(
    Event,
    **_SHARED,
    signal=st.none() | st.sampled_from(["SIGTERM", "SIGKILL"]),
    took=st.none() | _TIME,
)


@settings(max_examples=examples(150), deadline=None)
@given(_EVENTS)
def test_format_and_parse_round_trip(event: Event) -> None:
    line = format_event(event)
    assert line.endswith("\n") and line.count("\n") == 1
    assert line.isascii()
    assert "  " not in line and "\t" not in line
    assert parse_line(line[:-1]) == event


_STARTS = st.builds(
    Event,
    path=_NAME,
    process=_NAME,
    mtime=_INT,
    status=st.just(Status.STARTED),
    pid=st.none() | st.integers(1, 2**31 - 1),
    at=st.none() | _TIME | st.floats(0, 1e10, allow_nan=False),
    attempt=st.none() | st.integers(1, 2**31 - 1),
    group=st.none() | _NAME,
    task=st.none() | _NAME,
    version=_VERSIONS,
)


def _table_line(event: Event) -> str:
    """The line as the table of keys describes it, walked one key at a time."""
    from waitd.formats import history_line

    parts = [escape(event.path), escape(event.process), str(event.mtime), str(int(event.status))]
    for f in history_line._FIELDS:
        of = event.version if f.in_version else event
        value = None if of is None else getattr(of, f.attr)
        if value is not None:
            parts.append(f"{f.key}={f.kind.write(value)}")
    return " ".join([*parts, *event.extra]) + "\n"


@settings(max_examples=examples(300), deadline=None)
@given(_STARTS)
@example(
    Event("/in/a b\n\udcff", "/bin/h x", -1, Status.STARTED, pid=7, at=5.0, group="g 1", version=Version(-1, 0, 1))
)
def test_start_line_is_the_tables_line(event: Event) -> None:
    # A start's lines are written straight (issue 21): the same text.
    assert format_line(event) == format_event(event) == _table_line(event)
    at = None if event.at is None else float(f"{event.at:.3f}")
    assert parse_line(format_line(event)[:-1]) == replace(event, at=at)


_ALL_KEYS = st.builds(
    Event,
    **_SHARED,
    signal=st.none() | st.sampled_from(["SIGTERM", "SIG 9"]),
    took=st.none() | st.floats(0, 1e6, allow_nan=False),
    attempt=st.none() | st.integers(1, 2**31 - 1),
    retry_at=st.none() | _TIME,
    group=st.none() | _NAME,
    published=st.none() | st.just(1),
    task=st.none() | _NAME,
    outcome=st.none() | st.sampled_from(["skipped", "odd one"]),
)


@settings(max_examples=examples(300), deadline=None)
@given(_ALL_KEYS)
def test_any_line_is_the_tables_line(event: Event) -> None:
    """Every key (an end's, a retry's, a publication's, unknown ones): the
    key-by-key line is the table's."""
    assert format_line(event) == format_event(event) == _table_line(event)


def test_format_example() -> None:
    event = Event(
        "/in/a b",
        "/bin/h",
        100,
        Status.KNOWN,
        pid=7,
        exit=0,
        at=5.0,
        took=0.25,
        version=Version(100_000_000_001, 3, 42),
    )
    line = "/in/a\\040b /bin/h 100 2 pid=7 exit=0 at=5.000 took=0.250 mtime_ns=100000000001 size=3 ino=42\n"
    assert format_event(event) == line


def test_negative_mtime_round_trips() -> None:
    # A file dated before 1970 (touch -d 1969-07-20): its line must load.
    event = Event("/in/old", "h", -14182940, Status.KNOWN, exit=0, version=Version(-14182939_500_000_000, 1, 2))
    assert parse_line(format_event(event)[:-1]) == event


def test_unknown_keys_kept_in_extra() -> None:
    event = parse_line("/in/a h 5 2 exit=0 host=gs1 ttl= pid=3 x=a=b")
    assert event.extra == ("host=gs1", "ttl=", "x=a=b")
    assert (event.exit, event.pid) == (0, 3)
    assert format_event(event) == "/in/a h 5 2 pid=3 exit=0 host=gs1 ttl= x=a=b\n"


def test_version_only_when_complete() -> None:
    assert parse_line("/in/a h 5 2 mtime_ns=5000000000 size=1").version is None
    assert parse_line("/in/a h 5 2 mtime_ns=5000000000 size=1 ino=2").version == Version(5_000_000_000, 1, 2)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "a",
        "a b c",
        "a b 5",
        " b 5 2",
        "a  5 2",
        "a b x 2",
        "a b 5.5 2",
        "a b 5 3",
        "a b 5 -1",
        "a b 5 +1",
        "a b 5 01",
        "a b 5 x",
        "a b -x 2",
        "a b \u0665 2",
        "a b 5 2 novalue",
        "a b 5 2 =v",
        "a b 5 2 pid=x",
        "a b 5 2 exit=",
        "a b 5 2 at=soon",
        "a b 5 2 took=",
        "a b 5 2 mtime_ns=x size=1 ino=1",
        "a\\9 b 5 2",
        "a b\\ 5 2",
        "a b 5 2 error=\\",
        "a b 5 2 ",
        "caf\u00e9 b 5 2",
    ],
)
def test_malformed_lines_raise_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        parse_line(line)


# -- Event properties -------------------------------------------------------------------


def test_consumed_is_false_only_for_status_1_with_error() -> None:
    base = Event("/in/a", "h", 5, Status.UNKNOWN)
    assert Event("/in/a", "h", 5, Status.UNKNOWN, error="no such file").consumed is False
    assert base.consumed is True
    assert Event("/in/a", "h", 5, Status.UNKNOWN, signal="SIGKILL").consumed is True
    assert Event("/in/a", "h", 5, Status.STARTED).consumed is True
    assert Event("/in/a", "h", 5, Status.KNOWN, exit=1).consumed is True
    assert Event("/in/a", "h", 5, Status.KNOWN, exit=0, error="odd").consumed is True


def test_succeeded() -> None:
    assert Event("/a", "h", 5, Status.KNOWN, exit=0).succeeded
    assert not Event("/a", "h", 5, Status.KNOWN, exit=3).succeeded
    assert not Event("/a", "h", 5, Status.KNOWN).succeeded
    assert not Event("/a", "h", 5, Status.UNKNOWN, exit=0).succeeded
    assert not Event("/a", "h", 5, Status.STARTED).succeeded


def test_same_version_with_and_without_version_fields() -> None:
    v = Version(5_500_000_000, 10, 77)
    with_version = Event("/a", "h", 5, Status.KNOWN, exit=0, version=v)
    assert with_version.same_version(v)
    assert not with_version.same_version(Version(5_500_000_000, 11, 77))
    assert not with_version.same_version(Version(5_500_000_000, 10, 78))
    assert not with_version.same_version(Version(5_500_000_001, 10, 77))
    # A hand-written line compares on MTIME (whole seconds) alone.
    by_hand = parse_line("/a h 5 2 exit=0")
    assert by_hand.version is None
    assert by_hand.same_version(Version(5_000_000_000, 1, 1))
    assert by_hand.same_version(Version(5_999_999_999, 99, 2))
    assert not by_hand.same_version(Version(6_000_000_000, 1, 1))
    assert not by_hand.same_version(Version(4_999_999_999, 1, 1))
    assert parse_line("/a h -1 2").same_version(Version(-1, 1, 1))


# -- History: load, append, compact ------------------------------------------------------


def _ev(path: str, status: Status = Status.KNOWN, *, process: str = "h", mtime: int = 5, **kw: object) -> Event:
    if status is Status.KNOWN:
        kw.setdefault("exit", 0)
    kw.setdefault("version", Version(mtime * 1_000_000_000, 1, hash(path) & 0xFFFF))
    return Event(path, process, mtime, status, **kw)  # type: ignore[arg-type]


def _write(path: Path, *events: Event) -> None:
    with open(path, "a", encoding="ascii") as f:
        for e in events:
            f.write(format_event(e))


def _load(path: Path) -> History:
    h = History(str(path))
    h.load()
    return h


def _latest(h: History) -> dict[tuple[str, str], Event]:
    return {e.key: e for e in h.events()}


@pytest.fixture
def hpath(tmp_path: Path) -> Path:
    return tmp_path / "incoming.history"


def test_load_missing_file_creates_it(hpath: Path) -> None:
    h = _load(hpath)
    assert h.events() == [] and h.live == 0 and h.lines == 0
    assert hpath.exists()
    h.close()


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("a directory", os.mkdir),
        ("a FIFO", os.mkfifo),
        ("a socket", lambda path: socket.socket(socket.AF_UNIX).bind(str(path))),
    ],
)
def test_load_refuses_what_is_not_a_regular_file(hpath: Path, kind: str, make: Callable[[Path], None]) -> None:
    make(hpath)
    with pytest.raises(WaitdError) as caught:
        _load(hpath)
    assert str(caught.value) == f"{hpath}: is not a regular file ({kind}); the history must be a regular file"


def test_latest_event_wins_per_key(hpath: Path) -> None:
    a0, a2 = _ev("/in/a", Status.STARTED, pid=9), _ev("/in/a", exit=0)
    b0 = _ev("/in/b", Status.STARTED, pid=10)
    a_other = _ev("/in/a", Status.STARTED, process="other")
    _write(hpath, a0, b0, a2, a_other)
    h = _load(hpath)
    assert h.latest("/in/a", "h") == a2
    assert h.latest("/in/b", "h") == b0
    assert h.latest("/in/a", "other") == a_other
    assert h.latest("/in/c", "h") is None
    assert (h.live, h.lines) == (3, 4)
    assert sorted(e.key for e in h.open_runs()) == [("/in/a", "other"), ("/in/b", "h")]
    h.close()


def test_append_then_reload(hpath: Path) -> None:
    h = _load(hpath)
    start = _ev("/in/x y\n\udcff", Status.STARTED, pid=3, at=1.5)
    end = _ev("/in/x y\n\udcff", Status.KNOWN, exit=4, at=2.5, took=1.0)
    h.append(start, sync=True)
    assert h.open_runs() == [start]
    h.append(end)
    assert h.open_runs() == []
    h.close()
    assert hpath.read_text("ascii") == format_event(start) + format_event(end)
    again = _load(hpath)
    assert again.events() == [end]
    assert again.lines == 2
    again.close()


def test_group_append_is_all_or_none(hpath: Path) -> None:
    # The second line of a group does not fit under the file size limit:
    # neither is recorded, in the file or in memory, and the file is as before.
    h = _load(hpath)
    first = _ev("/in/before", Status.KNOWN)
    h.append(first)
    a, b = _ev("/in/a", Status.STARTED), _ev("/in/b", Status.STARTED)
    limit = hpath.stat().st_size + len(format_event(a)) + 5
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        with pytest.raises(HistoryWriteError):
            h.append_all([a, b], sync=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
    assert hpath.read_text("ascii") == format_event(first)
    assert h.latest("/in/a", "h") is None and h.latest("/in/b", "h") is None and h.lines == 1
    h.append_all([a, b], sync=True)
    assert hpath.read_text("ascii") == format_event(first) + format_event(a) + format_event(b)
    assert h.open_runs() == [a, b] and h.lines == 3
    h.close()


def test_torn_last_line_ignored_and_cut(hpath: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = _ev("/in/a", Status.STARTED)
    b_start = _ev("/in/b", Status.STARTED)
    whole = format_event(_ev("/in/b", exit=0))
    hpath.write_text(format_event(a) + format_event(b_start) + whole[:17], "ascii")
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert _latest(h) == {a.key: a, b_start.key: b_start}
    assert any(":3: torn last line ignored" in r.getMessage() for r in caplog.records)
    # The next append starts a fresh line rather than gluing onto the torn one.
    c = _ev("/in/c")
    h.append(c)
    h.close()
    assert hpath.read_text("ascii") == format_event(a) + format_event(b_start) + format_event(c)
    again = _load(hpath)
    assert _latest(again) == {a.key: a, b_start.key: b_start, c.key: c}
    again.close()


def test_torn_only_line(hpath: Path, caplog: pytest.LogCaptureFixture) -> None:
    hpath.write_bytes(b"/in/a h 5")
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert h.events() == []
    assert any(":1: torn last line ignored" in r.getMessage() for r in caplog.records)
    h.close()
    assert hpath.read_bytes() == b""


def test_corrupt_middle_line_reported_rest_loads(hpath: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b, c = _ev("/in/a"), _ev("/in/b"), _ev("/in/c")
    text = format_event(a) + "garbage\n" + format_event(b) + "/in/z h 5 2 pid\n" + "\n" + format_event(c)
    hpath.write_text(text, "ascii")
    with open(hpath, "ab") as f:
        f.write(b"/in/\xff h 5 2\n")
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert _latest(h) == {a.key: a, b.key: b, c.key: c}
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{hpath}:2: corrupt line skipped" in m for m in messages)
    assert any(f"{hpath}:4: corrupt line skipped" in m for m in messages)
    assert any(f"{hpath}:7: corrupt line skipped: not ASCII" in m for m in messages)
    assert not any("torn" in m for m in messages)
    h.close()


def test_corrupt_latest_line_does_not_hide_the_one_before(hpath: Path) -> None:
    # The corrupt line is skipped: the run started on line 1 is still open.
    start = _ev("/in/a", Status.STARTED, pid=9)
    hpath.write_text(format_event(start) + "/in/a h 5 4 exit=0\n", "ascii")
    h = _load(hpath)
    assert h.latest("/in/a", "h") == start
    assert h.open_runs() == [start]
    h.close()


_GOOD = "/in/a h 5 2 pid=7 exit=0 signal=SIGTERM at=5.000 took=0.250 mtime_ns=5000000000 size=1 ino=2"


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("pid", "-1", "not an integer from 1 to 2147483647"),
        ("pid", "0", "not an integer from 1 to 2147483647"),
        ("pid", "2147483648", "not an integer from 1 to 2147483647"),
        ("pid", "x", "not an integer from 1 to 2147483647"),
        ("pid", "", "not an integer from 1 to 2147483647"),
        ("pid", "+7", "not an integer from 1 to 2147483647"),
        ("pid", "1_0", "not an integer from 1 to 2147483647"),
        ("exit", "256", "not an integer from 0 to 255"),
        ("exit", "99999", "not an integer from 0 to 255"),
        ("exit", "-1", "not an integer from 0 to 255"),
        ("exit", "zero", "not an integer from 0 to 255"),
        ("signal", "SIG\\9", "bad escape"),
        ("at", "9" * 400, "not a finite decimal number, 0 or more"),
        ("at", "-1.000", "not a finite decimal number, 0 or more"),
        ("at", "inf", "not a finite decimal number, 0 or more"),
        ("at", "nan", "not a finite decimal number, 0 or more"),
        ("at", "1e5", "not a finite decimal number, 0 or more"),
        ("at", "5.", "not a finite decimal number, 0 or more"),
        ("took", "-0.5", "not a finite decimal number, 0 or more"),
        ("took", "", "not a finite decimal number, 0 or more"),
        ("mtime_ns", "x", "not an integer"),
        ("mtime_ns", "", "not an integer"),
        ("mtime_ns", "9" * 5000, "not an integer"),
        ("size", "-5", "not an integer, 0 or more"),
        ("ino", "-1", "not an integer, 0 or more"),
        ("ino", "1.5", "not an integer, 0 or more"),
    ],
)
def test_malformed_value_is_an_unknown_outcome(
    hpath: Path, caplog: pytest.LogCaptureFixture, key: str, value: str, why: str
) -> None:
    good = parse_line(_GOOD)
    line = " ".join(f"{key}={value}" if item.startswith(f"{key}=") else item for item in _GOOD.split(" "))
    hpath.write_text(format_event(_ev("/in/b")) + line + "\n", "ascii")
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    event = h.latest("/in/a", "h")
    # Status 1 with no error=: consumed, never run again; the bad field dropped.
    expected = replace(
        good, status=Status.UNKNOWN, **{key: None} if key in {"pid", "exit", "signal", "at", "took"} else {}
    )
    if key in {"mtime_ns", "size", "ino"}:
        expected = replace(expected, version=None)  # compared on MTIME alone
    assert event == expected
    assert event.consumed and not event.succeeded
    (message,) = [r.getMessage() for r in caplog.records]
    shown = value if len(value) <= 24 else value[:20] + f"... ({len(value)} characters)"
    assert message.startswith(f"{hpath}:2: {key}={shown}: {why}"), message
    assert message.endswith("; taken as status 1 (unknown outcome)"), message
    with pytest.raises(BadValue) as caught:
        parse_line(line)
    assert caught.value.event == expected
    assert h.open_runs() == []
    h.close()


def test_malformed_values_of_an_open_run_close_it(hpath: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The line that stopped every start: an open run with pid=-1.  Two bad
    # values on one line make one warning; error= goes too (consumed).
    line = "/in/a h 5 0 pid=-1 error=exec\\040failed at=1e999 mtime_ns=5000000000 size=1 ino=2 host=gs1"
    hpath.write_text(format_event(_ev("/in/a", Status.STARTED, pid=9)) + line + "\n", "ascii")
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert h.open_runs() == []
    assert h.latest("/in/a", "h") == Event(
        "/in/a", "h", 5, Status.UNKNOWN, version=Version(5_000_000_000, 1, 2), extra=("host=gs1",)
    )
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        f"{hpath}:2: pid=-1: not an integer from 1 to 2147483647, at=1e999: not a finite decimal number, "
        "0 or more; taken as status 1 (unknown outcome)"
    )
    h.close()


def test_malformed_value_before_a_corrupt_latest_line_stands(hpath: Path, caplog: pytest.LogCaptureFixture) -> None:
    hpath.write_text("/in/a h 5 0 pid=-1\n/in/a h 5 4\n", "ascii")
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert h.latest("/in/a", "h") == Event("/in/a", "h", 5, Status.UNKNOWN)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{hpath}:2: corrupt line skipped") for m in messages), messages
    assert any(m.startswith(f"{hpath}:1: pid=-1: ") for m in messages), messages
    h.close()


def test_structural_corruption_is_still_skipped(hpath: Path) -> None:
    # A bad PATH escape, a bad STATUS, a field without "=": not a malformed
    # value but a corrupt line, skipped even when a value is bad too.
    start = _ev("/in/a", Status.STARTED, pid=9)
    text = "".join(
        [format_event(start), "/in/a\\9 h 5 2 pid=-1\n", "/in/a h 5 3 pid=-1\n", "/in/a h 5 2 pid=-1 exit\n"]
    )
    hpath.write_text(text, "ascii")
    h = _load(hpath)
    assert h.open_runs() == [start]
    h.close()


def test_hand_written_line_without_version(hpath: Path) -> None:
    hpath.write_text("/in/by\\040hand /bin/h 1700000000 2\n", "ascii")
    h = _load(hpath)
    event = h.latest("/in/by hand", "/bin/h")
    assert event is not None and event.version is None and event.status is Status.KNOWN
    assert event.same_version(Version(1_700_000_000_999_999_999, 5, 6))
    assert not event.same_version(Version(1_700_000_001_000_000_000, 5, 6))
    assert event.consumed and not event.succeeded
    h.close()


def test_non_canonical_escapes_are_one_key(hpath: Path) -> None:
    # "\101" is "A": a hand-written line may spell a name either way; the
    # later line wins.
    hpath.write_text("/in/A h 5 0\n/in/\\101 h 5 2 exit=0\n", "ascii")
    h = _load(hpath)
    assert [(e.path, e.status) for e in h.events()] == [("/in/A", Status.KNOWN)]
    h.close()


def test_compact_keeps_latest_drops_gone_keeps_open(hpath: Path) -> None:
    here = {"/in/a", "/in/b"}
    a0, a2 = _ev("/in/a", Status.STARTED), _ev("/in/a")
    b2 = _ev("/in/b", exit=1)
    gone2 = _ev("/in/gone")
    gone_open = _ev("/in/gone-open", Status.STARTED, pid=4)
    failed = _ev("/in/gone-failed", Status.UNKNOWN, error="exec: no such file")
    _write(hpath, a0, b2, gone2, a2, gone_open, failed)
    (hpath.parent / "incoming.history.tmp").write_text("left by a crash\n")
    h = _load(hpath)
    assert h.lines == 6
    dropped = h.compact(lambda p: p in here)
    assert dropped == 2
    assert _latest(h) == {a2.key: a2, b2.key: b2, gone_open.key: gone_open}
    assert h.lines == 3
    assert not (hpath.parent / "incoming.history.tmp").exists()
    # Appends go to the new file.
    c = _ev("/in/c")
    h.append(c)
    h.close()
    lines = hpath.read_text("ascii").splitlines(keepends=True)
    assert sorted(lines) == sorted(format_event(e) for e in (a2, b2, gone_open, c))
    again = _load(hpath)
    assert _latest(again) == {a2.key: a2, b2.key: b2, gone_open.key: gone_open, c.key: c}
    assert again.lines == 4
    again.close()


def test_drop_gone_forgets_in_memory_and_the_next_compaction_writes_and_counts(hpath: Path) -> None:
    here, gone, gone_open = _ev("/in/here"), _ev("/in/gone"), _ev("/in/gone-open", Status.STARTED, pid=4)
    _write(hpath, here, gone, gone_open)
    h = _load(hpath)
    before = hpath.read_bytes()
    h.drop_gone(lambda p: p == "/in/here")
    assert _latest(h) == {here.key: here, gone_open.key: gone_open}
    assert hpath.read_bytes() == before  # memory only
    assert h.compact(lambda p: p == "/in/here") == 1  # counted once, by the compaction
    assert sorted(hpath.read_text("ascii").splitlines(keepends=True)) == sorted(
        format_event(e) for e in (here, gone_open)
    )
    h.close()


def test_load_with_exists_forgets_gone_files_as_it_reads_but_open_runs(hpath: Path) -> None:
    # Issue 21: a start forgets the files long gone while it reads, before
    # it parses; a gone file's open run stays (recovery reports it), and
    # the next compaction writes the file and counts the keys dropped.
    here, gone = _ev("/in/here"), _ev("/in/gone")
    gone_open = _ev("/in/gone-open", Status.STARTED, pid=4)
    gone_failed = _ev("/in/gone-failed", Status.UNKNOWN, error="exec: no such file")
    hand = "/in/gone-by\\040hand h 5 2\n"  # no version, an escaped name
    _write(hpath, _ev("/in/gone", Status.STARTED), here, gone, gone_open, gone_failed)
    with open(hpath, "a", encoding="ascii") as f:
        f.write(hand)
    h = History(str(hpath))
    h.load(lambda d: iter(["here", "other"]) if d == "/in" else iter(()))
    assert _latest(h) == {here.key: here, gone_open.key: gone_open}
    assert h.open_runs() == [gone_open]
    assert (h.live, h.lines) == (2, 6)
    assert h.compact(None) == 3  # None: what the load dropped, the directories not listed again
    assert sorted(hpath.read_text("ascii").splitlines(keepends=True)) == sorted(
        format_event(e) for e in (here, gone_open)
    )
    h.close()


def test_load_keeps_the_files_in_the_order_of_their_latest_events(hpath: Path) -> None:
    # A compaction writes them in that order, and the status page reads the
    # runs of the hour before a start from the file's end.
    a1, b2, a3 = _ev("/in/a", Status.STARTED, at=1.0), _ev("/in/b", at=2.0), _ev("/in/a", at=3.0)
    _write(hpath, a1, b2, a3)
    h = _load(hpath)
    assert [e.path for e in h.events()] == ["/in/b", "/in/a"]
    h.compact(None)
    assert hpath.read_text("ascii") == format_event(b2) + format_event(a3)
    h.close()


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_load_reads_the_same_whatever_the_chunk(
    hpath: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, chunk: int
) -> None:
    # Lines cut between two reads, blank lines, lines of fewer than three
    # fields (the careful path), a torn last line: read a chunk at a time
    # as at once, with the same warnings.
    from waitd.journal import replay

    a0, a2, b2 = _ev("/in/a", Status.STARTED, pid=3), _ev("/in/a"), _ev("/in/b")
    text = format_event(a0) + "\n" + "x\n" + format_event(b2) + "/in/a h\n" + "\n\n" + format_event(a2)
    hpath.write_text(text + "/in/c h 5", "ascii")
    monkeypatch.setattr(replay, "CHUNK", chunk)
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert _latest(h) == {a2.key: a2, b2.key: b2}
    assert h.lines == 5
    messages = sorted(r.getMessage() for r in caplog.records)
    assert [m.split(": ")[0] for m in messages] == [f"{hpath}:3", f"{hpath}:9"], messages
    assert "torn" in messages[1] and "corrupt" in messages[0]
    h.close()
    assert hpath.read_text("ascii") == text


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize("ending", ["", "\n", "torn"])
def test_a_torn_last_line_is_never_read_as_a_line(
    hpath: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, chunk: int, ending: str
) -> None:
    # Issue 21: the load reads whole lines only (a buffered reader finds
    # each newline); a torn last line, found first from the file's end,
    # must not replace its key's whole line before it, and the file is cut
    # back to its whole lines, whatever the size of a read.
    from waitd.journal import replay

    a2, a0 = _ev("/in/a"), _ev("/in/a", Status.STARTED, pid=3)
    whole = format_event(a2) + ("\n" if ending == "\n" else "")
    torn = format_event(a0)[:-9] if ending == "torn" else ""
    hpath.write_text(whole + torn, "ascii")
    monkeypatch.setattr(replay, "CHUNK", chunk)
    with caplog.at_level(logging.WARNING, logger="waitd.journal"):
        h = _load(hpath)
    assert _latest(h) == {a2.key: a2} and h.lines == 1
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == ([f"{hpath}:2"] if torn else [])
    assert hpath.read_text("ascii") == whole
    h.close()


def test_a_history_that_cannot_be_read_leaves_no_descriptor_open(tmp_path: Path) -> None:
    # whole_lines takes the descriptor: when its look for a torn line
    # fails (here pread(2) of a descriptor open for writing only, EBADF),
    # it closes it as it raises.
    from waitd.journal.lines import whole_lines

    (tmp_path / "h").write_bytes(b"a line\n")
    fd = os.open(tmp_path / "h", os.O_WRONLY)
    with pytest.raises(OSError, match="Bad file descriptor"):
        whole_lines(fd, 1 << 20)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


_NAMES = st.sampled_from(["a", "b b", "c\udcff", "d\\e", "A"])
_DIRS = st.sampled_from(["/in", "/in 2", "/", "/nodir", "/broken", ""])  # "": a path with no directory


def _listing(present: set[str]) -> Callable[[str], list[str]]:
    """A listing of the directories: /nodir cannot be listed, /broken
    fails half-way; the others hold the names of `present` there."""

    def names(directory: str) -> list[str]:
        if directory == "/nodir":
            raise FileNotFoundError(directory)
        here = [p.rpartition("/") for p in sorted(present) if "/" in p]
        found = [name for parent, _, name in here if (parent or "/") == directory]
        found += ["other"] if directory == "/" else []
        if directory == "/broken":
            return _broken(found)  # type: ignore[return-value]
        return found

    return names


def _broken(names: list[str]):  # type: ignore[no-untyped-def]
    yield from names
    raise OSError(5, "Input/output error")


@given(
    st.lists(st.tuples(_DIRS, _NAMES, st.sampled_from(["h", "g"]), st.sampled_from(list(Status))), max_size=12),
    st.sets(st.tuples(_DIRS, _NAMES), max_size=8),
    st.booleans(),
    st.sampled_from([1, 32]),
    st.sampled_from([1, 2, 4096]),
)
@example(
    lines=[("/in", "A", "h", Status.KNOWN), ("/in", "b b", "h", Status.KNOWN)],
    present={("/in", "A")},
    by_hand=True,
    groups=32,
    batch=4096,
)
@example(
    lines=[("/broken", "a", "h", Status.KNOWN), ("/in", "a", "g", Status.STARTED), ("", "a", "h", Status.KNOWN)],
    present=set(),
    by_hand=False,
    groups=32,
    batch=4096,
)
@example(
    lines=[("/in", "a", "h", Status.KNOWN), ("/in", "A", "g", Status.KNOWN), ("/in", "d\\e", "h", Status.KNOWN)],
    present={("/in", "a"), ("/in", "A"), ("/in", "d\\e")},
    by_hand=False,
    groups=32,
    batch=2,
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_load_with_a_listing_drops_what_drop_gone_drops(
    hpath: Path, monkeypatch: pytest.MonkeyPatch, lines, present, by_hand: bool, groups: int, batch: int
) -> None:
    # Issue 21: the load matches each directory's names, a batch at a time
    # (a batch of plain names in C, another one name at a time), against
    # the raw keys (no set of the names); it must forget exactly
    # the keys that drop_gone forgets with `exists` (the general path, as
    # a compaction asks it) on the same listing: a directory that cannot be
    # listed, or not to its end, keeps its keys; an open run stays; a name
    # spelled with escapes by hand ("\101" for "A") is found all the same.
    from waitd.journal import replay

    monkeypatch.setattr(replay, "MAX_GROUPS", groups)  # 1: past the first group, one key at a time
    monkeypatch.setattr(replay, "NAMES_AT_ONCE", batch)  # 1, 2: batches plain and not side by side
    hpath.unlink(missing_ok=True)
    files = {f"{d.rstrip('/')}/{n}" if d else n for d, n in present}
    with open(hpath, "w", encoding="ascii") as f:
        for d, n, process, status in lines:
            line = format_event(_ev(f"{d.rstrip('/')}/{n}" if d else n, status, process=process))
            if by_hand and n == "A":
                line = line.replace("/A ", "/\\101 ", 1)
            f.write(line)
    listing = _listing(files)
    fast = History(str(hpath))
    fast.load(listing)
    general = History(str(hpath))
    general.load()

    def exists(path: str) -> bool:
        if "/" not in path:
            return True  # no directory to list: says nothing
        directory = path.rpartition("/")[0] or "/"
        if directory in ("/nodir", "/broken"):
            return True  # not listed to its end: says nothing
        return path in files

    general.drop_gone(exists)
    assert _latest(fast) == _latest(general)
    assert [e.key for e in fast.events()] == [e.key for e in general.events()]
    fast.close()
    general.close()


def test_listings_exists(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    exists = Listings().exists
    assert exists(f"{tmp_path}/f") and not exists(f"{tmp_path}/g")
    # A directory that cannot be listed says nothing: its files are kept.
    assert exists(f"{tmp_path}/nodir/f") and exists("no-slash-name")
    assert exists("/" + os.listdir("/")[0]) and not exists("/no-such-name-here")


def test_needs_compaction(hpath: Path) -> None:
    h = _load(hpath)
    for _ in range(10_005):
        h.append(_ev("/in/a"))
    assert h.live == 1 and h.lines == 10_005
    assert h.needs_compaction()
    h.compact(lambda p: True)
    assert not h.needs_compaction() and h.lines == 1
    h.close()


def test_forget_drops_from_memory_only(hpath: Path) -> None:
    h = _load(hpath)
    h.append(_ev("/in/a"))
    h.forget("/in/a", "h")
    h.forget("/in/never", "h")
    assert h.latest("/in/a", "h") is None
    h.close()
    again = _load(hpath)
    assert again.latest("/in/a", "h") is not None
    again.close()


# -- hypothesis: damaged files ---------------------------------------------------------------

_KEYS = st.sampled_from(["/in/a", "/in/b b", "/in/\udcff", "/in/c\n"])
_SIMPLE_EVENTS = st.builds(
    Event,
    path=_KEYS,
    process=st.sampled_from(["h", "/bin/g"]),
    mtime=st.integers(-5, 10),
    status=st.sampled_from(Status),
    exit=st.none() | st.integers(0, 3),
    error=st.none() | st.just("exec failed"),
    version=st.none() | st.builds(Version, st.integers(0, 9), st.integers(0, 3), st.integers(0, 3)),
)
_GARBAGE = st.one_of(
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(
        [
            b"/in/a h 5 2 exit=x",
            b"/in/a h 5 0 pid=",
            b"/in/a h 5 0 pid=-1",
            b"/in/a h 5",
            b"/in/a h 5 3",
            b"/in/a h x 2",
        ]
    ),
)


def _model(data: bytes) -> dict[tuple[str, str], Event]:
    """What load must give: latest parseable line of each key, torn tail dropped."""
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines = lines[:-1]  # torn
    latest: dict[tuple[str, str], Event] = {}
    for raw in lines:
        try:
            event = parse_line(raw.decode("ascii"))
        except BadValue as exc:
            event = exc.event
        except (UnicodeDecodeError, ValueError):
            continue
        latest[event.key] = event
    return latest


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(_SIMPLE_EVENTS, max_size=12),
    garbage=st.lists(st.tuples(st.integers(0, 12), _GARBAGE), max_size=3),
    cut=st.none() | st.integers(0, 2000),
)
def test_load_survives_damage(
    tmp_path: Path, events: list[Event], garbage: list[tuple[int, bytes]], cut: int | None
) -> None:
    lines = [format_event(e).encode("ascii") for e in events]
    for at, junk in sorted(garbage, reverse=True):
        lines.insert(min(at, len(lines)), junk + b"\n")
    data = b"".join(lines)
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "fuzz.history"
    path.write_bytes(data)
    h = History(str(path))
    h.load()
    try:
        assert _latest(h) == _model(data)
        # Every valid line written before the damage loads: with no garbage
        # and no cut, that is every event.
        if not garbage and cut is None:
            assert _latest(h) == {e.key: e for e in events}
        h.append(Event("/in/new", "h", 1, Status.KNOWN))
    finally:
        h.close()
    again = History(str(path))
    again.load()
    again.close()
    assert again.latest("/in/new", "h") == Event("/in/new", "h", 1, Status.KNOWN)
    assert path.read_bytes().endswith(b"\n")


@given(_EVENTS)
@settings(max_examples=examples(200), deadline=None)
def test_lazily_kept_lines_parse_to_the_same_event(event: Event) -> None:
    # load keeps a line matching the fast pattern as text and parses it only
    # when asked: that text must parse, and to the same event.
    from waitd.journal.replay import _checked

    key, item = _checked(format_event(event).encode("ascii"))
    assert key == event.key
    if isinstance(item, str):  # the rest of the line after its key
        line = f"{escape(key[0])} {escape(key[1])} {item}"
        assert parse_plain(line) == parse_line(line) == event
    else:
        assert item == event


def test_lazy_history_answers_like_a_parsed_one(hpath: Path) -> None:
    a = _ev("/in/a", Status.STARTED, pid=9)
    b = _ev("/in/b")
    hpath.write_text(format_event(_ev("/in/a")) + format_event(a) + format_event(b), "ascii")
    h = _load(hpath)
    assert h.open_runs() == [a]
    assert h.latest("/in/b", "h") == b
    assert sorted(e.path for e in h.events()) == ["/in/a", "/in/b"]
    h.compact(lambda p: p == "/in/b")  # /in/a is gone but its run is open: kept
    again = _load(hpath)
    assert sorted(again.events(), key=lambda e: e.path) == [a, b]
    again.close()
    h.close()


_VALUES = st.one_of(
    st.from_regex(r"-?[0-9]{0,12}(\.[0-9]{0,4})?", fullmatch=True),
    st.from_regex(r"[0-9]{9,11}|[0-9]{18,22}|[0-9]{300,320}", fullmatch=True),
    st.sampled_from(["-0", "007", "255", "256", "2147483647", "2147483648", "inf", "1e5", "\\101", "\\400", "a=b"]),
    st.from_regex(r"[!-~]{0,6}", fullmatch=True),
)
_ITEMS = st.tuples(
    st.sampled_from(
        [
            "pid",
            "exit",
            "signal",
            "error",
            "at",
            "took",
            "attempt",
            "retry_at",
            "group",
            "mtime_ns",
            "size",
            "ino",
            "host",
        ]
    ),
    _VALUES,
).map("=".join)


@settings(max_examples=examples(150), deadline=None)
@given(
    mtime=st.sampled_from(["5", "-5", "0", "9" * 25, "9" * 5000, "x"]),
    status=st.sampled_from(["0", "1", "2"]),
    items=st.lists(_ITEMS, max_size=4),
)
@example(mtime="5", status="2", items=["at=" + "9" * 400])
@example(mtime="5", status="2", items=["took=1." + "9" * 400])
@example(mtime="5", status="2", items=["mtime_ns=" + "9" * 5000])
@example(mtime="9" * 5000, status="2", items=[])
@example(mtime="5", status="0", items=["pid=-1", "exit=256", "size=-5"])
@example(mtime="5", status="2", items=["exit=00", "mtime_ns=5000000000", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["exit=0", "exit=1"])
@example(mtime="5", status="2", items=["exit=1", "published=1", "size=0"])
@example(mtime="5", status="2", items=["exit=0", "retry_at=5"])
# A handled run's line as format_event writes it, its version last: told
# by the quick look of _plain_handled, which must answer as the event does.
@example(mtime="5", status="2", items=["exit=1", "exit=0", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["exit=0", "exit=1", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["exit=0", "retry_at=5", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["published=1", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="1", items=["exit=0", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["exit=00", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["exit=01", "mtime_ns=5000000007", "size=0", "ino=7"])
@example(mtime="5", status="2", items=["exit=0", "mtime_ns=5000000007", "size=0", "ino=7", "mtime_ns=5"])
def test_a_line_the_fast_path_keeps_parses_cleanly(mtime: str, status: str, items: list[str]) -> None:
    # The fast pattern may be stricter than parse_line, never looser: a line
    # it keeps as text is parsed only later (History.latest), where nothing
    # may raise and nothing is reported.
    from waitd.formats.history_line import PLAIN_LINE

    line = " ".join(["/in/a", "h", mtime, status, *items])
    if PLAIN_LINE.fullmatch(line.encode("ascii") + b"\n"):
        assert parse_plain(line) == parse_line(line)
        # ... and what a start asks of it without parsing it, it answers as the event does.
        event = parse_plain(line)
        for version in _versions_near(event):
            rest = line.split(" ", 2)[2]  # what a load keeps: the key is the dict's
            assert _plain_handled(rest, version) == (event.same_version(version) and event.succeeded)


_PIECES = st.lists(
    st.sampled_from(["a", "/in/a", "\\101", "\\40", "\\", " ", "\t", "\xff", "=", "5", "-", ".", "h"]), max_size=8
).map("".join)


@settings(max_examples=examples(300), deadline=None)
@given(
    path=_PIECES,
    process=_PIECES,
    status=st.sampled_from(["0", "2", "3"]),
    items=st.lists(
        st.one_of(_ITEMS, st.tuples(st.sampled_from(["signal", "error", "group", "x"]), _PIECES).map("=".join)),
        max_size=3,
    ),
)
@example(path="/in/a\\101b", process="h", status="2", items=["error=a\\101 b"])
@example(path="/in/a\\10", process="h", status="2", items=[])
@example(path="/in/a\\", process="h", status="2", items=["signal=\\"])
@example(path="/in/" + "a" * 60 + "\xff", process="h", status="2", items=[])
def test_the_fast_line_takes_its_runs_whole_and_the_same_lines(
    path: str, process: str, status: str, items: list[str]
) -> None:
    # Issue 21: PLAIN_LINE takes a run of plain bytes whole (possessive
    # quantifiers, no backtracking into it); it must accept exactly the
    # lines that the same pattern with plain quantifiers accepts.
    import re

    from waitd.formats.history_line import PLAIN_LINE

    # The reference takes a token's plain bytes one at a time, (?:X|Y)+ for
    # (?:X++|Y)++: the same language, where (?:X+|Y)+ backtracks without end
    # on a long token that fails (hypothesis found one: the test hung).
    run = rb"[!-\[\]-~]"
    plain = PLAIN_LINE.pattern.replace(run + b"++", run).replace(b"++", b"+").replace(b"*+", b"*")
    assert run + b"+" not in plain
    line = " ".join([path, process, "5", status, *items]).encode("latin-1") + b"\n"
    assert bool(PLAIN_LINE.fullmatch(line)) == bool(re.compile(plain).fullmatch(line))


@settings(max_examples=examples(150), deadline=None)
@given(_EVENTS)
def test_quick_init_makes_the_dataclass_event(event: Event) -> None:
    """Event's quicker __init__ (issue 21) makes what the dataclass's made,
    and the event stays frozen."""
    import dataclasses
    import inspect

    made = Event.__init__
    original = vars(made)["dataclass_init"]
    assert inspect.signature(made) == inspect.signature(original)
    values = {f.name: getattr(event, f.name) for f in dataclasses.fields(Event)}
    other = object.__new__(Event)
    original(other, **values)
    assert other == event and hash(other) == hash(event)
    some = {k: v for k, v in values.items() if v is not None and v != ()}  # the rest by their defaults
    assert Event(**some) == event == Event(*values.values())
    assert Version(*dataclasses.astuple(Version(1, 2, 3))) == Version(1, 2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.pid = 1  # type: ignore[misc]


def _versions_near(event: Event) -> list[Version]:
    """Versions like and unlike the event's: its own, each field off by one,
    and one of its MTIME only."""
    mine = event.version or Version(event.mtime * 10**9 + 7, 0, 0)
    return [
        mine,
        Version(mine.mtime_ns + 1, mine.size, mine.ino),
        Version(mine.mtime_ns, mine.size + 1, mine.ino),
        Version(mine.mtime_ns, mine.size, mine.ino + 1),
        Version(event.mtime * 10**9, 0, 0),
    ]


@given(_EVENTS)
@settings(max_examples=examples(200), deadline=None)
def test_history_tells_handled_of_a_line_kept_as_text_as_of_its_event(event: Event) -> None:
    # Issue 21: a start asks of every file whether its history says this
    # version was handled with exit 0; a line kept as text answers without
    # being parsed, as its event does.
    from waitd.journal.replay import _checked

    _, item = _checked(format_event(event).encode("ascii"))
    if isinstance(item, str):
        assert _status(item) is event.status  # an open run is told by it at start
    for version in _versions_near(event):
        expected = event.same_version(version) and event.succeeded
        if isinstance(item, str):
            assert _plain_handled(item, version) == expected


def test_names_in_tells_the_names_a_directory_has_in_the_history(hpath: Path) -> None:
    # Issue 21: a first listing asks once which of its names the history
    # knows, not a lookup a file.
    _write(hpath, _ev("/in/a"), _ev("/in/b", Status.STARTED), _ev("/in/sub/c"), _ev("/inx/d"), _ev("/", process="g"))
    h = _load(hpath)
    h.append(replace(_ev("/in/e"), process="other"))
    assert h.names_in("/in/", "h") == {"a", "b", "sub/c"}  # a name never holds a slash: sub/c is no file's
    assert h.names_in("/in/", "other") == {"e"}
    assert h.names_in("/", "g") == {""} and h.names_in("/nowhere/", "h") == set()
    h.close()
