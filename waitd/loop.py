# SPDX-License-Identifier: MIT
"""The main loop: signals, wake-ups, reaping, passes, stopping.

One thread.  Signal handlers only queue the signal number; the C level
writes a byte to the wake-up pipe (`signal.set_wakeup_fd`), so the loop's
`select` returns at once.  Each turn, in a fixed order: compute the next
deadline (the poll interval, the moment the oldest known file of an idle
record reaches its wait age, a back-off's end, the stop timeouts); wait on
the selector until then; drain it; reap ended handlers; act on the signals
(each cleared first, then acted on: ten ALRMs make one scan); then a pass
over the records: refresh, expire, start, keep-after.

States: ACTIVE -> HIBERNATING (INT) -> ACTIVE (CONT); any -> STOPPING (TERM),
which starts nothing, waits for running handlers up to the stop timeout,
then sends TERM and later KILL to their process groups, records every end
and returns.  HUP rereads the table (an invalid one is logged and the old
one stays), reopens incoming.log, re-checks directories and resets every
back-off; running handlers go on.

Failures: an exception in a turn is logged with its traceback and the loop
goes on (the outermost guard).  An event that cannot be written to the
history (a full disk) is kept in memory and retried at each poll; until it
is written no handler starts.  A start whose status 0 cannot be written is
not run and holds every start until the next poll, without backing the
record off (the disk, not the handler, is at fault).  A table that anyone
may write is warned about at start and at each HUP.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from waitd import control, layout, runner, table
from waitd.errors import HistoryWriteError, WaitdError
from waitd.history import Event, History, Status, escape, format_event
from waitd.recovery import Orphans
from waitd.scan import FileFact, Listings
from waitd.slot import Slot, identity
from waitd.wakeups import Wakeups
from waitd.watch import Watcher

log = logging.getLogger("waitd")

HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCONT, signal.SIGALRM, signal.SIGCHLD)
KILL_GRACE_S = 5.0


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
    ) -> None:
        self.settings = settings
        self.history = history
        self.mode = Mode.HIBERNATING if settings.hibernate else Mode.ACTIVE
        self.reopen_log = reopen_log
        self.runs: dict[int, tuple[runner.Run, Slot]] = {}
        self.orphans = Orphans()  # handlers of a previous waitd still running
        self._forget_fd: Callable[[int], None] = lambda fd: None  # a descriptor leaves the selector
        self.unwritten: deque[Event] = deque()
        self._ended: deque[tuple[runner.Run, runner.Outcome, float]] = deque()  # reaped, end not yet written
        self._starts_held_until = 0.0  # the history could not take a status 0
        self.failures = 0  # starts that failed, for --once's exit status
        self._signals: deque[int] = deque() if signals is None else signals  # caught, not yet acted on
        self._next_poll = 0.0
        self._force_list = True
        self.status_file = control.StatusFile(settings.passdir)
        self._compact_at_start = True
        self._stop_deadline = 0.0
        self._kill_deadline: float | None = None
        self._started = time.time()
        self._reloads = 0  # HUPs acted on, valid table or not
        self._reload_errors: list[str] = []
        self._env = dict(os.environ)
        self.watcher = Watcher(enabled=not settings.poll_only)
        self._warn_table_mode()
        self.slots: list[Slot] = []
        self._retired: dict[tuple[str, str, str], Slot] = {}  # out of the table, by identity
        self._install(records)

    # -- setup ----------------------------------------------------------------

    def _install(self, records: Iterable[table.Record]) -> None:
        """Make the slots of a table (at start and on HUP).

        A record doing the same work as one before (same directory,
        template and process), whatever its number, keeps its slot: its
        running handler, its files, its counters and its last run.  A
        slot whose record left the table is kept aside, still owning its
        running handler, and comes back if the record does.
        """
        passdir = self.settings.passdir
        path_env = self._env.get("PATH", os.defpath)
        previous = self._retired
        for slot in self.slots:
            previous.setdefault(slot.identity, slot)
        slots = []
        for record in records:
            act = _activate(record, passdir, path_env)
            if act.problem:
                log.error(
                    "record %d (%s:%d): inactive: %s", record.number, self.settings.table_path, record.line, act.problem
                )
            same = previous.pop(key) if (key := identity(record)) in previous else None
            if same is not None:
                renumbered = same.number != record.number
                same.reconfigure(record, act.program, act.problem)  # ends its back-off, as HUP does
                if renumbered:
                    same.letter = runner.last_letter(passdir, record.number)  # the logs are named by number
                slots.append(same)
                continue
            letter = runner.last_letter(passdir, record.number)
            slot = Slot(record, act.program, act.problem, letter, _matcher(record, passdir))
            for other in self.slots:
                if other.record.directory == record.directory:
                    slot.writing |= other.writing  # files still open for writing stay held
            slots.append(slot)
        for slot in previous.values():
            slot.retire()  # out of the table: only its running handler, if any, goes on
        self._retired = previous
        self.slots = slots
        self._force_list = True
        active = {s.record.directory for s in slots if not s.problem}
        self.watcher.unwatch_all_but(active)
        for slot in slots:
            if not slot.problem and slot.open():
                assert slot.spool is not None
                self.watcher.watch(slot.record.directory, (slot.spool.identity.dev, slot.spool.identity.ino))

    def recover(self) -> None:
        """Finish the runs a previous waitd left open (status 0, no end);
        a handler that still runs becomes its record's running handler."""
        for event in self.orphans.adopt(self.history.open_runs()):
            self._record(event)
        for event in self.orphans.waiting:
            directory, name = os.path.split(event.path)
            for slot in self.slots:
                r = slot.record
                if not slot.busy and (r.directory, r.process) == (directory, event.process) and slot.match(name):
                    slot.adopted = event  # -> RUNNING (adopted)
                    break

    # -- the loop ---------------------------------------------------------------

    def run(self) -> int:
        """Run until TERM (or, with --once, until the drain is done)."""
        runner.seal_descriptors()
        inotify_fd = self.watcher.fileno()
        fds = ([] if inotify_fd is None else [inotify_fd]) + self.orphans.fds()
        with Wakeups(HANDLED_SIGNALS, self.note_signal, fds) as wakeups:
            self._forget_fd = wakeups.discard
            log.info(
                "waitd started: pid %d, %d records, %s, interval %g s",
                os.getpid(),
                len(self.slots),
                self.mode.value,
                self.settings.interval_s,
            )
            if self._compact_at_start:
                # Forget the files long gone before the first listing, so that
                # both are never in memory at once (100,000 keys and as many
                # files); the file itself is rewritten after the first pass.
                self.history.drop_gone(Listings().exists)
            try:
                if self.settings.once:
                    self._prepare_once()
                while True:
                    wakeups.wait(self._timeout(time.monotonic()))
                    try:
                        self._changes()
                        if self._turn():
                            break
                    except Exception:
                        log.exception("waitd: unexpected error; carrying on")
            finally:
                self.watcher.close()
        self._write_status(force=True)
        lost = self._flush_unwritten()
        for event in self.unwritten:
            # Not on disk: the next waitd records these runs as status 1.
            log.critical(
                "%s: exiting with an end event not written: %s %s",
                self.history.path,
                escape(event.path),
                format_event(event).strip(),
            )
        log.info("waitd stopped")
        inactive = any(s.problem for s in self.slots)
        if lost:
            return 1
        return 1 if self.settings.once and (self.failures or inactive) else 0

    def note_signal(self, signum: int) -> None:
        """Queue a signal for the next turn (all a handler does)."""
        self._signals.append(signum)

    def _turn(self) -> bool:
        """One turn of the loop; True when waitd should exit."""
        self._reap()
        self._watch_orphans()
        try:
            return self._act_and_pass()
        finally:
            if self._finish_ended():
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
        if self.settings.once and not self.runs and all(not s.once for s in self.slots):
            self._finish_ended()
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
        for slot in self.slots:
            directory = slot.record.directory
            if directory in changes.gone:
                slot.listed_mtime_ns = None
                self._force_list = True
            names = changes.names.get(directory)
            if names:
                slot.touched(self.history, names, now_ns)

    def _act(self, pending: set[int]) -> None:
        if signal.SIGTERM in pending and self.mode is not Mode.STOPPING:
            log.info("waitd: TERM: stopping; %d handler(s) running", len(self.runs))
            self.mode = Mode.STOPPING  # any -> STOPPING
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
        self.reopen_log()
        self._logfiles_again()
        records, errors = table.read(self.settings.table_path, self.settings.passdir, self._env)
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
            self._install(records)
            active = sum(1 for s in self.slots if not s.problem)
            log.info("waitd: HUP: table reloaded: %d records, %d active", len(self.slots), active)
        self._write_status(force=True)  # `waitd -s reload` waits for this

    def _warn_table_mode(self) -> None:
        unsafe = table.writable_by_others(self.settings.table_path)
        if unsafe is not None:
            log.warning("%s: %s; anyone can change what waitd runs", self.settings.table_path, unsafe)

    # -- deadlines --------------------------------------------------------------

    def _timeout(self, now: float) -> float:
        if self._signals:
            return 0.0
        deadlines = [self._next_poll]
        if self.mode is Mode.STOPPING:
            deadlines.append(self._kill_deadline if self._kill_deadline is not None else self._stop_deadline)
        elif self.mode is Mode.ACTIVE:
            now_ns = time.time_ns()
            for slot in self.slots:
                if slot.busy:
                    continue
                if slot.backing_off(now):
                    deadlines.append(slot.backoff_until_mono)
                elif slot.due_ns is not None:
                    deadlines.append(now + (slot.due_ns - now_ns) / 1e9)
        if self.status_file.due > now:
            deadlines.append(self.status_file.due)
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
        ready = []
        for slot in self.slots:
            if slot.problem:
                continue
            try:
                pending = self._pass_one(slot, listing, now, now_ns)
            except Exception:
                # One record's trouble must not stop the others, nor leak
                # the log files of the starts prepared before it.
                log.exception("record %d: unexpected error in its pass; carrying on", slot.number)
                continue
            if pending is not None:
                ready.append((slot, pending))
        self._launch(ready)
        self._keep_all()
        if self._compact_at_start:
            # After the first pass, so that a big history does not delay the
            # first handler; before any later one, so it still bounds the file.
            self._compact_at_start = False
            self.compact()
        self._write_status()

    def _pass_one(self, slot: Slot, listing: bool, now: float, now_ns: int) -> runner.Pending | None:
        """One record's part of a pass: look, expire, choose what to start."""
        if listing:
            directory = slot.record.directory
            slot.refresh(self.history, now_ns, restat=not self.watcher.watching(directory))
            if slot.spool is not None and slot.dir_note is None:
                # Again when the directory was replaced: the old watch
                # would go on reporting the old one.
                self.watcher.watch(directory, (slot.spool.identity.dev, slot.spool.identity.ino))
        if self.mode is not Mode.ACTIVE or slot.spool is None:
            return None
        if listing:
            slot.expire(self.history, now_ns, self._busy)
        return self._prepare(slot, now, now_ns)

    def _flush_unwritten(self) -> int:
        """Write the events a full disk held back; return how many still wait."""
        while self.unwritten:
            try:
                self.history.append(self.unwritten[0])
            except HistoryWriteError:
                break
            log.info("%s: history writable again; wrote a delayed event", self.history.path)
            self.unwritten.popleft()
        return len(self.unwritten)

    def _poll_chores(self) -> None:
        if self._flush_unwritten():
            return
        self._watch_orphans(poll=True)
        # The compaction at start waits for the end of the first pass.
        if self.history.needs_compaction() and not self.runs and not self._compact_at_start:
            self.compact()

    def compact(self) -> None:
        before = self.history.lines
        try:
            dropped = self.history.compact(Listings().exists)
        except HistoryWriteError as exc:
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

    def _prepare(self, slot: Slot, now: float, now_ns: int) -> runner.Pending | None:
        """Choose the slot's next file and open its run's log file."""
        if (
            slot.busy
            or slot.program is None
            or slot.backing_off(now)
            or self.unwritten
            or now < self._starts_held_until
        ):
            return None
        fact = slot.next_file(self.history, now_ns)
        if fact is None:
            return None
        path = slot.path_of(fact.name)
        if any(run.path == path for run, _, _ in self._ended):
            # Another version of this file just ended (it was rewritten in
            # place during its run): its end goes to the history first, or
            # it would come after, and stand for, the new version's start.
            self._finish_ended()
        letter = runner.next_letter(slot.letter)
        for attempt in (1, 2):
            try:
                return runner.prepare(slot.record, slot.program, path, fact, letter, self.settings.passdir, self._env)
            except runner.StartError as exc:
                if attempt == 1 and isinstance(exc.__cause__, FileNotFoundError) and self._logfiles_again():
                    continue
                self._not_started(slot, path, letter, exc)
        return None

    def _logfiles_again(self) -> bool:
        """Make logfiles/ again if it was removed; True if it was."""
        try:
            made = runner.make_logfiles(self.settings.passdir)
        except WaitdError as exc:
            log.error("%s", exc)
            return False
        if made:
            log.warning("%s/logfiles: was gone; made it again", self.settings.passdir)
        return made

    def _launch(self, ready: list[tuple[Slot, runner.Pending]]) -> None:
        """Record the starts of a pass with one sync, then run their handlers."""
        if not ready:
            return
        try:
            runner.commit([pending for _, pending in ready], self.history)
        except runner.StartError as exc:
            for slot, pending in ready:
                self._not_started(slot, pending.run.path, pending.letter, exc)
            return
        for slot, pending in ready:
            try:
                run = runner.launch(pending, self.history)
            except runner.StartError as exc:
                self._not_started(slot, pending.run.path, pending.letter, exc)
                continue
            slot.letter = pending.letter
            slot.run = run  # -> RUNNING
            self.runs[run.pid] = (run, slot)
            log.info(
                "record %d: started %s on %s (pid %d, log %s)",
                slot.number,
                slot.record.process,
                escape(run.path),
                run.pid,
                os.path.basename(run.log_name),
            )

    def _not_started(self, slot: Slot, path: str, letter: str, exc: runner.StartError) -> None:
        self.failures += 1
        if slot.once is not None:
            slot.once.clear()
        if isinstance(exc.__cause__, HistoryWriteError):
            # A full disk is not the handler's fault: no back-off, but no
            # start of any record until the next poll tries again.
            log.error("record %d: %s: %s; trying again at the next poll", slot.number, escape(path), exc)
            self._starts_held_until = self._next_poll
            return
        if exc.recorded:  # its log file was used
            slot.letter = letter
            slot.last = (path, f"could not start: {exc}")
        log.error("record %d: %s: %s", slot.number, escape(path), exc)
        slot.back_off(time.monotonic(), "could not start a handler")

    def _keep_all(self) -> None:
        """Remove the handled files beyond each record's keep-after."""
        if self.mode is not Mode.ACTIVE:
            return
        for slot in self.slots:
            if slot.spool is not None and not slot.problem:
                slot.keep(self.history, self._busy, self._all_done)

    def _busy(self, path: str) -> bool:
        return any(run.path == path for run, _ in self.runs.values()) or self.orphans.busy(path)

    def _all_done(self, path: str, fact: FileFact) -> bool:
        """True when every record matching the file handled it with exit 0.

        Inactive records count too: a file shared with a record whose
        handler is missing now waits for it (or for its expiry)."""
        directory, name = os.path.split(path)
        for slot in self.slots:
            if slot.record.directory != directory or not slot.match(name):
                continue
            if not slot.succeeded(self.history, fact):
                return False
        return True

    def _prune_all(self) -> None:
        now_ns = time.time_ns()
        for slot in self.slots:
            if slot.spool is not None and self.mode is Mode.ACTIVE:
                slot.expire(self.history, now_ns, self._busy)
                slot.keep(self.history, self._busy, self._all_done)

    def _prepare_once(self) -> None:
        now_ns = time.time_ns()
        for slot in self.slots:
            if slot.problem:
                slot.once = deque()
                continue
            slot.refresh(self.history, now_ns)
            slot.once = deque(slot.cands.ready(now_ns, int(slot.record.wait_s * 1e9), slot.consumer(self.history)))
        self._force_list = False

    # -- ends -------------------------------------------------------------------

    def _reap(self) -> None:
        """Collect the runs that ended; their slots are free at once.

        Writing their ends (footer, history line, log line) waits for
        `_finish_ended`, after the pass has started the next handlers: it
        then overlaps their run instead of delaying their start.
        """
        for pid, (run, slot) in list(self.runs.items()):
            outcome = runner.poll(run)
            if outcome is None:
                continue
            del self.runs[pid]
            if self._kill_deadline is not None:
                # Stopping, and its group was sent TERM: what the handler
                # leaves behind (children that ignore TERM, holding its log
                # open) goes with it.
                runner.signal_group(run, signal.SIGKILL)
            took = time.monotonic() - run.started_mono
            self._ended.append((run, outcome, took))
            # Logged now, before what it leads to (a back-off, a removal).
            level = logging.INFO if outcome.status is Status.KNOWN and outcome.exit == 0 else logging.WARNING
            log.log(
                level,
                "record %d: %s on %s: %s after %.3f s",
                run.record,
                run.process,
                escape(run.path),
                outcome.describe(),
                took,
            )
            slot.ended(outcome, took, time.monotonic())

    def _finish_ended(self) -> int:
        """Write the ends `_reap` collected; return how many."""
        count = len(self._ended)
        while self._ended:
            run, outcome, took = self._ended.popleft()
            if not runner.finish(run, outcome, self.history, took):
                self._keep_unwritten(runner.end_event(run, outcome, took))
        return count

    def _record(self, event: Event) -> None:
        try:
            self.history.append(event)
        except HistoryWriteError:
            self._keep_unwritten(event)

    def _keep_unwritten(self, event: Event) -> None:
        log.error(
            "%s: cannot write to the history; keeping the event to write later and starting no handler until then",
            self.history.path,
        )
        self.unwritten.append(event)

    def _watch_orphans(self, poll: bool = False) -> None:
        for event in self.orphans.ended(self._forget_fd, poll):
            self._record(event)
            for slot in [*self.slots, *self._retired.values()]:
                if slot.adopted is not None and slot.adopted.key == event.key:
                    slot.adopted = None  # RUNNING (adopted) -> ENDED
                    slot.counters.failed += 1
                    slot.last = (event.path, "ended after a restart of waitd: outcome unknown (status 1)")

    # -- stopping ---------------------------------------------------------------

    def _stop_step(self, now: float) -> bool:
        self._write_status()
        if not self.runs:
            if self._compact_at_start:
                # Stopped before the first pass: still leave a compact file.
                self._compact_at_start = False
                self.compact()
            return True
        if self._kill_deadline is None and now >= self._stop_deadline:
            log.warning("waitd: stop timeout reached; sending TERM to %d handler(s)", len(self.runs))
            for run, _ in self.runs.values():
                runner.signal_group(run, signal.SIGTERM)
            self._kill_deadline = now + min(KILL_GRACE_S, max(self.settings.stop_timeout_s, 0.5))
        elif self._kill_deadline is not None and now >= self._kill_deadline:
            log.warning("waitd: sending KILL to %d handler(s)", len(self.runs))
            for run, _ in self.runs.values():
                runner.signal_group(run, signal.SIGKILL)
            self._kill_deadline = now + 1.0
        return False

    # -- status -----------------------------------------------------------------

    def _write_status(self, force: bool = False) -> None:
        self.status_file.update(self.status, force)

    def status(self) -> dict[str, Any]:
        """What `waitd -s status` shows: times are seconds since the epoch."""
        now_mono, now = time.monotonic(), time.time()
        records = [slot.report(self.history, now_mono, now) for slot in self.slots]
        return {
            "pid": os.getpid(),
            "mode": self.mode.value,
            "passdir": self.settings.passdir,
            "started_at": self._started,
            "written_at": now,
            "records": records,
            "unwritten_events": len(self.unwritten),
            "stop_timeout_s": self.settings.stop_timeout_s,
            "kill_grace_s": KILL_GRACE_S,
            "table": {
                "reloads": self._reloads,
                "errors": self._reload_errors,
                "records": len(self.slots),
                "active": sum(1 for s in self.slots if not s.problem),
            },
        }


def _activate(record: table.Record, passdir: str, path_env: str) -> table.Activation:
    """`table.activate`, and a record on waitd's own logfiles/ is inactive."""
    if layout.own_directory(record.directory, passdir) == "logfiles":
        return table.Activation(None, f"incoming-dir {record.directory} is waitd's own logfiles directory")
    return table.activate(record, passdir, path_env)


def _matcher(record: table.Record, passdir: str) -> Callable[[str], bool]:
    """The record's template; in PASSDIR itself, waitd's own files never match."""
    match = table.matcher(record.template)
    if layout.own_directory(record.directory, passdir) != "passdir":
        return match
    return lambda name: match(name) and not layout.is_own(name)
