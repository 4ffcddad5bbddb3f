# SPDX-License-Identifier: MIT
"""One record's view of its spool: its files and their readiness.

A `View` owns what waitd knows of one record's files: its open directory
(`scan.Spool`), the matching files (`scan.Candidates`), the files whose
run ended with exit 0 (`done`), the files a writer still has open, the
names already reported as strange, and those that could not be removed.
It lives as long as the record's work (directory, template, process) is
known, across HUP.

The loop asks it to `refresh` (list when changed, or stat what inotify
named: `touched`) and to `take` the jobs ready now: old enough, not
handled yet (or due for a retry), not held by their writer, not busy
with a run (claim=yes: nor their name under way in this instance's
pending, where a claim must not replace it), their companion there when
`done=` asks for one, their name parsed when `pattern=` is set, each
checked once more with a stat; for a record that handles groups, its
`Gatherer` makes the jobs of the groups.  A claim=yes record's files
waiting in pending for their retry are its `retries`; `owns` and `known`
find a file by either of its paths (incoming-dir, pending) for the
control socket and the launcher.

A file that pattern=, key= or done= cannot take, or that its group
does not, is left alone: logged once for the file and the reason, however
often a writer changes it.  `files` tells the status which files wait
(they will run) and which are held (they will not by themselves), and why.

Not here: the removal rules (`sweep`), what to start of the jobs
(`scheduler`), runs (`runs`), the decisions themselves
(`scan.Candidates.take`, `groups.verdict`).  Every problem is logged with
the record number first and never raised: a strange file is skipped and
logged once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waitd.config import table
from waitd.decide.outcome import Job, attempt_of
from waitd.journal.history import Event, History, Status, Version, escape
from waitd.spool.directory import FOREVER_NS, Candidates, FileFact, Skip, Spool
from waitd.spool.gather import Gatherer, Held, Open
from waitd.spool.watch import CLOSED, OPENED

log = logging.getLogger("waitd")

# A directory whose mtime is this close to the moment it was listed may have
# changed again within the same timestamp tick: list it again next time.
GRANULARITY_NS = 2_000_000_000
WRITER_STALL_NS = 60 * 1_000_000_000
SHOWN = 10  # file names listed in the status; the rest are counted


def identity(record: table.Record) -> tuple[str, str, str]:
    """What makes a record the same work across reloads, whatever its number."""
    return (record.directory, record.template, record.process)


@dataclass(frozen=True, slots=True)
class Files:
    """What the status says of a record's files."""

    waiting: int  # not handled yet, and will run (once old enough, or its group complete)
    oldest_mtime: float | None  # of those waiting
    held: list[tuple[str, str, float | None]]  # name, why it will not run by itself, until when
    held_count: int
    gathering: list[Open]  # groups still gathering, by deadline
    retrying: list[tuple[str, float]]  # name, when
    failed: list[str]  # final failures, kept: keep-after never removes them
    failed_count: int
    unremovable: list[str]
    unremovable_count: int


