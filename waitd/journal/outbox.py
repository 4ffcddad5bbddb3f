# SPDX-License-Identifier: MIT
"""The outbox on disk: segment files of events, and each sink's place in them.

$PASSDIR/events/ holds the segments, `S.jsonl` where S is the sequence
number of its first event (16 digits), one JSON object a line, each with
its `seq`, one more than the line before it, across segments.  Only waitd
writes them (`Writer`): it appends to the newest segment, starts a new one
at each start of waitd and when the newest passes SEGMENT_BYTES, and
deletes a segment once every sink has passed it (`Writer.prune`), never
the newest.  Lines are appended with one write(2), with `sync` made
durable (fdatasync(2)) before `append` returns; a start's are synced by
the journal after its handler started (`fd`; `cut` if that fails; once
the segment holds a synced event: `anchored`), and the next waitd asks
`lacks` which events of a run it finds open were lost.  An append that
fails (a full disk) is cut off again with ftruncate(2), as the history
does, and raises OSError: no partial line stays.

Each sink keeps its place in `NAME.offset` (JSON: segment, byte offset,
last seq delivered, and its state for `-s status`), replaced atomically
(temporary file, rename) by the sink's process after each delivery, and
its process holds `NAME.lock` while it runs.  The
place of a new sink is the end of the outbox (`Writer.place_new`): it gets
the events from the moment it is configured.  `Reader` is a sink's view:
the whole lines after its place, segment after segment.

A torn last line (waitd killed in the middle of a write) stays where it
is: the next start writes a new segment, and a reader skips a line that
does not parse, with a warning.  A place that names a segment no longer
there (deleted by hand) moves to the next segment.

This module knows nothing of what the events mean (`formats.events`
does, and the journal, `writer.Journal`, makes them) nor of the sinks'
brokers (`sinks.kinds` does).
"""

from __future__ import annotations

import contextlib
import errno
import json
import json.encoder
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from waitd.config.passdir import TMP, events_path

log = logging.getLogger("waitd")

SEGMENT_BYTES = 8 << 20
_SEGMENT = re.compile(r"([0-9]{16})\.jsonl")
_OFFSET_SUFFIX = ".offset"
# An event's id and time, as `Writer.append` writes them (`to_json`'s order).
_ID = re.compile(rb'^\{"id":"([0-9a-f]{32})"', re.MULTILINE)
_ID_TIME = re.compile(rb'^\{"id":"([0-9a-f]{32})","type":"[a-z]+","time":([0-9.e+-]+)', re.MULTILINE)


def segment_name(first_seq: int) -> str:
    return f"{first_seq:016d}.jsonl"


def segments(directory: str) -> list[int]:
    """The first seq of each segment there, in order."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m[1]) for m in map(_SEGMENT.fullmatch, names) if m)


# JSONEncoder(separators=(",", ":"), default=str)'s, made once (issue 21).
_ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
)


@dataclass(slots=True)
class Place:
    """Where a sink is: the segment it reads, the byte offset after its last
    delivered line, and that line's seq (0: none yet)."""

    segment: int
    offset: int
    seq: int


def offset_path(directory: str, sink: str) -> str:
    return os.path.join(directory, sink + _OFFSET_SUFFIX)


def lock_path(directory: str, sink: str) -> str:
    """What a sink's process holds while it runs (flock): one process a sink."""
    return os.path.join(directory, sink + ".lock")


def read_place(directory: str, sink: str) -> tuple[Place | None, dict[str, Any]]:
    """A sink's place and the state it saved with it; (None, {}) if none."""
    try:
        with open(offset_path(directory, sink), encoding="utf-8") as f:
            data = json.load(f)
        place = Place(int(data["segment"]), int(data["offset"]), int(data["seq"]))
    except FileNotFoundError:
        return None, {}
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s: unreadable; the sink starts again from the oldest segment", offset_path(directory, sink))
        return Place(0, 0, 0), {}
    return place, data


