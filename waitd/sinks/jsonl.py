# SPDX-License-Identifier: MIT
"""The `jsonl` sink: every event, one JSON object a line, appended to a file.

`JsonLines.send` appends a batch with one write and makes it durable with
fdatasync(2) before it returns; each line is the event's JSON
(`formats.events.to_json`, keys sorted, with its `seq`).  At open, a torn
last line that a killed sink left (its write cut short) is cut off: its
batch was not passed, so its events are delivered again, whole.  HUP
reopens the file (log rotation).

Failures: OSError (the file cannot be opened or written): the sink's
process backs off and sends the batch again.
"""

from __future__ import annotations

import json
import logging
import os

from waitd.formats import events as ev

log = logging.getLogger("waitd")


class JsonLines:
    """Every event, appended to a file: one write and one fdatasync a batch."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

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
        while view:
            view = view[os.write(self._fd, view) :]
        os.fdatasync(self._fd)

    def reopen(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        if self._fd >= 0:
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
