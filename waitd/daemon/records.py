# SPDX-License-Identifier: MIT
"""The records at run time: one owner of their work, kept across HUP.

`Works` is the one owner of what waitd knows of each record at run time,
filed by the record's identity (incoming-dir, name-template,
process-name), which a reload does not change whatever the record's
number: its `Work` (the state of its files and the tally of its runs).
`install` takes a table (at start and on each valid HUP) and returns its
`Entry`s, in table order: a record already known keeps its work (its
back-off ends: a reload ends it); a record out of the table keeps it
aside, its directory closed, and gets it back if it returns.

Where only a path is known, `owners` says which records take it: the
control socket's requests (an operator names a path), and the history's
open runs at start.  Everything else carries its record from where it is
known: a run its `Work`, a job its identity.  `sharing` gives the records
of one directory, for keep-after (a file is removed once every record
that matches it is done with it).

This module starts and removes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from waitd.config import table
from waitd.config.wildcard import Matcher
from waitd.decide.facts import Identity, identity
from waitd.journal.history import Event, History
from waitd.run.work import Counters, Entry, Tally, Work
from waitd.spool import activation, observe
from waitd.spool.state import FileState

__all__ = ["Counters", "Entry", "Tally", "Work", "Works"]  # the run layer's types, kept here by identity


class Works:
    """The work of every record waitd has had, by identity."""

    def __init__(self) -> None:
        self._works: dict[Identity, Work] = {}
        self.entries: list[Entry] = []
        self.by_number: dict[int, Entry] = {}
        self._by_dir: dict[str, list[Entry]] = {}

    def install(
        self,
        records: Iterable[table.Record],
        activate: Callable[[table.Record], activation.Activation],
        matcher: Callable[[table.Record], Matcher],
        letter: Callable[[int], str | None],
        history: History,
    ) -> list[Entry]:
        """The entries of a new table; a known identity keeps its work."""
        old_numbers = {e.identity: e.number for e in self.entries}
        entries = []
        for record in records:
            act = activate(record)
            key = identity(record)
            work = self._works.get(key)
            if work is None:
                files = FileState.of(record, matcher(record))
                for other in self._works.values():
                    if other.files.record.directory == record.directory:
                        files.writing |= other.files.writing  # files still open for writing stay held
                work = self._works[key] = Work(files, Tally(letter=letter(record.number)))
            else:
                observe.reconfigure(work.files, record, history)
                work.tally.reset_backoff()  # a reload ends the back-off, as documented
                if old_numbers.get(key) != record.number:
                    work.tally.letter = letter(record.number)  # the logs are named by number
            entries.append(Entry(record, act.program, act.problem, work))
        kept = {e.identity for e in entries}
        for key, work in self._works.items():
            if key not in kept:
                observe.retire(work.files)  # out of the table: only its running handlers go on
        self.entries = entries
        self.by_number = {e.number: e for e in entries}
        self._by_dir = {}
        for entry in entries:
            self._by_dir.setdefault(entry.record.directory, []).append(entry)
        return entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def number_of(self, key: Identity) -> int | None:
        """The number of the record doing that work now, None if none does."""
        for entry in self.entries:
            if entry.identity == key:
                return entry.number
        return None

    def sharing(self, directory: str) -> list[Entry]:
        """The records of the table whose incoming-dir it is."""
        return self._by_dir.get(directory, [])

    def owners(self, path: str, process: str | None = None) -> list[Entry]:
        """The records that take a path (their incoming-dir, or under
        claim=yes their pending directory; their template), of `process`
        if given: for a path an operator names, or a history line."""
        return [e for e in self.entries if (process is None or e.record.process == process) and e.files.owns(path)]

    def owner_of(self, event: Event) -> tuple[Work, int] | None:
        """The work and number of the first record of its process that takes
        a history line's path (an open run at start), None if none does."""
        found = self.owners(event.path, event.process)
        return (found[0].work, found[0].number) if found else None
