# SPDX-License-Identifier: MIT
"""The event JSON: what waitd tells its sinks, one typed value an event.

Six kinds, one class each: `Ready` (a file or a group handed on for the
first time: run or published), `Started`, `Ended` (outcome ok, failed,
retrying or skipped, with the run's response; for a record a `format =
isis` sink takes, also the tail of its log and waitd's log lines about
it, and, in `Started` too, the JSON object of the run's file, `body`),
`Removed`, `Expired`, and `Grouped` (a group complete,
incomplete or late).  Each says what it is `About`: the record (number,
telem, topic; None when no record of the table has it), its process, and
the file (`path`, with its version's `mtime` and `size` for a run or a
publication) or the group's files (`paths` and `group`), and the fields
the record's pattern parsed from the name (times in ISO 8601).  Then its
own fields, as the table in waitd.conf(5) gives them.

`to_json` turns an event into the JSON object written to the outbox
(`id`, `type`, `time`, the `About` fields, its own fields; `seq` once the
outbox gave it one), and `from_json` reads one back into the same type
(`ValueError` for an object that is not an event).  The id is
`event_id` of what the event is about (the journal says which parts), so
that an event made again after a crash has the id of the first: a
consumer that drops ids it has seen sees each event once.

This module encodes and decodes; it reads and writes no file (the
journal writes the outbox, the sinks read it) and decides nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, ClassVar

try:
    # CPython's own BLAKE2, hashlib.blake2b itself, without loading OpenSSL's
    # libcrypto (3.5 MB resident at every start; waitd has no other use for it).
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b

OUTCOMES = ("ok", "failed", "retrying", "skipped")
GROUP_STATES = ("complete", "incomplete", "late")
_BUILTIN = frozenset(("name", "stem", "suffix", "dir", "telem"))  # a FORMAT's own names: not the pattern's


def event_id(*parts: object) -> str:
    """A 128-bit id, the same for the same parts."""
    return blake2b("\0".join(map(str, parts)).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def pattern_fields(found: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a pattern parsed, as an event carries them: times in ISO
    8601, the FORMAT's own names ({name}, {stem}, ...) left out."""
    return {k: _plain(v) for k, v in found.items() if k not in _BUILTIN}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class About:
    """What an event is about: a record's process, and a file or a group."""

    record: int | None
    telem: str | None
    topic: str | None
    process: str
    path: str | None = None  # one file; else `paths` and `group`
    paths: tuple[str, ...] | None = None
    group: str | None = None
    mtime: float | None = None  # the version of the file run or published
    size: int | None = None
    fields: Mapping[str, Any] | None = None  # the record's pattern's, when it has one


@dataclass(frozen=True, slots=True)
class Ready:
    type: ClassVar[str] = "ready"
    id: str
    time: float
    about: About
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Started:
    type: ClassVar[str] = "started"
    id: str
    time: float
    about: About
    attempt: int = 1
    body: Mapping[str, Any] | None = None  # the JSON object of the run's file (a source message)
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Ended:
    type: ClassVar[str] = "ended"
    id: str
    time: float
    about: About
    outcome: str = "failed"  # one of OUTCOMES
    attempt: int = 1
    exit: int | None = None
    signal: str | None = None
    error: str | None = None
    took: float | None = None
    retry_at: float | None = None
    body: Mapping[str, Any] | None = None  # the JSON object of the run's file (a source message)
    response: Mapping[str, Any] | None = None  # the JSON object the run left at WAITD_RESPONSE
    log: str | None = None  # the tail of the run's log
    admin_log: str | None = None  # waitd's log lines about the run
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    type: ClassVar[str] = "removed"
    id: str
    time: float
    about: About
    reason: str = ""
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    type: ClassVar[str] = "expired"
    id: str
    time: float
    about: About
    reason: str = ""
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Grouped:
    type: ClassVar[str] = "group"
    id: str
    time: float
    about: About
    state: str = "complete"  # one of GROUP_STATES
    missing: tuple[str, ...] | None = None  # incomplete: the critical members not there
    seq: int | None = None


