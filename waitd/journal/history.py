# SPDX-License-Identifier: MIT
"""The history file, incoming.history: append, replay, compact.

The file holds one event a line; the line format (escaping, the keys and
their legal values) is in `formats.history_line`, whose names this module
offers too.  `History` holds the latest event of each (path, process) key in
memory; the file is the truth and the dict a cache of it.  What a crash
leaves:

    step                             on disk after a crash here
    -------------------------------  --------------------------------------
    append status 0, fdatasync       torn line (ignored at load, handler
                                     never released) or whole line
    handler exec'd                   status 0 with no end: at the next start
                                     the run is finished as status 1
    append status 1/2                torn line (ignored: the run still looks
                                     open and is finished as status 1) or
                                     whole line
    compaction: write temp, fsync    old history intact, temp file left
                                     (removed at the next compaction)
    rename temp over history, fsync  new history, complete
    of the directory

Appends are one write(2) each; a short write (a full disk) is cut off again
with ftruncate(2) so that no partial line stays in the middle of the file,
and `HistoryWriteError` is raised.  At load a torn last line is dropped with
a warning and a corrupt line elsewhere is reported with its number and
skipped (the key's line before it stands).  A sound line with a value out
of its range (`pid=-1`) is reported with its number and taken as an
unknown outcome, status 1: its file is not run again.  A history that is a
link or not a regular file stops the start with `WaitdError`.

Only the journal (`writer.Journal`) appends, with the outbox's events
and its failure policy; the rest of waitd asks this module what the
history says (`latest`, `open_runs`).  This module does not decide what
to run (`decide` does) and does not know about processes (`run` does).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable

from waitd.config.errors import HistoryWriteError, WaitdError
from waitd.config.passdir import TMP
from waitd.formats.history_line import (
    PLAIN_LINE,
    BadValue,
    Event,
    Status,
    Version,
    escape,
    format_event,
    parse_line,
    parse_plain,
    unescape,
)

__all__ = [
    "BadValue",
    "Event",
    "History",
    "Status",
    "Version",
    "escape",
    "format_event",
    "parse_line",
    "unescape",
]

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


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


def _status(item: Event | str) -> Status:
    if isinstance(item, Event):
        return item.status
    return Status(int(item.split(" ", 4)[3]))


class History:
    """The history file and the latest event of each key."""

    def __init__(self, path: str) -> None:
        self.path = path
        # The latest event of each key, or its line not parsed yet.
        self._latest: dict[tuple[str, str], Event | str] = {}
        self._fd = -1
        self._size = 0
        self._lines = 0  # lines in the file now, live or not
        self._dropped = 0  # keys drop_gone forgot since the last compaction

    # -- loading ---------------------------------------------------------

    def load(self) -> None:
        """Read the file (if any) into memory; drop a torn last line.

        The file is streamed: only the latest raw line of each key is kept
        while reading, and only those are parsed, so a history of a million
        lines about a hundred thousand files costs the memory of the
        hundred thousand.  A history that is a link or not a regular file
        (a directory, a FIFO, a device) is refused with WaitdError.
        """
        fd = _open_to_read(self.path)
        latest, count, end, torn = _stream(fd) if fd >= 0 else ({}, 0, 0, None)
        retry: dict[bytes, int] = {}
        if torn is not None:
            log.warning(
                "%s:%d: torn last line ignored (waitd stopped while writing it): %r",
                self.path,
                torn[0],
                torn[1][:80],
            )
            # It replaced the key's last whole line, if any: find it again.
            key = _raw_key(torn[1])
            del latest[key]
            retry[key] = torn[0]
        found: list[tuple[int, Event | str]] = []
        lines = sorted(latest.values())
        latest.clear()
        for number, raw in lines:
            try:
                found.append((number, self._read(number, raw)))
            except ValueError as exc:
                log.warning("%s:%d: corrupt line skipped: %s", self.path, number, exc)
                retry[_raw_key(raw)] = number
        del lines
        if retry:
            # A key's latest line was corrupt: skipping it means the good
            # line before it stands (an open run stays open, say).
            found.extend((number, self._read(number, raw)) for number, raw in _earlier(self.path, retry))
            found.sort(key=lambda item: item[0])
        self._latest = {_key(item): item for _, item in found}
        self._lines = count
        self._open()
        if torn is not None:
            os.ftruncate(self._fd, end)
        self._size = end

    def _read(self, number: int, raw: bytes) -> Event | str:
        """A line that stands, as `_checked` gives it; ValueError if corrupt.

        A malformed value is reported here, with its line number: a line
        kept as text is parsed later, where the number is not known.
        """
        try:
            return _checked(raw)
        except BadValue as exc:
            log.warning("%s:%d: %s; taken as status 1 (unknown outcome)", self.path, number, exc)
            return exc.event

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        try:
            self._fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            raise HistoryWriteError(self.path, exc) from exc
        self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- queries ---------------------------------------------------------

    def latest(self, path: str, process: str) -> Event | None:
        item = self._latest.get((path, process))
        if isinstance(item, str):
            item = self._latest[(path, process)] = parse_plain(item)
        return item

    def events(self) -> list[Event]:
        return [e for e in (self.latest(*key) for key in list(self._latest)) if e is not None]

    def open_runs(self) -> list[Event]:
        """Status 0 events with no later status: runs a crash interrupted."""
        started = [key for key, item in self._latest.items() if _status(item) is Status.STARTED]
        return [e for e in (self.latest(*key) for key in started) if e is not None]

    @property
    def live(self) -> int:
        return len(self._latest)

    @property
    def lines(self) -> int:
        return self._lines

    # -- writing ---------------------------------------------------------

    def append(self, event: Event, sync: bool = False) -> float | None:
        """Append one event with one write; on disk before return if `sync`."""
        return self.append_all([event], sync)

    def append_all(self, events: list[Event], sync: bool = False) -> float | None:
        """Append each event with one write, all or none; with `sync`, one
        fdatasync for all of them (a group commit), and how long it took
        (seconds; None without `sync`).  HistoryWriteError if they cannot
        be: what was written of them is cut off again."""
        datas = [format_event(event).encode("ascii") for event in events]
        size = self._size
        took = None
        try:
            for data in datas:
                written = os.write(self._fd, data)
                size += written
                if written != len(data):
                    raise OSError(28, os.strerror(28))  # ENOSPC: a short write
            if sync:
                began = time.perf_counter()
                os.fdatasync(self._fd)
                took = time.perf_counter() - began
        except OSError as exc:
            # Cut what was written off again: the events are not recorded,
            # and the next append must not glue itself to a partial line.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise HistoryWriteError(self.path, exc) from exc
        self._size = size
        self._lines += len(events)
        for event in events:
            self._latest[event.key] = event
        return took

    def needs_compaction(self) -> bool:
        # A run writes three lines; compacting when the file is four times
        # its live size plus a margin keeps it small without a rewrite every
        # few hundred runs.
        return self._lines > 4 * len(self._latest) + 10_000

    def compact(self, exists: Callable[[str], bool]) -> int:
        """Rewrite the file with the latest event of each live key.

        Keys whose file no longer exists are dropped, except runs still
        open.  Returns how many keys were dropped.
        """
        self.drop_gone(exists)
        tmp = self.path + TMP
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                with os.fdopen(fd, "w", encoding="ascii", closefd=False) as f:
                    for item in self._latest.values():
                        f.write(format_event(item) if isinstance(item, Event) else item + "\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            _fsync_dir(os.path.dirname(self.path) or ".")
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise HistoryWriteError(self.path, exc) from exc
        dropped, self._dropped = self._dropped, 0
        self._lines = len(self._latest)
        self._open()
        return dropped

    def drop_gone(self, exists: Callable[[str], bool]) -> None:
        """Forget, in memory only, the keys whose file no longer exists,
        except runs still open; the next `compact` counts and writes it."""
        keep = {k: e for k, e in self._latest.items() if exists(k[0]) or _status(e) is Status.STARTED}
        self._dropped += len(self._latest) - len(keep)
        self._latest = keep

    def forget(self, path: str, process: str) -> None:
        """Drop a key from memory (its file is gone); the file keeps it."""
        self._latest.pop((path, process), None)


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


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _not_regular(path: str, mode: int) -> WaitdError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a file")
    return WaitdError(f"{path}: is not a regular file ({kind}); the history must be a regular file")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
