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
and `HistoryWriteError` is raised.  At load (`replay.read`) a torn last
line is dropped with a warning and a corrupt line elsewhere is reported
with its number and skipped (the key's line before it stands).  A sound
line with a value out of its range (`pid=-1`) is reported with its number
and taken as an unknown outcome, status 1: its file is not run again.  A
history that is a link or not a regular file stops the start with
`WaitdError`.

Only the journal (`writer.Journal`) appends, with the outbox's events
and its failure policy; the rest of waitd asks this module what the
history says (`latest`, `open_runs`; `handled` and `names_in`, cheap
for a start's first listing of 100,000 files: a line kept as text is not
parsed to answer them).  This module does not decide what
to run (`decide` does) and does not know about processes (`run` does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable

from waitd.config.errors import HistoryWriteError
from waitd.config.passdir import TMP
from waitd.formats.history_fast import format_line
from waitd.formats.history_line import (
    BadValue,
    Event,
    Status,
    Version,
    Versioned,
    escape,
    format_event,
    parse_line,
    parse_plain,
    unescape,
)
from waitd.journal import replay
from waitd.journal.disk import fsync_dir

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


def _status(item: Event | str) -> Status:
    if isinstance(item, Event):
        return item.status
    # The rest of a plain line, MTIME STATUS ...: PLAIN_LINE's STATUS is
    # one digit after the first space (a start asks it of 10,000 keys).
    return _STATUS_OF[item[item.find(" ") + 1]]


_STATUS_OF = {str(int(s)): s for s in Status}


class History:
    """The history file and the latest event of each key."""

    def __init__(self, path: str) -> None:
        self.path = path
        # The latest event of each key, or the rest of its plain line after
        # the key (MTIME STATUS ...), not parsed yet (`replay`).
        self._latest: dict[tuple[str, str], Event | str] = {}
        self._fd = -1
        self._size = 0
        self._lines = 0  # lines in the file now, live or not
        self._dropped = 0  # keys drop_gone forgot since the last compaction

    # -- loading ---------------------------------------------------------

    def load(self, listing: replay.Listing | None = None) -> None:
        """Read the file (if any) into memory (`replay.read`), and open it
        to append after its last whole line (a torn last line is cut off).
        With `listing` (the names in a directory, one at a time; OSError
        if it cannot be listed), the keys whose file no longer exists are
        forgotten as they are read, except runs still open (as
        `drop_gone`; the next `compact` counts and writes it).

        A history that is a link or not a regular file (a directory, a
        FIFO, a device) is refused with WaitdError.
        """
        found = replay.read(self.path, listing)
        self._latest = found.latest
        self._lines = found.lines
        self._dropped = found.dropped
        self._open()
        if found.torn:
            os.ftruncate(self._fd, found.end)
        self._size = found.end

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
            item = self._latest[(path, process)] = parse_plain(f"{escape(path)} {escape(process)} {item}")
        return item

    def handled(self, path: str, process: str, version: Version | Versioned) -> bool:
        """Whether the key's latest event is about that version of its file
        and says it was handled with exit 0 (`Event.same_version` and
        `Event.succeeded`); a line still kept as text is not parsed for it
        (`_plain_handled`: a start asks it of every file listed)."""
        item = self._latest.get((path, process))
        if item is None:
            return False
        if isinstance(item, str):
            return _plain_handled(item, version)
        return item.same_version(version) and item.succeeded

    def names_in(self, directory: str, process: str) -> set[str]:
        """The names `n` of the keys (`directory` + n, `process`): what the
        history knows of a directory (`directory` ends in a slash), in one
        pass over its keys rather than a lookup a file."""
        cut = len(directory)
        return {path[cut:] for path, of in self._latest if of == process and path.startswith(directory)}

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
        """Append the events with one write, all or none; with `sync`, one
        fdatasync for all of them (a group commit), and how long it took
        (seconds; None without `sync`).  HistoryWriteError if they cannot
        be: what was written of them is cut off again."""
        data = "".join([format_line(event) for event in events]).encode("ascii")
        size = self._size
        began = 0.0
        try:
            if data:
                written = os.write(self._fd, data)
                size += written
                if written != len(data):
                    raise OSError(28, os.strerror(28))  # ENOSPC: a short write
            if sync:
                began = time.perf_counter()
                os.fdatasync(self._fd)
        except OSError as exc:
            # Cut what was written off again: the events are not recorded,
            # and the next append must not glue itself to a partial line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise HistoryWriteError(self.path, exc) from exc
        took = time.perf_counter() - began if sync else None
        self._size = size
        self._lines += len(events)
        latest = self._latest
        for event in events:
            latest[event.path, event.process] = event  # its key
        return took

    def needs_compaction(self) -> bool:
        # A run writes three lines; compacting when the file is four times
        # its live size plus a margin keeps it small without a rewrite every
        # few hundred runs.
        return self._lines > 4 * len(self._latest) + 10_000

    def compact(self, exists: Callable[[str], bool] | None) -> int:
        """Rewrite the file with the latest event of each live key.

        Keys whose file no longer exists are dropped, except runs still
        open (None: only those `load` or `drop_gone` dropped already).
        Returns how many keys were dropped since the last compaction.
        """
        if exists is not None:
            self.drop_gone(exists)
        tmp = self.path + TMP
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                with os.fdopen(fd, "w", encoding="ascii", closefd=False) as f:
                    for (path, process), item in self._latest.items():
                        if isinstance(item, Event):
                            f.write(format_line(item))
                        else:  # the rest of a plain line, after its key
                            f.write(f"{escape(path)} {escape(process)} {item}\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            fsync_dir(os.path.dirname(self.path) or ".")
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


def _plain_handled(line: str, version: Versioned) -> bool:
    """Whether the rest after its key (MTIME STATUS ...) of a line that
    PLAIN_LINE matched (without its newline) tells that version of its
    file handled with exit 0 (or published): what `Event.same_version` and
    `Event.succeeded` say of `parse_plain`'s event, without building it (a
    start asks it of every file its history knows).

    The line as `format_event` writes a handled run of that very version
    (STATUS 2, no retry_at=, the last exit= 0, the version's three fields
    last) is told so by a few searches in C; any other is looked at field
    by field (the same answer: `test_history`)."""
    if line.endswith(f" mtime_ns={version.mtime_ns} size={version.size} ino={version.ino}"):
        exit_at = line.rfind(" exit=") + 6
        if line.startswith("2 ", line.find(" ") + 1) and exit_at > 5 and line.startswith("0 ", exit_at):
            if " retry_at=" not in line:
                return True
    fields = line.split(" ", 2)
    if fields[1] != "2":
        return False
    if _value(line, " retry_at=") is not None:
        return False
    exit = _value(line, " exit=")
    if _value(line, " published=") != "1" and (exit is None or int(exit) != 0):
        return False
    mtime_ns, size, ino = _value(line, " mtime_ns="), _value(line, " size="), _value(line, " ino=")
    if mtime_ns is None or size is None or ino is None:
        return int(fields[0]) == version.mtime_ns // 1_000_000_000
    return int(mtime_ns) == version.mtime_ns and int(size) == version.size and int(ino) == version.ino


def _value(line: str, key: str) -> str | None:
    """The value of the last field `key` (" name=") of a plain line, or None.

    Exact without a split: in a plain line every field after STATUS is
    key=value and no field holds a space, so " name=" begins a field
    of that very key (as parse_plain, the last of a key written twice wins).
    """
    start = line.rfind(key)
    if start < 0:
        return None
    start += len(key)
    end = line.find(" ", start)
    return line[start:] if end < 0 else line[start:end]
