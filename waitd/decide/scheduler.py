# SPDX-License-Identifier: MIT
"""The scheduler: every action of a turn, and when to look again.

`plan` is a pure function of the clock and a `Situation`: the daemon's
mode, its records (`Seat`: limits, back-off, executor, out-limit, and
their ready jobs, asked for lazily), the runs under way or just ended
(`Running`), `--jobs`, and the removal facts of each record (`Sweep`).
It returns a `Plan`, which the loop carries out in its order:

- signal: TERM to a run past its timeout, KILL to one that outlived the
  grace after its TERM (and again each second), KILL to the process group
  a signalled run left behind when it ended; while stopping, TERM to
  waitd's own runs once the stop timeout is reached, then KILL the same
  way (runs a stop leaves running, `Running.stays`, are not signalled);
- move: where each ended run's queue file goes (`handoff.disposal`);
- start: the jobs to start, in order; publish: those of publish-only
  records (process `-`), up to PUBLISH_BATCH a record;
- remove: the files expiry, keep-after and a queue's retention remove
  (`removal`), only while active;
- hold: the records that start nothing now although they could, and why
  (a back-off, out-limit, their executor), with the out-limit looks to
  remember (`looked`);
- deadline: the next moment the plan changes by itself (a timeout, a
  grace, the stop timeout, the end of a hold, a file reaching its wait
  age or its retry time), never in the past.

The rules of the starts, in the order they are applied:

- Nothing starts unless the daemon is active and the history takes
  starts (`Situation.held_until`: it refused one, or an end waits to be
  written).
- A record that is backing off, whose executor takes no runs now, or
  whose next queue is full (out-limit=) starts nothing; its jobs wait.
- A record's room is its `jobs=` minus its runs, and no more than the
  daemon's (`--jobs` minus every run, those of records out of the table
  included) and its next queue's (out-limit= minus the files there and
  its runs not handed on yet).
- Records take turns (table order), one start a turn, while the record
  and the daemon have room.  Within a record, jobs start oldest first; a
  job whose key or claim (its file and process, or its group) is taken by
  a run (or by a start of this plan), or one of whose files is removed by
  this plan, is stepped over and waits, and the next one may start.

This module knows no files, processes or history: the loop turns the spool
and the run registry into its arguments and carries out its answer.
Limits: a record is asked for its room's worth of jobs, plus `turns.LOOKAHEAD`
with key=; when that many oldest jobs all wait for keys, newer ones wait
for the next plan.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from waitd.decide import handoff, removal
from waitd.decide.outcome import Verdict, Why
from waitd.decide.removal import Remove, Sweep
from waitd.decide.turns import Queue, asked, room_left, take_turns

PUBLISH_BATCH = 1000  # files published in one turn, at most, per record
_NONE: frozenset[tuple[int, str]] = frozenset()  # no file removed by this plan
KILL_GRACE_S = 5.0  # between TERM and KILL
KILL_AGAIN_S = 1.0  # KILL is repeated while the run lingers
STOP_GRACE_MIN_S = 0.5  # the grace after the stop's TERM, at least (at most KILL_GRACE_S)


class Mode(enum.Enum):
    """The daemon's state: ACTIVE -> HIBERNATING (INT) -> ACTIVE (CONT); any -> STOPPING (TERM)."""

    ACTIVE = "active"
    HIBERNATING = "hibernating"
    STOPPING = "stopping"


class Phase(enum.Enum):
    """Where a run stands, as the scheduler needs it."""

    RUNNING = "running"
    STOPPING = "stopping"  # TERM sent to its process group
    KILLED = "killed"  # KILL sent
    ENDED = "ended"  # its end is recorded; what it leaves to do is in `Running.end`


class Candidate(NamedTuple):
    """A job ready to start: `ref` is the caller's, handed back as is."""

    record: int  # the record's number: its turn, its limit, its hold
    claim: str  # what the run works on (its file and process): never two runs at once
    key: str | None = None  # key=: equal keys never have two runs at once
    ref: object = None
    names: tuple[str, ...] = ()  # its files' names in the record's directory


class End(NamedTuple):
    """What an ended run leaves to do."""

    signalled: bool = False  # waitd signalled it: what it left behind gets KILL
    verdict: Verdict = Verdict.SUCCESS
    retry_at: float | None = None
    attempt: int = 1
    queue: bool = False  # its file is a queue's (claim=yes): it must leave pending
    forward: bool = False  # its record has next=


