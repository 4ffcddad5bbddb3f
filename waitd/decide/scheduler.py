# SPDX-License-Identifier: MIT
"""What may start now, what must be signalled, and when to look again.

`plan` is a pure function of the clock, the jobs ready to start (per
record, oldest first), the runs under way and the limits: each record's
`jobs=`, the daemon's `--jobs`, keys, the records that are held (backing
off), and each run's timeout.  It returns a `Plan`: the jobs to start, in
order; the signals to send (TERM to a run past its timeout, KILL to one
that outlived the grace after its TERM, and again each second); and the
next moment the plan changes by itself (a timeout, a grace, the end of a
hold), never in the past.

The rules, in the order they are applied:

- A record that is held starts nothing; its jobs wait.
- Records take turns (table order), one start a turn, while the record has
  room (`jobs=` minus its runs) and the daemon too (`--jobs` minus every
  run, those of records out of the table included).
- Within a record, jobs start oldest first; a job whose key or claim (its
  file and process: a key of the history) is taken by a run (or by a start
  of this plan) is stepped over and waits, and the next one may start.

This module knows no files, processes or history: the loop turns the spool
and the run registry into its arguments and carries out its answer.
Limits: the loop offers each record only as many jobs as it has room for
plus a look-ahead (LOOKAHEAD); when that many oldest jobs all wait for
keys, newer ones wait for the next plan.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

LOOKAHEAD = 32
KILL_GRACE_S = 5.0  # between TERM and KILL
KILL_AGAIN_S = 1.0  # KILL is repeated while the run lingers


class Phase(enum.Enum):
    """Where a run stands, as the scheduler needs it."""

    RUNNING = "running"
    STOPPING = "stopping"  # TERM sent to its process group
    KILLED = "killed"  # KILL sent


@dataclass(frozen=True, slots=True)
class Candidate:
    """A job ready to start: `ref` is the caller's, handed back as is."""

    record: int  # the record's number: its turn, its limit, its hold
    claim: str  # what the run works on (its file and process): never two runs at once
    key: str | None = None  # key=: equal keys never have two runs at once
    ref: object = None


@dataclass(frozen=True, slots=True)
class Running:
    """A run under way."""

    run_id: int
    record: int | None  # None: its record left the table
    claim: str
    key: str | None
    phase: Phase
    started: float  # monotonic seconds
    timeout_s: float | None = None
    signalled_at: float | None = None  # when its last TERM or KILL was sent
    grace_s: float | None = None  # between its TERM and KILL (None: KILL_GRACE_S)


@dataclass(frozen=True, slots=True)
class Limits:
    per_record: Mapping[int, int]  # jobs= of each record in the table
    total: int | None = None  # --jobs
    held_until: Mapping[int, float] = field(default_factory=dict)  # monotonic


@dataclass(frozen=True, slots=True)
class Plan:
    start: tuple[Candidate, ...] = ()
    signal: tuple[tuple[int, int], ...] = ()  # (run id, signal number)
    deadline: float | None = None  # monotonic


def plan(now: float, candidates: Mapping[int, Sequence[Candidate]], running: Iterable[Running], limits: Limits) -> Plan:
    """The starts, signals and next deadline for this moment."""
    running = list(running)
    signals, deadlines = _timeouts(now, running)
    starts = _starts(now, candidates, running, limits)
    for record, until in limits.held_until.items():
        if until > now and candidates.get(record):
            deadlines.append(until)
    return Plan(tuple(starts), tuple(signals), min(deadlines) if deadlines else None)


def _timeouts(now: float, running: list[Running]) -> tuple[list[tuple[int, int]], list[float]]:
    signals = []
    deadlines = []
    for run in running:
        if run.phase is Phase.RUNNING:
            if run.timeout_s is None:
                continue
            due = run.started + run.timeout_s
            if now >= due:
                signals.append((run.run_id, int(signal.SIGTERM)))  # RUNNING -> STOPPING
                deadlines.append(now + KILL_GRACE_S)
            else:
                deadlines.append(due)
        else:
            sent = run.signalled_at if run.signalled_at is not None else now
            grace = KILL_GRACE_S if run.grace_s is None else run.grace_s
            wait = grace if run.phase is Phase.STOPPING else KILL_AGAIN_S
            if now >= sent + wait:
                signals.append((run.run_id, int(signal.SIGKILL)))  # STOPPING -> KILLED, or KILL again
                deadlines.append(now + KILL_AGAIN_S)
            else:
                deadlines.append(sent + wait)
    return signals, deadlines


def _starts(
    now: float, candidates: Mapping[int, Sequence[Candidate]], running: list[Running], limits: Limits
) -> list[Candidate]:
    per_record: dict[int, int] = {}
    for run in running:
        if run.record is not None:
            per_record[run.record] = per_record.get(run.record, 0) + 1
    total_room = None if limits.total is None else limits.total - len(running)
    keys = {run.key for run in running if run.key is not None}
    claims = {run.claim for run in running}
    queues = {
        record: list(jobs)
        for record, jobs in candidates.items()
        if jobs and limits.held_until.get(record, 0.0) <= now and record in limits.per_record
    }
    starts: list[Candidate] = []
    progress = True
    while progress and (total_room is None or total_room > 0):
        progress = False
        for record in sorted(queues):
            if total_room is not None and total_room <= 0:
                break
            if per_record.get(record, 0) >= limits.per_record[record]:
                continue
            queue = queues[record]
            for i, job in enumerate(queue):
                if job.claim in claims or (job.key is not None and job.key in keys):
                    continue  # waits for the run holding its key or its file
                del queue[i]
                starts.append(job)
                claims.add(job.claim)
                if job.key is not None:
                    keys.add(job.key)
                per_record[record] = per_record.get(record, 0) + 1
                if total_room is not None:
                    total_room -= 1
                progress = True
                break
    return starts
