# SPDX-License-Identifier: MIT
"""Gathering a record's files into groups, and the groups into jobs.

A `Gatherer` is the part of a record's `View` that knows groups: it files
each file the view learns of into its group (`groups.Index`), and `take`
gives the jobs of the groups ready now, one job a group, its members
sorted by name.  A group is looked at again only when one of its files
changes or its time comes (its timeliness, a member's wait age, a retry),
so a spool of many open groups costs little a pass.

What a group is comes from the spool and the history alone, so it holds
across restarts: its first arrival is the earliest max(mtime, ctime) of
its files; it ran when one of its members' latest events is a start or an
end (a member with none then arrived late: logged once, never run); it is
waiting for a retry when its members' ends carry `retry_at=`.  A group
whose timeliness passed with a critical member missing is incomplete:
logged once, listed by `-s status`, never run, left for expiry.  `held`
says, for the status, which members will not run by themselves and why
(their group gathers until its deadline, is incomplete, or ran before
they came), and which groups are gathering: by the same verdicts.

This module starts and removes nothing; the view and the scheduler do.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from waitd.decide import groups
from waitd.decide.outcome import Job, attempt_of
from waitd.journal.history import Event, History
from waitd.spool.directory import FileFact

if TYPE_CHECKING:
    from waitd.spool.view import View

log = logging.getLogger("waitd")


@dataclass(frozen=True, slots=True)
class Held:
    """Why a member will not run by itself, and until when (None: for ever)."""

    why: str
    until_ns: int | None


@dataclass(frozen=True, slots=True)
class Open:
    """A group still gathering its members, until its timeliness."""

    gid: str
    deadline_ns: int
    present: dict[groups.Member, FileFact]
    missing: list[groups.Member]  # expected (critical, wanted), not there yet


class Gatherer:
    def __init__(self, view: View, spec: groups.Spec) -> None:
        self.view = view
        self.spec = spec
        self.index = groups.Index(spec, view.record.telem)
        self._dirty: set[str] = set()  # groups to look at in the next take
        self._due: list[tuple[int, str]] = []  # (when, group id): look again then
        self.incomplete: dict[str, list[str]] = {}  # group id -> its missing critical members
        self._late_noted: set[str] = set()

    def filed(self, fact: FileFact, values: dict[str, Any]) -> str | None:
        """File a file into its group; why not, if it is no member."""
        found = self.index.add(fact.name, values, fact.spool_ns)
        if isinstance(found, str):
            return found
        self._dirty.add(found[0].gid)
        return None

    def forget(self, name: str) -> None:
        found = self.index.group_of(name)
        if found is not None:
            self._dirty.add(found[0].gid)
        self.index.remove(name)
        self._late_noted.discard(name)

    def touch(self, name: str) -> None:
        """Something changed for the file (a run ended, a retry is set)."""
        found = self.index.group_of(name)
        if found is not None:
            self._dirty.add(found[0].gid)

    def members_of(self, name: str) -> tuple[str, list[FileFact]] | None:
        """The id of a file's group and its members in the spool, sorted by
        name; None when the file is in no group."""
        found = self.index.group_of(name)
        if found is None:
            return None
        facts = (self.view.cands.facts.get(n) for n in found[0].files.values())
        return found[0].gid, sorted((f for f in facts if f is not None), key=lambda f: f.name)

    def held(self, history: History, now_ns: int) -> tuple[dict[str, Held], list[Open]]:
        """What the status says of the groups now: the members that will not
        run by themselves, with why and until when (those of a group still
        gathering, of an incomplete group, late members), and the groups
        still gathering.  The same verdicts as `take`'s, with every member
        counted old enough: what matters is whether the group will run."""
        held: dict[str, Held] = {}
        gathering: list[Open] = []
        view = self.view
        for group in self.index.groups.values():
            present = {m: f for m, n in group.files.items() if (f := view.cands.facts.get(n)) is not None}
            handled = {m for m, f in present.items() if _handled(view.latest(history, f))}
            if handled:
                for member, fact in present.items():
                    if member not in handled:
                        held[fact.name] = Held(f"late: arrived after its group {group.gid} ran", None)
                continue
            verdict, deadline = groups.verdict(self.spec, group, present, present, now_ns)
            if verdict is groups.Verdict.INCOMPLETE:
                missing = ", ".join(sorted(f"{c}:{s}" for c, s in self.spec.critical - set(present)))
                for fact in present.values():
                    held[fact.name] = Held(f"its group is incomplete, without {missing}", None)
            elif verdict is groups.Verdict.WAITING and deadline is not None:
                for fact in present.values():
                    held[fact.name] = Held("its group gathers its members", deadline)
                gathering.append(Open(group.gid, deadline, present, sorted(self.spec.expected - set(present))))
        return held, sorted(gathering, key=lambda g: (g.deadline_ns, g.gid))

    def take(
        self, n: int, history: History, now_ns: int, busy: Callable[[str], bool], held: Callable[[FileFact], int | None]
    ) -> tuple[list[Job], int | None]:
        """The jobs of up to `n` groups ready now, oldest first; and when to
        look again."""
        while self._due and self._due[0][0] <= now_ns:
            self._dirty.add(heapq.heappop(self._due)[1])
        ready: list[tuple[int, Job]] = []
        for gid in list(self._dirty):
            group = self.index.groups.get(gid)
            if group is None:
                self._dirty.discard(gid)
                continue
            job, again = self._look(group, history, now_ns, busy, held)
            if job is not None:
                ready.append((group.first_arrival_ns, job))  # stays dirty until it starts
            else:
                self._dirty.discard(gid)
            if again is not None:
                heapq.heappush(self._due, (again, gid))
        ready.sort(key=lambda item: item[0])
        return [job for _, job in ready[:n]], self._due[0][0] if self._due else None

    def _look(
        self,
        group: groups.Group,
        history: History,
        now_ns: int,
        busy: Callable[[str], bool],
        held: Callable[[FileFact], int | None],
    ) -> tuple[Job | None, int | None]:
        """What to do with a group now: its job if ready, and when to look again."""
        view = self.view
        facts = {m: view.cands.facts.get(name) for m, name in group.files.items()}
        present = {m: f for m, f in facts.items() if f is not None}
        if any(busy(view.path_of(f.name)) for f in present.values()):
            return None, None  # running: its end makes it dirty again
        events = {m: view.latest(history, f) for m, f in present.items()}
        handled = {m for m, e in events.items() if _handled(e)}
        retry = [e.retry_at for e in events.values() if e is not None and e.retry_at is not None]
        if handled:
            if retry:
                due = int(min(retry) * 1e9)
                if due > now_ns:
                    return None, due
                # The group runs again, all of it: every member that ran,
                # whichever of them carries the retry.
                return self._job(group, {m: present[m] for m in handled}, events, now_ns), None
            self._late(group, present, handled)
            return None, None
        ready: dict[groups.Member, FileFact] = {}
        wait_ns = int(view.record.wait_s * 1e9)
        next_ns: int | None = None
        for member, fact in present.items():
            until = max(view.cands.order_ns(fact) + wait_ns, held(fact) or 0)
            if until <= now_ns:
                ready[member] = fact
            else:
                next_ns = until if next_ns is None else min(next_ns, until)
        verdict, deadline = groups.verdict(self.spec, group, present, ready, now_ns)
        if verdict is groups.Verdict.READY:
            return self._job(group, ready, events, now_ns), None
        if verdict is groups.Verdict.INCOMPLETE:
            self._incomplete(group, present)
            return None, None
        again = [t for t in (deadline, next_ns) if t is not None]
        return None, min(again) if again else None

    def _job(
        self,
        group: groups.Group,
        members: dict[groups.Member, FileFact],
        events: dict[groups.Member, Event | None],
        now_ns: int,
    ) -> Job | None:
        view = self.view
        facts = sorted(members.values(), key=lambda f: f.name)
        fields = view.fields(facts[0].name) or {}
        options = view.record.options
        key = options.format(options.key, fields) if options.key is not None else None
        attempt = max(attempt_of(events.get(m)) for m in members)
        self.incomplete.pop(group.gid, None)
        return Job(
            view.identity,
            view.record.process,
            tuple(facts),
            tuple(view.path_of(f.name) for f in facts),
            key,
            attempt,
            fields,
            group.gid,
        )

    def _late(self, group: groups.Group, present: dict[groups.Member, FileFact], handled: set[groups.Member]) -> None:
        for member, fact in present.items():
            if member not in handled and fact.name not in self._late_noted:
                self._late_noted.add(fact.name)
                log.warning(
                    "record %d: %s arrived after its group %s ran; not run",
                    self.view.number,
                    self.view.path_of(fact.name),
                    group.gid,
                )
                if self.view.journal is not None:
                    self.view.journal.group(self.view.record, group.gid, "late", [fact.name], [])

    def _incomplete(self, group: groups.Group, present: dict[groups.Member, FileFact]) -> None:
        missing = sorted(f"{c}:{s}" for c, s in self.spec.critical - set(present))
        if self.incomplete.get(group.gid) != missing:
            self.incomplete[group.gid] = missing
            log.warning(
                "record %d: group %s is incomplete: its timeliness of %g s passed without %s; "
                "its %d file(s) are not run and wait for expiry",
                self.view.number,
                group.gid,
                self.spec.timeliness_s,
                ", ".join(missing),
                len(present),
            )
            if self.view.journal is not None:
                names = sorted(f.name for f in present.values())
                self.view.journal.group(self.view.record, group.gid, "incomplete", names, missing)


def _handled(event: Event | None) -> bool:
    """The member ran with its group (or runs): its event consumed it."""
    return event is not None and event.consumed
