# SPDX-License-Identifier: MIT
"""Reading the history back at start: the latest line of each file.

`read` streams incoming.history once, a megabyte at a time, and keeps only
the latest raw line of each (path, process) key, so that a history of a
million lines about a hundred thousand files costs the memory of the
hundred thousand and one slice and one dict store a line.  Given
`listing` (the names in a directory, one at a time), it then forgets the
keys whose file no longer exists, unless their latest line is a run
still open (status 0), before anything is parsed: a long-lived spool's
history is mostly about files long gone.  Each directory of the keys is
listed once and its names are matched, a few thousand at a time (the
keys of a batch of plain names made and looked up in C), against the raw
keys (`_existing`): no set of its names is made (a directory of 100,000
files: 11 MB beside the keys, issue 21).  A key is gone only when its
directory could be listed to its end and its name is not in it: a
directory that cannot be listed (an NFS mount away) says nothing.
Of the keys that stay it checks every line and parses only the lines
that are not plain (`history_line.PLAIN_LINE`): of a plain line the rest
after its key (MTIME STATUS ...) is kept as text, the key being the
dict's (its process one string for all), and parsed when asked
(`History.latest`).  What it finds, and says:

    a torn last line (waitd stopped     ignored with a warning; the key's
    while writing it)                   whole line before it stands, and
                                        the file is cut back to `end`
    a corrupt line                      skipped with a warning naming its
                                        number; the key's good line before
                                        it stands (an open run stays open)
    a sound line with a value out of    taken as status 1, an unknown
    its range (pid=-1)                  outcome, with a warning

The line numbers of the warnings (and the line before a corrupt one) cost
a second pass over the file, made only when there is something to say.
The latest line of a file that is gone is not checked: unless it says
status 0, it is forgotten unread, whatever it holds (the file cannot be
run again, and its lines go at the next compaction).

A history that is a link or not a regular file is refused (`WaitdError`),
and one that cannot be opened too; none at all is an empty history.

This module reads; `history.History` keeps what it read and appends.
"""

from __future__ import annotations

import errno
import logging
import operator
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress, filterfalse, islice, repeat

from waitd.config.errors import WaitdError
from waitd.formats.history_line import PLAIN_LINE, BadValue, Event, escape, parse_line, unescape
from waitd.journal.disk import kind_of
from waitd.journal.lines import whole_lines

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes read at a time
NAMES_AT_ONCE = 4096  # names of a directory matched against the keys at a time (`_there`)
MAX_GROUPS = 32  # (directory, process) groups of keys taken out of the history's by a regular expression each
Listing = Callable[[str], Iterable[str]]  # the names in a directory; OSError if it cannot be listed
_ENDED = (b"1 ", b"2 ", b"1\n", b"2\n")  # a line's STATUS of a run that ended, with what follows it
_ENDED_LINE = re.compile(rb"[^ \n]* [12][ \n]").match  # the rest of a line (MTIME STATUS ...\n) of a run that ended


@dataclass(slots=True)
class Replayed:
    """What a history holds: the latest event of each key (or the rest of
    its plain line after the key, not parsed yet), how many lines (live or not), how many bytes
    its whole lines take, and how many keys of gone files were dropped."""

    latest: dict[tuple[str, str], Event | str]
    lines: int
    end: int
    torn: bool  # a torn last line follows `end`
    dropped: int = 0


def read(path: str, listing: Listing | None = None) -> Replayed:
    """Read the history at `path` (see the module's contract); with
    `listing`, the keys of files gone are dropped."""
    fd = _open_to_read(path)
    if fd < 0:
        return Replayed({}, 0, 0, False)
    raw, count, end, torn = _stream(fd)
    if torn:
        log.warning("%s:%d: torn last line ignored (waitd stopped while writing it): %r", path, torn[0], torn[1][:80])
    dropped = 0
    if listing is not None:
        before = len(raw)
        raw = _existing(raw, listing)
        dropped = before - len(raw)
    latest: dict[tuple[str, str], Event | str] = {}
    odd: set[bytes] = set()  # raw keys whose lines have something to say, or that share their key
    spelled: dict[tuple[str, str], bytes] = {}  # the raw key of a key spelled with escapes
    # In the order of their time, as the file has them (the stream keeps a
    # key where it first appeared): a compaction writes them so, and the
    # status page reads the latest runs from the file's end.
    for key, rest in sorted(raw.items(), key=_at):
        try:
            name, item = _checked(key + b" " + rest)
        except ValueError:  # corrupt, or a malformed value (BadValue): told with its number below
            odd.add(key)
            continue
        if name in latest:
            # "\101" is "A": two spellings of one key; the later line wins.
            odd.update((key, spelled.get(name, f"{escape(name[0])} {escape(name[1])}".encode("ascii"))))
        if b"\\" in key:
            spelled[name] = key
        latest[name] = item
    if odd:
        _settle(path, latest, odd)
    return Replayed(latest, count, end, torn is not None, dropped)


