# SPDX-License-Identifier: MIT
"""Look at an incoming directory and choose what to run next.

`Spool` holds an open descriptor of one record's directory and lists or
stats names through it (`lstat` first; a symlink counts only when it points
to a regular file and the directory is not writable by group or others).
`Candidates` is the pure part: the matching files of one record, ordered by
modification time then name in a heap, so the next file to run and the
moment the oldest reaches its wait age are found without a rescan.

This module removes nothing (`prune` does) and does not know the history;
the caller passes a predicate that says whether a file version was
consumed already.

Limits: a file whose mtime lies more than FUTURE_S in the future is
ordered and aged from when it was first seen; the caller logs it once.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from waitd.journal.history import Version

FUTURE_S = 5
FOREVER_NS = 1 << 62  # a hold with no end in sight: woken by the file's news, not a clock
_NS = 1_000_000_000


# A NamedTuple rather than a frozen dataclass: a listing makes one per file
# and a tuple is built several times faster.  It also orders: the heap holds
# (order time, name, fact), and two facts of one name with the same order
# time (a chmod, a rewrite within one tick) must compare, not raise.
class FileFact(NamedTuple):
    """What one stat of a matching regular file said."""

    name: str
    mtime_ns: int
    ctime_ns: int
    size: int
    ino: int  # of the file itself (the target, for a symlink)
    entry_ino: int  # of the directory entry (the link, for a symlink)
    is_link: bool = False

    @property
    def version(self) -> Version:
        return Version(self.mtime_ns, self.size, self.ino)

    @property
    def spool_ns(self) -> int:
        """Since when the file is in the spool: an old mtime carried by
        `rsync -t` or `cp -p` does not count, the ctime of arrival does."""
        return max(self.mtime_ns, self.ctime_ns)


class Skip(Exception):
    """A matching name that is not a file waitd may handle; says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    dev: int
    ino: int
    shared: bool  # writable by group or others when opened (see Spool.shared_now)


class Spool:
    """An incoming directory, held open so that names stay inside it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.identity = Identity(st.st_dev, st.st_ino, bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def replaced(self) -> bool | None:
        """True if the path now names another directory, None if it is gone."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) != (self.identity.dev, self.identity.ino)

    def shared_now(self) -> bool:
        """Whether the directory is writable by group or others now: asked
        at each use of a symlink, so a chmod after it was opened counts."""
        try:
            mode = os.fstat(self.fd).st_mode
        except OSError:
            return True
        return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))

    def mtime_ns(self) -> int:
        return os.fstat(self.fd).st_mtime_ns

    def names(self, match: Callable[[str], bool]) -> list[str]:
        """The names in the directory that match, unsorted."""
        with os.scandir(self.fd) as it:
            return [e.name for e in it if match(e.name)]

    def stat_all(self, names: Iterable[str]) -> tuple[list[FileFact], dict[str, str]]:
        """Stat many names: their facts, and why each unusable one was
        skipped; names gone meanwhile are left out.  The plain regular file
        takes a fast path (a listing at start stats 100,000 of them)."""
        facts = []
        skipped = {}
        fd = self.fd
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    facts.append(FileFact(name, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_ino))
                else:
                    facts.append(self._fact(name, st))
            except FileNotFoundError:
                continue
            except Skip as why:
                skipped[name] = str(why)
            except OSError as exc:
                skipped[name] = f"cannot stat: {exc.strerror}"
        return facts, skipped

    def stat(self, name: str) -> FileFact:
        """Stat one name; raise FileNotFoundError if gone, Skip if not usable."""
        return self._fact(name, os.stat(name, dir_fd=self.fd, follow_symlinks=False))

    def _fact(self, name: str, st: os.stat_result) -> FileFact:
        """The fact of a name from its lstat (a symlink's target is stat'ed)."""
        if stat.S_ISREG(st.st_mode):
            return FileFact(name, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_ino)
        if not stat.S_ISLNK(st.st_mode):
            raise Skip("not a regular file")
        if self.shared_now():
            raise Skip("symlink in a directory writable by group or others: ignored")
        try:
            target = os.stat(name, dir_fd=self.fd)
        except FileNotFoundError:
            raise Skip("dangling symlink") from None
        if not stat.S_ISREG(target.st_mode):
            raise Skip("symlink to something that is not a regular file")
        # The link's own ctime says when it arrived; the target's mtime says
        # whether its content is still moving.
        return FileFact(
            name,
            target.st_mtime_ns,
            max(st.st_ctime_ns, target.st_ctime_ns),
            target.st_size,
            target.st_ino,
            st.st_ino,
            True,
        )


