# SPDX-License-Identifier: MIT
"""The status document: what waitd is doing, as data.

`Status` and its parts are the document that waitd.status holds, that
`waitd -s status --json` prints and that the control socket answers, in
the shape doc/status.schema.json gives and waitd(8) describes.  Times are
seconds since the epoch; file names are escaped as in the history.
`to_json` turns it into the JSON object, and `from_json` reads such an
object back into the same types, in this one place: the text status
(`daemon.control.format_status`), the metrics, systemd's STATUS=, the
client and the demo read it so, never key by key.  A member it does not
know is ignored, one missing takes its default (`other_runs`, `sinks`,
`celery`: an older waitd left them out), and one missing without a
default, or of the wrong type, is a `ValueError` that names it.

This module encodes and decodes; `daemon.status.build` makes the document
from the daemon's state.

The classes are slotted dataclasses but not frozen: a document is made
whole, written and dropped, nobody hashes or changes its parts, and a
frozen class costs twice as much to make at import (two more generated
methods, each an `exec`: some 0.8 ms a class here, 15 classes that every
daemon and `waitd -s status` import; issue 21).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass(slots=True)
class RunReport:
    """A handler running (or being stopped) and its file."""

    file: str  # escaped as in the history
    pid: int | None
    attempt: int
    since: float
    age_s: float
    state: str  # running, paused, stopping, killed
    adopted: bool  # started by a previous waitd
    log: str | None  # its log file
    why: str | None  # why waitd signalled it: timeout, cancelled, stop
    task: str | None = None  # run=celery: its Celery task id (and no pid)


@dataclass(slots=True)
class Retrying:
    """A file whose run failed for now, and when it runs again."""

    file: str
    at: float


@dataclass(slots=True)
class Held:
    """A file not handled yet that will not run by itself."""

    file: str
    why: str  # its name does not parse, its group gathers or is incomplete, it came late, ...
    until: float | None  # when that may change by itself (a group's deadline); None: not by itself


@dataclass(slots=True)
class Waiting:
    """A file waiting to run (it will)."""

    file: str
    ready_at: float  # when it reaches its wait age (a group's member: its group decides)


@dataclass(slots=True)
class OpenGroup:
    """A group still gathering its members."""

    group: str
    deadline: float  # its timeliness: it runs then with what it has, if its critical members are in
    members: list[str]  # present, as CHANNEL:SEGMENT (up to 10)
    files: list[str]  # their files, in the same order
    member_count: int
    missing: list[str]  # expected (critical, wanted), not there yet (up to 10)
    missing_count: int


@dataclass(slots=True)
class Incomplete:
    """A group that will not run: its critical members missing at its timeliness."""

    group: str
    missing: list[str]  # its critical members not there at its timeliness


@dataclass(slots=True)
class QueueReport:
    """A claim=yes record's queue: its files in incoming/, pending/ (by instance) and errors/."""

    root: str
    incoming: int
    pending: dict[str, int]  # by instance
    errors: int
    held: bool  # held back by out-limit=


@dataclass(slots=True)
class Last:
    """The last file a record handled, and how its run ended."""

    file: str
    outcome: str


@dataclass(slots=True)
class Counts:
    """How a record's runs ended since the start, and its files removed."""

    ok: int
    failed: int  # final failures (and unknown outcomes)
    retrying: int  # temporary failures with a retry to come
    removed: int


@dataclass(slots=True)
class RecordReport:
    """A record of the table: its options, its runs and its files."""

    number: int
    telem: str
    directory: str
    template: str
    process: str
    options: dict[str, Any]
    problem: str | None
    backoff_until: float | None
    running: list[RunReport]
    waiting: int  # not handled yet, and will run
    oldest_mtime: float | None  # of those waiting
    held: list[Held]  # not handled yet, and will not run by themselves (up to 100)
    held_count: int
    open_groups: list[OpenGroup]  # groups gathering, soonest deadline first (up to 10)
    open_groups_count: int
    retrying: list[Retrying]
    failed: list[str]  # final failures (up to 10), kept in the spool
    failed_count: int
    unremovable: list[str]
    unremovable_count: int
    incomplete: list[Incomplete]  # groups that will not run
    queue: QueueReport | None  # claim=yes: its queue
    last: Last | None
    counters: Counts
    waiting_files: list[Waiting] = field(default_factory=list)  # the first 100 waiting, oldest first


