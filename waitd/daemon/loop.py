# SPDX-License-Identifier: MIT
"""The main loop: it waits, observes, asks the scheduler, and applies.

One thread.  Signal handlers only queue the signal number; the C level
writes a byte to the wake-up pipe (`signal.set_wakeup_fd`), so the loop's
`select` returns at once.  Each turn, in a fixed order: wait on the
selector until the next deadline (the poll interval, a file reaching its
wait age or its retry time, a timeout, a back-off's end, the stop
timeouts); take what inotify reported; reap ended runs; act on the signals
(each cleared first, then acted on: ten ALRMs make one scan); then a pass:
look at each record's files, expire, ask `scheduler.plan` what to start
and signal, start and signal, and apply keep-after.

States: ACTIVE -> HIBERNATING (INT) -> ACTIVE (CONT); any -> STOPPING (TERM),
which starts nothing, waits for running handlers up to the stop timeout,
then sends TERM and later KILL to their process groups, records every end
and returns.  HUP rereads the table (an invalid one is logged and the old
one stays), reopens incoming.log, re-checks directories and resets every
back-off; running handlers go on, tied to their record's work.  A reload
that changes a record's process-name warns how many handled files the new
one will handle again (the history is kept by process).

Failures: an exception in a turn is logged with its traceback and the loop
goes on (the outermost guard), and one in a record's part of a pass skips
that record only.  An event that cannot be written to the history (a full
disk) is kept in memory and retried at each poll; until it is written no
handler starts.  A table that anyone may write is warned about at start
and at each HUP.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from waitd.config import table
from waitd.config.conf import Conf
from waitd.config.errors import Unexpected
from waitd.daemon import control, drain, sock
from waitd.daemon import status as report
from waitd.daemon.commands import Commands
from waitd.daemon.events import Events
from waitd.daemon.records import Entry, Works
from waitd.daemon.signals import Wakeups
from waitd.decide import scheduler
from waitd.decide.outcome import Job, Why
from waitd.formats.status import to_json
from waitd.journal.history import History, escape
from waitd.journal.writer import Journal
from waitd.run import publish, runner
from waitd.run.executors import celery_app
from waitd.run.executors.celery import Dispatch
from waitd.run.executors.local import Executor, Local, seal_descriptors
from waitd.run.launch import Launcher
from waitd.run.runs import Runs, RunState
from waitd.spool import activation, claims, queue, sweep
from waitd.spool.directory import FileFact, Listings
from waitd.spool.watch import Watcher

log = logging.getLogger("waitd")

HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCONT, signal.SIGALRM, signal.SIGCHLD)
KILL_GRACE_S = scheduler.KILL_GRACE_S
STOP_ERRORS = 5  # the same unexpected error while stopping: give up, exit


class Mode(enum.Enum):
    ACTIVE = "active"
    HIBERNATING = "hibernating"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class Settings:
    passdir: str
    interval_s: float = 10.0
    stop_timeout_s: float = 30.0
    hibernate: bool = False
    once: bool = False
    poll_only: bool = False
    jobs: int | None = None  # --jobs: handlers of all records together
    jobs_given: bool = False  # --jobs was on the command line: waitd.conf's jobs does not count
    metrics: tuple[str, int] | None = None  # --metrics HOST PORT
    instance: str = "waitd"  # --instance: this daemon's name in the queues it claims from

    @property
    def table_path(self) -> str:
        return os.path.join(self.passdir, "incoming")


class Daemon:
    """waitd's state and its main loop."""

    def __init__(
        self,
        settings: Settings,
        records: Iterable[table.Record],
        history: History,
        reopen_log: Callable[[], None] = lambda: None,
        signals: deque[int] | None = None,
        executor: Executor | None = None,
        conf: Conf | None = None,
        foreground: bool = False,
    ) -> None:
        self.settings = settings
        self.history = history
        self.mode = Mode.HIBERNATING if settings.hibernate else Mode.ACTIVE
        self.reopen_log = reopen_log
        self._env = dict(os.environ)
        self.runs = Runs()
        self.works = Works()
        # Runs of run=celery records go to Celery workers, the others are local.
        self.dispatch = Dispatch(executor or Local(), conf.celery if conf is not None else None)
        self.journal = Journal(settings.passdir, history)
        self.launcher = Launcher(settings.passdir, self.journal, self.runs, self.works, self.dispatch, self._env)
        self.launcher.instance = settings.instance
        self.outflow = claims.Outflow()
        self.instance_locks = claims.InstanceLocks(settings.instance)
        self._signals: deque[int] = deque() if signals is None else signals  # caught, not yet acted on
        self._next_poll = 0.0
        self._force_list = True
        self._plan_deadline: float | None = None
        self.status_file = control.StatusFile(settings.passdir)
        self._compact_at_start = True
        self._status_failed = False
        self._errors = Unexpected(log)
        # A record's own trouble: logged once, then counted (at most once a
        # minute), never a traceback on every pass; the loop goes on.
        self._record_errors = Unexpected(log)
        self._stop_deadline = 0.0
        self._stopping_sent = False
        self._started = time.time()
        self._reloads = 0  # HUPs acted on, valid table or not
        self._reload_errors: list[str] = []
        self.watcher = Watcher(enabled=not settings.poll_only)
        self.control = sock.Server(settings.passdir)
        self._asked: set[int] = set()  # descriptors of the control socket that are ready
        self.commands = Commands(self.works, self.runs, history, self.launcher, self.status)
        # waitd.conf's sinks, the metrics, systemd's notifications: events.py
        self.events = Events(settings.passdir, self.journal, self._env, conf or Conf(), settings.metrics, foreground)
        self._warn_table_mode()
        self._install(records)

    @property
    def entries(self) -> list[Entry]:
        return self.works.entries

    # -- setup ----------------------------------------------------------------

    def _install(self, records: Iterable[table.Record]) -> None:
        """Take a table (at start and on HUP); known work keeps its state."""
        passdir = self.settings.passdir
        path_env = self._env.get("PATH", os.defpath)
        entries = self.works.install(
            records,
            lambda record: self._activate(record, path_env),
            lambda record: activation.matcher(record, passdir),
            lambda number: runner.last_letter(passdir, number),
        )
        self.events.installed(entries)
        for entry in entries:
            if entry.record.options.claim:
                entry.view.pending = claims.queue_of(entry.view).pending(self.settings.instance)
        self.instance_locks.keep_only(
            {os.path.dirname(e.record.directory) for e in entries if e.record.options.claim and not e.problem}
        )
        for entry in entries:
            if entry.problem:
                log.error(
                    "record %d (%s:%d): inactive: %s",
                    entry.number,
                    self.settings.table_path,
                    entry.record.line,
                    entry.problem,
                )
        self._force_list = True
        self.watcher.unwatch_all_but({e.record.directory for e in entries if not e.problem})
        for entry in entries:
            if not entry.problem and entry.view.open():
                self._watch(entry)

    def _activate(self, record: table.Record, path_env: str) -> activation.Activation:
        """`activation.activate`; a record that claims from a queue has the
        queue's subdirectories made, those of its next queue too."""
        if record.options.claim:
            for root, instance in (
                (os.path.dirname(record.directory), self.settings.instance),
                (record.options.next, None),
            ):
                if root is None:
                    continue
                try:
                    queue.Queue(root).make(instance)
                except OSError as exc:
                    return activation.Activation(None, claims.unmade(root, exc.strerror or str(exc)))
            problem = self.instance_locks.hold(os.path.dirname(record.directory))
            if problem is not None:
                return activation.Activation(None, problem)
        return activation.activate(record, self.settings.passdir, path_env)

    def _watch(self, entry: Entry) -> None:
        spool = entry.view.spool
        if spool is not None and entry.view.dir_note is None:
            # Again when the directory was replaced: the old watch would go
            # on reporting the old one.
            self.watcher.watch(entry.record.directory, (spool.identity.dev, spool.identity.ino))

    def recover(self) -> None:
        """Finish the runs a previous waitd left open (status 0, no end);
        a handler that still runs becomes its record's running handler."""
        self.launcher.adopt(self.history.open_runs(), self.works.number_of)
        busy = {path for run in self.runs.live() for path in run.job.paths}
        for entry in self.entries:
            if entry.record.options.claim and not entry.problem:
                claims.recover(entry, self.history, self.settings.instance, busy)

    # -- the loop ---------------------------------------------------------------

    def run(self) -> int:
        """Run until TERM (or, with --once, until the drain is done)."""
        seal_descriptors()
        self.control.open()
        inotify_fd, control_fd = self.watcher.fileno(), self.control.fileno()
        fds = [fd for fd in (inotify_fd, control_fd) if fd is not None] + self.launcher.executor.wakeup_fds()
        with Wakeups(HANDLED_SIGNALS, self.note_signal, fds) as wakeups:
            self.launcher.executor.forget_fd = wakeups.discard
            self.control.watch, self.control.unwatch = wakeups.watch, wakeups.discard
            log.info(
                "waitd started: pid %d, %d records, %s, interval %g s",
                os.getpid(),
                len(self.entries),
                self.mode.value,
                self.settings.interval_s,
            )
            self._write_status(force=True)  # its summary goes to systemd with READY=1
            self.events.start()
            if self._compact_at_start:
                # Forget the files long gone before the first listing, so that
                # both are never in memory at once (100,000 keys and as many
                # files); the file itself is rewritten after the first pass.
                self.history.drop_gone(Listings().exists)
            try:
                if self.settings.once:
                    drain.begin(self.entries, self.history, self.runs.busy)
                    self._force_list = False
                calm = 0.0
                while True:
                    ready = wakeups.wait(max(calm, self._timeout(time.monotonic())))
                    self._asked = ready & self.control.descriptors()
                    try:
                        self._changes()
                        if self._turn():
                            break
                        self._errors.clear()
                        calm = 0.0
                    except Exception as exc:
                        calm = self._errors.note(exc)
                        if self.mode is Mode.STOPPING and self._errors.repeats >= STOP_ERRORS:
                            log.critical("waitd: cannot stop cleanly (the same error %d times); exiting", STOP_ERRORS)
                            break
            finally:
                self.watcher.close()
                self.control.close()
        return self._exit_status()

    def _exit_status(self) -> int:
        self._write_status(force=True)
        lost = self.journal.close()  # what it could not write is logged, and lost
        self.events.close()
        left = drain.left(self.entries) if self.settings.once else 0
        if left:
            log.warning("waitd: --once: %d file(s) ready at start not started; left for the next run", left)
        log.info("waitd stopped")
        if lost:
            return 1
        inactive = any(e.problem for e in self.entries)
        return 1 if self.settings.once and (self.launcher.failures or inactive or left) else 0

    def note_signal(self, signum: int) -> None:
        """Queue a signal for the next turn (all a handler does)."""
        self._signals.append(signum)

    def _turn(self) -> bool:
        """One turn of the loop; True when waitd should exit."""
        self.events.tick(time.monotonic(), time.monotonic() >= self._next_poll)
        self.dispatch.drain()
        self.launcher.reap()
        if self._asked or self.control.next_deadline() is not None:
            self.control.serve(self._asked, self.commands.answer)
        try:
            return self._act_and_pass()
        finally:
            if self.launcher.finish():
                self._keep_all()  # their ends are in the history now: keep-after may count them

    def _act_and_pass(self) -> bool:
        pending = set()
        while self._signals:
            pending.add(self._signals.popleft())
        self._act(pending)
        now = time.monotonic()
        if self.mode is Mode.STOPPING:
            return self._stop_step(now)
        self._pass(now)
        if self.settings.once and not self._own_runs() and drain.over(self.entries, self.history, self._cannot_start):
            self.launcher.finish()
            self._prune_all()
            return True
        return False

    def _changes(self) -> None:
        """Apply what inotify reported: stat the names it named."""
        changes = self.watcher.read()
        if changes.overflow:
            log.warning("waitd: inotify queue overflowed; listing every directory")
            self._force_list = True
        now_ns = time.time_ns()
        for entry in self.entries:
            directory = entry.record.directory
            if directory in changes.gone:
                entry.view.listed_mtime_ns = None
                self._force_list = True
            names = changes.names.get(directory)
            if names:
                entry.view.touched(self.history, names, now_ns)

    def _act(self, pending: set[int]) -> None:
        if signal.SIGTERM in pending and self.mode is not Mode.STOPPING:
            log.info("waitd: TERM: stopping; %d handler(s) running", len(self._own_runs()))
            self.mode = Mode.STOPPING  # any -> STOPPING
            self.events.stopping()
            self._stop_deadline = time.monotonic() + self.settings.stop_timeout_s
            return
        if self.mode is Mode.STOPPING:
            return
        if signal.SIGHUP in pending:
            self.reload()
        if signal.SIGINT in pending and self.mode is Mode.ACTIVE:
            log.info(
                "waitd: INT: hibernating; no handler starts and nothing is removed "
                "(to resume: waitd -s resume or CONT; to stop: waitd -s stop or TERM)"
            )
            self.mode = Mode.HIBERNATING  # ACTIVE -> HIBERNATING
        if signal.SIGCONT in pending and self.mode is Mode.HIBERNATING and signal.SIGINT not in pending:
            log.info("waitd: CONT: leaving hibernation")
            self.mode = Mode.ACTIVE  # HIBERNATING -> ACTIVE
        if signal.SIGALRM in pending:
            self._force_list = True
        if pending - {signal.SIGCHLD}:
            self.status_file.due = 0.0  # an operator's signal shows in the status at once

    def reload(self) -> None:
        """HUP: reopen the log, reread the table, keep the old one if invalid."""
        self.events.reloading()
        self.reopen_log()
        self.launcher.logfiles_again()
        records, errors = table.read(
            self.settings.table_path, self.settings.passdir, self._env, celery_app.problem(self.settings.passdir)
        )
        self._warn_table_mode()
        self._reloads += 1
        self._reload_errors = [str(e) for e in errors]
        if errors:
            for error in errors:
                log.error("%s", error)
            log.error(
                "%s: table not reloaded (%s); the previous table stays in force",
                self.settings.table_path,
                table.summary(errors),
            )
        else:
            self._warn_process_changes(records)
            self._install(records)
            active = sum(1 for e in self.entries if not e.problem)
            log.info("waitd: HUP: table reloaded: %d records, %d active", len(self.entries), active)
        self._reload_errors += self.events.reloaded()  # waitd.conf
        self.dispatch.configure(self.events.conf.celery)
        if not self.settings.jobs_given:
            self.settings = replace(self.settings, jobs=self.events.conf.daemon.jobs)
        self._write_status(force=True)  # `waitd -s reload` waits for this
        self.events.ready()  # systemd: the reload is over

    def _warn_process_changes(self, records: Iterable[table.Record]) -> None:
        """Warn when a record of the new table is one of the old but for its
        process-name: the history is kept by process, so every file the old
        one handled (and keep-after kept) is new to the new one."""
        old = {(e.record.directory, e.record.template): e for e in self.entries}
        for record in records:
            entry = old.get((record.directory, record.template))
            if entry is None or entry.record.process == record.process:
                continue
            view = entry.view
            again = 0
            for fact in view.cands.facts.values():
                path = view.path_of(fact.name)
                mine = view.latest(self.history, fact)
                theirs = self.history.latest(path, record.process)
                if mine is not None and mine.consumed and (theirs is None or not theirs.same_version(fact)):
                    again += 1
            if again:
                log.warning(
                    "record %d: process-name changed from %s to %s: %d file(s) handled by the old one "
                    "will be handled again by the new one (the history is kept by process)",
                    record.number,
                    escape(entry.record.process),
                    escape(record.process),
                    again,
                )

    def _warn_table_mode(self) -> None:
        """Warn about a table, or a waitd.conf, that any user may change."""
        for path, what in (
            (self.settings.table_path, "what waitd runs"),
            (os.path.join(self.settings.passdir, "waitd.conf"), "where waitd writes and sends its events"),
        ):
            unsafe = activation.writable_by_others(path)
            if unsafe is not None:
                log.warning("%s: %s; anyone can change %s", path, unsafe, what)

    # -- deadlines --------------------------------------------------------------

    def _timeout(self, now: float) -> float:
        if self._signals:
            return 0.0
        deadlines = [self._next_poll]
        if self._plan_deadline is not None:
            deadlines.append(self._plan_deadline)
        if self.mode is Mode.STOPPING and not self._stopping_sent:
            deadlines.append(self._stop_deadline)
        elif self.mode is Mode.ACTIVE:
            now_ns = time.time_ns()
            for entry in self.entries:
                if entry.tally.backing_off(now):
                    deadlines.append(entry.tally.backoff_until)
                elif entry.view.due_ns is not None:
                    deadlines.append(now + (entry.view.due_ns - now_ns) / 1e9)
        if self.status_file.due > now:
            deadlines.append(self.status_file.due)
        if (given_up := self.control.next_deadline()) is not None:
            deadlines.append(given_up)
        events_due = self.events.deadline()
        if events_due is not None:
            deadlines.append(events_due)
        return max(0.0, min(deadlines) - now)

    # -- a pass -----------------------------------------------------------------

    def _pass(self, now: float) -> None:
        poll = now >= self._next_poll
        if poll:
            self._next_poll = now + self.settings.interval_s
            self._poll_chores()
        now_ns = time.time_ns()
        listing = poll or self._force_list
        self._force_list = False
        for entry in self.entries:
            if entry.problem:
                continue
            try:
                self._look(entry, listing, now_ns)
            except Exception as exc:
                # One record's trouble must not stop the others.
                self._record_errors.note(exc, f"record {entry.number}: its pass")
        self._schedule(now, now_ns)
        self._keep_all()
        if self._compact_at_start:
            # After the first pass, so that a big history does not delay the
            # first handler; before any later one, so it still bounds the file.
            self._compact_at_start = False
            self.compact()
        self._write_status()

    def _look(self, entry: Entry, listing: bool, now_ns: int) -> None:
        """One record's part of a pass: look at its files, expire."""
        if listing:
            entry.view.refresh(self.history, now_ns, restat=not self.watcher.watching(entry.record.directory))
            self._watch(entry)
        if listing and self.mode is Mode.ACTIVE and entry.view.spool is not None:
            entry.tally.counters.removed += sweep.expire(entry.view, self.history, now_ns, self.runs.busy)
            if entry.record.options.claim:
                entry.tally.counters.removed += claims.expire_queue(entry, now_ns)

    def _schedule(self, now: float, now_ns: int) -> None:
        """Ask the scheduler what to start and signal now; do it."""
        candidates: dict[int, list[scheduler.Candidate]] = {}
        by_number: dict[int, Entry] = {}
        if self.mode is Mode.ACTIVE and self.journal.may_start:
            for entry in self.entries:
                if entry.record.publish_only:
                    publish.ready(entry, self.launcher, now_ns)  # runs nothing
                    continue
                jobs = self._ready(entry, now_ns)
                if jobs:
                    by_number[entry.number] = entry
                    candidates[entry.number] = [
                        scheduler.Candidate(entry.number, job.claim, job.key, job) for job in jobs
                    ]
        limits = scheduler.Limits(
            {e.number: e.record.options.jobs for e in self.entries if e.program is not None and not e.problem},
            self.settings.jobs,
            {e.number: e.tally.backoff_until for e in self.entries if e.tally.backing_off(now)},
        )
        plan = scheduler.plan(now, candidates, self.runs.scheduled(self.works.number_of), limits)
        self._plan_deadline = plan.deadline
        for run_id, signum in plan.signal:
            run = self.runs.get(run_id)
            if run is not None:
                self.launcher.signal(run, signum)
        starts = [(by_number[c.record], c.ref) for c in plan.start]
        self.launcher.start([(entry, job) for entry, job in starts if isinstance(job, Job)])

    def _ready(self, entry: Entry, now_ns: int) -> list[Job]:
        """The jobs of a record that could start now: as many as it has room
        for, and a few more when keys may hold some back."""
        if entry.problem or entry.program is None or entry.view.spool is None:
            return []
        if entry.tally.backing_off(time.monotonic()):
            entry.view.due_ns = None
            return []
        options = entry.record.options
        if not self.dispatch.ready(options.run):
            entry.view.due_ns = None  # the executor wakes the loop when its broker is back
            return []
        room = options.jobs - len(self.runs.of(entry.identity))
        if self.settings.jobs is not None:
            room = min(room, self.settings.jobs - len(self.runs.live()))
        if room <= 0:
            entry.view.due_ns = None
            return []
        if options.claim:
            in_flight = sum(1 for run in self.runs if run.job.identity == entry.identity)
            outflow, again = self.outflow.room(entry, time.time(), in_flight)
            if outflow is not None:
                room = min(room, outflow)
            if room <= 0:
                entry.view.due_ns = int(again * 1e9) if again is not None else None
                return []
        more = scheduler.LOOKAHEAD if options.key is not None else 0
        try:
            return entry.view.take(room + more, self.history, now_ns, self.runs.busy_for(entry.record.process))
        except Exception as exc:
            self._record_errors.note(exc, f"record {entry.number}: choosing its next file")
            return []

    def _poll_chores(self) -> None:
        if self.journal.retry():
            return
        # The compaction at start waits for the end of the first pass.
        if self.history.needs_compaction() and not self.runs.live() and not self._compact_at_start:
            self.compact()

    def compact(self) -> None:
        before = self.history.lines
        try:
            dropped = self.history.compact(Listings().exists)
        except Exception as exc:
            log.error("%s; compaction skipped", exc)
            return
        if before != self.history.lines:
            log.info(
                "%s: compacted from %d to %d lines (%d keys of files no longer there dropped)",
                self.history.path,
                before,
                self.history.lines,
                dropped,
            )

    def _keep_all(self) -> None:
        """Remove the handled files beyond each record's keep-after."""
        if self.mode is not Mode.ACTIVE:
            return
        for entry in self.entries:
            if entry.view.spool is not None and not entry.problem:
                entry.tally.counters.removed += sweep.keep(entry.view, self.history, self.runs.busy, self._all_done)

    def _all_done(self, path: str, fact: FileFact) -> bool:
        """True when every record matching the file handled it with exit 0.

        Inactive records count too: a file shared with a record whose
        handler is missing now waits for it (or for its expiry)."""
        directory, name = os.path.split(path)
        for entry in self.entries:
            if entry.record.directory != directory or not entry.view.match(name):
                continue
            if not entry.view.succeeded(self.history, fact):
                return False
        return True

    def _prune_all(self) -> None:
        now_ns = time.time_ns()
        for entry in self.entries:
            if entry.view.spool is not None and self.mode is Mode.ACTIVE:
                entry.tally.counters.removed += sweep.expire(entry.view, self.history, now_ns, self.runs.busy)
        self._keep_all()

    # -- stopping ---------------------------------------------------------------

    def _cannot_start(self, entry: Entry) -> bool:
        """A record whose runs cannot start now: its broker is unreachable."""
        return self.dispatch.down(entry.record.options.run)

    def _own_runs(self) -> list[Any]:
        """The live runs waitd started itself (not adopted ones, which a stop
        leaves running for the next waitd to adopt again)."""
        return [r for r in self.runs.live() if not r.adopted]

    def _stop_step(self, now: float) -> bool:
        self._write_status()
        own = [r for r in self._own_runs() if r.task is None]  # Celery runs go on: the next waitd adopts them
        if not own:
            if self._compact_at_start:
                # Stopped before the first pass: still leave a compact file.
                self._compact_at_start = False
                self.compact()
            return True
        if not self._stopping_sent and now >= self._stop_deadline:
            log.warning("waitd: stop timeout reached; sending TERM to %d handler(s)", len(own))
            grace = min(KILL_GRACE_S, max(self.settings.stop_timeout_s, 0.5))
            for run in own:
                if run.state is RunState.RUNNING:
                    self.launcher.signal(run, signal.SIGTERM, Why.STOP, grace)
            self._stopping_sent = True
        plan = scheduler.plan(now, {}, self.runs.scheduled(self.works.number_of), scheduler.Limits({}))
        self._plan_deadline = plan.deadline
        kills = [self.runs.get(run_id) for run_id, signum in plan.signal if signum == signal.SIGKILL]
        if kills and self._stopping_sent:
            log.warning("waitd: sending KILL to %d handler(s)", len(kills))
        for run_id, signum in plan.signal:
            run = self.runs.get(run_id)
            if run is not None and not run.adopted and run.task is None:
                self.launcher.signal(run, signum)
        return False

    # -- status -----------------------------------------------------------------

    def _write_status(self, force: bool = False) -> None:
        try:
            self.status_file.update(self.status, force)
        except Exception:
            # The report is a view of the state, never a reason to stop
            # handling files, or stopping.
            if not self._status_failed:
                log.exception("waitd: cannot build the status report; carrying on without it")
            self._status_failed = True

    def status(self) -> dict[str, Any]:
        """The status document (formats.status.Status) as JSON; times are epoch seconds."""
        doc = report.build(
            self.works,
            self.runs,
            self.history,
            mode=self.mode.value,
            settings=self.settings,
            started=self._started,
            unwritten=self.journal.unwritten,
            reloads=self._reloads,
            reload_errors=self._reload_errors,
            kill_grace_s=KILL_GRACE_S,
            sinks=self.events.report(),
            held=self.outflow.is_held,
            celery=self.dispatch.report(),
        )
        self.events.status(doc)
        return to_json(doc)
