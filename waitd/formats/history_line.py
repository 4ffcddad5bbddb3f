# SPDX-License-Identifier: MIT
"""One event of the history and its line: escape, format, parse.

Each line of incoming.history is one event, `PATH PROCESS MTIME STATUS
[key=value ...]`, ASCII only.  In PATH, PROCESS and in free-text values
(`error=`), a space, tab, newline, backslash and every byte that is not
printable ASCII is written as a backslash and three octal digits, so any
file name round-trips byte for byte and a line always splits on single
spaces.  `Status` maps the numbers of the file to names in exactly one
place, and `_FIELDS` describes the optional keys (each one's attribute
and kind of value) for writing, for parsing and for the load's fast path
(`PLAIN_LINE`) alike.

`parse_line` raises ValueError for a corrupt line, and `BadValue`, a
ValueError that carries the event the line stands for (an unknown
outcome), for a sound line with a value out of its range (`pid=-1`).
`parse_plain` parses a line that `PLAIN_LINE` matched, without checking
its values again.

This module reads and writes no file (`history` does) and logs nothing.
"""

from __future__ import annotations

import enum
import math
import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from waitd.formats.quick_init import quick_init

# Bytes written as themselves: printable ASCII except space and backslash.
_PLAIN = frozenset(range(0x21, 0x7F)) - {0x5C}
_ESCAPE = [chr(b) if b in _PLAIN else f"\\{b:03o}" for b in range(256)]


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

    def of(self, other: Versioned) -> bool:
        """Whether `other` (a Version, a stat fact) is this delivery."""
        return self.mtime_ns == other.mtime_ns and self.size == other.size and self.ino == other.ino


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
    attempt: int | None = None  # 1 when absent: the first run of this version
    retry_at: float | None = None  # a temporary failure, to be run again then
    group: str | None = None  # the group the file was handled with
    published: int | None = None  # 1: a publish-only record published it (process -)
    task: str | None = None  # run=celery: the Celery task id of the run
    outcome: str | None = None  # skipped: exit 0, and its response said skip
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
        return mine.of(version)

    @property
    def consumed(self) -> bool:
        """True when the file was handed to the handler (or may have been).

        A run that could not even be executed (status 1 with `error=` and
        no pid) did not consume its file: it stays a candidate once the
        record's back-off ends.  A timeout or a cancellation (`error=`
        with the pid of the run, or the task of a Celery run) did.
        """
        return not (self.status is Status.UNKNOWN and self.error is not None and self.pid is None and self.task is None)

    @property
    def succeeded(self) -> bool:
        """Handled with exit 0, or published (process -): done with, for keep-after."""
        return self.status is Status.KNOWN and (self.exit == 0 or self.published == 1) and self.retry_at is None

    @property
    def runs(self) -> int:
        """The attempt this event is about (1 for a line without attempt=)."""
        return self.attempt if self.attempt is not None else 1


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


class BadValue(ValueError):
    """A sound line with a value out of its range (`pid=-1`, `exit=99999`).

    `event` is what the line stands for: an unknown outcome, status 1 with
    no `error=` (the file counts as consumed), the bad fields dropped, and
    the version only if its three fields are all good.
    """

    def __init__(self, what: str, event: Event) -> None:
        super().__init__(what)
        self.event = event


@dataclass(slots=True)  # a module table's, not frozen: issue 21, the import's cost
class _Kind:
    """How a value of one kind is written and read."""

    write: Callable[[Any], str]
    read: Callable[[str], Any]  # ValueError, saying what is legal, if the text is not
    pattern: bytes  # a regex of legal texts: all of them, or the usual ones only
    convert: Callable[[str], Any]  # `read` for a text that `pattern` matched: no checks


@dataclass(slots=True)  # a module table's, not frozen: issue 21, the import's cost
class _Field:
    """One optional key=value of the line."""

    key: str
    attr: str  # of Event, or of Version if `in_version`
    kind: _Kind
    in_version: bool = False


_FAST_DIGITS = 20  # the fast path's longest number: int() and float() never fail on it


