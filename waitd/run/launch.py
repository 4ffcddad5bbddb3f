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
written is not run: the disk, not the handler, is at fault, and the
journal holds every start until the next poll (its failure policy, as
for an end that cannot be written).
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from waitd.config.errors import HistoryWriteError, WaitdError
from waitd.daemon.records import Entry, Works
from waitd.decide.outcome import Job, Outcome, Verdict, Why, end_events
from waitd.journal.history import Event, Status, escape
from waitd.journal.writer import Journal
from waitd.run import runner
from waitd.run.executors.local import Executor
from waitd.run.runs import Run, Runs, RunState
from waitd.spool import claims
from waitd.spool.directory import FileFact
from waitd.spool.view import identity

log = logging.getLogger("waitd")

ADOPTED_TIMEOUT_S = 60.0  # an adopted Celery run of a record that has no timeout= now


class Launcher:
    def __init__(
        self, passdir: str, journal: Journal, runs: Runs, works: Works, executor: Executor, env: dict[str, str]
    ) -> None:
        self.passdir = passdir
        self.journal = journal
        self.history = journal.history
        self.runs = runs
        self.works = works
        self.executor = executor
        self.env = env
        self.failures = 0  # starts that failed, for --once's exit status
        self.instance = ""  # claim=yes: this instance's name in the queues
        self._ended: deque[tuple[Run, Outcome, list[Event], Verdict]] = deque()

    # -- starting ---------------------------------------------------------------

    def start(self, starts: list[tuple[Entry, Job]]) -> None:
        """Open the log files, record the starts with one sync, execute."""
        prepared: list[tuple[Entry, Run, list[Event]]] = []
        for entry, job in starts:
            if entry.record.options.claim:
                claimed = claims.take(entry.view, job, self.instance)
                if claimed is None:
                    continue  # another instance was first
                job = claimed
            run = self._prepare(entry, job)
            if run is not None:
                prepared.append((entry, run, runner.start_events(job, run.started_at, run.task)))
            elif entry.record.options.claim:
                claims.unclaim(entry.view, job, self.instance)
        if not prepared:
            return
        try:
            runner.commit([(run, entry.record, started) for entry, run, started in prepared], self.journal)
        except runner.StartError as exc:
            for entry, run, _ in prepared:
                self._not_started(entry, run.job, run.letter, exc)
                if entry.record.options.claim:
                    claims.unclaim(entry.view, run.job, self.instance)
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
                log_name, log_fd = runner.open_log(
                    self.passdir, entry.record, entry.program, list(job.paths), letter, at
                )
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
            task=str(uuid.uuid4()) if entry.record.options.run == "celery" else None,
        )

    def _launch(self, entry: Entry, run: Run, started: list[Event]) -> None:
        job = run.job
        assert entry.program is not None
        env = runner.environment(self.env, entry.record, job, self.passdir, run.log_name)
        self.runs.add(run)
        try:
            self.executor.start(run, entry.program, [job.process, *job.paths], env, os.path.dirname(job.path))
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
        if run.task is None:  # a Celery run's status 0 has its task id already
            assert run.pid is not None
            self.journal.running(started, run.pid)
        if entry.view.drain is not None:
            for fact in job.facts:
                entry.view.drain.pop(fact.name, None)
        attempt = f", attempt {job.attempt}" if job.attempt > 1 else ""
        log.info(
            "record %d: started %s on %s (%s, log %s%s)",
            entry.number,
            job.process,
            _files(job),
            f"pid {run.pid}" if run.task is None else f"celery task {run.task}",
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
            # A full disk is not the handler's fault: no back-off (and the
            # journal starts nothing until the next poll tries again).
            log.error("record %d: %s: %s; trying again at the next poll", entry.number, escape(job.path), exc)
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
                    "record %d: %s on %s still runs after its timeout of %g s: %s",
                    run.number,
                    run.job.process,
                    escape(run.path),
                    run.timeout_s or 0,
                    "TERM to its process group" if run.task is None else "revoking its celery task (terminate)",
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

    def _end(self, run: Run, outcome: Outcome, took: float) -> tuple[Run, Outcome, list[Event], Verdict]:
        """Account for a run's end: its state, its log line, its record's tally."""
        run.transition(RunState.ENDED)  # -> ENDED
        entry_view = self.works.view(run.job.identity)
        options = entry_view.record.options if entry_view is not None else None
        ends, verdict = end_events(
            run.job, outcome, run.why, options, run.pid, took, time.time(), run.adopted, run.task
        )
        end = ends[0]
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
                _files(run.job),
                described,
                took,
            )
            tally = self.works.tally(run.job.identity)
            if tally is not None:
                tally.ended(
                    run.number, run.path, described, ok, took, time.monotonic(), retrying=end.retry_at is not None
                )
        if ok and entry_view is not None:
            for fact in run.job.facts:
                entry_view.ran(fact)
        return run, outcome, ends, verdict

    def finish(self) -> int:
        """Write the ends `reap` collected; return how many."""
        count = len(self._ended)
        while self._ended:
            run, outcome, ends, verdict = self._ended.popleft()
            runner.footer(run, outcome, ends[0])
            view = self.works.view(run.job.identity)
            self.journal.ended(view.record if view is not None else None, ends)  # a group's: one event
            self.runs.remove(run)  # ENDED and written (or held): its files are free
            if view is not None and view.record.options.claim:
                claims.dispose(view, run.job, ends[0], verdict)  # its file leaves pending
            elif view is not None and (ends[0].retry_at is not None or not ends[0].consumed):
                for fact in run.job.facts:
                    view.requeue(fact.name)
        return count

    # -- after a crash ------------------------------------------------------------

    def adopt(self, open_runs: list[Event], number_of: Callable[[tuple[str, str, str]], int | None]) -> None:
        """Take over the handlers a dead waitd left running (they count as
        their record's runs); record the others as status 1 at once.  The
        members of a group run share a pid (or a Celery task): one run for them."""
        by_pid: dict[int | str | None, list[Event]] = {}
        for event in open_runs:
            run_of = event.pid if event.pid is not None else event.task
            if run_of is not None and event.group is not None:
                by_pid.setdefault(run_of, []).append(event)
            else:
                by_pid.setdefault(None, []).append(event)
        batches = [[e] for e in by_pid.pop(None, [])] + list(by_pid.values())
        for events in batches:
            first = events[0]
            if first.task is not None and self.executor.adopt(first):
                self._adopt_task(events, number_of)
                continue
            if first.task is None and self.executor.adopt(first):
                log.warning(
                    "%s: handler pid %d of a previous waitd still runs; waiting for it", _files(events), first.pid
                )
                job = _job_of(events, self._identity_of(first))
                view = self.works.view(job.identity)
                started_at = first.at or time.time()
                # Its timeout counts from its recorded start, not from now.
                started_mono = time.monotonic() - max(0.0, time.time() - started_at)
                timeout_s = view.record.options.timeout_s if view is not None else None
                run = Run(
                    self.runs.new_id(), job, number_of(job.identity) or 0, started_at, started_mono, timeout_s=timeout_s
                )
                run.pid, run.adopted = first.pid, True
                run.transition(RunState.RUNNING)  # adopted: STARTING -> RUNNING
                self.runs.add(run)
                continue
            now = time.time()
            retry_at = self._retry_after_crash(events, now)
            retry = "" if retry_at is None else f"; retry at {time.strftime('%H:%M:%S', time.localtime(retry_at))}"
            log.warning(
                "%s: waitd stopped while its handler ran; recorded as status 1 (unknown)%s", _files(events), retry
            )
            ended = [replace(event, status=Status.UNKNOWN, at=now, retry_at=retry_at) for event in events]
            view = self.works.view(self._identity_of(first))
            self.journal.ended(view.record if view is not None else None, ended)

    def _adopt_task(self, events: list[Event], number_of: Callable[[tuple[str, str, str]], int | None]) -> None:
        """Wait for the result of a Celery run a dead waitd started; its
        timeout counts from its start in the history."""
        first = events[0]
        assert first.task is not None
        job = _job_of(events, self._identity_of(first))
        number = number_of(job.identity) or 0
        view = self.works.view(job.identity)
        timeout_s = view.record.options.timeout_s if view is not None else None
        at = first.at if first.at is not None else time.time()
        started_mono = time.monotonic() - max(0.0, time.time() - at)
        run = Run(self.runs.new_id(), job, number, at, started_mono, timeout_s=timeout_s or ADOPTED_TIMEOUT_S)
        run.task = first.task
        run.log_name, run.log_fd = runner.task_log(self.passdir, number, first.task)
        run.transition(RunState.RUNNING)  # adopted: STARTING -> RUNNING
        self.runs.add(run)
        log.warning("%s: celery task %s of a previous waitd in flight; awaiting its result", _files(events), run.task)

    def _retry_after_crash(self, events: list[Event], now: float) -> float | None:
        """When a run that ended with waitd is tried again: never, but for a
        queue's file with retries left (`jobs.end_events`)."""
        job = _job_of(events, self._identity_of(events[0]))
        view = self.works.view(job.identity)
        if view is None:
            return None
        ends, _ = end_events(job, Outcome(Status.UNKNOWN), None, view.record.options, None, 0.0, now, adopted=True)
        return ends[0].retry_at

    def _identity_of(self, event: Event) -> tuple[str, str, str]:
        """The identity of the record whose run it was: its process, and its
        file in the record's incoming-dir (or, claim=yes, in this
        instance's pending directory) matching the template."""
        for entry in self.works:
            if entry.record.process == event.process and entry.view.owns(event.path):
                return identity(entry.record)
        return (os.path.dirname(event.path), "", event.process)


def _job_of(events: list[Event], key: tuple[str, str, str]) -> Job:
    """The job of an open run, from its history lines (one a file)."""
    facts = []
    for event in events:
        v = event.version
        name = os.path.basename(event.path)
        if v is not None:
            facts.append(FileFact(name, v.mtime_ns, 0, v.size, v.ino, v.ino))
        else:
            facts.append(FileFact(name, event.mtime * 1_000_000_000, 0, 0, 0, 0))
    first = events[0]
    return Job(
        key,
        first.process,
        tuple(facts),
        tuple(e.path for e in events),
        attempt=first.runs,
        group=first.group,
    )


def _files(job: Job | list[Event]) -> str:
    """The file, or the group and its files, as a log line names them."""
    paths = list(job.paths) if isinstance(job, Job) else [e.path for e in job]
    group = job.group if isinstance(job, Job) else job[0].group
    if group is None and len(paths) == 1:
        return escape(paths[0])
    names = " ".join(escape(os.path.basename(p)) for p in paths)
    return f"group {escape(group or '?')} in {escape(os.path.dirname(paths[0]))}: {names}"
