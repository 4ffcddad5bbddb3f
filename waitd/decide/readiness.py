# SPDX-License-Identifier: MIT
"""Readiness: which files of a record may run now, oldest first.

`Candidates` is a record's matching files, ordered by modification time
then name in a heap, so that the next file to run and the moment the
oldest reaches its wait age are found without a rescan.  `take` gives the
files ready now: old enough, not consumed (the caller's predicate asks the
history), and not held.

`held_until` says until when a file old enough may not run yet; the
rules, in order:

- never by itself (FOREVER_NS: until something about it changes): a
  companion of another file (`done=`); a name that pattern=, key=, done=
  or its group cannot take (left alone); a file paused by the operator
  (until resumed); a file taken already in this
  look; a file a run works on (or whose end is not recorded yet); under
  claim=yes, a name under way in this instance's pending (running, or
  waiting there for its retry: a claim never replaces a file); under
  `--once`, a file that is not one of the drain (the files ready at
  start, by version);
- a file a writer still has open (inotify) waits for its close, or
  WRITER_STALL_NS after its mtime (a writer that died holding it);
- a file whose latest run asked for a retry waits for `retry_at`;
- with `done=`, a file waits for its companion (for ever while there is
  none), and for the companion's wait age.

`member_held` is the same for a member of a group (its group decides the
rest: `groups.look`); `companion_name` is the done= rule for a name;
`in_drain` says whether a file of the drain is still to run.

This module is pure: facts and the clock in, answers out.  The facts are
given as values and as lookups into what the caller knows (the history's
index, the runs, a stat of a companion), as watchdog's PollingEmitter
takes `stat=`.

Limits: a file whose mtime lies more than FUTURE_S in the future is
ordered and aged from when it was first seen; the caller logs it once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from operator import attrgetter
from typing import Any, NamedTuple

from waitd.config.options import Options
from waitd.decide.facts import FOREVER_NS, FileFact
from waitd.formats.history_line import Event, Version

FUTURE_S = 5
WRITER_STALL_NS = 60 * 1_000_000_000
_NS = 1_000_000_000


class Holds(NamedTuple):  # a NamedTuple: one is made at each look (a turn)
    """What may hold a record's files back, as the caller knows it now."""

    companions: Collection[str]  # names that are another file's companion (done=)
    left_alone: Collection[str]  # names pattern=, key=, done= or groups cannot take
    writing: Collection[str]  # names a writer still has open
    drain: Mapping[str, Version] | None  # --once: the files ready at start (None: no drain)
    busy: Callable[[str], bool]  # a run works on the name (or, claim=yes, on it in pending)
    companion: Callable[[str], FileFact | None] | None = None  # done=: the file's companion, if there
    wait_ns: int = 0  # the record's wait age
    paused: Collection[str] = ()  # names an operator paused (`waitd -s pause`)


def held_until(holds: Holds, fact: FileFact, event: Event | None, taken: Collection[str] = ()) -> int | None:
    """Until when a file old enough may not run yet (FOREVER_NS: until
    something changes), or None when it may (the rules above)."""
    name = fact.name
    if name in holds.companions or name in holds.left_alone or name in taken or holds.busy(name):
        return FOREVER_NS
    if name in holds.paused:
        return FOREVER_NS  # until resumed
    if holds.drain is not None and not _is(holds.drain.get(name), fact):
        return FOREVER_NS  # --once: not among the files ready at start
    until = fact.mtime_ns + WRITER_STALL_NS if name in holds.writing else None
    if event is not None and event.retry_at is not None:
        until = max(until or 0, int(event.retry_at * 1e9))
    if holds.companion is not None:
        companion = holds.companion(name)
        if companion is None:
            return FOREVER_NS  # its companion is not there yet
        until = max(until or 0, companion.mtime_ns + holds.wait_ns)
    return until


def member_held(holds: Holds, fact: FileFact) -> int | None:
    """Until when a member of a group is not ready although old enough."""
    if holds.drain is not None and not _is(holds.drain.get(fact.name), fact):
        return FOREVER_NS
    if fact.name in holds.paused:
        return FOREVER_NS  # until resumed
    return fact.mtime_ns + WRITER_STALL_NS if fact.name in holds.writing else None


