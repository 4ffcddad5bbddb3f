# SPDX-License-Identifier: MIT
"""The handler log's own lines: waitd's header and footer around a run's output.

A handler log (logfiles/incoming.N.L) holds waitd's header line, for a
Celery run a second line naming its task, the handler's output, and
waitd's footer line:

    waitd: start record=N telem=T program=P file=F [file=F ...] at=STAMP
    waitd: task=ID queue=Q
    ...the handler's output...
    waitd: end record=N [exit=E] [signal=S] [error=E] [attempt=A] [retry_at=STAMP] took=S at=STAMP

A Celery run's log also holds, after the output, lines of the worker and
of the executor that start with `waitd: ` (`waitd: ran on HOST ...`,
`waitd: lost: ...`): notes for the reader, not parsed.  Values are
escaped as in the history (`history_line.escape`: no spaces,
no bytes that are not printable ASCII), so a line splits on spaces.
STAMP is local time to the millisecond with the UTC offset
(2026-11-23T09:04:43.100+0100).  A footer always says how the run ended:
its exit, its signal or an error (`error=unknown` when none is known).
The footer is found anywhere in a line: output without a final newline
has it glued to its last line.  A line `waitd: not started: REASON` is
what the first waitd wrote where a footer with `error=not started: ...`
is now; it is still read.

The letters L cycle A..Z: `next_letter` gives the next one, and
`newest_first` orders a record's logs by the start times in their headers
(not by mtime, which a handler's background child can bump).

This module encodes and decodes lines; it reads and writes no file
(`run.runner` writes the logs, `cli.tlogview` reads them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from waitd.formats.history_fast import escaped
from waitd.formats.history_line import escape

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HEADER_START = "waitd: start "
NOT_STARTED = "waitd: not started: "  # an older waitd's line where a footer is now
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"
_FOOTER = re.compile(r"waitd: end (record=\S*(?: \S+=\S*)*)[ \t\r]*$")


@dataclass(frozen=True, slots=True)
class Header:
    """What a header line says; names as written there (escaped)."""

    record: str | None
    telem: str | None
    program: str | None
    files: tuple[str, ...]
    at: float | None  # seconds since the epoch; None if the stamp does not read

    @property
    def at_ms(self) -> int | None:
        """The start time in whole milliseconds (how logs are ordered)."""
        return int(self.at * 1000) if self.at is not None else None


@dataclass(frozen=True, slots=True)
class Footer:
    """What a footer line says; values as written there (escaped)."""

    record: str | None
    exit: str | None
    signal: str | None
    error: str | None
    took: float | None


# -- writing ----------------------------------------------------------------


_SECOND: list[tuple[int, str, str]] = [(-1, "", "")]  # the last whole second stamped: its local time, its offset


def stamp(at: float) -> str:
    """A moment as the header and footer write it: local time, ms, offset
    (the local time of a whole second made once: each run has two stamps)."""
    second = int(at // 1)
    known, local, offset = _SECOND[0]
    if second != known:
        parts = time.localtime(second)
        local, offset = time.strftime("%Y-%m-%dT%H:%M:%S", parts), time.strftime("%z", parts)
        _SECOND[0] = (second, local, offset)
    return f"{local}.{int(at % 1 * 1000):03d}{offset}"


def header(record: int, telem: str, program: str, paths: Sequence[str], at: float) -> str:
    """The header line, newline included."""
    return header_of(header_prefix(record, telem, program), paths, at)


def header_prefix(record: int, telem: str, program: str) -> str:
    """What the header lines of a record's runs start with (made once a
    record: `header_of` adds a run's files and time)."""
    return f"{HEADER_START}record={record} telem={escape(telem)} program={escape(program)} "


def header_of(prefix: str, paths: Sequence[str], at: float) -> str:
    """The header line of a run, `prefix` its record's `header_prefix`."""
    if len(paths) == 1:
        return f"{prefix}file={escaped(paths[0])} at={stamp(at)}\n"
    files = " ".join(f"file={escape(path)}" for path in paths)
    return f"{prefix}{files} at={stamp(at)}\n"


