# SPDX-License-Identifier: MIT
"""Handler runs: each one's state machine, and the one registry of them.

A `Run` is one attempt at a job, from the moment its log file is opened to
the moment its end is in the history.  Its states and their edges:

    STARTING -> RUNNING    the status 0 is on disk and the handler executed
                           (or: adopted, a handler a dead waitd left running)
    STARTING -> ENDED      it could not be executed (recorded as such)
    RUNNING  -> STOPPING   TERM sent to its process group (its timeout, a
                           cancel, waitd's stop)
    RUNNING  -> KILLED     KILL sent at once
    STOPPING -> KILLED     KILL sent, the grace after TERM gone
    KILLED   -> KILLED     KILL again, each second while it lingers
    any but ENDED -> ENDED its process was reaped (or the adopted one is gone)

`Run.transition` checks each edge; an edge not in the table is a bug and
raises.  A run holds what it needs from start to end: its job (with its
record's identity), its record's work (`work.Work`: its files and tally,
whatever became of the table meanwhile) and the executor that runs it;
once reaped, its `Ended` (the outcome, its end events, their verdict, its
response); and `notes`, waitd's log lines about it (kept for a record
whose events carry them).
`Runs` is the only owner of runs: records, the scheduler and the status
ask it (`of`, `busy`, `scheduled`), nothing else keeps a run.  A run stays
in it, ENDED, until its end is written and its file handed on (a queue's):
its file stays busy, so no newer version of the file starts before the
older one's end is recorded.

This module starts and signals nothing (the executor does) and writes
nothing (the launcher records the ends).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from waitd.decide.facts import Identity
from waitd.decide.outcome import Job, Outcome, Verdict, Why
from waitd.decide.quiet import Live
from waitd.decide.scheduler import End, Phase, Running
from waitd.formats.history_line import Event
from waitd.formats.response import Response

if TYPE_CHECKING:
    from waitd.run.executors import Executor
    from waitd.run.work import Work


class RunState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    KILLED = "killed"
    ENDED = "ended"

    # Members are singletons: hashed by identity, not by Enum's own Python
    # __hash__ of the name (each transition looks two up).
    __hash__ = object.__hash__


_EDGES = {
    RunState.STARTING: {RunState.RUNNING, RunState.ENDED},
    RunState.RUNNING: {RunState.STOPPING, RunState.KILLED, RunState.ENDED},
    RunState.STOPPING: {RunState.KILLED, RunState.ENDED},
    RunState.KILLED: {RunState.KILLED, RunState.ENDED},
    RunState.ENDED: set(),
}
_PHASES = {
    RunState.RUNNING: Phase.RUNNING,
    RunState.STOPPING: Phase.STOPPING,
    RunState.KILLED: Phase.KILLED,
    RunState.ENDED: Phase.ENDED,
}


class Ended(NamedTuple):
    """How a run ended, as it is recorded (a NamedTuple: one a run)."""

    outcome: Outcome
    events: list[Event]  # its end events, one a file of its job
    verdict: Verdict
    took: float
    response: Response | None = None  # what it left at WAITD_RESPONSE


@dataclass(slots=True, eq=False)
class Run:
    """One attempt at a job (mutable: its state moves)."""

    run_id: int
    job: Job
    number: int  # the record's number when it started: its log file's
    started_at: float  # time.time()
    started_mono: float
    executor: Executor
    work: Work | None = None  # its record's work (None: adopted, of no record of the table)
    timeout_s: float | None = None
    log_name: str = ""
    log_fd: int = -1
    log_head: int = -1  # the size of the header line waitd wrote to its log (-1: unknown)
    letter: str | None = None
    pid: int | None = None
    task: str | None = None  # run=celery: its Celery task id (no pid here)
    adopted: bool = False  # a handler of a previous waitd
    state: RunState = RunState.STARTING
    why: Why | None = None  # why waitd signalled it, if it did
    signalled_at: float | None = None
    grace_s: float | None = None  # between its TERM and KILL (None: the scheduler's)
    ended: Ended | None = None  # ENDED: how
    seen_ended: bool = False  # a plan has seen it ENDED (and decided what its end leaves to do)
    paused_at: float | None = None  # monotonic: stopped (SIGSTOP) by `waitd -s pause` then
    paused_s: float = 0.0  # how long its earlier pauses lasted: its timeout clock stood still
    body: dict[str, Any] | None = None  # its file's JSON object, when its events carry it
    notes: list[str] | None = None  # waitd's log lines about it, when kept (an ISIS reply's admin_log)

    @property
    def path(self) -> str:
        return self.job.path

    @property
    def stays(self) -> bool:
        """A stop of waitd leaves it running (the next waitd adopts it)."""
        return self.adopted or self.executor.remote

    def describe(self) -> str:
        return self.executor.describe(self)

    def pause(self, now: float) -> None:
        """Its process group was stopped: its timeout clock stops."""
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> None:
        """Its process group was continued: its timeout clock goes on."""
        if self.paused_at is not None:
            self.paused_s += max(0.0, now - self.paused_at)
            self.paused_at = None

    def transition(self, to: RunState) -> None:
        """Move along one edge of the table above; any other is a bug."""
        if to not in _EDGES[self.state]:
            raise AssertionError(f"run {self.run_id}: no edge {self.state.value} -> {to.value}")
        self.state = to


class Runs:
    """Every run of this daemon, by run id."""

    def __init__(self) -> None:
        self._runs: dict[int, Run] = {}
        self._last_id = 0

    def new_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def add(self, run: Run) -> None:
        self._runs[run.run_id] = run

    def remove(self, run: Run) -> None:
        self._runs.pop(run.run_id, None)

    def get(self, run_id: int) -> Run | None:
        return self._runs.get(run_id)

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._runs.values()))

    def live(self) -> list[Run]:
        """The runs whose handler runs (or may still)."""
        return [r for r in self._runs.values() if r.state is not RunState.ENDED]

    def of(self, identity: Identity) -> list[Run]:
        return [r for r in self.live() if r.job.identity == identity]

    def ended(self) -> list[Run]:
        """The runs reaped and not yet retired."""
        return [r for r in self._runs.values() if r.state is RunState.ENDED]

    def any_ended(self) -> bool:
        for r in self._runs.values():  # a loop, not any() of a generator: asked before each wait
            if r.state is RunState.ENDED:
                return True
        return False

    def busy(self, path: str) -> bool:
        """A run works on the file, or ended and its end is not written yet."""
        for r in self._runs.values():  # a loop, not any() of a generator: `busy_for`
            if path in r.job.paths:
                return True
        return False

    def working(self, path: str) -> bool:
        """A live run works on the file (a removal waits for it)."""
        return any(path in r.job.paths for r in self._runs.values() if r.state is not RunState.ENDED)

    def busy_for(self, process: str) -> Callable[[str], bool]:
        """`busy` for the runs of one process (a key of the history)."""
        runs = self._runs

        def busy(path: str) -> bool:  # a loop, not any() of a generator: asked of every file a turn looks at
            for r in runs.values():
                if path in r.job.paths and r.job.process == process:
                    return True
            return False

        return busy

    def scheduled(self, number_of: Callable[[Identity], int | None]) -> list[Running]:
        """The runs as the scheduler sees them, those reaped this turn too
        (`number_of` gives the number of the record doing that work now,
        None if none does)."""
        out = []
        for r in self._runs.values():
            if r.state is RunState.STARTING:
                continue
            out.append(
                Running(
                    r.run_id,
                    number_of(r.job.identity),
                    r.job.claim,
                    r.job.key,
                    _PHASES[r.state],
                    r.started_mono + r.paused_s,
                    r.timeout_s,
                    r.signalled_at,
                    r.grace_s,
                    r.stays,
                    _end(r),
                    r.paused_at is not None,
                )
            )
        return out

    def quiet(self, number_of: Callable[[Identity], int | None]) -> tuple[list[Live], bool] | None:
        """The runs as a quiet turn's plan sees them (`decide.quiet`): the
        live ones, and whether one ended; None when one is not quiet (a
        timeout, a signal sent, a queue's file to move: the full pass,
        `scheduled`).  The ended ones are seen, by `_end` as `scheduled`
        sees them."""
        live: list[Live] = []
        ended = False
        for r in self._runs.values():
            state = r.state
            if state is RunState.RUNNING and r.timeout_s is None:
                live.append(Live(number_of(r.job.identity), r.job.claim, r.job.key))
            elif state is RunState.ENDED and _end(r) is None:
                ended = True
            elif state is not RunState.STARTING:
                return None
        return live, ended


def _end(run: Run) -> End | None:
    """What an ended run leaves to do, for the scheduler (None: nothing)."""
    if run.ended is None:
        return None
    run.seen_ended = True  # the scheduler has seen it ended: retired after this turn
    options = run.work.files.record.options if run.work is not None else None
    queue = options is not None and options.claim
    if not queue and run.signalled_at is None:
        return None
    return End(
        signalled=run.signalled_at is not None,
        verdict=run.ended.verdict,
        retry_at=run.ended.events[0].retry_at,
        attempt=run.job.attempt,
        queue=queue,
        forward=options is not None and options.next is not None,
    )