def _integer(low: int | None, high: int | None) -> _Kind:
    """Integers from `low` to `high` (None: no limit), in decimal digits."""
    if low is None:
        pattern = rb"-?[0-9]{1,%d}" % _FAST_DIGITS
    elif low == 0:
        # Fewer digits than `high` has: below it, whatever they are.
        pattern = rb"[0-9]{1,%d}" % (len(str(high)) - 1 if high is not None else _FAST_DIGITS)
    else:
        assert low == 1 and high is not None, "only 0 or 1 as a lower limit"
        pattern = rb"[1-9][0-9]{0,%d}" % (len(str(high)) - 2)
    if low is None:
        legal = "not an integer"
    elif high is None:
        legal = f"not an integer, {low} or more"
    else:
        legal = f"not an integer from {low} to {high}"

    def read(text: str) -> int:
        digits = text[1:] if low is None and text[:1] == "-" else text
        if not (digits.isdigit() and digits.isascii()):
            raise ValueError(legal)
        try:
            value = int(text)
        except ValueError:  # past 4300 digits
            raise ValueError(legal) from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(legal)
        return value

    return _Kind(str, read, pattern, int)


def _read_decimal(text: str) -> float:
    if not (_DECIMAL.fullmatch(text) and math.isfinite(value := float(text))):
        raise ValueError("not a finite decimal number, 0 or more")
    return value


_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# MTIME and mtime_ns: a file can carry an mtime before 1970 (`touch -d
# 1969-...`, an old archive), so they may be negative.
_ANY_INT = _integer(None, None)
_TOKEN = rb"(?:[!-\[\]-~]++|\\[0-3][0-7][0-7])"  # as escape() writes bytes; a plain run taken whole (issue 21)
_TEXT = _Kind(escape, unescape, _TOKEN + rb"*+", unescape)


def _read_flag(text: str) -> int:
    if text != "1":
        raise ValueError("not 1")
    return 1


_FLAG = _Kind(str, _read_flag, rb"1", int)  # a key that is there or not: key=1
_SECONDS = _Kind(
    "{:.3f}".format, _read_decimal, rb"[0-9]{1,%d}(?:\.[0-9]{1,%d})?" % (_FAST_DIGITS, _FAST_DIGITS), float
)

# The optional keys, in the order they are written.  A new key is one line
# here and its attribute in Event (or Version): writing, parsing and the
# load's fast path all follow this table.
_FIELDS = (
    _Field("pid", "pid", _integer(1, 2**31 - 1)),
    _Field("exit", "exit", _integer(0, 255)),
    _Field("signal", "signal", _TEXT),
    _Field("error", "error", _TEXT),
    _Field("at", "at", _SECONDS),
    _Field("took", "took", _SECONDS),
    _Field("attempt", "attempt", _integer(1, 2**31 - 1)),
    _Field("retry_at", "retry_at", _SECONDS),
    _Field("group", "group", _TEXT),
    _Field("published", "published", _FLAG),
    _Field("task", "task", _TEXT),
    _Field("outcome", "outcome", _TEXT),
    _Field("mtime_ns", "mtime_ns", _ANY_INT, in_version=True),
    _Field("size", "size", _integer(0, None), in_version=True),
    _Field("ino", "ino", _integer(0, None), in_version=True),
)
# What parse_line and parse_plain need of a key, looked up once a field.
_READERS = {f.key: (f.kind.read, f.attr, f.in_version) for f in _FIELDS}
_CONVERTERS = {f.key: (f.kind.convert, f.attr, f.in_version) for f in _FIELDS}
_VERSION_FIELDS = sum(f.in_version for f in _FIELDS)
_STATUSES = {str(int(s)): s for s in Status}
# What format_event reads of the table: two attrgetters, each key's "key=" and writer.
_EVENT_VALUES = operator.attrgetter(*(f.attr for f in _FIELDS if not f.in_version))
_EVENT_WRITERS = tuple((f.key + "=", f.kind.write) for f in _FIELDS if not f.in_version)
_VERSION_VALUES = operator.attrgetter(*(f.attr for f in _FIELDS if f.in_version))
_VERSION_WRITERS = tuple((f.key + "=", f.kind.write) for f in _FIELDS if f.in_version)
_STATUS_TEXT = {s: str(int(s)) for s in Status}
assert [f.in_version for f in _FIELDS] == sorted(f.in_version for f in _FIELDS)  # an event's own keys first