def task_line(task: str, queue: str) -> str:
    """A Celery run's second line, newline included."""
    return f"waitd: task={task} queue={queue}\n"


def task_mark(task: str) -> bytes:
    """How the second line of the log of Celery task `task` starts."""
    return f"waitd: task={task} ".encode()


def footer(
    record: int,
    *,
    took: float,
    at: float,
    exit: int | None = None,
    signal: str | None = None,
    error: str | None = None,
    attempt: int | None = None,
    retry_at: float | None = None,
) -> str:
    """The footer line, newline included."""
    if signal is None and error is None and attempt is None and retry_at is None and exit is not None:
        return f"waitd: end record={record} exit={exit} took={took:.3f} at={stamp(at)}\n"  # most runs'
    fields = [f"record={record}"]
    if exit is not None:
        fields.append(f"exit={exit}")
    if signal is not None:
        fields.append(f"signal={signal}")
    if error is not None:
        fields.append(f"error={escape(error)}")
    if exit is None and signal is None and error is None:
        fields.append("error=unknown")
    if attempt is not None:
        fields.append(f"attempt={attempt}")
    if retry_at is not None:
        fields.append(f"retry_at={stamp(retry_at)}")
    return f"waitd: end {' '.join(fields)} took={took:.3f} at={stamp(at)}\n"


# -- reading ----------------------------------------------------------------


def read_stamp(text: str | None) -> float | None:
    """Seconds since the epoch of a STAMP; None if it does not read."""
    try:
        return datetime.strptime(text or "", _STAMP_FORMAT).timestamp()
    except ValueError:
        return None


def _fields(text: str) -> dict[str, str]:
    """`key=value key=value` (values escaped, so without spaces); the last
    of a key repeated."""
    found = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if eq:
            found[key] = value
    return found


def parse_header(line: str) -> Header | None:
    """The header of a log's first line (without its newline); None if it
    is not one."""
    if not line.startswith(HEADER_START):
        return None
    text = line[len(HEADER_START) :]
    found = _fields(text)
    files = tuple(value for key, _, value in (item.partition("=") for item in text.split()) if key == "file")
    return Header(found.get("record"), found.get("telem"), found.get("program"), files, read_stamp(found.get("at")))


def parse_footer(line: str) -> Footer | None:
    """The footer in a line (anywhere in it); None if it holds none."""
    m = _FOOTER.search(line)
    if m is None:
        return None
    found = _fields(m[1])
    try:
        took = float(found["took"]) if found.get("took") else None
    except ValueError:
        took = None
    return Footer(found.get("record"), found.get("exit"), found.get("signal"), found.get("error"), took)


def not_started(line: str) -> str | None:
    """The reason of an older waitd's `waitd: not started:` line, else None."""
    return line[len(NOT_STARTED) :].strip() if line.startswith(NOT_STARTED) else None


# -- the letters ------------------------------------------------------------


def next_letter(letter: str | None) -> str:
    return "A" if letter is None else LETTERS[(LETTERS.index(letter) + 1) % len(LETTERS)]


def newest_first(times: dict[str, int]) -> list[str]:
    """Log letters ordered newest first by their start times.

    Runs started within one millisecond share a time.  Letters are used in
    a cycle, so those of one tick form a run A, B, C (or Y, Z, A) whose
    last letter is the newest: ties are ordered by the position in that run.
    """

    def rank(letter: str) -> tuple[int, int]:
        tied = {other for other, m in times.items() if m == times[letter]}
        i = LETTERS.index(letter)
        steps = 0  # how far the run of tied letters goes back from this one
        while steps < len(LETTERS) - 1 and LETTERS[(i - steps - 1) % len(LETTERS)] in tied:
            steps += 1
        return (times[letter], steps)

    return sorted(times, key=rank, reverse=True)