Event = Ready | Started | Ended | Removed | Expired | Grouped
KINDS: dict[str, type[Event]] = {k.type: k for k in (Ready, Started, Ended, Removed, Expired, Grouped)}
_HEAD = ("id", "type", "time", "about", "seq")
_ABOUT = tuple(f.name for f in fields(About))


_ABOUT_VALUES = attrgetter(*_ABOUT)
_ALWAYS = frozenset(("record", "telem", "topic"))  # written when None too
_OWN: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _own_of(kind: type[Event]) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The names of an event type's own fields and their values' getter
    (`to_json`: one look-up a type, not a `fields()` an event: three
    events a file, issue 21)."""
    own = _OWN.get(kind)
    if own is None:
        names = tuple(f.name for f in fields(kind) if f.name not in _HEAD)
        many = attrgetter(*names) if len(names) > 1 else None
        own = _OWN[kind] = (names, many or (lambda event: tuple(getattr(event, n) for n in names)))
    return own


def to_json(event: Event) -> dict[str, Any]:
    """The JSON object of an event; fields that are None are left out."""
    out: dict[str, Any] = {"id": event.id, "type": event.type, "time": event.time}
    out.update(_about_json(event.about))
    names, values = _own_of(type(event))
    for name, value in zip(names, values(event), strict=True):
        if value is not None:
            out[name] = list(value) if isinstance(value, tuple) else value
    if event.seq is not None:
        out["seq"] = event.seq
    return out


_last_about: list[Any] = [None, {}]  # the last About and its JSON: a start's ready and started share one


def _about_json(about: About) -> dict[str, Any]:
    """The fields of what an event is about, as `to_json` writes them (made
    once for the events of one job: they share their About)."""
    if _last_about[0] is about:
        made: dict[str, Any] = _last_about[1]
    else:
        made = {n: v for n, v in zip(_ABOUT, _ABOUT_VALUES(about), strict=True) if v is not None or n in _ALWAYS}
        if about.paths is not None and "group" not in made:
            made["group"] = None  # a group's files always say their group
        _last_about[:] = [about, made]
    if about.paths is None and about.fields is None:
        return made
    # Of their own for each event (a caller may change them).
    return {k: list(v) if k == "paths" else dict(v) if k == "fields" else v for k, v in made.items()}


def from_json(obj: Any) -> Event:
    """The event of a JSON object `to_json` made; ValueError if it is not one."""
    if not isinstance(obj, dict):
        raise ValueError("an event is a JSON object")
    kind = KINDS.get(obj.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise ValueError(f"unknown event type {obj.get('type')!r}")
    try:
        about = About(
            record=_int_or_none(obj.get("record")),
            telem=_str_or_none(obj.get("telem")),
            topic=_str_or_none(obj.get("topic")),
            process=str(obj["process"]),
            path=_str_or_none(obj.get("path")),
            paths=tuple(map(str, obj["paths"])) if obj.get("paths") is not None else None,
            group=_str_or_none(obj.get("group")),
            mtime=_float_or_none(obj.get("mtime")),
            size=_int_or_none(obj.get("size")),
            fields=dict(obj["fields"]) if isinstance(obj.get("fields"), dict) else None,
        )
        own: dict[str, Any] = {}
        for f in fields(kind):
            if f.name not in _HEAD and obj.get(f.name) is not None:
                value = obj[f.name]
                own[f.name] = tuple(value) if isinstance(value, list) else value
        seq = _int_or_none(obj.get("seq"))
        event = kind(id=str(obj["id"]), time=float(obj["time"]), about=about, seq=seq, **own)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an event of waitd's: {exc}") from None
    if isinstance(event, Ended) and event.outcome not in OUTCOMES:
        raise ValueError(f"an ended event's outcome is one of {', '.join(OUTCOMES)}, not {event.outcome!r}")
    if isinstance(event, Grouped) and event.state not in GROUP_STATES:
        raise ValueError(f"a group event's state is one of {', '.join(GROUP_STATES)}, not {event.state!r}")
    return event


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
