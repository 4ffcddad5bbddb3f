# SPDX-License-Identifier: MIT
"""Reading the history back at start: the latest line of each file.

`read` streams incoming.history once and keeps only the latest raw line of
each (path, process) key, so that a history of a million lines about a
hundred thousand files costs the memory of the hundred thousand; of those
it parses only the lines that are not plain (`history_line.PLAIN_LINE`):
a plain line is kept as text and parsed when asked (`History.latest`).
What it finds, and says:

    a torn last line (waitd stopped     ignored with a warning; the key's
    while writing it)                   whole line before it stands, and
                                        the file is cut back to `end`
    a corrupt line                      skipped with a warning naming its
                                        number; the key's good line before
                                        it stands (an open run stays open)
    a sound line with a value out of    taken as status 1, an unknown
    its range (pid=-1)                  outcome, with a warning

A history that is a link or not a regular file is refused (`WaitdError`),
and one that cannot be opened too; none at all is an empty history.

This module reads; `history.History` keeps what it read and appends.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass

from waitd.config.errors import WaitdError
from waitd.formats.history_line import PLAIN_LINE, BadValue, Event, parse_line, unescape
from waitd.journal.disk import kind_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a history holds: the latest event of each key (or its plain
    line, not parsed yet), how many lines (live or not), and how many bytes
    its whole lines take."""

    latest: dict[tuple[str, str], Event | str]
    lines: int
    end: int
    torn: bool  # a torn last line follows `end`


def read(path: str) -> Replayed:
    """Read the history at `path` (see the module's contract)."""
    fd = _open_to_read(path)
    latest, count, end, torn = _stream(fd) if fd >= 0 else ({}, 0, 0, None)
    retry: dict[bytes, int] = {}
    if torn is not None:
        log.warning("%s:%d: torn last line ignored (waitd stopped while writing it): %r", path, torn[0], torn[1][:80])
        # It replaced the key's last whole line, if any: find it again.
        key = _raw_key(torn[1])
        del latest[key]
        retry[key] = torn[0]
    found: list[tuple[int, Event | str]] = []
    lines = sorted(latest.values())
    latest.clear()
    for number, raw in lines:
        try:
            found.append((number, _read(path, number, raw)))
        except ValueError as exc:
            log.warning("%s:%d: corrupt line skipped: %s", path, number, exc)
            retry[_raw_key(raw)] = number
    del lines
    if retry:
        # A key's latest line was corrupt: skipping it means the good
        # line before it stands (an open run stays open, say).
        found.extend((number, _read(path, number, raw)) for number, raw in _earlier(path, retry))
        found.sort(key=lambda item: item[0])
    return Replayed({_key(item): item for _, item in found}, count, end, torn is not None)


def _read(path: str, number: int, raw: bytes) -> Event | str:
    """A line that stands, as `_checked` gives it; ValueError if corrupt.

    A malformed value is reported here, with its line number: a line
    kept as text is parsed later, where the number is not known.
    """
    try:
        return _checked(raw)
    except BadValue as exc:
        log.warning("%s:%d: %s; taken as status 1 (unknown outcome)", path, number, exc)
        return exc.event


def _earlier(path: str, before: dict[bytes, int]) -> list[tuple[int, bytes]]:
    """The last line of each raw key before the line number given that is
    not corrupt (one with a malformed value counts: it is an event)."""
    best: dict[bytes, tuple[int, bytes]] = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                continue
            key = _raw_key(raw)
            if number >= before.get(key, 0):
                continue
            try:
                _checked(raw)
            except BadValue:
                pass
            except ValueError:
                continue
            best[key] = (number, raw)
    return list(best.values())


def _stream(fd: int) -> tuple[dict[bytes, tuple[int, bytes]], int, int, tuple[int, bytes] | None]:
    """Read the history open on `fd` to its end, and close it.

    Return the latest line of each raw key with its number, how many lines
    the file holds (blank and torn ones not counted), how many bytes its
    whole lines take, and the torn last line with its number, if any.
    """
    latest: dict[bytes, tuple[int, bytes]] = {}
    with open(fd, "rb", buffering=1 << 20) as f:
        number, raw, blank = 0, b"\n", 0
        # The hot loop of a start with a long history: one slice and one
        # dict store a line.  Filed by its raw "PATH PROCESS"; a corrupt
        # line that a later line of the same key replaces has no effect, and
        # one that stands is reported when parsed.
        for number, raw in enumerate(f, start=1):
            if raw == b"\n":
                blank += 1
                continue
            latest[raw[: raw.find(b" ", raw.find(b" ") + 1)]] = (number, raw)  # _raw_key, inlined
        end = f.tell()
    count = number - blank
    if raw[-1:] == b"\n":
        return latest, count, end, None
    # Only the last line can lack its newline.
    return latest, count - 1, end - len(raw), (number, raw)


def _raw_key(raw: bytes) -> bytes:
    """A raw line's "PATH PROCESS", still escaped."""
    return raw[: raw.find(b" ", raw.find(b" ") + 1)]


def _checked(raw: bytes) -> Event | str:
    """A raw line as the text to parse later, or as an Event.

    Raise ValueError if it is corrupt, BadValue if it holds a malformed value.
    """
    if PLAIN_LINE.fullmatch(raw):
        return raw[:-1].decode("ascii")
    try:
        line = raw[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII") from None
    return parse_line(line)


def _key(item: Event | str) -> tuple[str, str]:
    if isinstance(item, Event):
        return item.key
    path, process, _ = item.split(" ", 2)
    return (unescape(path), unescape(process))


def _open_to_read(path: str) -> int:
    """The history opened for reading, or -1 if there is none yet.

    Raise WaitdError for a link, for anything not a regular file, and for a
    file that cannot be opened.
    """
    try:
        # Never through a link planted in PASSDIR: its target's lines would
        # be logged as corrupt ones, and then appended to.  O_NONBLOCK: a
        # FIFO must not block the start (a regular file ignores the flag).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    except OSError as exc:
        raise _refusal(path, exc) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return fd


def _refusal(path: str, exc: OSError) -> WaitdError:
    """The error for a history file waitd cannot open."""
    if exc.errno == errno.ELOOP:
        return WaitdError(f"{path}: is a symbolic link; waitd does not follow links in PASSDIR")
    try:
        mode = os.lstat(path).st_mode  # a socket cannot be opened at all (ENXIO)
    except OSError:
        mode = stat.S_IFREG
    if not stat.S_ISREG(mode):
        return _not_regular(path, mode)
    return WaitdError(f"{path}: cannot open the history: {exc.strerror or exc}")


def _not_regular(path: str, mode: int) -> WaitdError:
    kind = kind_of(mode)
    return WaitdError(f"{path}: is not a regular file ({kind}); the history must be a regular file")