def _at(item: tuple[bytes, bytes]) -> float:
    """The time (at=) of a raw line's event; 0 for none."""
    rest = item[1]
    start = rest.find(b" at=") + 4
    if start < 4:
        return 0.0
    end = rest.find(b" ", start)
    try:
        return float(rest[start:end] if end >= 0 else rest[start:-1])  # the rest ends in its newline
    except ValueError:
        return 0.0


def _settle(path: str, latest: dict[tuple[str, str], Event | str], odd: set[bytes]) -> None:
    """The keys of `odd` once more, line by line with their numbers: the
    warnings, and the line that stands for each (the latest that is not
    corrupt, a line with a malformed value counting as an event)."""
    lines: dict[bytes, list[tuple[int, bytes]]] = {key: [] for key in odd}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.endswith(b"\n") and raw != b"\n":
                found = lines.get(_raw_key(raw[:-1]))
                if found is not None:
                    found.append((number, raw))
    stands: list[tuple[int, tuple[str, str], Event | str]] = []
    for found in lines.values():
        for number, raw in reversed(found):
            try:
                stands.append((number, *_read(path, number, raw)))
                break
            except ValueError as exc:
                log.warning("%s:%d: corrupt line skipped: %s", path, number, exc)
    for _, name, _ in stands:
        latest.pop(name, None)
    for _, name, item in sorted(stands, key=lambda s: s[0]):
        latest[name] = item


def _read(path: str, number: int, raw: bytes) -> tuple[tuple[str, str], Event | str]:
    """A line that stands, as `_checked` gives it; ValueError if corrupt.

    A malformed value is reported here, with its line number: a line
    kept as text is parsed later, where the number is not known.
    """
    try:
        return _checked(raw)
    except BadValue as exc:
        log.warning("%s:%d: %s; taken as status 1 (unknown outcome)", path, number, exc)
        return exc.event.key, exc.event


def _stream(fd: int) -> tuple[dict[bytes, bytes], int, int, tuple[int, bytes] | None]:
    """Read the history open on `fd` to its end, and close it.

    Return the latest line of each raw key (`_raw_key`: "PATH PROCESS",
    still escaped) as the rest of the line after it, with its newline;
    how many lines the file holds (blank and torn ones not counted), how
    many bytes its whole lines take, and the torn last line with its
    number, if any (a torn line is never read as a line: `lines.whole_lines`).
    """
    latest: dict[bytes, bytes] = {}
    count = blank = 0
    reader, lines, end, torn = whole_lines(fd, CHUNK)
    with reader:
        # The hot loop of a start with a long history: one split and
        # one dict store a line.  A corrupt line that a later line of
        # the same key replaces has no effect, and one that stands is
        # reported when checked.
        for count, raw in enumerate(lines, 1):  # noqa: B007 (count: at the end, the number of lines)
            try:
                path, process, rest = raw.split(b" ", 2)
            except ValueError:  # fewer than three fields: a blank line, or a corrupt one
                if raw == b"\n":
                    blank += 1
                else:
                    latest[_raw_key(raw[:-1])] = _rest(raw[:-1]) + b"\n"
                continue
            latest[path + b" " + process] = rest
    if torn is None:
        return latest, count - blank, end, None
    return latest, count - blank, end, (count + 1, torn)


def _raw_key(raw: bytes) -> bytes:
    """A raw line's "PATH PROCESS", still escaped (a line of fewer than
    three fields is its own key); `raw` without its newline."""
    fields = raw.split(b" ", 2)
    return raw if len(fields) < 3 else fields[0] + b" " + fields[1]


def _rest(raw: bytes) -> bytes:
    """What follows a raw line's key (nothing for a line of fewer than three fields)."""
    fields = raw.split(b" ", 2)
    return fields[2] if len(fields) == 3 else b""


def _existing(raw: dict[bytes, bytes], listing: Listing) -> dict[bytes, bytes]:
    """The raw keys but those whose file is gone (`_gone`), in their order.

    A key is "PATH PROCESS", escaped.  The keys are sorted into groups of
    one directory ("DIR/", as spelled) and one " PROCESS" end (`_groups`);
    each directory is listed once, and each name in it, escaped, makes the
    keys it may have ("DIR/" + name + end), looked up in `raw`.  A key
    whose name is spelled with escapes is matched by its name unescaped
    (by hand, "\\101" is "A").  A key without a directory, or corrupt (a
    bad escape, not ASCII), is kept: it is checked and reported later.
    """
    groups, odd = _groups(raw)
    by_name, stray = _by_name(odd, groups)
    there: set[bytes] = set()
    listed: set[bytes] = set()
    for directory, tails in groups.items():
        seen = _there(raw, directory, tails, by_name.get(directory, {}), listing)
        if seen is not None:
            there.update(seen)
            listed.add(directory)
    if stray or len(listed) < len(groups):
        return {key: rest for key, rest in raw.items() if key in there or not _gone(key, rest, listed)}
    # Every key is in a directory listed: one not there is gone unless its
    # line is an open run (or corrupt), asked of each key in C (100,000).
    open_run = map(operator.is_, map(_ENDED_LINE, raw.values()), repeat(None))
    return dict(compress(raw.items(), map(operator.or_, map(there.__contains__, raw), open_run)))


