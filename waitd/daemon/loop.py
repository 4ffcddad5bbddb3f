# SPDX-License-Identifier: MIT
"""The main loop: it waits, observes, asks the scheduler, and applies.

One thread decides and acts (the outbox's sync of a turn's start events, after their
handlers started, runs in a helper thread, `journal.disk`; Celery's sender and receiver
are threads of its executor).  Signal handlers only queue the signal number; the C level
writes a byte to the wake-up pipe (`signal.set_wakeup_fd`), so the loop's `select`
returns at once.  Each turn, in a fixed order:

- wait on the selector until the next deadline (the poll interval, the plan's deadline:
  a file reaching its wait age or its retry time, a timeout, a back-off's end, the stop
  timeout), taken after each turn: a wake-up that makes none waits for the same one;
- observe: take what inotify reported (news of no record's file, with nothing else due,
  make no turn), reap ended runs, answer the control socket and HTTP (`web`), act on
  the signals (each cleared first, then acted on: ten ALRMs make one scan; `orders`),
  list the directories at a poll (`turn.Observer`);
- plan: once (`plans.plan`: a quiet turn's, or `scheduler.plan` of `turn.situation`);
- apply its answer: signals, starts, publications, then the ends of the runs reaped
  (written while the new handlers run), queue moves, removals (`turn.apply`).

States (`scheduler.Mode`): ACTIVE -> HIBERNATING (INT) -> ACTIVE (CONT); any -> STOPPING
(TERM), which starts nothing, waits for running handlers up to the stop timeout, then
sends TERM and later KILL to their process groups (the scheduler's), records every end
and returns.  HUP rereads the table and waitd.conf (`orders.reload`).

Failures: an exception in a turn is logged with its traceback and the loop goes on (the
outermost guard), and one in a record's part of a turn skips that record only.  An event
the history cannot take (a full disk) is kept and retried at each poll; until it is
written no handler starts.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from waitd.config import table
from waitd.config.conf import Conf
from waitd.config.errors import Unexpected
from waitd.daemon import control, drain, orders, plans, sock, turn, web
from waitd.daemon import status as report
from waitd.daemon.commands import Commands
from waitd.daemon.events import Events
from waitd.daemon.records import Entry, Works
from waitd.daemon.signals import Wakeups
from waitd.decide import scheduler
from waitd.decide.scheduler import Mode
from waitd.formats.status import to_json
from waitd.journal.history import History
from waitd.journal.logfile import held
from waitd.journal.writer import Journal
from waitd.run.executors.dispatch import Dispatch
from waitd.run.executors.local import Local, seal_descriptors
from waitd.run.launch import Launcher
from waitd.run.runs import Runs
from waitd.spool import claims
from waitd.spool.gather import Notice
from waitd.spool.locks import InstanceLocks
from waitd.spool.watch import Watcher

log = logging.getLogger("waitd")

HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCONT, signal.SIGALRM, signal.SIGCHLD)
KILL_GRACE_S = scheduler.KILL_GRACE_S
STOP_ERRORS = 5  # the same unexpected error while stopping: give up, exit


@dataclass(slots=True)
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
    http: tuple[str, int] | None = None  # --http HOST PORT: the status page and the task API
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
        conf: Conf = Conf(),  # noqa: B008 (frozen: one shared empty Conf is no hazard)
        foreground: bool = False,
    ) -> None:
        self.settings = settings
        self.history = history
        self.mode = Mode.HIBERNATING if settings.hibernate else Mode.ACTIVE
        self.reopen_log = reopen_log
        self.env = dict(os.environ)
        self.runs = Runs()
        self.works = Works()
        # Runs of run=celery records go to Celery workers, the others are local.
        self.dispatch = Dispatch(Local(), conf.celery)
        self.journal = Journal(settings.passdir, history)  # the one writer of the history and the outbox
        self.launcher = Launcher(self.journal, self.runs, self.dispatch.of, self.env, settings.instance)
        self.outflow = claims.Outflow()
        self.instance_locks = InstanceLocks(settings.instance)
        self.signals: deque[int] = deque() if signals is None else signals  # caught, not yet acted on
        self.next_poll = 0.0
        self.plan_deadline: float | None = None
        self.again = False  # something changed that the next plan must see at once
        self.closing = False  # --once: the drain is over; one last turn lists and removes
        self.news: list[tuple[Entry, Notice]] = []  # what the groups told in this turn's plan, for the events
        self.status_file = control.StatusFile(settings.passdir)
        self.status_now = False  # written at the end of this turn, changed or not (a reload's)
        self.compact_at_start = True
        self._status_failed = False
        self._errors = Unexpected(log)
        # A record's own trouble: logged once, then counted (at most once a minute); the loop goes on.
        self.record_errors = Unexpected(log)
        self.stop_at = 0.0
        self._started = time.time()
        self.reloads = 0  # HUPs acted on, valid table or not
        self.reload_errors: list[str] = []
        self.watcher = Watcher(enabled=not settings.poll_only)
        self.control = sock.Server(settings.passdir)
        self.commands = Commands(self.works, self.runs, history, self.launcher, self.status)
        # waitd.conf's sinks, the metrics, systemd's notifications: events.py; --http: web.py
        self.events = Events(settings.passdir, self.journal, self.env, conf, settings.metrics, foreground)
        self.http = web.start(settings, conf, self.events, self.journal)
        self.observer = turn.Observer(self)
        orders.warn_table_mode(settings)
        orders.install(self, records)

    @property
    def entries(self) -> list[Entry]:
        return self.works.entries

    def recover(self) -> None:
        """What a previous waitd left: `orders.recover`."""
        orders.recover(self)

    # -- the loop ---------------------------------------------------------------

    def run(self) -> int:
        """Run until TERM (or, with --once, until the drain is done)."""
        seal_descriptors()
        self.control.open()
        inotify_fd = self.watcher.fileno()
        own = (inotify_fd, self.control.fileno(), web.fileno(self.http))
        fds = [fd for fd in own if fd is not None] + self.dispatch.wakeup_fds()
        with Wakeups(HANDLED_SIGNALS, self.signals.append, fds) as wakeups:
            self.control.watch, self.control.unwatch = wakeups.watch, wakeups.discard
            started = (os.getpid(), len(self.entries), self.mode.value, self.settings.interval_s)
            log.info("waitd started: pid %d, %d records, %s, interval %g s", *started)
            self.write_status(force=True)  # its summary goes to systemd with READY=1
            self.events.start()
            if self.settings.once:
                drain.begin(self.entries, self.history, self.runs.busy)
                self.observer.force_list = False
            try:
                self._loop(wakeups, inotify_fd)
            finally:
                self.watcher.close()
                self.control.close()
                web.close(self.http)
        return orders.exit_status(self)

    def _loop(self, wakeups: Wakeups, inotify_fd: int | None) -> None:
        calm = 0.0
        due: float | None = None  # the waits' deadline: only a turn moves it (a signal makes its pipe ready)
        while True:
            now = time.monotonic()
            if due is None:
                due = now + self._timeout(now)
            ready = wakeups.wait(max(calm, due - now))
            # inotify is read when it has news (level-triggered: what is not read is reported again).
            notified = self.observer.notified = inotify_fd in ready
            try:
                if notified and len(ready) == 1 and self.observer.quiet(due - time.monotonic()):
                    continue  # inotify named no file of a record's, and nothing else is due: no turn
                due = None
                with held():  # the turn's log lines, written when it is over
                    done = self._turn(ready, wakeups.discard)
                # After the turn's log lines: what the status tells is in the log by then.
                self.write_status(force=self.status_now)
                self.status_now = False
                if done:
                    return
                self._errors.clear()
                calm = 0.0
            except Exception as exc:
                calm, due = self._errors.note(exc), None
                if self.mode is Mode.STOPPING and self._errors.repeats >= STOP_ERRORS:
                    log.critical("waitd: cannot stop cleanly (the same error %d times); exiting", STOP_ERRORS)
                    return
            if not gc.isenabled():  # the start (`start.serve`) is over, its first turn done:
                gc.freeze()  # what start-up and the first listing made is never traversed again
                gc.enable()

    def _turn(self, ready: set[int], forget: Callable[[int], None]) -> bool:
        """One turn: observe, plan, apply; True when waitd should exit
        (`ready`: the descriptors the wait saw ready)."""
        now = time.monotonic()
        poll = now >= self.next_poll
        self.again = False
        self.dispatch.drain(ready)
        self.launcher.reap()
        self.events.tick(now, poll)  # after the handlers' reaping: a sink's process is polled only if one ended
        self.dispatch.release(forget)
        asked = self.control.asked(ready)
        if asked or self.control.next_deadline() is not None:
            self.control.serve(asked, self.commands.answer)
        web.serve(self.http, self.commands.answer)  # the same verbs, asked over HTTP
        orders.act(self)
        now, now_ns = time.monotonic(), time.time_ns()
        listing = self.observer.observe(now, now_ns, poll)
        plan = plans.plan(self, now, now_ns, listing or self.closing)
        self.plan_deadline = plan.deadline
        turn.apply(self, plan, now_ns)
        done = self._done(plan)
        if self.compact_at_start and (done or self.mode is not Mode.STOPPING):
            # After the first pass, not to delay the first handler; before any later one, to bound the file.
            self.compact_at_start = False
            self.observer.compact(listed=True)  # start.serve's load dropped the files gone
        return done

    def _done(self, plan: scheduler.Plan) -> bool:
        """Whether waitd exits now: stopping, and no run of its own left (a
        stop leaves the others running); or --once's drain over, after a
        closing turn that lists every directory for the last removals."""
        if plan.start or any(not r.stays for r in self.runs.live()):
            self.closing = False
            return False
        if self.mode is Mode.STOPPING:
            return True
        if not self.settings.once:
            return False
        # A record whose runs cannot start now (its broker is unreachable) is done.
        if not drain.over(self.entries, self.history, lambda e: self.dispatch.down(e.record.options.run)):
            return False
        if self.closing:
            return True
        self.closing = self.again = True
        return False

    def _timeout(self, now: float) -> float:
        """How long to wait: until the earliest deadline of any part."""
        if self.signals or self.again or self.runs.any_ended():
            return 0.0
        due, status_due = self.next_poll, self.status_file.due if self.status_file.due > now else None
        for at in (self.plan_deadline, status_due, self.control.next_deadline(), self.events.deadline()):
            if at is not None and at < due:
                due = at
        return max(0.0, due - now)

    # -- status -----------------------------------------------------------------

    def write_status(self, force: bool = False) -> None:
        try:
            self.status_file.update(self.status, force)
        except Exception:
            # A view of the state, never a reason to stop handling files, or stopping.
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
            reloads=self.reloads,
            reload_errors=self.reload_errors,
            kill_grace_s=KILL_GRACE_S,
            sinks=self.events.report(),
            held=lambda entry: self.outflow.is_held(entry.record),
            celery=self.dispatch.report(),
            sources=self.events.sources.report(),
        )
        self.events.status(doc)
        return web.snapshot(self.http, to_json(doc))