class View:
    """What waitd knows of one record's files (mutable; owned by the loop)."""

    def __init__(self, record: table.Record, match: Callable[[str], bool]) -> None:
        self.record = record
        self.match = match
        self.spool: Spool | None = None
        self.cands = Candidates()
        self.done: dict[str, FileFact] = {}
        self.writing: set[str] = set()  # created, writer not yet closed it
        self.noted: dict[str, str] = {}  # name -> reason logged
        self.unremovable: dict[str, tuple[Version, str]] = {}  # name -> version, why
        self.listed_mtime_ns: int | None = None
        self.listed_at_ns = 0
        self.due_ns: int | None = None  # when the next file not ready yet will be
        self.dir_note: str | None = None  # the last directory problem logged
        self.drain: dict[str, Version] | None = None  # --once: the files ready at start
        self._owner: dict[str, str] = {}  # done=: companion name -> its file's name
        self._left_alone: dict[str, str] = {}  # name -> why pattern=, key=, done= or groups cannot take it
        self._told: dict[str, str] = {}  # name -> why it was left alone, as logged (once)
        self.journal: Any = None  # writer.Journal: removals and groups are told there
        spec = record.options.group
        self.gatherer = Gatherer(self, spec) if spec is not None else None
        self.pending: str | None = None  # claim=yes: this instance's pending/ of the queue
        self.retries: dict[str, tuple[FileFact, float]] = {}  # claim=yes: in pending, to run again then

    @property
    def identity(self) -> tuple[str, str, str]:
        return identity(self.record)

    def reconfigure(self, record: table.Record) -> None:
        """Take the reloaded table's record of the same work: when it groups
        differently, its files are filed into groups anew."""
        grouping = record.options.group != self.record.options.group
        self.record = record
        if grouping:
            spec = record.options.group
            self.gatherer = Gatherer(self, spec) if spec is not None else None
            self._left_alone.clear()
            self._told.clear()
            for fact in list(self.cands.facts.values()):
                self._file(fact)

    @property
    def number(self) -> int:
        return self.record.number

    def path_of(self, name: str) -> str:
        directory = self.record.directory
        return f"{directory}/{name}" if directory != "/" else f"/{name}"

    def retire(self) -> None:
        """The record left the table: let go of its directory and files."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        self.cands = Candidates()
        self.done.clear()
        self.unremovable.clear()
        self.noted.clear()
        self._owner.clear()
        self._left_alone.clear()
        self._told.clear()
        self.listed_mtime_ns = None
        self.due_ns = None

    def owns(self, path: str) -> bool:
        """True for a path this record's files have: in its incoming-dir,
        or (claim=yes) in this instance's pending directory; the name
        matching its template."""
        directory, name = os.path.split(path)
        return directory in (self.record.directory, self.pending) and self.match(name)

    def known(self, path: str) -> tuple[FileFact, str] | None:
        """The file `path` names, as this record knows it, and the path its
        history is under: a file of its incoming-dir, or (claim=yes) one
        waiting in pending for its retry, named by its pending path or by
        the incoming path it came from (when no file has that path now)."""
        if not self.owns(path):
            return None
        directory, name = os.path.split(path)
        fact = self.cands.facts.get(name)
        if directory == self.record.directory and fact is not None:
            return fact, self.path_of(name)
        retry = self.retries.get(name)
        if retry is not None:
            return retry[0], f"{self.pending}/{name}"
        return None

    def again(self, path: str, fact: FileFact, at: float) -> None:
        """The file is to run again at `at`: a retry in pending, or a file
        of the spool put back in line."""
        name = fact.name
        if self.pending is not None and path == f"{self.pending}/{name}":
            self.retries[name] = (fact, at)
        else:
            self.requeue(name)

    # -- history questions ----------------------------------------------

    def latest(self, history: History, fact: FileFact) -> Event | None:
        """The file's latest event for this record's process, if it is about
        this version of the file."""
        event = history.latest(self.path_of(fact.name), self.record.process)
        return event if event is not None and event.same_version(fact) else None

    def consumed(self, history: History, fact: FileFact) -> bool:
        """Handled (or being handled), and not due for another attempt."""
        event = self.latest(history, fact)
        return event is not None and event.consumed and event.retry_at is None

    def succeeded(self, history: History, fact: FileFact) -> bool:
        event = self.latest(history, fact)
        return event is not None and event.succeeded

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
            self.note(name, reason)
        if self.noted:
            for fact in facts:
                self.noted.pop(fact.name, None)
        changed, gone = self.cands.replace_all(facts, now_ns)
        for name in gone:
            self.forget(name)
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
            self.note(name, reason)
        seen = {fact.name for fact in facts}
        for name in known:
            if name not in seen:
                self.forget(name)
        for fact in facts:
            if self.cands.update(fact, now_ns):
                self._check_new(history, fact, now_ns)

    def forget(self, name: str) -> None:
        """The file is gone: drop what is known of it."""
        self.cands.remove(name)
        self.done.pop(name, None)
        self.writing.discard(name)
        self.unremovable.pop(name, None)
        self._left_alone.pop(name, None)
        self._told.pop(name, None)
        if self.gatherer is not None:
            self.gatherer.forget(name)
        if self.drain is not None:
            self.drain.pop(name, None)
        if self.record.options.done is not None:
            self._owner = {c: o for c, o in self._owner.items() if o != name}

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
            self.look_again(history, name, now_ns)

    def look_again(self, history: History, name: str, now_ns: int) -> None:
        """Stat one name and take what it says: a new version, or gone."""
        fact = self._stat(name)
        if fact is None:
            self.forget(name)
        elif self.cands.update(fact, now_ns):
            self._check_new(history, fact, now_ns)

    def ran(self, fact: FileFact) -> None:
        """A run of the file ended with exit 0: only the version that ran is
        done; one rewritten in place meanwhile is a new delivery."""
        current = self.cands.facts.get(fact.name)
        if current is None or current.version == fact.version:
            self.done[fact.name] = current or fact

    def requeue(self, name: str) -> None:
        """The file may run again (a retry is set, a start failed), or its
        group's run ended."""
        self.cands.requeue(name)
        if self.gatherer is not None:
            self.gatherer.touch(name)

    def _stat(self, name: str) -> FileFact | None:
        assert self.spool is not None
        facts, skipped = self.spool.stat_all((name,))
        for reason in skipped.values():
            self.note(name, reason)
        if not facts:
            return None
        self.noted.pop(name, None)
        return facts[0]

    def note(self, name: str, reason: str) -> None:
        if self.noted.get(name) != reason:
            log.warning("record %d: %s: %s", self.number, escape(self.path_of(name)), reason)
            self.noted[name] = reason

    def _leave_alone(self, name: str, why: str) -> None:
        """Leave a file alone (pattern=, key=, done= or its group cannot take
        it): logged once for the file and the reason, however often it is
        judged again (a file still being written is, at each change)."""
        self._left_alone[name] = why
        if self._told.get(name) != why:
            self._told[name] = why
            log.warning("record %d: %s: %s; left alone", self.number, escape(self.path_of(name)), why)

    def _check_new(self, history: History, fact: FileFact, now_ns: int) -> None:
        self._left_alone.pop(fact.name, None)  # its pattern or key is judged again
        if self.succeeded(history, fact):
            self.done[fact.name] = fact
        else:
            self.done.pop(fact.name, None)
        if self.drain is not None and self.drain.get(fact.name, fact.version) != fact.version:
            del self.drain[fact.name]  # another version than the one ready at start
        if fact.mtime_ns > now_ns + 5_000_000_000:
            self.note(fact.name, "mtime is in the future; its age counts from when waitd first saw it")
        if self.record.options.done is not None:
            companion = self.companion(fact.name)
            if companion is not None:
                self._owner[companion] = fact.name
        if self.gatherer is not None:
            self._file(fact)
        elif self.record.options.pattern is not None or self.record.options.key is not None:
            self._judge(fact.name)  # at once, so that the status says so while it ages

    def _file(self, fact: FileFact) -> None:
        """File a file into its group (a grouping record)."""
        assert self.gatherer is not None
        values = self.fields(fact.name)
        why = self.gatherer.filed(fact, values) if values is not None else self._no_parse()
        if why is not None:
            self._leave_alone(fact.name, why)
        else:
            self._told.pop(fact.name, None)

    # -- what is ready ----------------------------------------------------

    def take(self, n: int, history: History, now_ns: int, busy: Callable[[str], bool]) -> list[Job]:
        """Up to `n` jobs ready now, oldest first, each file stat'ed once
        more; `due_ns` says when the next one not ready yet will be."""
        self.due_ns = None
        if self.spool is None or n <= 0:
            return []
        if self.gatherer is not None:
            groups, self.due_ns = self.gatherer.take(n, history, now_ns, busy, self._member_held)
            return groups
        if self.retries:
            due = self._due_retries(history, now_ns, busy)
            if len(due) >= n:
                return due[:n]
            n -= len(due)
        else:
            due = []
        wait_ns = int(self.record.wait_s * 1e9)
        jobs: list[Job] = []
        # Each file's latest event, looked up once for the three questions
        # asked of it (consumed? held? which attempt?): this is a hot path.
        events: dict[str, Event | None] = {}

        def latest(fact: FileFact) -> Event | None:
            if fact.name not in events:
                events[fact.name] = self.latest(history, fact)
            return events[fact.name]

        def consumed(fact: FileFact) -> bool:
            event = latest(fact)
            return event is not None and event.consumed and event.retry_at is None

        for _ in range(3):  # again for files that vanished or changed at their stat, but not for ever
            if len(jobs) >= n:
                break
            facts, self.due_ns = self.cands.take(
                n - len(jobs), now_ns, wait_ns, consumed, lambda f: self._held_until(latest(f), f, busy, jobs)
            )
            if not facts:
                break
            for fact in facts:
                job = self._job(history, fact, now_ns, latest)
                if job is not None:
                    jobs.append(job)
        if self.retries:
            later = min(at for _, at in self.retries.values())
            self.due_ns = min(self.due_ns or int(later * 1e9), int(later * 1e9))
        return due + jobs

    def _due_retries(self, history: History, now_ns: int, busy: Callable[[str], bool]) -> list[Job]:
        """claim=yes: the jobs of files waiting in pending whose retry is due."""
        assert self.pending is not None
        jobs = []
        for name, (fact, at) in sorted(self.retries.items(), key=lambda item: item[1][1]):
            path = f"{self.pending}/{name}"
            if at * 1e9 > now_ns or busy(path):
                continue
            event = history.latest(path, self.record.process)
            attempt = attempt_of(event if event is not None and event.same_version(fact) else None)
            jobs.append(Job(self.identity, self.record.process, (fact,), (path,), attempt=attempt))
        return jobs

    def _job(
        self, history: History, fact: FileFact, now_ns: int, latest: Callable[[FileFact], Event | None]
    ) -> Job | None:
        """The job of a file ready to run, after one more stat; None if it
        vanished, changed (it is aged again) or cannot be a job."""
        fresh = self._stat(fact.name)
        if fresh is None:
            log.info("record %d: %s vanished before its run", self.number, escape(self.path_of(fact.name)))
            self.forget(fact.name)
            return None
        if fresh != fact:
            # Still being written (or touched): order and age it again.
            if self.cands.update(fresh, now_ns):
                self._check_new(history, fresh, now_ns)
            return None
        judged = self._judge(fact.name)
        if judged is None:
            return None
        fields, key = judged
        path = self.path_of(fact.name)
        attempt = attempt_of(latest(fact))
        return Job(identity(self.record), self.record.process, (fact,), (path,), key, attempt, fields)

    def _judge(self, name: str) -> tuple[dict[str, Any], str | None] | None:
        """A file's fields and key, or None when pattern= or key= cannot take
        it: then it is left alone (logged once)."""
        options = self.record.options
        fields: dict[str, Any] = {}
        if options.pattern is not None or options.key is not None:
            found = self.fields(name)
            if found is None:
                self._leave_alone(name, self._no_parse())
                return None
            fields = found
        key = None
        if options.key is not None:
            key = options.format(options.key, fields)
            if key is None:
                self._leave_alone(name, f"key={options.key} does not fit its fields")
                return None
        self._told.pop(name, None)
        return fields, key

    def fields(self, name: str) -> dict[str, Any] | None:
        """The fields a FORMAT sees of a file; None when the record's pattern
        does not parse its name (the caller leaves it alone)."""
        return self.record.options.fields(name, self.record.directory, self.record.telem)

    def _no_parse(self) -> str:
        return f"does not parse with pattern={self.record.options.pattern}"

    def incomplete_groups(self) -> dict[str, list[str]] | None:
        """Groups that will not run (a critical member missed their
        timeliness), with what they miss; None for a record without groups."""
        return dict(self.gatherer.incomplete) if self.gatherer is not None else None

    def _member_held(self, fact: FileFact) -> int | None:
        """Until when a member of a group is not ready although old enough."""
        if self.drain is not None and self.drain.get(fact.name) != fact.version:
            return FOREVER_NS
        return fact.mtime_ns + WRITER_STALL_NS if fact.name in self.writing else None

    def _held_until(
        self, event: Event | None, fact: FileFact, busy: Callable[[str], bool], taken: list[Job]
    ) -> int | None:
        """Until when a file old enough may not run yet (FOREVER_NS: until
        something changes), or None when it may."""
        name = fact.name
        if name in self._owner or name in self._left_alone or any(j.fact.name == name for j in taken):
            return FOREVER_NS  # a companion, a name its pattern or key cannot take, or taken already
        if busy(self.path_of(name)):
            return FOREVER_NS  # running, or ended and its end not recorded yet
        if self.pending is not None and (name in self.retries or busy(f"{self.pending}/{name}")):
            return FOREVER_NS  # claim=yes: its name is under way in pending (a claim never replaces)
        if self.drain is not None and self.drain.get(name) != fact.version:
            return FOREVER_NS  # --once: not among the files ready at start
        until = fact.mtime_ns + WRITER_STALL_NS if name in self.writing else None
        if event is not None and event.retry_at is not None:
            until = max(until or 0, int(event.retry_at * 1e9))
        if self.record.options.done is not None:
            ready = self._companion_ready_ns(name)
            if ready is None:
                return FOREVER_NS  # its companion is not there yet
            until = max(until or 0, ready)
        return until

    def companion(self, name: str) -> str | None:
        """The name of the file's companion (done=), None if it has none."""
        return self._companion_of(name)[0]

    def _companion_of(self, name: str) -> tuple[str | None, str | None]:
        """The name of the file's companion, or why it has none (None: the
        record has no done=)."""
        fmt = self.record.options.done
        if fmt is None:
            return None, None
        fields = self.fields(name)
        if fields is None:
            return None, self._no_parse()
        companion = self.record.options.format(fmt, fields)
        if companion is None:
            return None, f"done={fmt} does not fit its fields"
        if "/" in companion or companion == name:
            return None, f"done={fmt} names {companion!r}, not another file here"
        return companion, None

    def _companion_ready_ns(self, name: str) -> int | None:
        """When the file's companion is old enough (None: not there, or the
        file has none: then it is left alone, logged)."""
        companion, why = self._companion_of(name)
        if why is not None:
            self._leave_alone(name, why)
        if companion is None or self.spool is None:
            return None
        try:
            fact = self.spool.stat(companion)
        except (OSError, Skip):
            return None
        self._owner[companion] = name
        return fact.mtime_ns + int(self.record.wait_s * 1e9)

    # -- the status -------------------------------------------------------

    def files(self, history: History, now_ns: int) -> Files:
        """What the status says of the files: waiting (they will run),
        held (they will not by themselves: why, and until when), the groups
        gathering, retrying, failed."""
        waiting: list[FileFact] = []
        held: list[tuple[str, str, float | None]] = []
        retrying: list[tuple[str, float]] = []
        failed: list[str] = []
        of_groups, gathering = self.gatherer.held(history, now_ns) if self.gatherer is not None else ({}, [])
        for fact in self.cands.facts.values():
            if fact.name in self._owner:
                continue  # a companion
            event = self.latest(history, fact)
            if event is None or not event.consumed:
                why, until_ns = self._held_why(fact.name, of_groups)
                if why is None:
                    waiting.append(fact)
                else:
                    held.append((fact.name, why, None if until_ns is None else until_ns / 1e9))
            elif event.retry_at is not None:
                retrying.append((fact.name, event.retry_at))
            elif event.status is not Status.STARTED and not event.succeeded:
                failed.append(fact.name)
        retrying += [(name, at) for name, (_, at) in self.retries.items()]  # claim=yes: waiting in pending
        stuck = sorted(self.unremovable.items())
        oldest = min((f.mtime_ns for f in waiting), default=None)
        return Files(
            waiting=len(waiting),
            oldest_mtime=None if oldest is None else oldest / 1e9,
            held=sorted(held)[:SHOWN],
            held_count=len(held),
            gathering=gathering,
            retrying=sorted(retrying, key=lambda item: item[1]),
            failed=sorted(failed)[:SHOWN],
            failed_count=len(failed),
            unremovable=[f"{escape(name)} ({why})" for name, (_, why) in stuck[:SHOWN]],
            unremovable_count=len(stuck),
        )

    def _held_why(self, name: str, of_groups: dict[str, Held]) -> tuple[str | None, int | None]:
        """Why a file not handled yet will not run by itself, and until when;
        (None, None) when it will run."""
        if name in self._left_alone:
            return self._left_alone[name], None
        if name in of_groups:
            return of_groups[name].why, of_groups[name].until_ns
        if self.record.options.done is not None and self.spool is not None:
            companion, why = self._companion_of(name)
            if why is not None:
                return why, None
            try:
                self.spool.stat(companion or "")
            except (OSError, Skip):
                return f"its companion {companion} is not there yet", None
        return None, None
