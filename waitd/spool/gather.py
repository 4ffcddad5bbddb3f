# SPDX-License-Identifier: MIT
"""Gathering a record's files into groups, and the groups into jobs.

`Gathering` is the part of a record's file state that knows groups: the
index of each file into its group (`groups.Index`), the groups to look at
again (one of their files changed) and when (their timeliness, a member's
wait age, a retry), the incomplete groups and the late members logged.
`take` gives the jobs of the groups ready now, one job a group, its
members sorted by name, asking `groups.look` what each group is: a group
is looked at again only when one of its files changes or its time comes,
so a spool of many open groups costs little a turn.

What a group is comes from the spool and the history alone, so it holds
across restarts: its first arrival is the earliest max(mtime, ctime) of
its files; it ran when one of its members' latest events is a start or an
end (a member with none then arrived late: logged once, never run); it is
waiting for a retry when its members' ends carry `retry_at=`.  A group
whose timeliness passed with a critical member missing is incomplete:
logged once, listed by `-s status`, never run, left for expiry.  Both are
told to the caller as `Notice`s, for the events.  `held` says, for the
status, which members will not run by themselves and why (their group
gathers until its deadline, is incomplete, or ran before they came), and
which groups are gathering: by the same verdicts.

A record with area= files its names with `regions.RegionIndex` instead
(its groups' members predicted per pass): the rest is the same.

This module starts, removes and writes nothing, and knows no directory:
the caller gives the facts (`Look`), the spool's `ready` takes the jobs.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waitd.config import table
from waitd.decide import groups
from waitd.decide.facts import FileFact, identity
from waitd.decide.outcome import Job, attempt_of
from waitd.formats.history_line import Event, escape

if TYPE_CHECKING:
    from waitd.config.geodata import Geodata
    from waitd.decide.regions import RegionIndex

log = logging.getLogger("waitd")


@dataclass(slots=True)
class Held:
    """Why a member will not run by itself, and until when (None: for ever)."""

    why: str
    until_ns: int | None


@dataclass(slots=True)
class Open:
    """A group still gathering its members, until its timeliness."""

    gid: str
    deadline_ns: int
    present: dict[groups.Member, FileFact]
    missing: list[groups.Member]  # expected (critical, wanted), not there yet


@dataclass(slots=True)
class Notice:
    """A group that will not run (`incomplete`), or members that came `late`."""

    gid: str
    state: str  # "incomplete" or "late"
    names: list[str]  # its files
    missing: list[str]  # incomplete: its missing critical members


@dataclass(slots=True)
class Look:
    """What `take` and `held` look at, besides the groups (one record, now)."""

    record: table.Record
    facts: Mapping[str, FileFact]  # the record's files
    path_of: Callable[[str], str]
    latest: Callable[[FileFact], Event | None]  # its latest event, of this version
    busy: Callable[[str], bool] = lambda name: False  # a run works on the name
    ready_ns: Callable[[FileFact], int] = lambda fact: 0  # when a member is ready (its wait age, its writer)
    fields: Callable[[str], dict[str, Any] | None] = lambda name: None


@dataclass(slots=True, eq=False)
class Gathering:
    """A record's groups (mutable: files come and go)."""

    spec: groups.Spec
    index: groups.Index | RegionIndex | _NoGeodata
    dirty: set[str] = field(default_factory=set)  # groups to look at in the next take
    due: list[tuple[int, str]] = field(default_factory=list)  # (when, group id): look again then
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # group id -> its missing critical members
    late_noted: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, spec: groups.Spec, telem: str, geo: Geodata | None = None) -> Gathering:
        """A record's gathering: its groups listed, or (area=, with its
        geodata) its regions' groups predicted."""
        if spec.region is not None and geo is not None:
            from waitd.decide.regions import RegionIndex  # pyresample and its kin: only for area=

            return cls(spec, RegionIndex(spec, telem, geo))
        if spec.region is not None:
            return cls(spec, _NoGeodata())
        return cls(spec, groups.Index(spec, telem))

    def filed(self, fact: FileFact, values: dict[str, Any]) -> str | None:
        """File a file into its group; why not, if it is no member."""
        found = self.index.add(fact.name, values, fact.spool_ns)
        if isinstance(found, str):
            return found
        self.dirty.add(found[0].gid)
        return None

    def forget(self, name: str) -> None:
        self.touch(name)
        self.index.remove(name)
        self.late_noted.discard(name)

    def touch(self, name: str) -> None:
        """Something changed for the file (a run ended, a retry is set)."""
        found = self.index.group_of(name)
        if found is not None:
            self.dirty.add(found[0].gid)

    def members_of(self, name: str, facts: Mapping[str, FileFact]) -> tuple[str, list[FileFact]] | None:
        """The id of a file's group and its members in the spool, sorted by
        name; None when the file is in no group."""
        found = self.index.group_of(name)
        if found is None:
            return None
        members = (facts.get(n) for n in found[0].files.values())
        return found[0].gid, sorted((f for f in members if f is not None), key=lambda f: f.name)

    # -- the jobs ---------------------------------------------------------------

    def take(self, n: int, look: Look, now_ns: int) -> tuple[list[Job], int | None, list[Notice]]:
        """The jobs of up to `n` groups ready now, oldest first; when to look
        again; and what to tell of the groups that will not run."""
        while self.due and self.due[0][0] <= now_ns:
            self.dirty.add(heapq.heappop(self.due)[1])
        ready: list[tuple[int, Job]] = []
        notices: list[Notice] = []
        for gid in list(self.dirty):
            group = self.index.groups.get(gid)
            if group is None:
                self.dirty.discard(gid)
                continue
            job, again, told = self._look(group, look, now_ns)
            if job is not None:
                ready.append((group.first_arrival_ns, job))  # stays dirty until it starts
            else:
                self.dirty.discard(gid)
            if again is not None:
                heapq.heappush(self.due, (again, gid))
            notices += told
        ready.sort(key=lambda item: item[0])
        return [job for _, job in ready[:n]], self.due[0][0] if self.due else None, notices

    def _look(self, group: groups.Group, look: Look, now_ns: int) -> tuple[Job | None, int | None, list[Notice]]:
        """What to do with a group now: its job if ready, when to look again."""
        present = {m: f for m, name in group.files.items() if (f := look.facts.get(name)) is not None}
        running = any(look.busy(f.name) for f in present.values())
        events = {} if running else {m: look.latest(f) for m, f in present.items()}
        ready_ns = {m: look.ready_ns(f) for m, f in present.items()}
        looked = groups.look(self.spec, group, present, events, ready_ns, running, now_ns)
        if looked.look is groups.Look.RUN:
            return self._job(group, {m: present[m] for m in looked.members}, events, look), None, []
        if looked.look is groups.Look.LATE:
            return None, None, self._late(group, [present[m] for m in looked.members], look)
        if looked.look is groups.Look.INCOMPLETE:
            return None, None, self._incomplete(group, present, looked.members, look)
        return None, looked.again_ns, []

    def _job(
        self,
        group: groups.Group,
        members: dict[groups.Member, FileFact],
        events: Mapping[groups.Member, Event | None],
        look: Look,
    ) -> Job:
        record = look.record
        facts = sorted(members.values(), key=lambda f: f.name)
        fields = look.fields(facts[0].name) or {}
        if self.spec.region is not None:
            fields = groups.collection(fields, self.spec.region.areas[0], [look.fields(f.name) or {} for f in facts])
        options = record.options
        key = options.format(options.key, fields) if options.key is not None else None
        attempt = max(attempt_of(events.get(m)) for m in members)
        self.incomplete.pop(group.gid, None)
        return Job(
            identity(record),
            record.process,
            tuple(facts),
            tuple(look.path_of(f.name) for f in facts),
            key,
            attempt,
            fields,
            group.gid,
        )

    def _late(self, group: groups.Group, late: list[FileFact], look: Look) -> list[Notice]:
        notices = []
        for fact in late:
            if fact.name in self.late_noted:
                continue
            self.late_noted.add(fact.name)
            log.warning(
                "record %d: %s arrived after its group %s ran; not run",
                look.record.number,
                escape(look.path_of(fact.name)),
                group.gid,
            )
            notices.append(Notice(group.gid, "late", [fact.name], []))
        return notices

    def _incomplete(
        self, group: groups.Group, present: dict[groups.Member, FileFact], lacking: frozenset[groups.Member], look: Look
    ) -> list[Notice]:
        missing = sorted(f"{c}:{s}" for c, s in lacking)
        if self.incomplete.get(group.gid) == missing:
            return []
        self.incomplete[group.gid] = missing
        log.warning(
            "record %d: group %s is incomplete: its timeliness of %g s passed without %s; "
            "its %d file(s) are not run and wait for expiry",
            look.record.number,
            group.gid,
            self.spec.timeliness_s,
            ", ".join(missing),
            len(present),
        )
        return [Notice(group.gid, "incomplete", sorted(f.name for f in present.values()), missing)]

    # -- the status -------------------------------------------------------------

    def held(self, look: Look, now_ns: int) -> tuple[dict[str, Held], list[Open]]:
        """What the status says of the groups now: the members that will not
        run by themselves, with why and until when (those of a group still
        gathering, of an incomplete group, late members), and the groups
        still gathering.  The same verdicts as `take`'s, with every member
        counted old enough: what matters is whether the group will run."""
        held: dict[str, Held] = {}
        gathering: list[Open] = []
        for group in self.index.groups.values():
            present = {m: f for m, n in group.files.items() if (f := look.facts.get(n)) is not None}
            late = groups.late(present, {m: look.latest(f) for m, f in present.items()})
            if late is not None:
                for member in late:
                    held[present[member].name] = Held(f"late: arrived after its group {group.gid} ran", None)
                continue
            verdict, deadline = groups.verdict(self.spec, group, present, present, now_ns)
            if verdict is groups.Verdict.INCOMPLETE:
                missing = ", ".join(sorted(f"{c}:{s}" for c, s in self.spec.critical - set(present)))
                for fact in present.values():
                    held[fact.name] = Held(f"its group is incomplete, without {missing}", None)
            elif verdict is groups.Verdict.WAITING and deadline is not None:
                for fact in present.values():
                    held[fact.name] = Held("its group gathers its members", deadline)
                lacking = sorted(group.members_expected(self.spec) - set(present))
                gathering.append(Open(group.gid, deadline, present, lacking))
        return held, sorted(gathering, key=lambda g: (g.deadline_ns, g.gid))


class _NoGeodata:
    """The index of an area= record whose table was read without its
    geodata (`table.parse` without `regions`): no file is a member."""

    groups: dict[str, groups.Group] = {}

    def add(self, name: str, values: Mapping[str, Any], arrival_ns: int) -> str:
        return "area= without the areas and orbital elements of waitd.conf's [regions]"

    def remove(self, name: str) -> None:
        return None

    def group_of(self, name: str) -> None:
        return None