def _by_name(odd: list[bytes], groups: dict[bytes, set[bytes]]) -> tuple[dict[bytes, dict[str, list[bytes]]], bool]:
    """The keys of `odd` whose name holds an escape, by directory and name
    unescaped (their directories added to `groups`), and whether one has
    no directory."""
    by_name: dict[bytes, dict[str, list[bytes]]] = {}
    stray = False
    for key in odd:
        space = key.find(b" ")
        cut = key.rfind(b"/", 0, space) + 1
        stray = stray or cut == 0
        try:
            name = unescape(key[cut:space].decode("ascii"))
        except ValueError:
            continue  # corrupt: kept
        if cut and space > 0:
            by_name.setdefault(key[:cut], {}).setdefault(name, []).append(key)
            groups.setdefault(key[:cut], set())
    return by_name, stray


def _there(
    raw: dict[bytes, bytes], directory: bytes, tails: set[bytes], by_name: dict[str, list[bytes]], listing: Listing
) -> list[bytes] | None:
    """The keys of `raw` in `directory` whose file is there, or None if it
    cannot be listed (to its end).  A batch of plain names (`escape`'s
    test) makes its keys in C, joined with "/" (in no name) and cut at
    b"\n" (in no key); another batch, one name at a time."""
    seen: list[bytes] = []
    try:
        text = directory.decode("ascii")
        names = iter(listing((unescape(text) if "\\" in text else text)[:-1] or "/"))
        while batch := list(islice(names, NAMES_AT_ONCE)):
            joined = "/".join(batch)
            plain_names = joined.isascii() and joined.isprintable() and " " not in joined and "\\" not in joined
            if plain_names and joined.count("/") == len(batch) - 1:
                plain = joined.encode("ascii")
                for tail in tails:
                    keys = directory + plain.replace(b"/", tail + b"\n" + directory) + tail
                    seen.extend(filter(raw.__contains__, keys.split(b"\n")))
            else:
                for name in batch:
                    head = directory + escape(name).encode("ascii")
                    seen.extend(filter(raw.__contains__, [head + tail for tail in tails]))
            if by_name:
                for name in filter(by_name.__contains__, batch):
                    seen.extend(by_name[name])
    except (OSError, ValueError):
        return None
    return seen


def _groups(raw: dict[bytes, bytes]) -> tuple[dict[bytes, set[bytes]], list[bytes]]:
    """The directories of the raw keys ("DIR/") with the " PROCESS" ends
    of their keys, and the keys not told so: a name with an escape (or a
    key without a directory, or corrupt).  A group's keys are taken out
    by a regular expression in C (a start reads 100,000 keys in one or
    two groups); past MAX_GROUPS groups, one key at a time."""
    groups: dict[bytes, set[bytes]] = {}
    odd: list[bytes] = []
    left, i, passes = list(raw), 0, 0
    while i < len(left):
        key = left[i]
        space = key.find(b" ")
        cut = key.rfind(b"/", 0, space) + 1
        if cut == 0 or space < 0 or b"\\" in key[cut:space]:
            odd.append(key)
            i += 1
            continue
        directory, tail = key[:cut], key[space:]
        groups.setdefault(directory, set()).add(tail)
        passes += 1
        if passes > MAX_GROUPS:
            for other in left[i + 1 :]:
                space = other.find(b" ")
                cut = other.rfind(b"/", 0, space) + 1
                if cut == 0 or space < 0 or b"\\" in other[cut:space]:
                    odd.append(other)
                else:
                    groups.setdefault(other[:cut], set()).add(other[space:])
            break
        one = re.compile(re.escape(directory) + rb"[^/ \\]*" + re.escape(tail))
        left, i = list(filterfalse(one.fullmatch, left[i:])), 0
    return groups, odd


def _gone(key: bytes, rest: bytes, listed: set[bytes]) -> bool:
    """Whether a raw key not found in its directory is gone: that directory
    was listed, and its latest line is no open run."""
    space = rest.find(b" ")
    if space < 0 or rest[space + 1 : space + 3] not in _ENDED:
        return False  # status 0 or a corrupt line: checked and reported
    return key[: key.rfind(b"/", 0, key.find(b" ")) + 1] in listed


def _checked(raw: bytes) -> tuple[tuple[str, str], Event | str]:
    """A raw line (with its newline): its key, and the rest of it after
    the key as the text to parse later, or its Event.

    Raise ValueError if it is corrupt, BadValue if it holds a malformed value.
    """
    if PLAIN_LINE.fullmatch(raw):
        path, process, rest = raw[:-1].decode("ascii").split(" ", 2)
        return (unescape(path), sys.intern(unescape(process))), rest
    try:
        line = raw[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not ASCII") from None
    event = parse_line(line)
    return event.key, event


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
