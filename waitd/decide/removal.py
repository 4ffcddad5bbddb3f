# SPDX-License-Identifier: MIT
"""Which files to remove: expiry, keep-after, and a queue's retention.

The rules of DESIGN.md and incoming(5):

- expiry: a matching file in the spool at least hours-too-old (measured
  from its arrival, max(mtime, ctime)) is removed, handled or not, unless
  a run works on it (`expired`, `expiries`); hours-too-old 0 never expires;
- keep-after: of the files handled with exit 0, all but the newest
  keep-after are removed (-1 keeps them all); for a record that handles
  groups, the files of all but the newest keep-after groups (a group is as
  new as its newest member); a file is removed only once every record that
  matches it is done with it (exit 0; inactive records count too:
  `done_by_all`), and no run works on it (`over_keep`, `beyond_keep`);
- a queue (claim=yes): hours-too-old is the retention of errors/ (the
  record's own names only: `ours` says which) and of what producers left
  in tmp/, there after TMP_KEPT_H hours at least (`stale`).

`removals` applies them to one record's facts of a turn (`Sweep`), for the
scheduler: each file with its reason (`Remove`).

This module is pure: it removes nothing (`spool.sweep` does, a spool's
file through `spool.unlink`, which removes only the version planned) and
does no I/O: the caller gives the facts, and lookups into what it knows
(the runs, the history).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from waitd.decide.facts import FileFact
from waitd.formats.history_line import Event

_HOUR_NS = 3600 * 1_000_000_000
_AGE = attrgetter("mtime_ns", "name")  # the newest is the greatest
TMP_KEPT_H = 36.0  # a file left in a queue's tmp/ this long was dropped by its producer (maildir's rule)


def expired(facts: Iterable[FileFact], now_ns: int, too_old_h: float) -> list[FileFact]:
    """Files in the spool for at least `too_old_h` hours (0: never)."""
    if too_old_h <= 0:
        return []
    limit = now_ns - int(too_old_h * _HOUR_NS)
    # spool_ns <= limit, without a call a file (at each poll, of every file kept)
    return [f for f in facts if f.mtime_ns <= limit and f.ctime_ns <= limit]


@dataclass(slots=True)
class Expiry:
    """A file to remove for its age."""

    fact: FileFact
    hours: float  # how long it was in the spool
    handled: bool  # False: it expired before it ever ran (the operator is warned)


def expiries(
    facts: Iterable[FileFact],
    now_ns: int,
    too_old_h: float,
    busy: Callable[[str], bool],
    handled: Callable[[FileFact], bool],
) -> list[Expiry]:
    """The files to expire now, but those a run works on."""
    return [
        Expiry(fact, (now_ns - fact.spool_ns) / 3.6e12, handled(fact))
        for fact in expired(facts, now_ns, too_old_h)
        if not busy(fact.name)
    ]


def over_keep(done: Iterable[FileFact], keep: int) -> list[FileFact]:
    """Handled files beyond the newest `keep` (-1 keeps them all)."""
    if keep < 0:
        return []
    done = done if isinstance(done, Collection) else list(done)
    over = len(done) - keep
    if over <= 0:
        return []
    # The oldest `over`, newest first: a partial sort (keep-after 2,000 and
    # a file handled: one out of 2,001, not a sort of them all).
    return heapq.nsmallest(over, done, key=_AGE)[::-1]


class DoneOrder:
    """A record's handled files (exit 0) oldest first, for keep-after: a
    heap of their facts (a fact orders by its mtime, then its name), each
    pushed when it is done, so that the oldest few of thousands kept are
    found without a look at them all.  An entry whose file is no longer
    done, or done in another version, is dropped when it reaches the top
    (`oldest` asks `done`, the truth)."""

    def __init__(self) -> None:
        self._heap: list[FileFact] = []

    def push(self, fact: FileFact) -> None:
        heapq.heappush(self._heap, fact)

    def oldest(self, k: int, done: Mapping[str, FileFact]) -> list[FileFact]:
        """The `k` oldest of `done` (name -> its fact), oldest first."""
        heap = self._heap
        if len(heap) > 2 * len(done) + 64:
            heap[:] = done.values()
            heapq.heapify(heap)
        found: list[FileFact] = []
        names: set[str] = set()
        while heap and len(found) < k:
            fact = heapq.heappop(heap)
            if done.get(fact.name) is fact and fact.name not in names:
                found.append(fact)
                names.add(fact.name)
        for fact in found:
            heapq.heappush(heap, fact)
        return found


def done_by_all(fact: FileFact, latest: Iterable[Event | None]) -> bool:
    """Whether every record matching a file is done with it: `latest` is
    each one's latest event of the file (inactive records count too: a file
    shared with a record whose handler is missing waits for it, or for its
    expiry); done is handled with exit 0, this version."""
    return all(e is not None and e.same_version(fact) and e.succeeded for e in latest)


def _newest(facts: list[FileFact]) -> FileFact:
    return max(facts, key=_AGE)


def beyond_keep(
    done: Collection[FileFact],
    keep: int,
    busy: Callable[[str], bool],
    all_done: Callable[[FileFact], bool],
    group_of: Callable[[FileFact], str | None] | None = None,
    oldest: Callable[[int], list[FileFact]] | None = None,
) -> list[FileFact]:
    """The handled files (exit 0) keep-after removes now, but those a run
    works on and those another record matching them is not done with
    (`all_done`).  `group_of`: the record handles groups, and keep-after
    counts them (a file of no group counts as one).  `oldest`: the k
    oldest of `done`, oldest first, as the caller keeps them in order
    (`DoneOrder`), rather than found among them all."""
    if keep < 0 or len(done) <= keep:
        return []  # fewer files than keep-after: fewer groups too
    if group_of is None and oldest is not None:
        over = oldest(len(done) - keep)[::-1]
    elif group_of is None:
        over = over_keep(done, keep)
    else:
        by_group: dict[str, list[FileFact]] = {}
        for fact in done:
            by_group.setdefault(group_of(fact) or fact.name, []).append(fact)
        old = {f.name for f in over_keep([_newest(facts) for facts in by_group.values()], keep)}
        over = [f for facts in by_group.values() if _newest(facts).name in old for f in facts]
    return [f for f in over if not busy(f.name) and all_done(f)]


@dataclass(slots=True)
class Entry:
    """A name in one of a queue's directories, as a listing saw it."""

    fact: FileFact
    regular: bool


