# SPDX-License-Identifier: MIT
"""Jobs: the unit of work, its attempts, and how a run's outcome counts.

A `Job` is what one handler run works on: one file of one record, or a
group's files, with its record's identity (so that its run needs no
lookup from a path), its key (`key=`), its attempt number (1, then one
more for each retry) and the fields its pattern parsed from the name (they
reach the handler as WAITD_F_<field>).  `attempt_of` reads the attempt
from the file's latest history event.

`judge` says how an outcome counts, by the rules of incoming(5):

    exit 0                                SUCCESS
    exit 75 (EX_TEMPFAIL)                 TEMPORARY
    any other exit                        FINAL
    killed for its timeout                TEMPORARY   error=timeout
    cancelled (waitd -s cancel)           FINAL       error=cancelled
    killed by a signal waitd did not send TEMPORARY
    killed by waitd's own stop            UNKNOWN     (never run again)
    lost (run=celery: no result came)     TEMPORARY   error=lost
    ended after a crash of waitd          UNKNOWN     (adopted: its exit is not known;
                                                      but its timeout or a cancel counts as above)
    could not be executed                 NOT_STARTED (stays a candidate)

An UNKNOWN outcome of a queue's file (claim=yes) counts as TEMPORARY in
`end_events`: incoming(5) has it tried again while retries are left, and
as a retry its attempt count holds.

`end_events` writes that down, a line for each file of the job: a
temporary failure with retries left gets `retry_at=` (the retry delay
doubles each attempt, up to an hour), so the schedule survives a
restart; one with none left is final.  The run's response
(`formats.response`, WAITD_RESPONSE) counts too: on exit 75 its
`retry_in` is that retry's delay (from 0 to the hour of the cap), and on
exit 0 its `skip` makes the run skipped (`outcome=skipped`: a success,
handled, that did nothing).  What a verdict leads to besides is
decided elsewhere: the back-off (`backoff`), a queue's file
(`handoff.disposal`).

This module is pure: it runs nothing and writes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from waitd.config.options import MAX_RETRY_S, Options
from waitd.decide.facts import FileFact
from waitd.formats.history_line import Event, Status
from waitd.formats.response import Response

EX_TEMPFAIL = 75
# `end_events` makes its events positionally, in this order of Event's fields.
_END_FIELDS = "path process mtime status pid exit signal error at took attempt retry_at group published task outcome"
assert [f.name for f in fields(Event)][:17] == [*_END_FIELDS.split(), "version"]


class Why(enum.Enum):
    """Why waitd signalled a run, if it did."""

    TIMEOUT = "timeout"
    CANCEL = "cancelled"
    STOP = "stop"


class Verdict(enum.Enum):
    SUCCESS = "success"
    TEMPORARY = "temporary failure"
    FINAL = "final failure"
    UNKNOWN = "unknown outcome"
    NOT_STARTED = "not started"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended, as its executor saw it."""

    status: Status
    exit: int | None = None
    signal: str | None = None
    error: str | None = None  # it could not be executed: why
    lost: bool = False  # run=celery: its worker died, or no result came in time
    response: bytes | None = None  # run=celery: the response its worker sent back

    def describe(self) -> str:
        if self.lost:
            return "lost (no result from its worker)"
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        if self.exit is not None:
            return f"exit status {self.exit}"
        return "ended in an unknown state"


@dataclass(frozen=True, slots=True)
class Job:
    """One run's worth of work for a record: one file, or a group's files."""

    identity: tuple[str, str, str]  # the record's (directory, template, process)
    process: str
    facts: tuple[FileFact, ...]  # sorted by name for a group
    paths: tuple[str, ...]
    key: str | None = None
    attempt: int = 1
    fields: Mapping[str, Any] = field(default_factory=dict)
    group: str | None = None  # the group's id

    @property
    def fact(self) -> FileFact:
        return self.facts[0]

    @property
    def path(self) -> str:
        return self.paths[0]

    @property
    def claim(self) -> str:
        """What the run works on, for the scheduler: a key of the history
        (the file and process), or the group."""
        return f"{self.process}\0{self.group if self.group is not None else self.paths[0]}"


