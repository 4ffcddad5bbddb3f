# SPDX-License-Identifier: MIT
"""The plan of a quiet turn, without the whole situation.

A drain's turn reaps a run and starts the next file: nothing to signal,
move, remove, hold or publish.  `plan` gives, for such a turn, what
`scheduler.plan` gives, from only what its starts depend on: each
record's limit and ready jobs (`Record`), the live runs' records, claims
and keys (`Live`), and whether a run ended.

It is the same plan when the situation is quiet, which the caller makes
sure of before it asks (`daemon.plans`; anything else takes the full
pass):

- the daemon is active, the history takes starts, and no --jobs;
- no record publishes (process `-`), backs off, claims from a queue
  (claim=yes: moves, out-limit), waits for its executor, or has files
  for the removal rules to look at (`Seat.sweep` None);
- every run runs with no timeout, or ended unsignalled with no queue
  file to move (`Running.end` None): `scheduler._signals` and `_moves`
  have nothing to do, and no run gives a deadline.

Then the only deadline is when the next file of a record is ready; the
starts are `turns.take_turns`'s, from the same queues, as the full pass's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from waitd.decide.scheduler import Candidate, Plan
from waitd.decide.turns import Queue, asked, room_left, take_turns


class Record(NamedTuple):
    """A record as a quiet plan sees it (a `scheduler.Seat`'s parts that count)."""

    number: int
    jobs: int  # jobs=
    ready: Callable[[int], tuple[Sequence[Candidate], float | None]]  # `Seat.ready`
    keyed: bool = False  # key=: look ahead


class Live(NamedTuple):
    """A run under way (`scheduler.Running`'s parts that count)."""

    record: int | None  # None: its record left the table
    claim: str
    key: str | None = None


def plan(now: float, records: Sequence[Record], live: Sequence[Live], ended: bool) -> Plan:
    """`scheduler.plan` of a quiet situation (see the module); `ended`:
    a run ended (the plan has seen it)."""
    deadline: float | None = None
    queues: list[Queue] = []
    for record in records:
        room = room_left(record.jobs, record.number, live)
        if room > 0:
            jobs, due = record.ready(asked(room, record.keyed))
            if due is not None and due > now and (deadline is None or due < deadline):
                deadline = due
            queues.append(Queue(list(jobs), room))
    if not queues:
        return Plan(deadline=deadline, ended=ended)
    return Plan(tuple(take_turns(queues, live, None)), deadline=deadline, ended=ended)