def stale(entries: Iterable[Entry], now_ns: int, hours: float, ours: Callable[[str], bool]) -> list[Entry]:
    """The regular files of one queue directory older than `hours` (0:
    none) that are the record's (`ours`)."""
    if hours <= 0:
        return []
    limit = now_ns - int(hours * _HOUR_NS)
    return [e for e in entries if e.regular and e.fact.spool_ns <= limit and ours(e.fact.name)]


def tmp_hours(hours: float) -> float:
    """How long a file stays in a queue's tmp/: a producer may still write
    it (0: hours-too-old 0 keeps it for ever)."""
    return max(hours, TMP_KEPT_H) if hours > 0 else 0.0


@dataclass(slots=True)
class Remove:
    """One file to remove, and why (keep-after, hours-too-old, a queue's errors)."""

    record: int
    fact: FileFact
    why: str  # as the log and the event say it
    directory: str | None = None  # a queue's directory (None: the record's own)
    kept: bool = False  # keep-after's: the file was handled (its end may be written in this turn)


@dataclass(slots=True)
class Sweep:
    """What the removal rules look at for one record, this turn."""

    keep: int = -1
    done: Collection[FileFact] = ()  # handled with exit 0
    group_of: Callable[[FileFact], str | None] | None = None  # a grouping record: keep-after counts groups
    all_done: Callable[[FileFact], bool] = lambda fact: True  # every record matching it is done with it
    too_old_h: float = 0.0
    expirable: Collection[FileFact] = ()  # its files, on a turn that listed them (else none)
    handled: Callable[[FileFact], bool] = lambda fact: False  # it ran (or runs): an expiry is not a loss
    errors: tuple[str, Collection[Entry]] | None = None  # claim=yes, on a listing turn: errors/
    tmp: tuple[str, Collection[Entry]] | None = None  # and tmp/
    ours: Callable[[str], bool] = lambda name: True  # a name in errors/ is the record's
    oldest: Callable[[int], list[FileFact]] | None = None  # the k oldest of done, oldest first (`DoneOrder`)


def removals(number: int, sweep: Sweep, busy: Callable[[str], bool], now_ns: int) -> list[Remove]:
    """What the rules remove of record `number` now (`busy`: a run works
    on the name), each with the reason the log and the event give."""
    out = []
    hours = sweep.too_old_h
    for expiry in expiries(sweep.expirable, now_ns, hours, busy, sweep.handled):
        why = f"expired: in the spool {expiry.hours:.3g} h, hours-too-old is {hours:g}"
        out.append(Remove(number, expiry.fact, why if expiry.handled else f"{why}; it was never handled"))
    for fact in beyond_keep(sweep.done, sweep.keep, busy, sweep.all_done, sweep.group_of, sweep.oldest):
        out.append(Remove(number, fact, f"handled with exit 0; keep-after is {sweep.keep}", kept=True))
    for listed, kept_h, ours in ((sweep.errors, hours, sweep.ours), (sweep.tmp, tmp_hours(hours), _any)):
        if listed is not None:
            directory, entries = listed
            why = f"expired in {directory.rsplit('/', 1)[-1]}/ after {kept_h:g} hours"
            out += [Remove(number, e.fact, why, directory) for e in stale(entries, now_ns, kept_h, ours)]
    return out


def _any(name: str) -> bool:
    return True
