# SPDX-License-Identifier: MIT
"""The history file, incoming.history: encode, append, replay, compact.

Each line is one event, `PATH PROCESS MTIME STATUS [key=value ...]`, ASCII
only.  In PATH, PROCESS and in free-text values (`error=`), a space, tab,
newline, backslash and every byte that is not printable ASCII is written as
a backslash and three octal digits, so any file name round-trips byte for
byte and a line always splits on single spaces.  `Status` maps the numbers
of the file to names in exactly one place.

`History` holds the latest event of each (path, process) key in memory; the
file is the truth and the dict a cache of it.  What a crash leaves:

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
skipped.

This module does not decide what to run (`scan` does) and does not know
about processes (`runner` does).
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from waitd.errors import HistoryWriteError, WaitdError

log = logging.getLogger(__name__)

# Bytes written as themselves: printable ASCII except space and backslash.
_PLAIN = frozenset(range(0x21, 0x7F)) - {0x5C}
_ESCAPE = [chr(b) if b in _PLAIN else f"\\{b:03o}" for b in range(256)]
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class Status(enum.IntEnum):
    """process-status of the original manual page."""

    STARTED = 0
    UNKNOWN = 1  # killed by a signal, lost, could not start
    KNOWN = 2  # terminated in a known state, whatever its exit code


@dataclass(frozen=True, slots=True)
class Version:
    """What tells one delivery of a file from the next."""

    mtime_ns: int
    size: int
    ino: int


class Versioned(Protocol):
    """Anything that carries a file version (a Version, a stat fact)."""

    @property
    def mtime_ns(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def ino(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the history."""

    path: str  # str with surrogate escapes for bytes that are not UTF-8
    process: str
    mtime: int  # whole seconds
    status: Status
    pid: int | None = None
    exit: int | None = None
    signal: str | None = None
    error: str | None = None
    at: float | None = None
    took: float | None = None
    version: Version | None = None
    extra: tuple[str, ...] = field(default=())  # unknown key=value, kept as read

    @property
    def key(self) -> tuple[str, str]:
        return (self.path, self.process)

    def same_version(self, version: Version | Versioned) -> bool:
        """True when this event is about that delivery of the file."""
        mine = self.version
        if mine is None:
            # A line written by hand or by another tool: MTIME alone.
            return self.mtime == version.mtime_ns // 1_000_000_000
        return mine.mtime_ns == version.mtime_ns and mine.size == version.size and mine.ino == version.ino

    @property
    def consumed(self) -> bool:
        """True when the file was handed to the handler (or may have been).

        A run that could not even be executed (`error=`) did not consume its
        file: it stays a candidate once the record's back-off ends.
        """
        return not (self.status is Status.UNKNOWN and self.error is not None)

    @property
    def succeeded(self) -> bool:
        return self.status is Status.KNOWN and self.exit == 0


def escape(text: str) -> str:
    """Escape a name for the history: any bytes in, printable ASCII out."""
    if text.isascii() and text.isprintable() and " " not in text and "\\" not in text:
        return text
    return "".join(_ESCAPE[b] for b in os.fsencode(text))


def unescape(text: str) -> str:
    """Undo `escape`; raise ValueError on a malformed escape."""
    if "\\" not in text:
        if not text.isascii():
            raise ValueError("non-ASCII byte in history field")
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError(f"bad escape {text[i : i + 4]!r}")
            out.append(int(digits, 8))
            i += 4
        else:
            if ord(c) > 0x7E or ord(c) < 0x21:
                raise ValueError("unescaped control or non-ASCII character")
            out.append(ord(c))
            i += 1
    return os.fsdecode(bytes(out))


def format_event(event: Event) -> str:
    """Return the history line of an event, newline included."""
    parts = [escape(event.path), escape(event.process), str(event.mtime), str(int(event.status))]
    if event.pid is not None:
        parts.append(f"pid={event.pid}")
    if event.exit is not None:
        parts.append(f"exit={event.exit}")
    if event.signal is not None:
        parts.append(f"signal={escape(event.signal)}")
    if event.error is not None:
        parts.append(f"error={escape(event.error)}")
    if event.at is not None:
        parts.append(f"at={event.at:.3f}")
    if event.took is not None:
        parts.append(f"took={event.took:.3f}")
    if event.version is not None:
        v = event.version
        parts.append(f"mtime_ns={v.mtime_ns} size={v.size} ino={v.ino}")
    parts.extend(event.extra)
    return " ".join(parts) + "\n"


def parse_line(line: str) -> Event:
    """Parse one history line (without its newline); raise ValueError."""
    fields = line.split(" ")
    if len(fields) < 4:
        raise ValueError(f"expected at least 4 fields, got {len(fields)}")
    path, process, mtime, status = fields[:4]
    if not path or not process:
        raise ValueError("empty path or process")
    if not _is_int(mtime):
        raise ValueError(f"bad MTIME {mtime!r}")
    if status not in _STATUSES:
        raise ValueError(f"bad STATUS {status!r}")
    st = Status(int(status))
    values: dict[str, str] = {}
    extra: list[str] = []
    for item in fields[4:]:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad field {item!r}")
        if key in _KNOWN_KEYS:
            values[key] = value
        else:
            extra.append(item)
    version = None
    if "mtime_ns" in values and "size" in values and "ino" in values:
        version = Version(int(values["mtime_ns"]), int(values["size"]), int(values["ino"]))
    return Event(
        path=unescape(path),
        process=unescape(process),
        mtime=int(mtime),
        status=st,
        pid=_int(values.get("pid")),
        exit=_int(values.get("exit")),
        signal=unescape(values["signal"]) if "signal" in values else None,
        error=unescape(values["error"]) if "error" in values else None,
        at=float(values["at"]) if "at" in values else None,
        took=float(values["took"]) if "took" in values else None,
        version=version,
        extra=tuple(extra),
    )