def _is(version: Version | None, fact: FileFact) -> bool:
    """Whether a file is of that version (`fact.version == version`, without
    making a Version: a turn of a --once drain asks it of each file it looks at)."""
    return version is not None and version.of(fact)


def companion_name(options: Options, name: str, fields: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The name of a file's companion (done=), or why it has none; (None,
    None) for a record without done=.  `fields`: what the record's pattern
    parsed of the name (None: it does not parse)."""
    fmt = options.done
    if fmt is None:
        return None, None
    if fields is None:
        return None, f"does not parse with pattern={options.pattern}"
    companion = options.format(fmt, fields)
    if companion is None:
        return None, f"done={fmt} does not fit its fields"
    if "/" in companion or companion == name:
        return None, f"done={fmt} names {companion!r}, not another file here"
    return companion, None


def in_drain(fact: FileFact | None, version: Version, event: Event | None, now_ns: int) -> bool:
    """Whether a file of the --once drain is still to run: there, the same
    version, not consumed, and not waiting for a retry that comes only
    after now (that one is for a later drain).  `event` is its latest."""
    if fact is None or fact.version != version:
        return False
    if event is None or not event.consumed:
        return True
    return event.retry_at is not None and event.retry_at * 1e9 <= now_ns


class Candidates:
    """The matching files of one record, oldest first.

    `facts` maps every matching name to its latest stat; `links` names
    those that are symbolic links.  The line is two heaps: `_heap`, of
    the facts themselves (a fact orders by its mtime, then its name:
    `FileFact`), for the files whose order time is their mtime, nearly
    all; and `_later`, of (order time, name, fact), for those whose
    order time is when they were first seen (`_ahead`: more than
    FUTURE_S in the future then).  `take` merges the two.  Entries whose
    fact was replaced or removed are dropped lazily when they reach the
    top.  (One heap of (order time, name, fact) kept a tuple of 64
    bytes a file: 6 MB at a start with 100,000 files, issue 21.)
    """

    def __init__(self) -> None:
        self.facts: dict[str, FileFact] = {}
        self.links: set[str] = set()
        self._heap: list[FileFact] = []
        self._later: list[tuple[int, str, FileFact]] = []
        self._first_seen: dict[str, int] = {}
        self._ahead: set[str] = set()

    def __len__(self) -> int:
        return len(self.facts)

    def order_ns(self, fact: FileFact) -> int:
        """The time a file's age counts from: its mtime, or when first seen
        if the mtime is more than FUTURE_S in the future."""
        seen = self._first_seen.get(fact.name, fact.mtime_ns)
        return seen if fact.mtime_ns > seen + FUTURE_S * _NS else fact.mtime_ns

    def oldest(self, n: int, facts: Iterable[FileFact]) -> list[FileFact]:
        """The `n` first of some of the record's current facts in their
        order (`order_ns`; equal times in the order given)."""
        return heapq.nsmallest(n, facts, key=self.order_ns if self._ahead else _MTIME)

    def _push(self, fact: FileFact) -> None:
        """Put a fact in line: in `_heap` if its order time is its mtime."""
        order = self.order_ns(fact)
        if order == fact.mtime_ns:
            heapq.heappush(self._heap, fact)
        else:
            heapq.heappush(self._later, (order, fact.name, fact))

    def update(self, fact: FileFact, now_ns: int) -> bool:
        """Add or refresh one file; return True if it is new or changed."""
        old = self.facts.get(fact.name)
        if old == fact:
            return False
        if old is None or old.version != fact.version:
            self._first_seen[fact.name] = now_ns
        self.facts[fact.name] = fact
        if fact.mtime_ns > self._first_seen.get(fact.name, fact.mtime_ns) + FUTURE_S * _NS:
            self._ahead.add(fact.name)
        elif self._ahead:
            self._ahead.discard(fact.name)
        if fact.link_ino:
            self.links.add(fact.name)
        elif self.links:
            self.links.discard(fact.name)
        self._push(fact)
        return True

    def requeue(self, name: str) -> None:
        """Put a known file back in line: it left the heap as consumed, and
        may run again (a retry, a run that could not be executed)."""
        fact = self.facts.get(name)
        if fact is not None:
            self._push(fact)

    def remove(self, name: str) -> FileFact | None:
        self._first_seen.pop(name, None)
        self._ahead.discard(name)
        self.links.discard(name)
        return self.facts.pop(name, None)

    def replace_all(
        self, facts: Iterable[FileFact] | dict[str, FileFact], now_ns: int, done: Container[str] = ()
    ) -> tuple[Collection[FileFact], list[str]]:
        """Take a full listing; return the new or changed facts and the names gone.

        `facts`: the facts, or a dict of them by name, which the first
        listing takes over as its own (the caller leaves it alone after).
        `done`: names of the first listing consumed for good (handled
        with exit 0, that very version): known, but not put in line, as
        if `take` had dropped them already.
        """
        fresh = facts if isinstance(facts, dict) else {f.name: f for f in facts}
        if not self.facts:
            self._first(fresh, now_ns, done)
            return fresh.values(), []
        gone = [n for n in self.facts if n not in fresh]
        for name in gone:
            self.remove(name)
        changed = [f for f in fresh.values() if self.update(f, now_ns)]
        if len(self._heap) + len(self._later) > 2 * len(self.facts) + 64:
            self._heap, self._later = [], []
            for f in self.facts.values():
                self._push(f)  # a heap in order, the later ones a few
        return changed, gone

    def _first(self, fresh: dict[str, FileFact], now_ns: int, done: Container[str]) -> None:
        """The first listing: take everything at once and heapify, rather
        than push each file (100,000 files at start).  Only a file with its
        mtime in the future needs its first sighting kept: any other's age
        counts from its mtime (`order_ns`)."""
        self.facts = fresh
        self.links = {f.name for f in fresh.values() if f.link_ino}
        future = now_ns + FUTURE_S * _NS
        self._first_seen = {name: now_ns for name, f in fresh.items() if f.mtime_ns > future}
        self._ahead = ahead = set(self._first_seen)
        if ahead:
            self._heap = [f for f in fresh.values() if f.name not in done and f.name not in ahead]
        else:
            self._heap = [f for f in fresh.values() if f.name not in done] if done else list(fresh.values())
        self._later = [(now_ns, n, fresh[n]) for n in ahead if n not in done]
        heapq.heapify(self._heap)
        heapq.heapify(self._later)

    def take(
        self,
        n: int,
        now_ns: int,
        wait_ns: int,
        consumed: Callable[[FileFact], bool],
        held: Callable[[FileFact], int | None] = lambda f: None,
    ) -> tuple[list[FileFact], int | None]:
        """Up to `n` candidates ready now, oldest first, and when the next
        one not ready yet will be (None: none is known to be).

        `held` says until when a file may not run although old enough
        (`held_until`), or None; held files are stepped over.  Consumed
        files leave the heap for good.
        """
        heap, later = self._heap, self._later
        facts = self.facts
        taken: list[FileFact] = []
        popped: list[FileFact] = []
        popped_later: list[tuple[int, str, FileFact]] = []
        due: int | None = None
        while len(taken) < n:
            if later and (not heap or later[0][:2] < (heap[0].mtime_ns, heap[0].name)):
                order, name, fact = later[0]
                source: list[Any] = later
            elif heap:
                fact = heap[0]
                order, name, source = fact.mtime_ns, fact.name, heap
            else:
                break
            if facts.get(name) is not fact or consumed(fact):
                heapq.heappop(source)
                continue
            ready_ns = order + wait_ns
            if ready_ns > now_ns:
                due = _earliest(ready_ns, due)
                break
            back: list[Any] = popped if source is heap else popped_later
            if taken and taken[-1] is fact:
                back.append(heapq.heappop(source))
                continue  # queued twice (requeue): once is enough
            until = held(fact)
            if until is None or until <= now_ns:
                taken.append(fact)
                if len(taken) == n:
                    break  # the last one wanted stays in the heap: not popped and pushed back
            elif until < FOREVER_NS:
                due = _earliest(until, due)
            back.append(heapq.heappop(source))
        for fact in popped:
            heapq.heappush(heap, fact)
        for entry in popped_later:
            heapq.heappush(later, entry)
        return taken, due


_MTIME = attrgetter("mtime_ns")


def _earliest(a: int, b: int | None) -> int:
    return a if b is None else min(a, b)
