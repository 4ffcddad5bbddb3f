# SPDX-License-Identifier: MIT
"""Groups of files: the segments of one time slot, handled together.

A record with `pattern=` and `critical=` and/or `wanted=` handles groups,
as pytroll's segment_gatherer gathers them, but from the spool itself.
The pattern parses each name into fields.  `channel_name` and `segment`
say which member of its group a file is; every other field (but those
named by `vary=`) says which group: members of one group agree on all of
them, except `start_time`, which matches within `tolerance=` seconds of
the group's first member (or is floored to `slot=` minutes).

The notation of the member lists (`members`) and a record's `Spec` are
config's (`config.groupspec`): the record's options are parsed there.

`Index` files each name into its group (pure: no I/O, no clock of its
own), and `verdict` says what a group is at a moment: ready (its critical
and wanted members in and old enough, or its timeliness passed with its
critical members in), waiting (until when), or incomplete (its timeliness
passed with a critical member missing: it never runs).  `look` says it of
a group with its history too: running; ran (a member with no start then
came late), or due again for its retry (every member that ran, which of
them carries the retry), or not yet; else as `verdict`.  The spool's
gatherer applies that to the files and the history (`spool/gather.py`).
A region's group (`decide.regions`) is a `Group` whose `expected`
members were predicted, with no critical ones: the same verdicts hold.
"""

from __future__ import annotations

import datetime
import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waitd.config.groupspec import SEGMENT_FIELDS, TIME_FIELD, Member, Spec
from waitd.config.groupspec import members as members  # the notation, named here too (tests/test_groups.py)
from waitd.decide.facts import FOREVER_NS
from waitd.formats.history_line import Event

if TYPE_CHECKING:
    from waitd.config.table import Record


def member_of(fields: Mapping[str, Any]) -> Member:
    """Which member a file is, from its fields."""
    return (_text(fields.get("channel_name", "")), _text(fields.get("segment", "")))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _same(segment: str, expected: str) -> bool:
    """A parsed segment (7, "000001") is the expected one ("007", "000001")."""
    return segment == expected or (segment.isdigit() and expected.isdigit() and int(segment) == int(expected))


def expected_member(spec: Spec, member: Member) -> Member | None:
    """The member of the lists a file's member is (as written there), or None."""
    channel, segment = member
    for c, s in spec.accepted:
        if c == channel and _same(segment, s):
            return (c, s)
    return None