def write_place(directory: str, sink: str, place: Place, state: dict[str, Any] | None = None) -> None:
    """Replace a sink's offset file atomically (no fsync: a place lost in a
    power failure only makes the sink deliver some events again).  OSError
    if it cannot be written (a full disk): the old one stays, whole."""
    path = offset_path(directory, sink)
    tmp = path + TMP
    fields = {"segment": place.segment, "offset": place.offset, "seq": place.seq, **(state or {})}
    data = json.dumps(fields, sort_keys=True) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            if os.write(fd, data.encode()) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # cut short: never renamed over the place
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def forget_place(directory: str, sink: str) -> None:
    """A sink out of waitd.conf: its place no longer holds segments."""
    for path in (offset_path(directory, sink), offset_path(directory, sink) + TMP):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def sinks_with_places(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n[: -len(_OFFSET_SUFFIX)] for n in names if n.endswith(_OFFSET_SUFFIX))


def last_seq(path: str) -> int:
    """The seq of the last whole line of a segment that parses (0: none)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            chunk = 1 << 16
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                lines = data.split(b"\n")[:-1]  # what follows the last newline is torn
                if start > 0:
                    lines = lines[1:]  # may be cut
                for line in reversed(lines):
                    try:
                        return int(json.loads(line)["seq"])
                    except (ValueError, KeyError, TypeError):
                        continue
                if start == 0:
                    return 0
                chunk *= 4
    except FileNotFoundError:
        return 0


class Writer:
    """waitd's end of the outbox: appends, rotates, prunes."""

    def __init__(self, passdir: str) -> None:
        self.directory = events_path(passdir)
        self._fd = -1
        self.segment = 0  # first seq of the segment written to
        self.seq = 0  # of the last event written
        self._size = 0
        self._before = (0, 0)  # the size and seq before the last append (`cut`)
        # The newest segment holds an event on disk (synced): what follows it
        # may be synced after the history's line (`Journal`), since an event
        # then lost is found missing after it (`lacks`).
        self.anchored = False
        self._held_ids: tuple[set[str], float | None] | None = None  # `lacks`'s scan, kept up to date

    def open(self) -> None:
        """Make events/ if needed and start a new segment after the last event
        of the newest one (and of any sink's place: seqs never go back)."""
        try:
            os.mkdir(self.directory, 0o755)
        except FileExistsError:
            if os.path.islink(self.directory) or not os.path.isdir(self.directory):
                raise OSError(f"{self.directory}: not a directory (waitd does not follow links in PASSDIR)") from None
        firsts = segments(self.directory)
        seq = last_seq(os.path.join(self.directory, segment_name(firsts[-1]))) if firsts else 0
        if firsts:
            seq = max(seq, firsts[-1] - 1)
        for sink in sinks_with_places(self.directory):
            place, _ = read_place(self.directory, sink)
            if place is not None:
                seq = max(seq, place.seq)
        self.seq = seq
        self._start_segment()

    def _start_segment(self) -> None:
        """Go on in a new segment; OSError leaves the old one in use."""
        path = os.path.join(self.directory, segment_name(self.seq + 1))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        if self._fd >= 0:
            try:
                os.fdatasync(self._fd)  # what was appended without a sync: the next sync is elsewhere
            except OSError:
                os.close(fd)
                raise
            os.close(self._fd)
        self._fd, self.segment, self._size = fd, self.seq + 1, os.fstat(fd).st_size
        self.anchored = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def append(self, events: Iterable[dict[str, Any]], sync: bool) -> int:
        """Give each event its seq and append them with one write; with
        `sync`, on disk before return.  OSError if they could not be: what
        was written of them is cut off again (ftruncate), and their seqs
        are given again to the next events (the caller retries them, with
        their ids)."""
        if self._fd < 0:
            raise OSError(f"{self.directory}: the outbox is not open")
        if self._size >= SEGMENT_BYTES:
            self._start_segment()
        self._before = (self._size, self.seq)
        lines = []
        ids = []
        seq = self.seq
        for event in events:
            seq += 1
            event["seq"] = seq
            lines.append("".join(_ENCODE(event, 0)))
            ids.append(str(event.get("id")))
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode()
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a short write: the disk is full
            if sync:
                os.fdatasync(self._fd)
        except OSError:
            # Cut the part that was written off again: the caller writes
            # these events again, and they must not follow a partial line
            # (glued to it, the first of them would be skipped as corrupt).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)
        self.seq = seq
        self.anchored = self.anchored or sync
        if self._held_ids is not None:
            self._held_ids[0].update(ids)
        return len(lines)

    @property
    def fd(self) -> int:
        """The newest segment's descriptor (a background sync's, `Journal`)."""
        return self._fd

    def cut(self) -> None:
        """Take the last append back (its sync failed): cut it off the
        segment (ftruncate) and give its seqs again."""
        size, seq = self._before
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, size)
        self._size, self.seq = size, seq

    def lacks(self, ids: Iterable[str], since: float) -> list[str]:
        """Of these event ids, those no segment holds, when events made at
        `since` would still be there: not older than the first event of the
        oldest segment that has one (what is older may have been delivered
        and pruned).  The segments are read once (a start may find many
        runs open), the ids appended since added."""
        if self._held_ids is None:
            found: set[str] = set()
            oldest: float | None = None
            for first in segments(self.directory):
                with contextlib.suppress(OSError), open(os.path.join(self.directory, segment_name(first)), "rb") as f:
                    data = f.read()
                    head = _ID_TIME.search(data) if oldest is None else None
                    oldest = float(head[2]) if head is not None else oldest
                    found.update(m.decode() for m in _ID.findall(data))
            self._held_ids = (found, oldest)
        found, oldest = self._held_ids
        return [] if oldest is not None and since < oldest else [i for i in ids if i not in found]

    def place_new(self, sink: str) -> None:
        """A sink new to the outbox starts at its end."""
        if read_place(self.directory, sink)[0] is None:
            write_place(self.directory, sink, Place(self.segment, self._size, self.seq))

    def prune(self, sinks: Iterable[str]) -> int:
        """Delete the segments every sink has passed (never the newest); how many."""
        lowest = self.seq
        for sink in sinks:
            place, _ = read_place(self.directory, sink)
            lowest = min(lowest, place.seq if place is not None else 0)
        firsts = segments(self.directory)
        removed = 0
        for first, following in zip(firsts, firsts[1:], strict=False):
            if following - 1 > lowest or first == self.segment:
                break
            try:
                os.unlink(os.path.join(self.directory, segment_name(first)))
                removed += 1
            except FileNotFoundError:
                pass
        return removed