class Running(NamedTuple):
    """A run under way, or ended this turn."""

    run_id: int
    record: int | None  # None: its record left the table
    claim: str
    key: str | None
    phase: Phase
    started: float  # monotonic seconds
    timeout_s: float | None = None
    signalled_at: float | None = None  # when its last TERM or KILL was sent
    grace_s: float | None = None  # between its TERM and KILL (None: KILL_GRACE_S)
    stays: bool = False  # a stop of waitd leaves it running (adopted, or run elsewhere)
    end: End | None = None  # ENDED: what is left to do
    paused: bool = False  # stopped by `waitd -s pause`: its timeout clock stands still


class Seat(NamedTuple):
    """A record of the table, as the scheduler sees it (active ones only)."""

    number: int
    jobs: int = 1  # jobs=
    ready: Callable[[int], tuple[Sequence[Candidate], float | None]] = lambda n: ((), None)
    # up to n jobs ready now, oldest first, and when (monotonic) the next one will be
    keyed: bool = False  # key=: look ahead
    publish_only: bool = False  # process `-`: its jobs are published
    backoff_until: float = 0.0  # monotonic
    executor_ready: bool = True  # its executor takes runs now (a broker reachable)
    out: handoff.OutLimit | None = None
    busy: Callable[[str], bool] = lambda name: False  # a run works on the name (removals wait)
    sweep: Sweep | None = None  # the removal facts of this turn (None: nothing to remove)


class Situation(NamedTuple):
    mode: Mode = Mode.ACTIVE
    now_ns: int = 0  # time.time_ns(), with `now`: the files' clock
    seats: Sequence[Seat] = ()
    running: Sequence[Running] = ()
    total: int | None = None  # --jobs
    held_until: float = 0.0  # monotonic: no start or publication before (the history's trouble)
    stop_at: float | None = None  # STOPPING: when the stop timeout is reached
    stop_grace_s: float = KILL_GRACE_S  # the grace after the stop's TERM


class Signal(NamedTuple):
    run_id: int
    signum: int
    why: Why | None = None  # None: as before (a KILL after a TERM), or its timeout
    grace_s: float | None = None


class Move(NamedTuple):
    run_id: int
    disposal: handoff.Disposal


class Hold(NamedTuple):
    record: int
    why: str
    until: float | None = None  # monotonic; None: until something changes


class Plan(NamedTuple):
    start: tuple[Candidate, ...] = ()
    publish: tuple[Candidate, ...] = ()
    signal: tuple[Signal, ...] = ()
    move: tuple[Move, ...] = ()
    remove: tuple[Remove, ...] = ()
    hold: tuple[Hold, ...] = ()
    looked: tuple[tuple[str, handoff.Outlook, int], ...] = ()  # next queue, its look, its files (-1: not counted)
    deadline: float | None = None  # monotonic
    ended: bool = False  # runs ended: their ends are seen to (retired once applied)


# The types of a plan's input and output are NamedTuples, not frozen
# dataclasses: a turn makes a few of each, and a tuple is built four times
# faster (the loop's own cost a file counts: issue 21).


@dataclass(slots=True)
class _Draft:
    """A plan being made."""

    deadlines: list[float] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    looked: list[tuple[str, handoff.Outlook, int]] = field(default_factory=list)

    def later(self, now: float, when: float | None) -> None:
        if when is not None and when > now:
            self.deadlines.append(when)


def plan(now: float, situation: Situation) -> Plan:
    """Every action of this moment, and the next deadline."""
    draft = _Draft()
    _signals(now, situation, draft)
    moves = _moves(situation.running)
    removals = _removals(situation) if situation.mode is Mode.ACTIVE else []
    starts: list[Candidate] = []
    publishes: list[Candidate] = []
    if situation.mode is Mode.ACTIVE and now >= situation.held_until:
        gone = {(r.record, r.fact.name) for r in removals if r.directory is None} if removals else _NONE
        starts, publishes = _starts(now, situation, draft, gone)
    else:
        draft.later(now, situation.held_until)
    return Plan(
        tuple(starts),
        tuple(publishes),
        tuple(draft.signals),
        tuple(moves),
        tuple(removals),
        tuple(draft.holds),
        tuple(draft.looked),
        min(draft.deadlines) if draft.deadlines else None,
        _any_ended(situation.running),
    )


def _any_ended(running: Sequence[Running]) -> bool:
    for run in running:  # a loop, not any() of a generator: asked each turn
        if run.phase is Phase.ENDED:
            return True
    return False


# -- signals ---------------------------------------------------------------------


