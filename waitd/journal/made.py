# SPDX-License-Identifier: MIT
"""The events a journal's writes stand for, made from their history lines.

`starting`, `publishing` and `ended` make the typed events
(`formats.events`) of one job's lines (a file, or a group's members,
`by_job`) for the record whose work it is (None when no record has it
any more); `about_files` says what an event is about; `of_jobs` and
`of_starts` give the lines of a journal's write and their events.  An
event's id is a digest of what it is about (PASSDIR, kind, process, file
or group, version, attempt, retry time), so that one made again after a
crash has the id of the first.  `removed` and `grouped` make the events
of a removal and of a group that will not run (or came late).
`with_pid` is a start's line with its handler's pid.  Pure: it writes
nothing (`writer` does).  `formats.events` is imported where an event is
made: a daemon without sinks or metrics makes none, and does not import
it (issue 21: the CPU of each start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from waitd.decide import groups
from waitd.formats.history_line import Event as Line
from waitd.formats.history_line import Status

if TYPE_CHECKING:
    from waitd.config.table import Record
    from waitd.formats import events as ev


def starting(passdir: str, record: Record | None, job: Sequence[Line]) -> list[ev.Event]:
    from waitd.formats import events as ev  # at the first event: see the module

    about, key, at = _about_lines(record, job)
    first = job[0]
    made: list[ev.Event] = []
    if first.runs == 1:
        made.extend(_handed_on(passdir, about, key, at))  # handed on for the first time
    made.append(ev.Started(ev.event_id(passdir, ev.Started.type, *key, first.runs), at, about, first.runs))
    return made


def publishing(passdir: str, record: Record | None, job: Sequence[Line]) -> list[ev.Event]:
    about, key, at = _about_lines(record, job)
    return _handed_on(passdir, about, key, at)


def _handed_on(passdir: str, about: ev.About, key: tuple[object, ...], at: float) -> list[ev.Event]:
    from waitd.formats import events as ev  # at the first event: see the module

    made: list[ev.Event] = [ev.Ready(ev.event_id(passdir, ev.Ready.type, *key), at, about)]
    if about.group is not None:
        made.append(ev.Grouped(ev.event_id(passdir, ev.Grouped.type, *key, "complete"), at, about, state="complete"))
    return made


def ended(passdir: str, record: Record | None, job: Sequence[Line], told: Mapping[str, Any] | None) -> ev.Ended:
    from waitd.formats import events as ev  # at the first event: see the module

    about, key, at = _about_lines(record, job)
    end = job[0]
    told = told or {}
    if end.retry_at is not None:
        outcome = "retrying"
    elif end.outcome == "skipped" and end.succeeded:
        outcome = "skipped"
    elif end.succeeded:
        outcome = "ok"
    else:
        outcome = "failed"
    error = end.error
    if end.status is Status.UNKNOWN and error is None and end.signal is None:
        error = "unknown"  # waitd died while it ran, or it was stopped with waitd
    return ev.Ended(
        ev.event_id(passdir, ev.Ended.type, *key, end.runs, end.retry_at),
        at,
        about,
        outcome=outcome,
        attempt=end.runs,
        exit=end.exit,
        signal=end.signal,
        error=error,
        took=end.took,
        retry_at=end.retry_at,
        body=told.get("body"),
        response=told.get("response"),
        log=told.get("log"),
        admin_log=told.get("admin_log"),
    )


def _about_lines(record: Record | None, job: Sequence[Line]) -> tuple[ev.About, tuple[object, ...], float]:
    """What the events of one job's lines are about (with the pattern's
    fields, and the version of a single file), the parts of their ids
    (the versions' text made once for all the ids of a job: `event_id`
    would make it again for each), and their time."""
    from waitd.formats import events as ev

    first = job[0]
    paths = [line.path for line in job]
    one = first.group is None and len(paths) == 1
    mtime = size = found_fields = None
    if one and first.version is not None:
        mtime, size = first.version.mtime_ns / 1e9, first.version.size
    if record is not None and record.options.pattern is not None:
        directory, name = os.path.split(first.path)
        found = record.options.fields(name, directory, record.telem)
        if found is not None and record.options.area is not None and first.group is not None:
            found = groups.collection_of(record, found, paths)
        if found is not None:
            found_fields = ev.pattern_fields(found)
    about = ev.About(
        record=record.number if record is not None else None,
        telem=record.telem if record is not None else None,
        topic=record.topic if record is not None else None,
        process=first.process,
        path=paths[0] if one else None,
        paths=None if one else tuple(sorted(paths)),
        group=None if one else first.group,
        mtime=mtime,
        size=size,
        fields=found_fields,
    )
    key = (first.process, first.group or first.path, _versions(job))
    return about, key, first.at or time.time()


def _versions(job: Sequence[Line]) -> str:
    """The versions' text of a job's lines, a part of its events' ids."""
    if len(job) == 1:
        return _one_version(job[0])
    return str(sorted((line.path, line.version) for line in job))


