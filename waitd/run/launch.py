# SPDX-License-Identifier: MIT
"""Carrying out the life of runs: start, signal, reap, record, hand on.

`Launcher` does what the scheduler decided, through each run's executor,
and writes what happened; it decides nothing itself (the outcomes are
`decide.outcome`'s, the back-off `decide.backoff`'s, the moves
`decide.handoff`'s):

- `start` stats each job's file once more (`observe.verify`), claims it
  (claim=yes), opens the log files, records the status 0 lines with one
  sync and executes the handlers;
- `signal` sends a plan's TERM or KILL, and says why;
- `reap` collects the runs that ended and logs each end at once, with
  its record's tally (before what it leads to: a back-off, a removal),
  with the response the handler left (WAITD_RESPONSE: `retry_in` and
  `skip` count in its outcome; one waitd cannot take is logged and
  ignored);
  `finish` writes their footers and end events (the `ended` event with
  the response; and, for a record a `format = isis` sink takes, the
  run's message, its log's tail and waitd's lines about it), after
  the turn's starts, so that it overlaps their runs; `dispose` hands a queue's file on as
  the plan says, once its end is written; `retire` lets go of the runs
  the plan has seen ended;

It owns no state of its own: runs are in `Runs`, each holding its
record's `Work`.

Everything is written through the journal (`journal.writer.Journal`):
the starts of a turn with one sync, the pids, the ends, each with its
record.

Failures: a log file that cannot be made, or a handler that cannot be
executed, backs its record off (the second also records status 1 with
`error=`: the file is not consumed).  A start whose status 0 cannot be
written is not run: the disk, not the handler, is at fault, and the
journal holds every start until the next poll (its failure policy, as for
an end that cannot be written).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from waitd.config.errors import HistoryWriteError, WaitdError
from waitd.decide.handoff import Disposal
from waitd.decide.outcome import Job, Outcome, Verdict, Why, end_events
from waitd.formats.history_fast import escaped
from waitd.formats.response import BadResponse, Response
from waitd.journal.history import Event, Status, escape
from waitd.journal.logfile import say
from waitd.journal.writer import Journal
from waitd.run import runner
from waitd.run.executors import Executor
from waitd.run.runs import Ended, Run, Runs, RunState
from waitd.run.work import Entry
from waitd.spool import claims, observe

log = logging.getLogger("waitd")


class Launcher:
    def __init__(
        self,
        journal: Journal,
        runs: Runs,
        executor_of: Callable[[str], Executor],
        env: dict[str, str],
        instance: str,
    ) -> None:
        self.passdir = journal.passdir
        self.journal = journal
        self.history = journal.history
        self.runs = runs
        self.executor_of = executor_of  # a record's executor, by its run=
        self.env = env
        self.instance = instance  # claim=yes: this instance's name in the queues
        self.failures = 0  # starts that failed, for --once's exit status
        self._to_write: deque[Run] = deque()  # reaped, their ends not written yet
        self._templates: dict[int, runner.Template] = {}  # by record number: `_template`

    # -- starting ---------------------------------------------------------------

    def start(self, starts: list[tuple[Entry, Job]], now_ns: int) -> None:
        """Verify, claim, open the log files, record the starts with one
        sync, execute."""
        prepared: list[tuple[Entry, Run, runner.Template, list[Event]]] = []
        for entry, job in starts:
            claimed = self._claim(entry, job, now_ns)
            if claimed is None:
                continue
            template = self._template(entry)
            run = self._prepare(entry, claimed, template)
            if run is not None and self.journal.carries(entry.number):
                # Its events carry the message, its log's tail and waitd's lines about it.
                run.body = runner.read_body(claimed.path)
                run.notes = []
            if run is not None:
                prepared.append((entry, run, template, runner.start_events(claimed, run.started_at, run.task)))
            elif entry.record.options.claim:
                claims.unclaim(entry.files, claimed, self.instance)
        if not prepared:
            return
        try:
            runner.commit([(run, entry.record, started) for entry, run, _, started in prepared], self.journal)
        except runner.StartError as exc:
            for entry, run, _, _ in prepared:
                self._not_started(entry, run.job, run.letter, exc)
                if entry.record.options.claim:
                    claims.unclaim(entry.files, run.job, self.instance)
            return
        for entry, run, template, started in prepared:
            self._launch(entry, run, template, started)

    def _claim(self, entry: Entry, job: Job, now_ns: int) -> Job | None:
        """The job as it starts: its file as it was seen, claimed if need be."""
        if not observe.verify(entry.files, self.history, job, now_ns):
            return None
        if entry.record.options.claim:
            return claims.take(entry.files, job, self.instance)  # None: another instance was first
        return job

    def _prepare(self, entry: Entry, job: Job, template: runner.Template) -> Run | None:
        """The run of a job, its log file open (STARTING), or None
        (`template`: its record's, `_template`)."""
        letter = runner.next_letter(entry.tally.letter)
        at = time.time()
        assert entry.program is not None
        for attempt in (1, 2):
            try:
                log_name, log_fd, log_head = template.open_log(job.paths, letter, at)
            except runner.StartError as exc:
                if attempt == 1 and isinstance(exc.__cause__, FileNotFoundError) and self.logfiles_again():
                    continue
                self._not_started(entry, job, letter, exc)
                return None
            break
        entry.tally.letter = letter
        executor = self.executor_of(entry.record.options.run)
        return Run(
            self.runs.new_id(),
            job,
            entry.number,
            at,
            time.monotonic(),
            executor,
            entry.work,
            timeout_s=entry.record.options.timeout_s,
            log_name=log_name,
            log_fd=log_fd,
            log_head=log_head,
            letter=letter,
            task=executor.ident(),
        )

    def _launch(self, entry: Entry, run: Run, template: runner.Template, started: list[Event]) -> None:
        job = run.job
        assert entry.program is not None
        env = template.environment(job, run.log_name)
        self.runs.add(run)
        try:
            run.executor.start(run, entry.program, [template.command, *job.paths], env, _directory(job.path))
        except OSError as exc:
            # Could not be executed: recorded, not consumed, and the record backs off.
            error = exc.strerror or str(exc)
            self._end(run, Outcome(Status.UNKNOWN, error=error), 0.0)
            self.finish()
            self._not_started(
                entry, job, run.letter, runner.StartError(f"cannot execute {entry.program}: {error}", True)
            )
            return
        run.transition(RunState.RUNNING)  # STARTING -> RUNNING
        if run.pid is not None:  # a remote run's status 0 has its task id already
            self.journal.running(started, run.pid)
        entry.files.started(job)
        attempt = f", attempt {job.attempt}" if job.attempt > 1 else ""
        _say(
            run,
            logging.INFO,
            "record %d: started %s on %s (%s, log %s%s)",
            entry.number,
            job.process,
            files_of(job),
            run.describe(),
            run.log_name.rpartition("/")[2],
            attempt,
        )

    def _template(self, entry: Entry) -> runner.Template:
        """What the starts of the entry's record share (made again when it changed)."""
        record, program = entry.record, entry.program
        assert program is not None
        made = self._templates.get(record.number)
        if made is None or not made.fits(record, program, self.env):
            made = self._templates[record.number] = runner.Template(self.passdir, record, program, self.env)
        return made

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
        if entry.files.drain is not None:
            entry.files.drain.clear()  # --once: this record's part of the drain ends
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
        if run.state is RunState.ENDED:
            run.executor.signal(run, signum)  # what an ended run left behind
            return
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
                    run.executor.term,
                )
        else:
            run.transition(RunState.KILLED)  # RUNNING/STOPPING/KILLED -> KILLED
            run.why = why or run.why or Why.TIMEOUT
        run.signalled_at = time.monotonic()
        run.executor.signal(run, signum)
        if run.paused_at is not None:
            # Paused (SIGSTOP): continued, so that it sees the TERM and can end.
            run.executor.signal(run, signal.SIGCONT)
            run.resume(run.signalled_at)

    # -- ends -------------------------------------------------------------------

    def reap(self) -> int:
        """Collect the runs that ended; their records are free at once."""
        count = 0
        for run in self.runs.live():
            if run.state is RunState.STARTING:
                continue
            outcome = run.executor.poll(run)
            if outcome is None:
                continue
            self._end(run, outcome, time.monotonic() - run.started_mono)
            count += 1
        return count

    def _end(self, run: Run, outcome: Outcome, took: float) -> None:
        """Account for a run's end: its state, its log line, its record's tally."""
        run.transition(RunState.ENDED)  # -> ENDED
        work = run.work
        options = work.files.record.options if work is not None else None
        response = self._response(run, outcome)
        job = run.job
        ends, verdict = end_events(
            job, outcome, run.why, options, run.pid, took, time.time(), run.adopted, run.task, response
        )
        run.ended = Ended(outcome, ends, verdict, took, response)
        self._to_write.append(run)
        if verdict is Verdict.NOT_STARTED:
            return
        end = ends[0]
        ok = verdict is Verdict.SUCCESS
        described = outcome.describe() if not run.adopted else "ended after a restart of waitd: outcome unknown"
        if not ok:
            if end.error in ("timeout", "cancelled"):
                described += f" ({end.error})"
            if end.retry_at is not None:
                described += f"; retry {end.runs + 1} at {time.strftime('%H:%M:%S', time.localtime(end.retry_at))}"
        elif end.outcome == "skipped" and response is not None:
            described += f"; skipped: {response.skip}"
        _say(
            run,
            logging.INFO if ok else logging.WARNING,
            f"record {run.number}: {job.process} on {files_of(job)}: {described} after {took:.3f} s",
        )
        if work is not None:
            work.tally.ended(run.number, job.path, described, ok, took, time.monotonic(), end.retry_at is not None)
            if ok:
                for fact in job.facts:
                    work.files.ran(fact)

    def _response(self, run: Run, outcome: Outcome) -> Response | None:
        """The response the run left; one waitd cannot take is logged and ignored."""
        try:
            return runner.response_of(run, outcome.response)
        except BadResponse as exc:
            what = f"{run.job.process} on {files_of(run.job)}: response {runner.response_name(run.log_name)}"
            _say(run, logging.ERROR, "record %d: %s: %s; ignored (the outcome is its exit's)", run.number, what, exc)
            return None

    def finish(self) -> list[Run]:
        """Write the ends `reap` collected (after the turn's starts: the
        writing overlaps their runs); return their runs."""
        written, telling = list(self._to_write), self.journal.telling
        while self._to_write:
            run = self._to_write.popleft()
            ended = run.ended
            assert ended is not None
            end = ended.events[0]
            told = self._told(run) if telling else None
            runner.footer(run, ended.outcome, end)
            files = run.work.files if run.work is not None else None
            self.journal.ended(files.record if files is not None else None, ended.events, told)  # a group's: one event
            if files is not None and (end.retry_at is not None or not end.consumed) and not files.record.options.claim:
                for fact in run.job.facts:
                    files.requeue(fact.name)
        return written

    @staticmethod
    def _told(run: Run) -> dict[str, Any]:
        """What a run's `ended` event carries besides its history line: its
        response; and for a `format = isis` sink its file's JSON object,
        the tail of its log, waitd's lines about it."""
        assert run.ended is not None
        told: dict[str, Any] = {}
        if run.ended.response is not None:
            told["response"] = dict(run.ended.response.document)
        if run.notes is not None:  # for a format = isis sink
            told.update(body=run.body, admin_log="\n".join(run.notes), log=runner.log_tail(run))
        return told

    def pending_end(self, path: str, process: str) -> Event | None:
        """The end of a run reaped this turn and not written yet, of a file
        and process (`finish` writes it before anything it leads to)."""
        for run in self._to_write:
            if run.job.process == process and run.ended is not None:
                for end in run.ended.events:
                    if end.path == path:
                        return end
        return None

    def dispose(self, run: Run, disposal: Disposal) -> bool:
        """Hand a queue's file on as the plan says; True when it was removed."""
        assert run.ended is not None and run.work is not None
        return claims.dispose(run.work.files, run.job, disposal, run.ended.events[0].retry_at)

    def retire(self) -> None:
        """Let go of the ended runs a plan has seen: their end is written
        and acted on."""
        for run in self.runs.ended():
            if run.seen_ended:
                self.runs.remove(run)  # ENDED and written: its files are free


def _say(run: Run, level: int, fmt: str, *args: object) -> None:
    """Log a line about a run, and keep it with the run (its admin log)."""
    text = fmt % args if args else fmt
    say(level, text)
    if run.notes is not None and len(run.notes) < 50:
        run.notes.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {logging.getLevelName(level).lower()}: {text}")


def _directory(path: str) -> str:
    """The directory of a file's absolute path (`os.path.dirname`, cheaper)."""
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else os.path.dirname(path)


def files_of(job: Job | list[Event]) -> str:
    """The file, or the group and its files, as a log line names them."""
    if isinstance(job, Job):
        if job.group is None and len(job.paths) == 1:
            return escaped(job.paths[0])  # `escape`, remembered
        paths, group = list(job.paths), job.group
    else:
        paths, group = [e.path for e in job], job[0].group
    if group is None and len(paths) == 1:
        return escape(paths[0])
    names = " ".join(escape(os.path.basename(p)) for p in paths)
    return f"group {escape(group or '?')} in {escape(os.path.dirname(paths[0]))}: {names}"
