# SPDX-License-Identifier: MIT
"""What waitd knows of one record's files between turns.

`FileState` is one record's file state, one typed record, kept by the
record's identity across HUP (`daemon.records.Works`): its open directory,
its matching files in order (`Candidates`), the files handled with exit 0
(`done`), those a writer still has open, the names reported as strange or
left alone (each logged once), the companions of done=, the files that
could not be removed, when it was listed, the --once drain, its groups
(`gather.Gathering`), and under claim=yes its pending directory and the
files waiting there for their retry.

Its methods are bookkeeping only: what a run's end, a retry or a gone
file changes, and where a path leads (`owns`, `known`).  The I/O (open,
list, stat) is `observe`'s, the jobs ready are `ready`'s, the rules
`decide`'s.  Logs: a strange name and a file left alone, once each for
the file and the reason (at info level for a `groups.Quiet` reason: a
granule off its area is the normal case).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from waitd.config import table
from waitd.config.wildcard import Matcher
from waitd.decide.facts import FileFact, Identity, identity
from waitd.decide.groups import Quiet
from waitd.decide.outcome import Job
from waitd.decide.readiness import Candidates
from waitd.decide.removal import DoneOrder
from waitd.formats.history_line import Version, escape
from waitd.spool import jsonfields
from waitd.spool.directory import Spool
from waitd.spool.gather import Gathering

log = logging.getLogger("waitd")


@dataclass(slots=True, eq=False)
class FileState:
    """What waitd knows of one record's files (mutable; kept by identity)."""

    record: table.Record
    match: Matcher
    spool: Spool | None = None  # its directory, open
    cands: Candidates = field(default_factory=Candidates)
    done: dict[str, FileFact] = field(default_factory=dict)  # handled with exit 0: keep-after counts them
    writing: set[str] = field(default_factory=set)  # created, writer not yet closed it (inotify)
    noted: dict[str, str] = field(default_factory=dict)  # name -> why it is strange, as logged
    left_alone: dict[str, str] = field(
        default_factory=dict
    )  # name -> why pattern=, key=, done= or groups cannot take it
    told: dict[str, str] = field(default_factory=dict)  # name -> why it was left alone, as logged
    companions: dict[str, str] = field(default_factory=dict)  # done=: companion name -> its file's name
    unremovable: dict[str, tuple[Version, str]] = field(default_factory=dict)  # name -> version, why
    listed_mtime_ns: int | None = None  # the directory's mtime at its last listing
    listed_at_ns: int = 0
    dir_note: str | None = None  # the last directory problem logged
    drain: dict[str, Version] | None = None  # --once: the files ready at start
    groups: Gathering | None = None  # a record that handles groups
    pending: str | None = None  # claim=yes: this instance's pending/ of the queue
    retries: dict[str, tuple[FileFact, float]] = field(default_factory=dict)  # claim=yes: in pending, to run then
    paused: set[str] = field(default_factory=set)  # names held by `waitd -s pause` until resumed
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # fields=json: each file's body's fields
    restat: list[str] = field(default_factory=list)  # known names a listing left to stat, a slice a turn
    done_order: DoneOrder = field(default_factory=DoneOrder)  # `done`, oldest first, for keep-after

    @classmethod
    def of(cls, record: table.Record, match: Matcher) -> FileState:
        spec = record.options.group
        return cls(record, match, groups=Gathering.of(spec, record.telem, record.geo) if spec is not None else None)

    @property
    def identity(self) -> Identity:
        return identity(self.record)

    @property
    def number(self) -> int:
        return self.record.number

    def path_of(self, name: str) -> str:
        directory = self.record.directory
        return f"{directory}/{name}" if directory != "/" else f"/{name}"

    def fields(self, name: str) -> dict[str, Any] | None:
        """The fields a FORMAT sees of a file; None when the record's pattern
        does not parse its name (or, with fields=json, the file is no JSON
        object: its body's fields are read once, `jsonfields`)."""
        found = self.record.options.fields(name, self.record.directory, self.record.telem)
        if found is None or self.record.options.fields_from != "json":
            return found
        body = self.bodies.get(name)
        if body is None:
            paths = (self.path_of(name),) + ((f"{self.pending}/{name}",) if self.pending is not None else ())
            body = jsonfields.read(paths)
            if body is None:
                return None
            self.bodies[name] = body
        return {**body, **found}

    def no_parse(self) -> str:
        if self.record.options.fields_from == "json":
            return "is not a JSON object (fields=json), or does not parse with pattern="
        return f"does not parse with pattern={self.record.options.pattern}"

    def judge(self, name: str) -> tuple[dict[str, Any], str | None] | None:
        """A file's fields and key, or None when pattern= or key= cannot take
        it: then it is left alone (logged once)."""
        options = self.record.options
        fields: dict[str, Any] = {}
        if options.pattern is not None or options.key is not None or options.fields_from == "json":
            found = self.fields(name)
            if found is None:
                self.leave_alone(name, self.no_parse())
                return None
            fields = found
        key = None
        if options.key is not None:
            key = options.format(options.key, fields)
            if key is None:
                self.leave_alone(name, f"key={options.key} does not fit its fields")
                return None
        self.told.pop(name, None)
        return fields, key

    # -- where a path leads -----------------------------------------------------

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

    def claimed_as(self, path: str) -> str | None:
        """The pending path of a file named by the incoming path it came from
        (when no file has that path now), else None."""
        directory, name = os.path.split(path)
        if self.pending is None or directory != self.record.directory or name in self.cands.facts:
            return None
        return f"{self.pending}/{name}" if self.match(name) else None

    # -- what changes it --------------------------------------------------------

    def forget(self, name: str) -> None:
        """The file is gone: drop what is known of it."""
        self.cands.remove(name)
        self.bodies.pop(name, None)
        self.done.pop(name, None)
        self.writing.discard(name)
        self.unremovable.pop(name, None)
        self.left_alone.pop(name, None)
        self.told.pop(name, None)
        self.paused.discard(name)
        if self.groups is not None:
            self.groups.forget(name)
        if self.drain is not None:
            self.drain.pop(name, None)
        if self.record.options.done is not None:
            self.companions = {c: o for c, o in self.companions.items() if o != name}

    def started(self, job: Job) -> None:
        """A job started: its files are no longer the drain's to wait for."""
        if self.drain is not None:
            for fact in job.facts:
                self.drain.pop(fact.name, None)

    def ran(self, fact: FileFact) -> None:
        """A run of the file ended with exit 0: only the version that ran is
        done; one rewritten in place meanwhile is a new delivery."""
        current = self.cands.facts.get(fact.name)
        if current is None or current is fact or current.version == fact.version:
            self.set_done(current or fact)

    def set_done(self, fact: FileFact) -> None:
        """The file was handled with exit 0, this version (keep-after counts it)."""
        self.done[fact.name] = fact
        self.done_order.push(fact)

    def requeue(self, name: str) -> None:
        """The file may run again (a retry is set, a start failed), or its
        group's run ended."""
        self.cands.requeue(name)
        if self.groups is not None:
            self.groups.touch(name)

    def again(self, path: str, fact: FileFact, at: float) -> None:
        """The file is to run again at `at`: a retry in pending, or a file
        of the spool put back in line."""
        name = fact.name
        if self.pending is not None and path == f"{self.pending}/{name}":
            self.retries[name] = (fact, at)
        else:
            self.requeue(name)

    def note(self, name: str, reason: str) -> None:
        """A strange name: logged once for the name and the reason."""
        if self.noted.get(name) != reason:
            log.warning("record %d: %s: %s", self.number, escape(self.path_of(name)), reason)
            self.noted[name] = reason

    def leave_alone(self, name: str, why: str) -> None:
        """Leave a file alone (pattern=, key=, done= or its group cannot take
        it): logged once for the file and the reason, however often it is
        judged again (a file still being written is, at each change)."""
        self.left_alone[name] = why
        if self.told.get(name) != why:
            self.told[name] = why
            level = logging.INFO if isinstance(why, Quiet) else logging.WARNING
            log.log(level, "record %d: %s: %s; left alone", self.number, escape(self.path_of(name)), why)

    def clear(self) -> None:
        """The record left the table: let go of its files (its directory is
        closed by `observe.retire`)."""
        self.cands = Candidates()
        self.done.clear()
        self.done_order = DoneOrder()
        self.unremovable.clear()
        self.noted.clear()
        self.companions.clear()
        self.left_alone.clear()
        self.told.clear()
        self.restat.clear()
        self.listed_mtime_ns = None