class Reader:
    """A sink's end: the whole lines after its place, in order."""

    def __init__(self, directory: str, place: Place) -> None:
        self.directory = directory
        self.place = place
        self._file: Any = None
        self._file_segment = -1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> bool:
        """Open the place's segment (or the next one there is); False if none."""
        if self._file is not None and self._file_segment == self.place.segment:
            return True
        self.close()
        firsts = segments(self.directory)
        if self.place.segment not in firsts:
            later = [f for f in firsts if f > self.place.segment]
            if not later:
                return False
            self.place = Place(later[0], 0, self.place.seq)
        self._file = open(os.path.join(self.directory, segment_name(self.place.segment)), "rb")  # noqa: SIM115
        self._file_segment = self.place.segment
        return True

    def batch(self, most: int) -> tuple[list[dict[str, Any]], Place]:
        """Up to `most` events after the place (those with a seq not above
        the place's are stepped over), and the place after them.  At the
        end of a segment that is no longer the newest, the place moves on."""
        if not self._open():
            return [], self.place
        f = self._file
        f.seek(self.place.offset)
        events: list[dict[str, Any]] = []
        offset, seq = self.place.offset, self.place.seq
        for raw in _lines(f, most):
            offset += len(raw)
            try:
                event = json.loads(raw)
                number = int(event["seq"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s: a line at byte %d does not parse; skipped", segment_name(self.place.segment), offset)
                continue
            if number > seq:
                events.append(event)
                seq = number
        place = Place(self.place.segment, offset, seq)
        if not events and offset == self.place.offset:
            later = [s for s in segments(self.directory) if s > self.place.segment]
            if later and not _more(f, offset):
                place = Place(later[0], 0, seq)  # this one is finished: waitd writes only the newest
        return events, place


def _lines(f: Any, most: int) -> Iterator[bytes]:
    """Whole lines from the file's position, at most `most`."""
    count = 0
    while count < most:
        raw = f.readline()
        if not raw.endswith(b"\n"):
            return  # the end, or a line still being written
        yield raw
        count += 1


def _more(f: Any, offset: int) -> bool:
    """True when the file holds a whole line after `offset`."""
    f.seek(offset)
    return bool(f.readline().endswith(b"\n"))