@dataclass(slots=True)
class TableReport:
    """The table: its records, and the errors of a reload refused."""

    reloads: int  # HUPs acted on, valid table or not
    errors: list[str]  # of the last reload, if it was refused
    records: int
    active: int


@dataclass(slots=True)
class SinkReport:
    """A sink of waitd.conf: its process, its backlog, down or not."""

    name: str
    type: str
    pid: int | None  # None: not running (waitd starts it again)
    backlog: int  # events written to the outbox and not yet passed by it
    down_since: float | None
    error: str | None  # why it is down
    restarts: int


@dataclass(slots=True)
class SourceReport:
    """A source of waitd.conf: its process, connected or not, its messages."""

    name: str
    type: str
    queue: str
    pid: int | None  # None: not running (waitd starts it again)
    connected: bool
    down_since: float | None
    error: str | None  # why it is not connected
    taken: int  # messages put into the queue, by its process now running
    repeated: int  # messages given again and known already
    refused: int  # messages put into Q/errors (not JSON, too big, no NAME, cancelled)
    cancels: int
    restarts: int


@dataclass(slots=True)
class CeleryReport:
    """The broker of run=celery records."""

    broker: str  # its URL, without a password
    queue: str
    reachable: bool
    down_since: float | None
    error: str | None
    in_flight: int  # runs sent and not yet ended


@dataclass(slots=True)
class Status:
    """The status document: the daemon, its table, its records and its sinks."""

    schema: int
    pid: int
    mode: str
    passdir: str
    started_at: float
    written_at: float
    jobs: int | None  # --jobs
    stop_timeout_s: float
    kill_grace_s: float
    unwritten_events: int
    table: TableReport
    records: list[RecordReport]
    other_runs: list[RunReport] = field(default_factory=list)  # of records out of the table
    sinks: list[SinkReport] = field(default_factory=list)  # waitd.conf's sinks
    celery: CeleryReport | None = None  # the broker of run=celery, once one is in use
    sources: list[SourceReport] = field(default_factory=list)  # waitd.conf's sources


def to_json(status: Status) -> dict[str, Any]:
    """The JSON object of the status document (as `dataclasses.asdict`
    makes it, without its deep copies: a document may name 10,000 files)."""
    return typing.cast(dict[str, Any], _as_json(status))


def _as_json(value: Any) -> Any:
    kind = type(value)
    if kind in _ATOMS:
        return value
    names = _NAMES.get(kind)
    if names is None:
        if kind is list or kind is tuple:
            return [_as_json(v) for v in value]
        if kind is dict:
            return {k: _as_json(v) for k, v in value.items()}
        if not dataclasses.is_dataclass(value):
            return value
        names = _NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    return {name: _as_json(getattr(value, name)) for name in names}


_ATOMS = frozenset({str, int, float, bool, type(None)})
_NAMES: dict[type, tuple[str, ...]] = {}


def from_json(obj: Any) -> Status:
    """The status document of a JSON object; ValueError if it is not one."""
    return typing.cast(Status, _decode(Status, obj, "status"))


def _decode(kind: Any, value: Any, where: str) -> Any:
    """`value` as the type `kind` (a dataclass, a list, a dict, a union, a
    plain type); ValueError naming `where` if it is not one."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return _decode_object(kind, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(kind):
            return None
        others = [k for k in typing.get_args(kind) if k is not type(None)]
        return _decode(others[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: not a list")
        (item,) = typing.get_args(kind)
        return [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: not an object")
        _, item = typing.get_args(kind)
        return {str(k): _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    return _plain(kind, value, where)


def _plain(kind: Any, value: Any, where: str) -> Any:
    if kind is Any:
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool) and isinstance(value, kind):
        return value
    raise ValueError(f"{where}: not a {kind.__name__}: {value!r}")


def _decode_object(kind: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: not an object")
    hints = _HINTS.get(kind) or _HINTS.setdefault(kind, typing.get_type_hints(kind))
    given: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name in value:
            given[f.name] = _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: no {f.name}")
    return kind(**given)


_HINTS: dict[Any, dict[str, Any]] = {}
