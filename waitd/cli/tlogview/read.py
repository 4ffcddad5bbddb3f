# SPDX-License-Identifier: MIT
"""tlogview's parsing: log lines into entries, a handler log's header and footer, times.

Pure, kept apart from the I/O: `group` turns lines of incoming.log into
entries (a line that does not start with a time stamp and a level, such
as a traceback line, belongs to the entry before it), `Filter` judges an
entry (`--since`, `--level`, `-g`), `parse_run` reads a handler log's
first line (waitd's header) and its tail (waitd's footer, or why the run
did not start) into a `RunLog`, through the format's own reader
(`formats.handler_log`), `show_name` gives a header's escaped file
name for display, and `parse_since` reads a time or an age.  `read_file`
and `lines` are the two ways tlogview reads a file: whole, and split on
newlines only, text that is not UTF-8 shown with backslash escapes.

Failures: `Fail` names a file tlogview needs and cannot read;
`parse_since` raises ValueError saying what it expected.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from waitd.formats import handler_log
from waitd.formats.history_line import unescape

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ([A-Z]+) ")
_AGE = re.compile(r"(\d+(?:\.\d*)?)([smhd])")


class Fail(Exception):
    """A file tlogview needs cannot be read; the message names it."""


def read_file(path: str, what: str = "cannot read") -> bytes:
    """The whole file; `Fail` saying `what` and why not."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Fail(f"{path}: {what}: {exc.strerror}") from exc


def lines(data: bytes) -> list[str]:
    """Text split on newlines only: str.splitlines would also split on \\f, \\x1c ..."""
    return data.decode("utf-8", "backslashreplace").split("\n")


# -- incoming.log ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of incoming.log with its continuation lines."""

    lines: tuple[str, ...]
    stamp: str | None  # "YYYY-MM-DD HH:MM:SS.mmm", local time; None: no head line
    level: str | None  # "INFO", ...; None for lines that continue an earlier entry


def group(lines: Iterable[str]) -> Iterator[Entry]:
    """Group log lines into entries; lines without a stamp join the last."""
    current: list[str] = []
    stamp = level = None
    for line in lines:
        m = _STAMP.match(line)
        if m and m[2].lower() in LEVELS:
            if current:
                yield Entry(tuple(current), stamp, level)
            current, stamp, level = [line], m[1], m[2]
        else:
            current.append(line)
    if current:
        yield Entry(tuple(current), stamp, level)


@dataclass(frozen=True, slots=True)
class Filter:
    """What the operator asked to see: since when, from which level, which text."""

    since: float | None = None  # seconds since the epoch
    level: str = "debug"
    grep: str | None = None

    @property
    def active(self) -> bool:
        return self.since is not None or self.level != "debug" or self.grep is not None

    def keep(self, entry: Entry, previous: bool) -> bool:
        """Judge an entry; lines that continue an entry follow its fate."""
        if entry.level is None or entry.stamp is None:
            return previous
        if self.since is not None and entry.stamp < local_stamp(self.since):
            return False
        if LEVELS[entry.level.lower()] < LEVELS[self.level]:
            return False
        return self.grep is None or any(self.grep in line for line in entry.lines)


def local_stamp(at: float) -> str:
    """The incoming.log stamp of a moment, which compares as text."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def parse_since(text: str, now: float) -> float:
    """Read `--since`: a local time (2026-11-23 08:00) or an age (90s, 15m, 2h, 3d)."""
    text = text.strip()
    m = _AGE.fullmatch(text)
    if m:
        return now - float(m[1]) * UNITS_S[m[2]]
    try:
        return datetime.fromisoformat(text).timestamp()  # a naive time is local
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2026-11-23 08:00) nor an age (90s, 15m, 2h, 3d)") from None


# -- handler logs ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunLog:
    """What a handler log's header and footer say about one run."""

    record: int
    letter: str
    file: str | None  # escaped, as in the header; None without a header
    start: float | None  # seconds since the epoch
    took: float | None
    outcome: str  # "exit 0", "signal SIGTERM", "error: ...", "running?"
    ok: bool


def parse_run(record: int, letter: str, head: str, tail: str) -> RunLog:
    """Read a run from its log's first line and the end of the log."""
    start = handler_log.parse_header(head)
    end: handler_log.Footer | None = None
    outcome = "running?"
    for line in tail.split("\n"):
        found = handler_log.parse_footer(line)
        reason = handler_log.not_started(line)
        if found is not None:
            end = found
        elif reason is not None:
            outcome = "not started: " + reason
    ok = False
    if end is not None:
        if end.exit is not None:
            outcome, ok = f"exit {end.exit}", end.exit == "0"
        elif end.signal is not None:
            outcome = f"signal {show_name(end.signal)}"
        elif end.error is not None:
            outcome = f"error: {show_name(end.error)}"
        else:
            outcome = "ended?"
    took = end.took if end is not None else None
    if start is None:
        return RunLog(record, letter, None, None, took, outcome, ok)
    return RunLog(record, letter, start.files[-1] if start.files else None, start.at, took, outcome, ok)


def footer_ok(line: str) -> bool | None:
    """Whether a line holding waitd's footer says exit 0; None: no footer."""
    end = handler_log.parse_footer(line)
    return None if end is None else end.exit == "0"


def show_name(escaped: str) -> str:
    """An escaped header value for display: plain when printable, else as written."""
    try:
        name = unescape(escaped)
    except ValueError:
        return escaped
    # Bytes that are not UTF-8 come back as surrogates, which are not printable.
    return name if name.isprintable() else escaped