_KNOWN_KEYS = frozenset({"pid", "exit", "signal", "error", "at", "took", "mtime_ns", "size", "ino"})
_STATUSES = ("0", "1", "2")
_RAW_STATUSES = (b"0", b"1", b"2")


def _is_int(text: str) -> bool:
    # A file can carry an mtime before 1970 (`touch -d 1969-...`, an old
    # archive): MTIME may be negative.
    return text.isascii() and text.removeprefix("-").isdigit()


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def _earlier(path: str, before: dict[bytes, int]) -> list[tuple[int, Event | str]]:
    """The last good line of each raw key before the line number given."""
    best: dict[bytes, tuple[int, Event | str]] = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                continue
            key = _raw_key(raw)
            if number >= before.get(key, 0):
                continue
            try:
                best[key] = (number, _checked(raw))
            except ValueError:
                continue
    return list(best.values())


_TOKEN = rb"(?:[!-\[\]-~]|\\[0-3][0-7][0-7])"
_INT_KEYS = rb"(?:pid|exit|mtime_ns|size|ino)"
_FLOAT_KEYS = rb"(?:at|took)"
_TEXT_KEYS = rb"(?:signal|error)"
# Exactly the lines parse_line accepts in its usual form: such a line is
# kept as text and parsed only when asked for.  Any other line goes through
# parse_line at once, which accepts it or says what is wrong.
_PLAIN_LINE = re.compile(
    rb"(" + _TOKEN + rb"+) (" + _TOKEN + rb"+) -?[0-9]+ [012]"
    rb"(?: (?:"
    + _INT_KEYS
    + rb"=-?[0-9]+|"
    + _FLOAT_KEYS
    + rb"=-?[0-9]+(?:\.[0-9]+)?|"
    + _TEXT_KEYS
    + rb"="
    + _TOKEN
    + rb"*|(?!(?:"
    + _INT_KEYS
    + rb"|"
    + _FLOAT_KEYS
    + rb"|"
    + _TEXT_KEYS
    + rb")=)[!-<>-~]+=[!-~]*))*\n"
)


def _raw_key(raw: bytes) -> bytes:
    """A raw line's "PATH PROCESS", still escaped."""
    return raw[: raw.find(b" ", raw.find(b" ") + 1)]


def _checked(raw: bytes) -> Event | str:
    """A raw line as the text to parse later, or as an Event; ValueError if corrupt."""
    if _PLAIN_LINE.fullmatch(raw):
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
        latest: dict[bytes, tuple[int, bytes]] = {}
        count = 0
        end = 0  # bytes up to the end of the last whole line
        torn: tuple[int, bytes] | None = None
        retry: dict[bytes, int] = {}
        if fd >= 0:
            with open(fd, "rb", buffering=1 << 20) as f:
                number, raw, blank = 0, b"\n", 0
                # The hot loop of a start with a long history: one slice and
                # one dict store a line.  Filed by its raw "PATH PROCESS"; a
                # corrupt line that a later line of the same key replaces has
                # no effect, and one that stands is reported when parsed below.
                for number, raw in enumerate(f, start=1):
                    if raw == b"\n":
                        blank += 1
                        continue
                    latest[raw[: raw.find(b" ", raw.find(b" ") + 1)]] = (number, raw)  # _raw_key, inlined
                end = f.tell()
                count = number - blank
                if raw[-1:] != b"\n":  # only the last line can lack it
                    torn = (number, raw)
                    end -= len(raw)
                    count -= 1
                    # It replaced the key's last whole line, if any: find it again.
                    key = _raw_key(raw)
                    del latest[key]
                    retry[key] = number
        if torn is not None:
            log.warning(
                "%s:%d: torn last line ignored (waitd stopped while writing it): %r",
                self.path,
                torn[0],
                torn[1][:80],
            )
        found: list[tuple[int, Event | str]] = []
        lines = sorted(latest.values())
        latest.clear()
        for number, raw in lines:
            try:
                found.append((number, _checked(raw)))
            except ValueError as exc:
                log.warning("%s:%d: corrupt line skipped: %s", self.path, number, exc)
                retry[_raw_key(raw)] = number
        del lines
        if retry:
            # A key's latest line was corrupt: skipping it means the good
            # line before it stands (an open run stays open, say).
            found.extend(_earlier(self.path, retry))
            found.sort(key=lambda item: item[0])
        self._latest = {_key(item): item for _, item in found}
        self._lines = count
        self._open()
        if torn is not None:
            os.ftruncate(self._fd, end)
        self._size = end

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
            item = self._latest[(path, process)] = parse_line(item)
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

    def append(self, event: Event, sync: bool = False) -> None:
        """Append one event with one write; on disk before return if `sync`."""
        self.append_all([event], sync)

    def append_all(self, events: list[Event], sync: bool = False) -> None:
        """Append each event with one write, all or none; with `sync`, one
        fdatasync for all of them (a group commit)."""
        datas = [format_event(event).encode("ascii") for event in events]
        size = self._size
        try:
            for data in datas:
                written = os.write(self._fd, data)
                size += written
                if written != len(data):
                    raise OSError(28, os.strerror(28))  # ENOSPC: a short write
            if sync:
                os.fdatasync(self._fd)
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
        tmp = f"{self.path}.tmp"
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