def format_event(event: Event) -> str:
    """Return the history line of an event, newline included."""
    parts = [escape(event.path), escape(event.process), str(event.mtime), _STATUS_TEXT[event.status]]
    for (key, write), value in zip(_EVENT_WRITERS, _EVENT_VALUES(event), strict=True):
        if value is not None:
            parts.append(key + write(value))
    version = event.version
    if version is not None:
        for (key, write), value in zip(_VERSION_WRITERS, _VERSION_VALUES(version), strict=True):
            if value is not None:
                parts.append(key + write(value))
    parts.extend(event.extra)
    return " ".join(parts) + "\n"


def parse_line(line: str) -> Event:
    """Parse one history line (without its newline); raise ValueError.

    A line whose PATH PROCESS MTIME STATUS and key=value fields are sound
    but which holds a value out of its range raises BadValue, a ValueError
    that carries the event the line stands for.
    """
    return _parse(line, _READERS)


def parse_plain(line: str) -> Event:
    """Parse a line that PLAIN_LINE matched (without its newline).

    Its values are known to be good: they are converted without checks,
    faster than parse_line does, to the same event.
    """
    return _parse(line, _CONVERTERS)


_Readers = dict[str, tuple[Callable[[str], Any], str, bool]]


def _parse(line: str, readers: _Readers) -> Event:
    """Parse a line with `readers` for the values of the known keys."""
    fields = line.split(" ")
    if len(fields) < 4:
        raise ValueError(f"expected at least 4 fields, got {len(fields)}")
    path, process, mtime, status = fields[:4]
    if not path or not process:
        raise ValueError("empty path or process")
    try:
        mtime_s = _ANY_INT.read(mtime)
    except ValueError:
        raise ValueError(f"bad MTIME {_shown(mtime)!r}") from None
    if status not in _STATUSES:
        raise ValueError(f"bad STATUS {status!r}")
    values, version, extra, bad = _values(fields[4:], readers)
    event = Event(
        unescape(path),
        unescape(process),
        mtime_s,
        _STATUSES[status],
        version=Version(**version) if len(version) == _VERSION_FIELDS else None,
        extra=tuple(extra),
        **values,
    )
    if bad:
        raise BadValue(", ".join(bad), replace(event, status=Status.UNKNOWN, error=None))
    return event


def _values(items: list[str], readers: _Readers) -> tuple[dict[str, Any], dict[str, Any], list[str], list[str]]:
    """The key=value fields as Event attributes, Version attributes, the
    fields of unknown keys, and what is wrong with bad values."""
    values: dict[str, Any] = {}
    version: dict[str, Any] = {}
    extra: list[str] = []
    bad: list[str] = []
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad field {item!r}")
        known = readers.get(key)
        if known is None:
            extra.append(item)
            continue
        read, attr, in_version = known
        into = version if in_version else values
        try:
            into[attr] = read(text)
        except ValueError as exc:
            into.pop(attr, None)  # a key written twice: its earlier value goes too
            bad.append(f"{key}={_shown(text)}: {exc}")
    return values, version, extra, bad


def _shown(text: str) -> str:
    """A value as a message shows it: a long one cut short."""
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"


def _fast_line() -> re.Pattern[bytes]:
    """The pattern of the lines a load keeps as text, to parse only when asked.

    It accepts only lines that parse_line accepts without a BadValue: a
    line kept as text must never fail when parsed later, with no line
    number at hand.  It may refuse more (a pid of ten digits, say); such a
    line is parsed at once.
    """
    known = b"|".join(re.escape(f.key.encode()) for f in _FIELDS)
    values = [re.escape(f.key.encode()) + b"=" + f.kind.pattern for f in _FIELDS]
    unknown = rb"(?!(?:" + known + rb")=)[!-<>-~]+=[!-~]*"
    head = _TOKEN + rb"++ " + _TOKEN + rb"++ " + _ANY_INT.pattern + rb" [012]"
    return re.compile(head + rb"(?: (?:" + b"|".join([*values, unknown]) + rb"))*\n")


PLAIN_LINE = _fast_line()
Event.__init__, Version.__init__ = quick_init(Event), quick_init(Version)  # type: ignore[method-assign]  # issue 21
