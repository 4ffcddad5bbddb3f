# SPDX-License-Identifier: MIT
"""History lines written straight: `format_line` is `history_line.format_event`,
faster for the lines every run writes.

`format_event` walks the table of keys (`history_line._FIELDS`) for every
line; a start writes two lines (status 0, then with its pid), and they
hold few keys, so they are written here with one f-string each (issue 21:
a start's own cost).  Any other line goes to `format_event`.  A test
holds each straight line to the table's line, byte for byte.

This module reads and writes no file.
"""

from __future__ import annotations

import operator

from waitd.formats.history_line import Event, Status, Version, escape, format_event

# A start's lines have none of these keys (nor unknown ones: `extra`).
_NOT_AT_START = operator.attrgetter("exit", "signal", "error", "took", "retry_at", "published", "outcome", "extra")
_NONE = (None,) * 7 + ((),)


def format_line(event: Event) -> str:
    """The history line of an event, newline included: `format_event`'s."""
    version = event.version
    if event.status is Status.STARTED and version is not None and _NOT_AT_START(event) == _NONE:
        return _start_line(event, version)
    return format_event(event)


def _start_line(e: Event, v: Version) -> str:
    """A status 0 line with a version and none of `_NOT_AT_START`'s keys."""
    return (
        f"{escape(e.path)} {escape(e.process)} {e.mtime} 0{'' if e.pid is None else f' pid={e.pid}'}"
        f"{'' if e.at is None else f' at={e.at:.3f}'}{'' if e.attempt is None else f' attempt={e.attempt}'}"
        f"{'' if e.group is None else ' group=' + escape(e.group)}{'' if e.task is None else ' task=' + escape(e.task)}"
        f" mtime_ns={v.mtime_ns} size={v.size} ino={v.ino}\n"
    )