def _one_version(line: Line) -> str:
    """`str(sorted([(line.path, line.version)]))`, the versions' text of a
    job of one line, written out (the dataclass's repr is slow; issue 21)."""
    v = line.version
    version = "None" if v is None else f"Version(mtime_ns={v.mtime_ns!r}, size={v.size!r}, ino={v.ino!r})"
    return f"[({line.path!r}, {version})]"


def about_files(record: Record | None, paths: Sequence[str], group: str | None, process: str | None = None) -> ev.About:
    from waitd.formats import events as ev  # at the first event: see the module

    one = group is None and len(paths) == 1
    return ev.About(
        record=record.number if record is not None else None,
        telem=record.telem if record is not None else None,
        topic=record.topic if record is not None else None,
        process=process if process is not None else record.process if record is not None else "",
        path=paths[0] if one else None,
        paths=None if one else tuple(sorted(paths)),
        group=None if one else group,
    )


def removed(passdir: str, record: Record, path: str, key: tuple[int, int, int], why: str) -> ev.Event:
    """The event of a file removed (`key`: its version) for `why`:
    `expired` when why starts with "expired", else `removed`."""
    from waitd.formats import events as ev

    kind: type[ev.Removed | ev.Expired] = ev.Expired if why.startswith("expired") else ev.Removed
    about = about_files(record, [path], None)
    return kind(ev.event_id(passdir, kind.type, record.process, path, key), time.time(), about, reason=why)


def grouped(
    passdir: str, record: Record, gid: str, state: str, names: Sequence[str], missing: Sequence[str]
) -> ev.Event:
    """The event of a group of the record's files (`names`, in its
    directory) in `state` (incomplete: without `missing`; late)."""
    from waitd.formats import events as ev

    paths = [os.path.join(record.directory, name) for name in names]
    about = about_files(record, paths, gid)
    event_id = ev.event_id(passdir, ev.Grouped.type, record.process, gid, None, state, *names)
    return ev.Grouped(event_id, time.time(), about, state=state, missing=tuple(missing))


def by_job(lines: Sequence[Line]) -> list[list[Line]]:
    """The lines of each job: a group's members together, any other line alone."""
    jobs: dict[str, list[Line]] = {}
    for line in lines:
        jobs.setdefault(line.group if line.group is not None else "\0" + line.path, []).append(line)
    return list(jobs.values())


def of_jobs(
    jobs: Sequence[tuple[Record | None, Sequence[Line]]],
    make: Callable[[Record | None, Sequence[Line]], list[ev.Event]],
    telling: bool,
) -> tuple[list[Line], list[ev.Event]]:
    """The lines of these jobs, and (if `telling`) the events `make` makes of each."""
    lines: list[Line] = []
    made: list[ev.Event] = []
    for record, job in jobs:
        lines.extend(job)
        if telling:
            made.extend(make(record, job))
    return lines, made


def of_starts(
    passdir: str,
    jobs: Sequence[tuple[Record | None, Sequence[Line]]],
    bodies: Sequence[Mapping[str, Any] | None],
    telling: bool,
) -> tuple[list[Line], list[ev.Event]]:
    """The lines of starts and their events, each `started` with its job's
    body (its file's JSON object) when it has one."""
    lines, made = of_jobs(jobs, partial(starting, passdir), telling)
    if made and bodies.count(None) != len(bodies):
        from waitd.formats import events as ev

        at = [(i, e) for i, e in enumerate(made) if isinstance(e, ev.Started)]  # one a job, in order
        for (i, started), body in zip(at, bodies, strict=False):
            if body is not None:
                made[i] = replace(started, body=body)
    return lines, made


_LINE_VALUES = attrgetter(*(f.name for f in fields(Line)))
_PID_AT = [f.name for f in fields(Line)].index("pid")
_MAKE_LINE: Callable[..., Line] = Line  # from its fields' values, in order


def with_pid(line: Line, pid: int) -> Line:
    """`dataclasses.replace(line, pid=pid)`, made with one attrgetter (each
    start's pid line: the loop's own cost a file counts, issue 21)."""
    values = _LINE_VALUES(line)
    return _MAKE_LINE(*values[:_PID_AT], pid, *values[_PID_AT + 1 :])
