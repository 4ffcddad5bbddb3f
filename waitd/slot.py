# SPDX-License-Identifier: MIT
"""The work of one active record: list, expire, start, keep-after.

A `Slot` owns what waitd knows of one record at run time: its open
directory (`scan.Spool`), its matching files (`scan.Candidates`), the files
whose run ended with exit 0 (`done`), its running handler, its log letter
and its back-off.  The loop calls `refresh` (list when due and changed,
stat single names when told of them), `expire`, `start_next` and `keep`
in that order; each acts only through the history it is given and the
directory descriptor.

Not here: signals, reaping and the order of passes (`loop`), the decisions
themselves (`scan.Candidates.next`, `prune.expired`, `prune.over_keep`).
Every problem is logged with the record number first and never raised:
a strange file is skipped and logged once, a removal that fails is logged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from waitd import prune, runner, table
from waitd.history import Event, History, Status, Version, escape
from waitd.prune import Outcome
from waitd.scan import Candidates, FileFact, Spool
from waitd.watch import CLOSED, OPENED

log = logging.getLogger("waitd")

# A directory whose mtime is this close to the moment it was listed may have
# changed again within the same timestamp tick: list it again next time.
GRANULARITY_NS = 2_000_000_000
FAST_FAIL_S = 1.0
FAST_FAILS = 5
BACKOFF_FIRST_S = 10.0
BACKOFF_MAX_S = 600.0
WRITER_STALL_NS = 60 * 1_000_000_000
STATUS_FAILED_SHOWN = 10  # file names listed in the status; the rest are counted


def identity(record: table.Record) -> tuple[str, str, str]:
    """What makes a record the same work across reloads, whatever its number."""
    return (record.directory, record.template, record.process)


@dataclass(slots=True)
class Counters:
    ok: int = 0
    failed: int = 0
    removed: int = 0


@dataclass(slots=True)
class Slot:
    """Run-time state of one record (mutable; owned by the loop)."""

    record: table.Record
    program: str | None
    problem: str | None
    letter: str | None
    match: Callable[[str], bool]
    spool: Spool | None = None
    cands: Candidates = field(default_factory=Candidates)
    done: dict[str, FileFact] = field(default_factory=dict)
    run: runner.Run | None = None
    adopted: Event | None = None  # the open run of a waitd that died, still running
    fails: deque[bool] = field(default_factory=lambda: deque(maxlen=FAST_FAILS))
    backoff_s: float = 0.0
    backoff_until_mono: float = 0.0
    listed_mtime_ns: int | None = None
    listed_at_ns: int = 0
    due_ns: int | None = None
    dir_note: str | None = None  # last directory problem logged
    noted: dict[str, str] = field(default_factory=dict)  # name -> reason logged
    once: deque[FileFact] | None = None
    writing: set[str] = field(default_factory=set)  # created, writer not yet closed it
    unremovable: dict[str, tuple[Version, str]] = field(default_factory=dict)  # name -> version, why
    last: tuple[str, str] | None = None
    counters: Counters = field(default_factory=Counters)

    @property
    def number(self) -> int:
        return self.record.number

    def path_of(self, name: str) -> str:
        directory = self.record.directory
        return f"{directory}/{name}" if directory != "/" else f"/{name}"

    @property
    def identity(self) -> tuple[str, str, str]:
        return identity(self.record)

    @property
    def busy(self) -> bool:
        """A handler of this record runs: its own, or one adopted from a
        waitd that died while it ran."""
        return self.run is not None or self.adopted is not None

    def reconfigure(self, record: table.Record, program: str | None, problem: str | None) -> None:
        """Take a reloaded table's record of the same work (HUP): its
        number, wait, keep and expiry may have changed; a reload ends the
        back-off, as documented."""
        self.record = record
        self.program = program
        self.problem = problem
        self.reset_backoff()

    def retire(self) -> None:
        """The record left the table: keep only what its running handler
        and its counters need."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self.cands = Candidates()
        self.done.clear()
        self.unremovable.clear()
        self.noted.clear()
        self.listed_mtime_ns = None
        self.due_ns = None

    # -- history questions ----------------------------------------------

    def consumed(self, history: History, fact: FileFact) -> bool:
        event = history.latest(self.path_of(fact.name), self.record.process)
        return event is not None and event.consumed and event.same_version(fact)

    def consumer(self, history: History) -> Callable[[FileFact], bool]:
        """`consumed` bound to a history, as the candidate queue wants it."""
        return lambda fact: self.consumed(history, fact)

    def succeeded(self, history: History, fact: FileFact) -> bool:
        event = history.latest(self.path_of(fact.name), self.record.process)
        return event is not None and event.succeeded and event.same_version(fact)

    # -- the directory ----------------------------------------------------

    def open(self) -> bool:
        """Open the directory if needed; False (logged once) if it is gone."""
        if self.spool is not None:
            replaced = self.spool.replaced()
            if replaced is None:
                self._note_dir("directory is gone; waiting for it to come back")
                self.cands.replace_all([], time.time_ns())
                self.done.clear()
                return False
            if not replaced:
                return True
            log.warning(
                "record %d: %s was replaced by another directory; following it", self.number, self.record.directory
            )
            self.spool.close()
            self.spool = None
        try:
            self.spool = Spool(self.record.directory)
        except OSError as exc:
            self._note_dir(f"cannot open directory: {exc.strerror}")
            return False
        if self.dir_note is not None:
            log.info("record %d: %s is back", self.number, self.record.directory)
        self.dir_note = None
        self.listed_mtime_ns = None
        return True

    def _note_dir(self, what: str) -> None:
        if self.dir_note != what:
            log.error("record %d: %s: %s", self.number, self.record.directory, what)
            self.dir_note = what

    def refresh(self, history: History, now_ns: int, restat: bool = False) -> bool:
        """List the directory if it changed since the last listing; with
        `restat`, stat the known files even when it did not (a file
        rewritten in place changes no name, so not the directory's mtime:
        without inotify, only a stat sees it)."""
        if not self.open():
            return False
        assert self.spool is not None
        try:
            mtime = self.spool.mtime_ns()
        except OSError as exc:
            self._note_dir(f"cannot stat directory: {exc.strerror}")
            return False
        if mtime == self.listed_mtime_ns and self.listed_at_ns - mtime > GRANULARITY_NS:
            if restat:
                self._restat_known(history, now_ns)
            return False
        listed_at = time.time_ns()
        try:
            names = self.spool.names(self.match)
        except OSError as exc:
            self._note_dir(f"cannot list directory: {exc.strerror}")
            return False
        facts, skipped = self.spool.stat_all(names)
        for name, reason in skipped.items():
            self._note(name, reason)
        if self.noted:
            for fact in facts:
                self.noted.pop(fact.name, None)
        changed, gone = self.cands.replace_all(facts, now_ns)
        for name in gone:
            self.done.pop(name, None)
            self.writing.discard(name)
        for fact in changed:
            self._check_new(history, fact, now_ns)
        self.noted = {n: r for n, r in self.noted.items() if n in self.cands.facts or n in names}
        self.listed_mtime_ns = mtime
        self.listed_at_ns = listed_at
        return True

    def _restat_known(self, history: History, now_ns: int) -> None:
        known = list(self.cands.facts)
        facts, skipped = self.spool.stat_all(known) if self.spool is not None else ([], {})
        for name, reason in skipped.items():
            self._note(name, reason)
        seen = {fact.name for fact in facts}
        for name in known:
            if name not in seen:
                self._forget(name)
        for fact in facts:
            if self.cands.update(fact, now_ns):
                self._check_new(history, fact, now_ns)

    def _forget(self, name: str) -> None:
        """The file is gone: drop what is known of it."""
        self.cands.remove(name)
        self.done.pop(name, None)
        self.writing.discard(name)
        self.unremovable.pop(name, None)

    def touched(self, history: History, names: dict[str, str | None], now_ns: int) -> None:
        """Stat the names inotify reported, instead of listing everything."""
        if self.spool is None:
            return
        for name, state in names.items():
            if not self.match(name):
                continue
            if state == OPENED:
                self.writing.add(name)
            elif state == CLOSED:
                self.writing.discard(name)
            self._look_again(history, name, now_ns)

    def _look_again(self, history: History, name: str, now_ns: int) -> None:
        """Stat one name and take what it says: a new version, or gone."""
        fact = self._stat(name)
        if fact is None:
            self._forget(name)
        elif self.cands.update(fact, now_ns):
            self._check_new(history, fact, now_ns)

    def _stat(self, name: str) -> FileFact | None:
        assert self.spool is not None
        facts, skipped = self.spool.stat_all((name,))
        for reason in skipped.values():
            self._note(name, reason)
        if not facts:
            return None
        self.noted.pop(name, None)
        return facts[0]

    def _note(self, name: str, reason: str) -> None:
        if self.noted.get(name) != reason:
            log.warning("record %d: %s: %s", self.number, escape(self.path_of(name)), reason)
            self.noted[name] = reason

    def _check_new(self, history: History, fact: FileFact, now_ns: int) -> None:
        if self.succeeded(history, fact):
            self.done[fact.name] = fact
        else:
            self.done.pop(fact.name, None)
        if fact.mtime_ns > now_ns + 5_000_000_000:
            self._note(fact.name, "mtime is in the future; its age counts from when waitd first saw it")

    # -- removals ---------------------------------------------------------

    def expire(self, history: History, now_ns: int, busy: Callable[[str], bool]) -> None:
        """Remove files in the spool longer than hours-too-old."""
        if self.spool is None:
            return
        for fact in prune.expired(list(self.cands.facts.values()), now_ns, self.record.too_old_h):
            path = self.path_of(fact.name)
            if busy(path):
                continue
            handled = self.consumed(history, fact)
            hours = (now_ns - fact.spool_ns) / 3.6e12
            why = f"expired: in the spool {hours:.3g} h, hours-too-old is {self.record.too_old_h:g}"
            self._remove(history, fact, why if handled else f"{why}; it was never handled", now_ns)

    def keep(self, history: History, busy: Callable[[str], bool], all_done: Callable[[str, FileFact], bool]) -> None:
        """Remove handled files (exit 0) beyond the newest keep-after."""
        if self.spool is None or self.record.keep < 0 or len(self.done) <= self.record.keep:
            return
        now_ns = time.time_ns()
        for fact in prune.over_keep(list(self.done.values()), self.record.keep):
            path = self.path_of(fact.name)
            if busy(path) or not all_done(path, fact):
                continue
            self._remove(history, fact, f"handled with exit 0; keep-after is {self.record.keep}", now_ns)

    def _remove(self, history: History, fact: FileFact, why: str, now_ns: int) -> None:
        assert self.spool is not None
        path = escape(self.path_of(fact.name))
        removal = prune.remove(self.spool.fd, fact)
        if removal.outcome is Outcome.REMOVED:
            level = logging.WARNING if "never handled" in why else logging.INFO
            log.log(level, "record %d: removed %s: %s", self.number, path, why)
            self.counters.removed += 1
            self._forget(fact.name)
        elif removal.outcome is Outcome.GONE:
            self._forget(fact.name)  # another record sharing the directory removed it
        elif removal.outcome is Outcome.CHANGED:
            self._look_again(history, fact.name, now_ns)  # a new delivery: a candidate again
        elif self.unremovable.get(fact.name, (None,))[0] != fact.version:
            # Once per version, not at every pass: the next poll tries again.
            log.warning("record %d: cannot remove %s (%s): %s", self.number, path, why, removal.reason)
            self.unremovable[fact.name] = (fact.version, removal.reason)

    # -- starting ---------------------------------------------------------

    def backing_off(self, now_mono: float) -> bool:
        return now_mono < self.backoff_until_mono

    def back_off(self, now_mono: float, why: str) -> None:
        self.backoff_s = BACKOFF_FIRST_S if self.backoff_s == 0 else min(BACKOFF_MAX_S, 2 * self.backoff_s)
        self.backoff_until_mono = now_mono + self.backoff_s
        log.error("record %d: %s; no handler starts for %g s", self.number, why, self.backoff_s)

    def reset_backoff(self) -> None:
        self.backoff_s = 0.0
        self.backoff_until_mono = 0.0
        self.fails.clear()

    def next_file(self, history: History, now_ns: int) -> FileFact | None:
        """The file to run now, re-checked with one stat, or None."""
        if self.spool is None:
            return None
        wait_ns = int(self.record.wait_s * 1e9)
        while True:
            if self.once is not None:
                self.due_ns = None
                fact = self.once.popleft() if self.once else None
                if fact is None:
                    return None
                if self.cands.facts.get(fact.name) != fact or self.consumed(history, fact):
                    continue
            else:
                fact, self.due_ns = self.cands.next(
                    now_ns, wait_ns, lambda f: self.consumed(history, f), self._held_until
                )
                if fact is None:
                    return None
            fresh = self._stat(fact.name)
            if fresh is None:
                log.info("record %d: %s vanished before its run", self.number, escape(self.path_of(fact.name)))
                self._forget(fact.name)
                continue
            if fresh != fact:
                # Still being written (or touched): order and age it again.
                self.cands.update(fresh, now_ns)
                if self.once is not None and fresh.version == fact.version:
                    self.once.appendleft(fresh)
                continue
            return fact

    def _held_until(self, fact: FileFact) -> int | None:
        """While its writer has it open, a file waits, up to WRITER_STALL_NS
        after its last modification (a writer that stalls that long is taken
        for done, as the wait age would)."""
        if fact.name not in self.writing:
            return None
        return fact.mtime_ns + WRITER_STALL_NS

    def ended(self, outcome: runner.Outcome, took: float, now_mono: float) -> None:
        """Account for the end of this slot's run."""
        run = self.run
        assert run is not None
        self.run = None  # RUNNING -> ENDED
        self.last = (run.path, outcome.describe())
        ok = outcome.status is Status.KNOWN and outcome.exit == 0
        if ok:
            self.counters.ok += 1
            self.reset_backoff()
            # Only the version that ran is done: one rewritten in place
            # meanwhile is a new delivery, waiting for its own run.
            current = self.cands.facts.get(run.fact.name)
            if current is None or current.version == run.fact.version:
                self.done[run.fact.name] = current or run.fact
            return
        self.counters.failed += 1
        self.fails.append(took < FAST_FAIL_S)
        if len(self.fails) == FAST_FAILS and all(self.fails):
            self.back_off(now_mono, f"the last {FAST_FAILS} runs each failed within {FAST_FAIL_S:g} s")

    def report(self, history: History, now_mono: float, now: float) -> dict[str, Any]:
        """This record's part of the status file (times in epoch seconds)."""
        r = self.record
        item: dict[str, Any] = {
            "number": r.number,
            "telem": r.telem,
            "directory": r.directory,
            "template": r.template,
            "process": r.process,
            "problem": self.problem or self.dir_note,
            "counters": {"ok": self.counters.ok, "failed": self.counters.failed, "removed": self.counters.removed},
        }
        if self.run is not None:
            item["running"] = {"file": escape(self.run.path), "pid": self.run.pid, "since": self.run.started_at}
        elif self.adopted is not None:
            item["running"] = {
                "file": escape(self.adopted.path),
                "pid": self.adopted.pid,
                "since": self.adopted.at,
                "adopted": True,
            }
        waiting, failed = [], []
        for fact in self.cands.facts.values():
            event = history.latest(self.path_of(fact.name), r.process)
            if event is None or not event.same_version(fact) or not event.consumed:
                waiting.append(fact)
            elif event.status is not Status.STARTED and not event.succeeded:
                failed.append(fact.name)  # kept: keep-after never removes it
        oldest = min((f.mtime_ns for f in waiting), default=None)
        item["waiting"] = len(waiting)
        item["oldest_mtime"] = None if oldest is None else oldest / 1e9
        item["failed"] = [escape(name) for name in sorted(failed)[:STATUS_FAILED_SHOWN]]
        item["failed_count"] = len(failed)
        stuck = sorted(self.unremovable.items())
        item["unremovable"] = [f"{escape(name)} ({why})" for name, (_, why) in stuck[:STATUS_FAILED_SHOWN]]
        item["unremovable_count"] = len(stuck)
        if self.last:
            item["last"] = {"file": escape(self.last[0]), "outcome": self.last[1]}
        if self.backing_off(now_mono):
            item["backoff_until"] = now + self.backoff_until_mono - now_mono
        return item