def collection(first: Mapping[str, Any], area: str, members: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A region's group's fields, as the region collector gives a
    collection's: its first member's, its area (`collection_area_id`), the
    earliest start and the latest end of its granules."""
    out = {**first, "collection_area_id": area}
    members = list(members)
    for name, pick in (("start_time", min), ("end_time", max)):
        times = [m[name] for m in members if m.get(name) is not None]
        if times:
            out[name] = pick(times)
    return out


def collection_of(record: Record, first: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """`collection` of a region record's group, from its files' paths."""
    assert record.options.area is not None
    directory_name = (os.path.split(p) for p in paths)
    found = (record.options.fields(name, directory, record.telem) for directory, name in directory_name)
    return collection(first, record.options.area, (f for f in found if f is not None))


class Quiet(str):
    """Why a file is no member, when that is the normal case (a granule off
    a region's area): told at info level, not as a warning."""


class Verdict(enum.Enum):
    READY = "ready"
    WAITING = "waiting"
    INCOMPLETE = "incomplete"


@dataclass(slots=True, eq=False)
class Group:
    """The files of one group found so far (mutable: files come and go)."""

    gid: str  # stable: its fields and its time
    fields: tuple[tuple[str, str], ...]  # what its members share (not the time)
    time: datetime.datetime | None
    first_arrival_ns: int
    files: dict[Member, str] = field(default_factory=dict)  # member (as listed) -> file name
    expected: frozenset[Member] | None = None  # predicted members (regions); None: the spec's lists

    def members_expected(self, spec: Spec) -> frozenset[Member]:
        """The members it waits for: its own when predicted, else the lists'."""
        return self.expected if self.expected is not None else spec.expected

    def deadline_ns(self, spec: Spec) -> int:
        return self.first_arrival_ns + int(spec.timeliness_s * 1e9)


def verdict(
    spec: Spec, group: Group, present: Iterable[Member], ready: Iterable[Member], now_ns: int
) -> tuple[Verdict, int | None]:
    """What the group is now, given which of its members are in (`present`)
    and which of those are old enough (`ready`); and, when waiting for its
    timeliness, until when (None: until a member is old enough)."""
    present, ready = set(present), set(ready)
    if group.members_expected(spec) <= ready:
        return Verdict.READY, None
    deadline = group.deadline_ns(spec)
    if now_ns < deadline:
        return Verdict.WAITING, deadline
    if ready and spec.critical <= ready:
        return Verdict.READY, None
    if present and spec.critical <= present:
        return Verdict.WAITING, None  # its critical members are in, not all old enough yet
    return Verdict.INCOMPLETE, None


class Look(enum.Enum):
    """What to do with a group now."""

    RUN = "run"  # its members (those that ran, for a retry) run now
    WAIT = "wait"  # until `again_ns` (None: until a member changes)
    RUNNING = "running"  # a run works on a member: its end makes it looked at again
    LATE = "late"  # it ran: `members` came after, and never run
    INCOMPLETE = "incomplete"  # it never runs: `members` are its missing critical ones


@dataclass(slots=True)
class Looked:
    """What one look at a group saw: the look, its members there, and when to look again."""

    look: Look
    members: frozenset[Member] = frozenset()
    again_ns: int | None = None


def look(
    spec: Spec,
    group: Group,
    present: Iterable[Member],
    events: Mapping[Member, Event | None],
    ready_ns: Mapping[Member, int],
    running: bool,
    now_ns: int,
) -> Looked:
    """What a group is now, from its members in the spool (`present`),
    their latest events (of this version), when each is ready (its wait
    age, its writer, the drain: FOREVER_NS for never by itself) and
    whether a run works on one of them."""
    if running:
        return Looked(Look.RUNNING)
    present = set(present)
    handled = frozenset(m for m, e in events.items() if e is not None and e.consumed)
    if handled:
        retry = [e.retry_at for e in events.values() if e is not None and e.retry_at is not None]
        if not retry:
            return Looked(Look.LATE, frozenset(present - handled))
        due = int(min(retry) * 1e9)
        # The group runs again, all of it: every member that ran,
        # whichever of them carries the retry.
        return Looked(Look.WAIT, again_ns=due) if due > now_ns else Looked(Look.RUN, handled)
    ready = frozenset(m for m in present if ready_ns[m] <= now_ns)
    found, deadline = verdict(spec, group, present, ready, now_ns)
    if found is Verdict.READY:
        return Looked(Look.RUN, ready)
    if found is Verdict.INCOMPLETE:
        return Looked(Look.INCOMPLETE, frozenset(spec.critical - present))
    later = [t for t in ready_ns.values() if now_ns < t < FOREVER_NS]
    if deadline is not None:
        later.append(deadline)
    return Looked(Look.WAIT, again_ns=min(later) if later else None)


def late(present: Iterable[Member], events: Mapping[Member, Event | None]) -> frozenset[Member] | None:
    """The members that came after their group ran (None: it did not run)."""
    handled = {m for m, e in events.items() if e is not None and e.consumed}
    return frozenset(set(present) - handled) if handled else None


class Index:
    """Which group each file belongs to (pure bookkeeping)."""

    def __init__(self, spec: Spec, telem: str) -> None:
        self.spec = spec
        self.telem = telem
        self.groups: dict[str, Group] = {}
        self._by_fields: dict[tuple[tuple[str, str], ...], list[Group]] = {}
        self._of: dict[str, tuple[Group, Member]] = {}  # file name -> its group and member

    def group_of(self, name: str) -> tuple[Group, Member] | None:
        return self._of.get(name)

    def add(self, name: str, values: Mapping[str, Any], arrival_ns: int) -> tuple[Group, Member] | str:
        """File a name into its group; or why it is not a member (a string)."""
        self.remove(name)
        member = expected_member(self.spec, member_of(values))
        if member is None:
            return "not a member of the groups of this record (its channel and segment are in no list)"
        key, time = self._key(values)
        group = self._find(key, time)
        if group is None:
            group = Group(self._gid(key, time), key, time, arrival_ns)
            self.groups[group.gid] = group
            self._by_fields.setdefault(key, []).append(group)
        elif member in group.files and group.files[member] != name:
            return f"a second file for member {member[0]}:{member[1]} of group {group.gid} ({group.files[member]})"
        group.files[member] = name
        group.first_arrival_ns = min(group.first_arrival_ns, arrival_ns)
        self._of[name] = (group, member)
        return group, member

    def remove(self, name: str) -> None:
        group = forget(self.groups, self._of, name)
        if group is not None:
            self._by_fields[group.fields].remove(group)
            if not self._by_fields[group.fields]:
                del self._by_fields[group.fields]

    def _key(self, values: Mapping[str, Any]) -> tuple[tuple[tuple[str, str], ...], datetime.datetime | None]:
        skip = {*SEGMENT_FIELDS, *self.spec.vary, TIME_FIELD, "name", "stem", "suffix", "dir", "telem"}
        key = tuple(sorted((k, _text(v)) for k, v in values.items() if k not in skip))
        time = values.get(TIME_FIELD)
        if not isinstance(time, datetime.datetime):
            return key, None
        if self.spec.slot_min is not None:
            step = datetime.timedelta(minutes=self.spec.slot_min)
            start = datetime.datetime(time.year, 1, 1, tzinfo=time.tzinfo)
            time = start + step * ((time - start) // step)
        return key, time

    def _find(self, key: tuple[tuple[str, str], ...], time: datetime.datetime | None) -> Group | None:
        for group in self._by_fields.get(key, []):
            if time is None or group.time is None:
                if time is group.time:
                    return group
                continue
            if self.spec.slot_min is not None:
                if group.time == time:
                    return group
            elif abs((time - group.time).total_seconds()) < self.spec.tolerance_s:
                return group
        return None

    def _gid(self, key: tuple[tuple[str, str], ...], time: datetime.datetime | None) -> str:
        parts = [f"{k}={v}" for k, v in key]
        if time is not None:
            parts.append(f"{TIME_FIELD}={time:%Y%m%dT%H%M%S}")
        return ",".join([self.telem, *parts])


def forget(groups: dict[str, Group], of: dict[str, tuple[Group, Member]], name: str) -> Group | None:
    """Take a file out of its group (an index's `groups` by id and `of`, each
    file's group and member); the group, when that left it empty and it
    went from `groups`."""
    found = of.pop(name, None)
    if found is None:
        return None
    group, member = found
    if group.files.get(member) == name:
        del group.files[member]
    if group.files:
        return None
    del groups[group.gid]
    return group
