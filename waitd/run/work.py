# SPDX-License-Identifier: MIT
"""A record's work at run time: its files, its runs' tally, and its entry.

`Work` is what waitd keeps of one record's work across HUP, by its
identity (`daemon.records.Works` owns them): the state of its files
(`spool.state.FileState`) and the `Tally` of its runs (counters, the last
run, the back-off, the letter of its last log file).  A run holds its
record's `Work` from its start to its end, so that its end is accounted
to that work whatever became of the table meanwhile: no lookup from a
path.  `Entry` is one record of the table in force: the record, its
program (None: no handler, or publish-only), why it is inactive, and its
work.

Back-off (the rule is `decide.backoff`'s): a record whose handler could
not be executed, or whose runs keep failing fast, starts nothing a while;
a success or a reload ends it.  This module logs that; it starts and
removes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from waitd.config import table
from waitd.decide import backoff
from waitd.decide.backoff import Backoff
from waitd.decide.facts import Identity, identity
from waitd.spool.state import FileState

log = logging.getLogger("waitd")


@dataclass(slots=True)
class Counters:
    """How a record's runs ended since the start, and its files removed."""

    ok: int = 0
    failed: int = 0  # final failures, unknown outcomes
    retrying: int = 0  # temporary failures with a retry to come: not failures yet
    removed: int = 0


@dataclass(slots=True)
class Tally:
    """What a record's runs left behind (mutable; kept with its work)."""

    letter: str | None = None  # of its last log file
    counters: Counters = field(default_factory=Counters)
    last: tuple[str, str] | None = None  # file, how its run ended
    backoff: Backoff = backoff.NONE

    @property
    def backoff_until(self) -> float:
        return self.backoff.until

    def backing_off(self, now: float) -> bool:
        return self.backoff.holding(now)

    def back_off(self, number: int, now: float, why: str) -> None:
        """A handler could not be started: hold the record back."""
        self.backoff = self.backoff.not_started(now)
        log.error("record %d: %s; no handler starts for %g s", number, why, self.backoff.delay_s)

    def reset_backoff(self) -> None:
        self.backoff = backoff.NONE

    def ended(
        self, number: int, path: str, outcome: str, ok: bool, took: float, now: float, retrying: bool = False
    ) -> None:
        """Account for the end of one of the record's runs (`retrying`: a
        temporary failure, to be tried again: counted apart)."""
        self.last = (path, outcome)
        if ok:
            self.counters.ok += 1
        elif retrying:
            self.counters.retrying += 1
        else:
            self.counters.failed += 1
        self.backoff, why = self.backoff.ended(ok, took, now)
        if why is not None:
            log.error("record %d: %s; no handler starts for %g s", number, why, self.backoff.delay_s)


@dataclass(slots=True, eq=False)
class Work:
    """One record's work, kept by identity across HUP."""

    files: FileState
    tally: Tally


@dataclass(slots=True)
class Entry:
    """One record of the table in force, with its program and its work."""

    record: table.Record
    program: str | None  # the executable found for its process
    problem: str | None  # why it is inactive, or None
    work: Work
    # Plain attributes rather than properties: the loop reads them each turn.
    number: int = field(init=False)
    identity: Identity = field(init=False)
    files: FileState = field(init=False)
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        self.number = self.record.number
        self.identity = identity(self.record)
        self.files = self.work.files
        self.tally = self.work.tally