def attempt_of(latest: Event | None) -> int:
    """The attempt number of the next run, from the file's latest event
    about this version (None: it never ran)."""
    if latest is None:
        return 1
    if latest.retry_at is not None:
        return latest.runs + 1
    if not latest.consumed:  # could not be executed: the same attempt again
        return latest.runs
    return latest.runs + 1


def judge(outcome: Outcome, why: Why | None, adopted: bool = False) -> Verdict:
    """How an outcome counts (the table in the module's docstring)."""
    if adopted:
        # Not waitd's child: its exit status is not known.  But a run waitd
        # signalled for its timeout or a cancel ended by that, as its own.
        if why is Why.TIMEOUT:
            return Verdict.TEMPORARY
        return Verdict.FINAL if why is Why.CANCEL else Verdict.UNKNOWN
    if outcome.lost:
        return Verdict.FINAL if why is Why.CANCEL else Verdict.TEMPORARY
    if outcome.error is not None:
        return Verdict.NOT_STARTED
    if outcome.signal is not None:
        if why is Why.CANCEL:
            return Verdict.FINAL
        if why is Why.STOP:
            return Verdict.UNKNOWN
        return Verdict.TEMPORARY  # its timeout, or a signal waitd did not send
    if outcome.exit == 0:
        return Verdict.SUCCESS
    if outcome.exit == EX_TEMPFAIL:
        return Verdict.TEMPORARY
    if outcome.exit is None:
        return Verdict.UNKNOWN
    return Verdict.FINAL


def end_events(
    job: Job,
    outcome: Outcome,
    why: Why | None,
    options: Options | None,
    pid: int | None,
    took: float,
    now: float,
    adopted: bool = False,
    task: str | None = None,
    response: Response | None = None,
) -> tuple[list[Event], Verdict]:
    """The history events of a run's end (one a file of its job), and its
    verdict (FINAL when a temporary failure has no retry left; `options`
    None: its record left the table, and no retry is made); `response`:
    what the handler left at WAITD_RESPONSE."""
    verdict = judge(outcome, why, adopted)
    if verdict is Verdict.UNKNOWN and options is not None and options.claim:
        verdict = Verdict.TEMPORARY  # a queue's file: tried again while retries are left
    retry_at = None
    if verdict is Verdict.TEMPORARY:
        if options is not None and job.attempt <= options.retries:
            retry_at = now + retry_delay(options, job.attempt, outcome, response)
        else:
            verdict = Verdict.FINAL
    error = outcome.error
    if why in (Why.TIMEOUT, Why.CANCEL) and (outcome.signal is not None or adopted):
        error = why.value
    if outcome.lost:
        error = Why.CANCEL.value if why is Why.CANCEL else "lost"
    # Positional, in Event's order (pid, exit, signal, error, at, took,
    # attempt, retry_at, group, published, task, outcome, version): the same
    # for each file but its path and version.
    status, exit, sig = outcome.status, outcome.exit, outcome.signal
    pid = pid or None
    attempt = job.attempt if job.attempt > 1 else None  # a classic line has none
    said = skipped(verdict, outcome, response)
    process, group = job.process, job.group
    events = [
        Event(
            path,
            process,
            fact.mtime_ns // 1_000_000_000,
            status,
            pid,
            exit,
            sig,
            error,
            now,
            took,
            attempt,
            retry_at,
            group,
            None,
            task,
            said,
            fact.version,
        )
        for fact, path in zip(job.facts, job.paths, strict=True)
    ]
    return events, verdict


def retry_delay(options: Options, attempt: int, outcome: Outcome, response: Response | None) -> float:
    """The delay before the retry of a temporary failure: the response's
    `retry_in` on exit 75 (bounded to 0..MAX_RETRY_S), else the back-off."""
    retry_in = response.retry_in if response is not None and outcome.exit == EX_TEMPFAIL else None
    if retry_in is None:
        return options.retry_delay_s(attempt)
    return min(float(MAX_RETRY_S), max(0.0, retry_in))


def skipped(verdict: Verdict, outcome: Outcome, response: Response | None) -> str | None:
    """The history's outcome= of a run that exited 0 with `skip` in its
    response ("skipped"); None for any other."""
    if verdict is Verdict.SUCCESS and outcome.exit == 0 and response is not None and response.skip is not None:
        return "skipped"
    return None