class Candidates:
    """The matching files of one record, oldest first.

    `facts` maps every matching name to its latest stat.  The heap holds
    (order time, name, fact); entries whose fact was replaced or removed
    are dropped lazily when they reach the top.
    """

    def __init__(self) -> None:
        self.facts: dict[str, FileFact] = {}
        self._heap: list[tuple[int, str, FileFact]] = []
        self._first_seen: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.facts)

    def order_ns(self, fact: FileFact) -> int:
        """The time a file's age counts from: its mtime, or when first seen
        if the mtime is more than FUTURE_S in the future."""
        seen = self._first_seen.get(fact.name, fact.mtime_ns)
        return seen if fact.mtime_ns > seen + FUTURE_S * _NS else fact.mtime_ns

    def update(self, fact: FileFact, now_ns: int) -> bool:
        """Add or refresh one file; return True if it is new or changed."""
        old = self.facts.get(fact.name)
        if old == fact:
            return False
        if old is None or old.version != fact.version:
            self._first_seen[fact.name] = now_ns
        self.facts[fact.name] = fact
        heapq.heappush(self._heap, (self.order_ns(fact), fact.name, fact))
        return True

    def requeue(self, name: str) -> None:
        """Put a known file back in line: it left the heap as consumed, and
        may run again (a retry, a run that could not be executed)."""
        fact = self.facts.get(name)
        if fact is not None:
            heapq.heappush(self._heap, (self.order_ns(fact), fact.name, fact))

    def remove(self, name: str) -> FileFact | None:
        self._first_seen.pop(name, None)
        return self.facts.pop(name, None)

    def replace_all(self, facts: Iterable[FileFact], now_ns: int) -> tuple[list[FileFact], list[str]]:
        """Take a full listing; return the new or changed facts and the names gone."""
        fresh = {f.name: f for f in facts}
        if not self.facts:
            # The first listing: take everything at once and heapify, rather
            # than push each file (100,000 files at start).
            self.facts = fresh
            self._first_seen = dict.fromkeys(fresh, now_ns)
            self._heap = [(self.order_ns(f), f.name, f) for f in fresh.values()]
            heapq.heapify(self._heap)
            return list(fresh.values()), []
        gone = [n for n in self.facts if n not in fresh]
        for name in gone:
            self.remove(name)
        changed = [f for f in fresh.values() if self.update(f, now_ns)]
        if len(self._heap) > 2 * len(self.facts) + 64:
            self._heap = [(self.order_ns(f), f.name, f) for f in self.facts.values()]
            heapq.heapify(self._heap)
        return changed, gone

    def take(
        self,
        n: int,
        now_ns: int,
        wait_ns: int,
        consumed: Callable[[FileFact], bool],
        held: Callable[[FileFact], int | None] = lambda f: None,
    ) -> tuple[list[FileFact], int | None]:
        """Up to `n` candidates ready now, oldest first, and when the next
        one not ready yet will be (None: none is known to be).

        `held` says until when a file may not run although old enough (a
        writer still has it open, its retry is later, its companion is not
        there: FOREVER_NS), or None; held files are stepped over.  Consumed
        files leave the heap for good.
        """
        heap = self._heap
        taken: list[FileFact] = []
        popped: list[tuple[int, str, FileFact]] = []
        due: int | None = None
        while heap and len(taken) < n:
            order, name, fact = heap[0]
            if self.facts.get(name) is not fact or consumed(fact):
                heapq.heappop(heap)
                continue
            ready_ns = order + wait_ns
            if ready_ns > now_ns:
                due = _earliest(ready_ns, due)
                break
            popped.append(heapq.heappop(heap))
            if taken and any(f is fact for f in taken[-1:]):
                continue  # queued twice (requeue): once is enough
            until = held(fact)
            if until is None or until <= now_ns:
                taken.append(fact)
            elif until < FOREVER_NS:
                due = _earliest(until, due)
        for entry in popped:
            heapq.heappush(heap, entry)
        return taken, due


def _earliest(a: int, b: int | None) -> int:
    return a if b is None else min(a, b)


class Listings:
    """Whether a path may exist, from one listing of its directory.

    Compaction asks this of every key; a listing a directory costs far
    less than an lstat a file (0.9 s for 100,000 keys).  A path is gone
    only when its directory could be listed and the name is not in it: a
    directory that is missing or unreadable (an NFS mount away, a disk
    not mounted) says nothing, and its files are taken to exist, so their
    history is kept for when it comes back.
    """

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str] | None] = {}

    def exists(self, path: str) -> bool:
        directory, slash, name = path.rpartition("/")  # cheaper than os.path.split
        if not directory and slash:
            directory = "/"
        if directory not in self._names:
            try:
                self._names[directory] = frozenset(os.listdir(directory))
            except OSError:
                self._names[directory] = None  # unknown: keep its keys
        names = self._names[directory]
        return names is None or name in names
