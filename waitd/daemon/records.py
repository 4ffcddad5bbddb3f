# SPDX-License-Identifier: MIT
"""Run-time state of the records, one owner for it, kept across HUP.

`Works` is the one owner of what waitd knows of each record at run time,
filed by the record's identity (incoming-dir, name-template,
process-name), which a reload does not change whatever the record's
number: a `View` of its files and a `Tally` of its runs (counters, the
last run, the back-off, the log letter).  `install` takes a table (at
start and on each valid HUP) and returns its `Entry`s, in table order: a
record already known keeps its view and tally; a record out of the table
keeps them aside, its view closed, and gets them back if it returns.

Back-off: a record whose handler could not be executed, or whose last
FAST_FAILS runs each failed within FAST_FAIL_S, starts nothing for
BACKOFF_FIRST_S, doubling up to BACKOFF_MAX_S; a success or a reload ends
it.  This module logs that; it starts and removes nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from waitd.config import table
from waitd.spool import activation
from waitd.spool.view import View, identity

log = logging.getLogger("waitd")

FAST_FAIL_S = 1.0
FAST_FAILS = 5
BACKOFF_FIRST_S = 10.0
BACKOFF_MAX_S = 600.0


@dataclass(slots=True)
class Counters:
    ok: int = 0
    failed: int = 0  # final failures, unknown outcomes
    retrying: int = 0  # temporary failures with a retry to come: not failures yet
    removed: int = 0


@dataclass(slots=True)
class Tally:
    """What a record's runs left behind (mutable; owned by `Works`)."""

    letter: str | None = None  # of its last log file
    counters: Counters = field(default_factory=Counters)
    last: tuple[str, str] | None = None  # file, how its run ended
    fails: deque[bool] = field(default_factory=lambda: deque(maxlen=FAST_FAILS))
    backoff_s: float = 0.0
    backoff_until: float = 0.0  # monotonic

    def backing_off(self, now: float) -> bool:
        return now < self.backoff_until

    def back_off(self, number: int, now: float, why: str) -> None:
        self.backoff_s = BACKOFF_FIRST_S if self.backoff_s == 0 else min(BACKOFF_MAX_S, 2 * self.backoff_s)
        self.backoff_until = now + self.backoff_s
        log.error("record %d: %s; no handler starts for %g s", number, why, self.backoff_s)

    def reset_backoff(self) -> None:
        self.backoff_s = 0.0
        self.backoff_until = 0.0
        self.fails.clear()

    def ended(
        self, number: int, path: str, outcome: str, ok: bool, took: float, now: float, retrying: bool = False
    ) -> None:
        """Account for the end of one of the record's runs (`retrying`: a
        temporary failure, to be tried again: counted apart)."""
        self.last = (path, outcome)
        if ok:
            self.counters.ok += 1
            self.reset_backoff()
            return
        if retrying:
            self.counters.retrying += 1
        else:
            self.counters.failed += 1
        self.fails.append(took < FAST_FAIL_S)
        if len(self.fails) == FAST_FAILS and all(self.fails):
            self.fails.clear()
            self.back_off(number, now, f"the last {FAST_FAILS} runs each failed within {FAST_FAIL_S:g} s")


@dataclass(slots=True)
class Entry:
    """One record of the table in force, with its program and its state."""

    record: table.Record
    program: str | None  # the executable found for its process
    problem: str | None  # why it is inactive, or None
    view: View
    tally: Tally

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def identity(self) -> tuple[str, str, str]:
        return identity(self.record)


class Works:
    """The views and tallies of every record waitd has had, by identity."""

    def __init__(self) -> None:
        self._views: dict[tuple[str, str, str], View] = {}
        self._tallies: dict[tuple[str, str, str], Tally] = {}
        self.entries: list[Entry] = []

    def install(
        self,
        records: Iterable[table.Record],
        activate: Callable[[table.Record], activation.Activation],
        matcher: Callable[[table.Record], Callable[[str], bool]],
        letter: Callable[[int], str | None],
    ) -> list[Entry]:
        """The entries of a new table; a known identity keeps its state."""
        old_numbers = {e.identity: e.number for e in self.entries}
        entries = []
        for record in records:
            act = activate(record)
            key = identity(record)
            view = self._views.get(key)
            tally = self._tallies.get(key)
            if view is None or tally is None:
                view = View(record, matcher(record))
                tally = Tally(letter=letter(record.number))
                for other in self._views.values():
                    if other.record.directory == record.directory:
                        view.writing |= other.writing  # files still open for writing stay held
                self._views[key], self._tallies[key] = view, tally
            else:
                view.reconfigure(record)
                tally.reset_backoff()  # a reload ends the back-off, as documented
                if old_numbers.get(key) != record.number:
                    tally.letter = letter(record.number)  # the logs are named by number
            entries.append(Entry(record, act.program, act.problem, view, tally))
        kept = {e.identity for e in entries}
        for key, view in self._views.items():
            if key not in kept:
                view.retire()  # out of the table: only its running handlers go on
        self.entries = entries
        return entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def tally(self, key: tuple[str, str, str]) -> Tally | None:
        """The tally of a record's work, in the table or not."""
        return self._tallies.get(key)

    def view(self, key: tuple[str, str, str]) -> View | None:
        return self._views.get(key)

    def number_of(self, key: tuple[str, str, str]) -> int | None:
        """The number of the record doing that work now, None if none does."""
        for entry in self.entries:
            if entry.identity == key:
                return entry.number
        return None
