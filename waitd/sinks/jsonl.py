# SPDX-License-Identifier: MIT
"""The `jsonl` sink: every event, one JSON object a line, appended to a file.

`JsonLines.send` appends a batch with one write; `flush` makes what was
appended durable with fdatasync(2), and the sink's process calls it
before it saves its place after those events (at most every
`child.SAVE_EVERY_S` while events keep coming, and when they stop): one
fdatasync for many batches, not one each (issue 21: each is a commit of
the file system's journal, which waitd's own syncs of its starts wait
behind).  Each line is the event's JSON (`formats.events.to_json`, keys
sorted, with its `seq`).  At open, a torn last line that a killed sink
left (its write cut short) is cut off: its batch was not passed, so its
events are delivered again, whole.  HUP reopens the file (log rotation),
after a flush of the old one.

Failures: OSError (the file cannot be opened, written or flushed): the
sink's process backs off and sends again what was not passed (a flush
that failed fails the next one too, so that the place is never saved
after events it may have lost).
"""

from __future__ import annotations

import json
import logging
import os

from waitd.formats import events as ev

log = logging.getLogger("waitd")


class JsonLines:
    """Every event, appended to a file: one write a batch, and an fdatasync
    before the place after them is saved."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._unflushed = False
        self._failed: OSError | None = None  # a flush (of a file since closed) that failed

    def wants(self, event: ev.Event) -> bool:
        return True

    def open(self) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                _cut_torn_line(self._fd, self.path)
            except OSError:
                self.close()
                raise

    def send(self, events: list[ev.Event]) -> None:
        self.open()
        data = "".join(json.dumps(ev.to_json(e), separators=(",", ":"), sort_keys=True) + "\n" for e in events)
        view = memoryview(data.encode())
        self._unflushed = True
        while view:
            view = view[os.write(self._fd, view) :]

    def flush(self) -> None:
        """What `send` appended, on disk (OSError if it may not be)."""
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        unflushed, self._unflushed = (
            self._unflushed,
            False,
        )  # failed or not: the caller sends again what it did not pass
        if unflushed and self._fd >= 0:
            os.fdatasync(self._fd)

    def reopen(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        """Flush and close (a flush that fails is told by the next `flush`:
        what the file had since the last is delivered again)."""
        if self._fd >= 0:
            try:
                self.flush()
            except OSError as exc:
                self._failed = exc
            os.close(self._fd)
            self._fd = -1


def _cut_torn_line(fd: int, path: str) -> None:
    """Cut off what follows the last newline: the part of a batch written by
    a sink killed in its write(2).  That batch was not passed, so its events
    are delivered again, whole, after the lines before it."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
        log.warning("%s: a torn last line (%d bytes) cut off; its events are delivered again", path, size - end)
