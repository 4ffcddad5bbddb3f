# SPDX-License-Identifier: MIT
"""Carrying out the life of runs: start, signal, reap, record.

`Launcher` does what the scheduler decided, through an executor, and
writes what happened: `start` opens the log files of a pass's starts,
records their status 0 lines with one sync and executes their handlers;
`signal` sends a plan's TERM or KILL; `reap` collects the runs that ended
and logs each end at once (before what it leads to: a back-off, a
removal); `finish` writes their footers and end events, after the pass has
started the next handlers, so that it overlaps their runs; `adopt` takes
over the handlers a dead waitd left running.  It owns no state of its
own: runs are in `Runs`, what records know is in `Works`.

Failures: a log file that cannot be made, or a handler that cannot be
executed, backs its record off (the second also records status 1 with
`error=`: the file is not consumed).  A start whose status 0 cannot be
written is not run, and no start is made until `hold_until` (the next
poll): the disk, not the handler, is at fault.  An end that cannot be
written is kept in `unwritten`; the loop writes it later.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from waitd import runner
from waitd.errors import HistoryWriteError, WaitdError
from waitd.executor import Executor
from waitd.history import Event, History, Status, escape
from waitd.jobs import Job, Outcome, Verdict, Why, end_event
from waitd.runs import Run, Runs, RunState
from waitd.scan import FileFact
from waitd.state import Entry, Works
from waitd.view import identity

log = logging.getLogger("waitd")


class Launcher:
    def __init__(
        self, passdir: str, history: History, runs: Runs, works: Works, executor: Executor, env: dict[str, str]
    ) -> None:
        self.passdir = passdir
        self.history = history
        self.runs = runs
        self.works = works
        self.executor = executor
        self.env = env
        self.unwritten: deque[Event] = deque()
        self.failures = 0  # starts that failed, for --once's exit status
        self.hold_until = 0.0  # monotonic: the history could not take a status 0
        self.next_poll: Callable[[], float] = time.monotonic
        self._ended: deque[tuple[Run, Outcome, Event, Verdict]] = deque()

    # -- starting ---------------------------------------------------------------

    def start(self, starts: list[tuple[Entry, Job]]) -> None:
        """Open the log files, record the starts with one sync, execute."""
        prepared: list[tuple[Entry, Run, Event]] = []
        for entry, job in starts:
            run = self._prepare(entry, job)
            if run is not None:
                prepared.append((entry, run, runner.start_event(job, run.started_at)))
        if not prepared:
            return
        try:
            runner.commit([(run, started) for _, run, started in prepared], self.history)
        except runner.StartError as exc:
            for entry, run, _ in prepared:
                self._not_started(entry, run.job, run.letter, exc)
            return
        for entry, run, started in prepared:
            self._launch(entry, run, started)

    def _prepare(self, entry: Entry, job: Job) -> Run | None:
        """The run of a job, its log file open (STARTING), or None."""
        letter = runner.next_letter(entry.tally.letter)
        at = time.time()
        assert entry.program is not None
        for attempt in (1, 2):
            try:
                log_name, log_fd = runner.open_log(self.passdir, entry.record, entry.program, [job.path], letter, at)
            except runner.StartError as exc:
                if attempt == 1 and isinstance(exc.__cause__, FileNotFoundError) and self.logfiles_again():
                    continue
                self._not_started(entry, job, letter, exc)
                return None
            break
        entry.tally.letter = letter
        return Run(
            self.runs.new_id(),
            job,
            entry.number,
            at,
            time.monotonic(),
            timeout_s=entry.record.options.timeout_s,
            log_name=log_name,
            log_fd=log_fd,
            letter=letter,
        )

    def _launch(self, entry: Entry, run: Run, started: Event) -> None:
        job = run.job
        assert entry.program is not None
        env = runner.environment(self.env, entry.record, job, self.passdir, run.log_name)
        self.runs.add(run)
        try:
            self.executor.start(run, entry.program, [job.process, job.path], env, os.path.dirname(job.path))
        except OSError as exc:
            # Could not be executed: recorded, not consumed, and the record backs off.
            error = exc.strerror or str(exc)
            self._ended.append(self._end(run, Outcome(Status.UNKNOWN, error=error), 0.0))
            self.finish()
            self._not_started(
                entry, job, run.letter, runner.StartError(f"cannot execute {entry.program}: {error}", True)
            )
            return
        run.transition(RunState.RUNNING)  # STARTING -> RUNNING
        assert run.pid is not None
        runner.started_pid(self.history, started, run.pid)
        if entry.view.drain is not None:
            entry.view.drain.pop(job.fact.name, None)
        attempt = f", attempt {job.attempt}" if job.attempt > 1 else ""
        log.info(
            "record %d: started %s on %s (pid %d, log %s%s)",
            entry.number,
            job.process,
            escape(job.path),
            run.pid,
            os.path.basename(run.log_name),
            attempt,
        )

    def logfiles_again(self) -> bool:
        """Make logfiles/ again if it was removed; True if it was."""
        try:
            made = runner.make_logfiles(self.passdir)
        except WaitdError as exc:
            log.error("%s", exc)
            return False
        if made:
            log.warning("%s/logfiles: was gone; made it again", self.passdir)
        return made

    def _not_started(self, entry: Entry, job: Job, letter: str | None, exc: runner.StartError) -> None:
        self.failures += 1
        if entry.view.drain is not None:
            entry.view.drain.clear()  # --once: this record's part of the drain ends
        if isinstance(exc.__cause__, HistoryWriteError):
            # A full disk is not the handler's fault: no back-off, but no
            # start of any record until the next poll tries again.
            log.error("record %d: %s: %s; trying again at the next poll", entry.number, escape(job.path), exc)
            self.hold_until = self.next_poll()
            return
        if exc.recorded:  # its log file was used
            entry.tally.letter = letter
            entry.tally.last = (job.path, f"could not start: {exc}")
        log.error("record %d: %s: %s", entry.number, escape(job.path), exc)
        entry.tally.back_off(entry.number, time.monotonic(), "could not start a handler")

    # -- signals ----------------------------------------------------------------

    def signal(self, run: Run, signum: int, why: Why | None = None, grace_s: float | None = None) -> None:
        """Send TERM or KILL to a run's process group, and say why."""
        now = time.monotonic()
        if signum == signal.SIGTERM:
            if run.state is not RunState.RUNNING:
                return
            run.transition(RunState.STOPPING)  # RUNNING -> STOPPING
            run.why = why or run.why or Why.TIMEOUT
            run.grace_s = grace_s
            if run.why is Why.TIMEOUT:
                log.warning(
                    "record %d: %s on %s still runs after its timeout of %g s: TERM to its process group",
                    run.number,
                    run.job.process,
                    escape(run.path),
                    run.timeout_s or 0,
                )
        else:
            run.transition(RunState.KILLED)  # RUNNING/STOPPING/KILLED -> KILLED
            run.why = why or run.why or Why.TIMEOUT
        run.signalled_at = now
        self.executor.signal(run, signum)

    # -- ends -------------------------------------------------------------------

    def reap(self) -> int:
        """Collect the runs that ended; their records are free at once."""
        count = 0
        for run in self.runs.live():
            if run.state is RunState.STARTING:
                continue
            outcome = self.executor.poll(run)
            if outcome is None:
                continue
            if run.why is not None and run.state in (RunState.STOPPING, RunState.KILLED):
                # It was sent TERM: what it leaves behind (children that ignore
                # TERM, holding its log open) goes with it.
                self.executor.signal(run, signal.SIGKILL)
            took = time.monotonic() - run.started_mono
            self._ended.append(self._end(run, outcome, took))
            count += 1
        return count

    def _end(self, run: Run, outcome: Outcome, took: float) -> tuple[Run, Outcome, Event, Verdict]:
        """Account for a run's end: its state, its log line, its record's tally."""
        run.transition(RunState.ENDED)  # -> ENDED
        entry_view = self.works.view(run.job.identity)
        options = entry_view.record.options if entry_view is not None else None
        end, verdict = end_event(run.job, outcome, run.why, options, run.pid, took, time.time(), run.adopted)
        ok = verdict is Verdict.SUCCESS
        described = outcome.describe() if not run.adopted else "ended after a restart of waitd: outcome unknown"
        if end.error in ("timeout", "cancelled"):
            described += f" ({end.error})"
        if end.retry_at is not None:
            described += f"; retry {end.runs + 1} at {time.strftime('%H:%M:%S', time.localtime(end.retry_at))}"
        if verdict is not Verdict.NOT_STARTED:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "record %d: %s on %s: %s after %.3f s",
                run.number,
                run.job.process,
                escape(run.path),
                described,
                took,
            )
            tally = self.works.tally(run.job.identity)
            if tally is not None:
                tally.ended(run.number, run.path, described, ok, took, time.monotonic())
        if ok and entry_view is not None:
            entry_view.ran(run.job.fact)
        return run, outcome, end, verdict

    def finish(self) -> int:
        """Write the ends `reap` collected; return how many."""
        count = len(self._ended)
        while self._ended:
            run, outcome, end, _ = self._ended.popleft()
            runner.footer(run, outcome, end)
            self.record(end)
            self.runs.remove(run)  # ENDED and written: its file is free
            view = self.works.view(run.job.identity)
            if view is not None and (end.retry_at is not None or not end.consumed):
                view.requeue(run.job.fact.name)
        return count

    def record(self, event: Event) -> None:
        try:
            self.history.append(event)
        except HistoryWriteError:
            log.error(
                "%s: cannot write to the history; keeping the event to write later and starting no handler until then",
                self.history.path,
            )
            self.unwritten.append(event)

    def flush_unwritten(self) -> int:
        """Write the events a full disk held back; return how many still wait."""
        while self.unwritten:
            try:
                self.history.append(self.unwritten[0])
            except HistoryWriteError:
                break
            log.info("%s: history writable again; wrote a delayed event", self.history.path)
            self.unwritten.popleft()
        return len(self.unwritten)

    # -- after a crash ------------------------------------------------------------

    def adopt(self, open_runs: list[Event], number_of: Callable[[tuple[str, str, str]], int | None]) -> None:
        """Take over the handlers a dead waitd left running (they count as
        their record's runs); record the others as status 1 at once."""
        for event in open_runs:
            if self.executor.adopt(event):
                log.warning(
                    "%s: handler pid %d of a previous waitd still runs; waiting for it", escape(event.path), event.pid
                )
                job = _job_of(event, self._identity_of(event))
                run = Run(self.runs.new_id(), job, number_of(job.identity) or 0, event.at or 0.0, time.monotonic())
                run.pid, run.adopted = event.pid, True
                run.transition(RunState.RUNNING)  # adopted: STARTING -> RUNNING
                self.runs.add(run)
            else:
                log.warning(
                    "%s: waitd stopped while its handler ran; recorded as status 1 (unknown)", escape(event.path)
                )
                self.record(replace(event, status=Status.UNKNOWN, at=time.time(), retry_at=None))

    def _identity_of(self, event: Event) -> tuple[str, str, str]:
        """The identity of the record whose run it was (its file matches)."""
        directory, name = os.path.split(event.path)
        for entry in self.works:
            r = entry.record
            if (r.directory, r.process) == (directory, event.process) and entry.view.match(name):
                return identity(r)
        return (directory, "", event.process)


def _job_of(event: Event, key: tuple[str, str, str]) -> Job:
    """The job of an open run, from its history line."""
    v = event.version
    fact = (
        FileFact(os.path.basename(event.path), v.mtime_ns, 0, v.size, v.ino, v.ino)
        if v is not None
        else FileFact(os.path.basename(event.path), event.mtime * 1_000_000_000, 0, 0, 0, 0)
    )
    return Job(key, event.process, fact, event.path, attempt=event.runs)
