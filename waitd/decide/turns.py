# SPDX-License-Identifier: MIT
"""Records take turns at starting their jobs: the part of a plan that the
full pass (`scheduler`) and a quiet turn's (`quiet`) share.

A record may start as many runs as its jobs= less its live runs
(`room_left`); it is asked for that many ready jobs, and LOOKAHEAD more
when its jobs have keys (`asked`: a job whose key is held waits, the next
may go).  Then the records take turns, one start a turn, oldest first
within each, a job whose claim (its file) or key a live run or an
earlier start of the plan holds waiting (`take_turns`).  The live runs
are the scheduler's `Running` or a quiet plan's `Live`: what counts of
them is `Holder`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from waitd.decide.scheduler import Candidate

LOOKAHEAD = 32


class Holder(Protocol):
    """A live run, as the turns see it."""

    @property
    def record(self) -> int | None: ...  # the record it counts against (None: it left the table)

    @property
    def claim(self) -> str: ...

    @property
    def key(self) -> str | None: ...


@dataclass(slots=True)
class Queue:
    """A record's jobs in this plan, and its room."""

    jobs: list[Candidate]
    room: int


def room_left(jobs: int, number: int, live: Sequence[Holder]) -> int:
    """Record `number`'s jobs= less its live runs."""
    room = jobs
    for r in live:  # a loop, not sum() of a generator: asked each turn
        if r.record == number:
            room -= 1
    return room


def asked(room: int, keyed: bool) -> int:
    """How many ready jobs a record with this room is asked for."""
    return room + LOOKAHEAD if keyed else room


def take_turns(queues: list[Queue], live: Sequence[Holder], total_room: int | None) -> list[Candidate]:
    """Records take turns, one start a turn, oldest first within each."""
    keys = {run.key for run in live if run.key is not None}
    claims = {run.claim for run in live}
    starts: list[Candidate] = []
    progress = True
    while progress and (total_room is None or total_room > 0):
        progress = False
        for queue in queues:
            if total_room is not None and total_room <= 0:
                break
            job = _next(queue, keys, claims) if queue.room > 0 else None
            if job is None:
                continue
            starts.append(job)
            claims.add(job.claim)
            if job.key is not None:
                keys.add(job.key)
            queue.room -= 1
            if total_room is not None:
                total_room -= 1
            progress = True
    return starts


def _next(queue: Queue, keys: set[str], claims: set[str]) -> Candidate | None:
    """The record's oldest job whose key and claim are free, taken out."""
    for i, job in enumerate(queue.jobs):
        if job.claim in claims or (job.key is not None and job.key in keys):
            continue  # waits for the run holding its key or its file
        del queue.jobs[i]
        return job
    return None
