# SPDX-License-Identifier: MIT
"""History lines written straight: `format_line` is `history_line.format_event`,
faster for the lines every run writes.

`format_event` walks the table of keys (`history_line._FIELDS`) for every
line; a run writes three lines (status 0, then with its pid, then its
end), so they are written here without the walk (issue 21: a run's own
cost): key by key, each spelled out in the table's order with its writer
(an assertion at import holds `format_line` to the table: its keys, their
order, their writers).  Tests hold each line to the table's line, byte
for byte.

`escaped` is `escape` remembered for the names of the latest runs: a
run's path is escaped for each of its three lines, its log's header and
its two lines in incoming.log; the record's process for each line.  A
hit costs a call and one dict look-up; the memory is bounded
(ESCAPED_MOST names, then forgotten at once).

This module reads and writes no file.
"""

from __future__ import annotations

from waitd.formats.history_line import _FIELDS, _SECONDS, _STATUS_TEXT, Event, escape, format_event

ESCAPED_MOST = 1024
ESCAPED: dict[str, str] = {}  # `escaped`'s memory: a name, its escape


def escaped(text: str) -> str:
    """`escape(text)`, remembered (see the module)."""
    known = ESCAPED.get(text)
    if known is None:
        if len(ESCAPED) >= ESCAPED_MOST:
            ESCAPED.clear()
        known = ESCAPED[text] = escape(text)
    return known


def format_line(event: Event) -> str:
    """The history line of an event, newline included: `format_event`'s,
    key by key rather than by the table's loop (half its time)."""
    e = event
    line = f"{escaped(e.path)} {escaped(e.process)} {e.mtime} {_STATUS_TEXT[e.status]}"
    if e.pid is not None:
        line += f" pid={e.pid}"
    if e.exit is not None:
        line += f" exit={e.exit}"
    if e.signal is not None:
        line += " signal=" + escape(e.signal)
    if e.error is not None:
        line += " error=" + escape(e.error)
    if e.at is not None:
        line += f" at={e.at:.3f}"
    if e.took is not None:
        line += f" took={e.took:.3f}"
    if e.attempt is not None:
        line += f" attempt={e.attempt}"
    if e.retry_at is not None:
        line += f" retry_at={e.retry_at:.3f}"
    if e.group is not None:
        line += " group=" + escape(e.group)
    if e.published is not None:
        line += f" published={e.published}"
    if e.task is not None:
        line += " task=" + escape(e.task)
    if e.outcome is not None:
        line += " outcome=" + escape(e.outcome)
    version = e.version
    if version is not None:
        if version.mtime_ns is None or version.size is None or version.ino is None:
            return format_event(e)  # not a version waitd makes: the table's own way
        line += f" mtime_ns={version.mtime_ns} size={version.size} ino={version.ino}"
    if e.extra:
        line += " " + " ".join(e.extra)
    return line + "\n"


# format_line writes the keys of the table, in its order, with its writers.
assert [(f.key, f.kind.write) for f in _FIELDS] == [
    ("pid", str),
    ("exit", str),
    ("signal", escape),
    ("error", escape),
    ("at", _SECONDS.write),
    ("took", _SECONDS.write),
    ("attempt", str),
    ("retry_at", _SECONDS.write),
    ("group", escape),
    ("published", str),
    ("task", escape),
    ("outcome", escape),
    ("mtime_ns", str),
    ("size", str),
    ("ino", str),
]