def _signals(now: float, situation: Situation, draft: _Draft) -> None:
    stopping = situation.mode is Mode.STOPPING
    for run in situation.running:
        if run.phase is Phase.ENDED:
            if run.end is not None and run.end.signalled:
                # What it leaves behind (children that ignore TERM, holding
                # its log open) goes with it.
                draft.signals.append(Signal(run.run_id, int(signal.SIGKILL)))
            continue
        if stopping and run.stays:
            continue  # a stop leaves it running: the next waitd adopts it
        if stopping and situation.stop_at is not None and run.phase is Phase.RUNNING:
            if now >= situation.stop_at:
                grace = min(KILL_GRACE_S, max(situation.stop_grace_s, STOP_GRACE_MIN_S))
                draft.signals.append(Signal(run.run_id, int(signal.SIGTERM), Why.STOP, grace))  # RUNNING -> STOPPING
                draft.later(now, now + grace)
                continue
            draft.later(now, situation.stop_at)
        _timeout(now, run, draft)


def _timeout(now: float, run: Running, draft: _Draft) -> None:
    """TERM at its timeout; KILL after the grace, and again each second."""
    if run.phase is Phase.RUNNING:
        if run.timeout_s is None or run.paused:
            return  # a paused run's clock stands still: `started` is moved on by its pauses
        due = run.started + run.timeout_s
        if now >= due:
            draft.signals.append(Signal(run.run_id, int(signal.SIGTERM), Why.TIMEOUT))  # RUNNING -> STOPPING
            draft.later(now, now + KILL_GRACE_S)
        else:
            draft.later(now, due)
        return
    sent = run.signalled_at if run.signalled_at is not None else now
    grace = KILL_GRACE_S if run.grace_s is None else run.grace_s
    wait = grace if run.phase is Phase.STOPPING else KILL_AGAIN_S
    if now >= sent + wait:
        draft.signals.append(Signal(run.run_id, int(signal.SIGKILL)))  # STOPPING -> KILLED, or KILL again
        draft.later(now, now + KILL_AGAIN_S)
    else:
        draft.later(now, sent + wait)


def _moves(running: Sequence[Running]) -> list[Move]:
    return [
        Move(run.run_id, handoff.disposal(run.end.verdict, run.end.retry_at, run.end.attempt, run.end.forward))
        for run in running
        if run.phase is Phase.ENDED and run.end is not None and run.end.queue
    ]


# -- removals --------------------------------------------------------------------


def _removals(situation: Situation) -> list[Remove]:
    out: list[Remove] = []
    for seat in situation.seats:
        if seat.sweep is not None:
            out += removal.removals(seat.number, seat.sweep, seat.busy, situation.now_ns)
    return out


# -- starts ----------------------------------------------------------------------


def _starts(
    now: float, situation: Situation, draft: _Draft, gone: Collection[tuple[int, str]]
) -> tuple[list[Candidate], list[Candidate]]:
    """The jobs to start (records in turns) and to publish."""
    live = [r for r in situation.running if r.phase is not Phase.ENDED]
    total_room = None if situation.total is None else situation.total - len(live)
    queues: list[Queue] = []
    publishes: list[Candidate] = []
    for seat in situation.seats:
        if seat.publish_only:
            jobs, due = seat.ready(PUBLISH_BATCH)
            publishes += [c for c in jobs if not _removed(c, gone)]
            draft.later(now, due)
            continue
        room = _room(now, seat, situation.running, live, total_room, draft)
        if room > 0:
            jobs, due = seat.ready(asked(room, seat.keyed))
            draft.later(now, due)
            queues.append(Queue([c for c in jobs if not _removed(c, gone)], room))
    return take_turns(queues, live, total_room), publishes


def _removed(candidate: Candidate, gone: Collection[tuple[int, str]]) -> bool:
    return bool(gone) and any((candidate.record, name) in gone for name in candidate.names)


def _room(
    now: float, seat: Seat, running: Sequence[Running], live: list[Running], total_room: int | None, draft: _Draft
) -> int:
    """How many runs the record may start now; its hold, if it is held."""
    if seat.backoff_until > now:
        draft.holds.append(Hold(seat.number, "backing off", seat.backoff_until))
        draft.later(now, seat.backoff_until)
        return 0
    if not seat.executor_ready:
        draft.holds.append(Hold(seat.number, "its executor takes no runs now"))
        return 0  # the executor wakes the loop when it takes runs again
    room = room_left(seat.jobs, seat.number, live)
    if total_room is not None:
        room = min(room, total_room)
    if room <= 0 or seat.out is None:
        return room
    out = seat.out
    in_flight = sum(1 for r in running if r.record == seat.number)  # ended ones too, until handed on
    out_room, look, files = handoff.out_room(out.last, now, out.limit, out.wait_s, in_flight, out.count)
    draft.looked.append((out.queue, look, files))
    if out_room <= 0:
        again = look.at + out.wait_s
        draft.holds.append(Hold(seat.number, "out-limit", again))
        draft.later(now, again)
    return min(room, out_room)
