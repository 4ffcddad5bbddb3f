# SPDX-License-Identifier: MIT
"""An incoming directory: listing it and stating its files, safely.

`Spool` holds an open descriptor of one record's directory and lists or
stats names through it (`lstat` first; a symlink counts only when it points
to a regular file and the directory is not writable by group or others),
giving a `FileFact` for each usable name and a reason (`Skip`) for each
other; at its opening it asks /proc/self/mountinfo of which filesystem
type the directory is (`filesystem`), for `decide.watching` to say
whether inotify sees every change there (`Spool.sees_all`).  `Listings`
answers whether a path may still exist from one listing of its
directory, for the history's compaction; `names_in` streams the names
of a directory, for the history's load.

This module removes nothing (`sweep` does), decides nothing (the order
and readiness of the files are `decide.readiness`'s) and does not know
the history.  Errors: OSError from the descriptor's own calls; a name
that vanished is left out of a listing's facts.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

from waitd.config.wildcard import Matcher
from waitd.decide.facts import FileFact
from waitd.decide.watching import sees_every_change

__all__ = ["FileFact", "Identity", "Listings", "Skip", "Spool", "names_in"]  # FileFact: decide's, used here

_new_tuple = tuple.__new__


class Skip(Exception):
    """A matching name that is not a file waitd may handle; says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Which directory was opened (device, inode) and whether others could write to it."""

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
        self.sees_all = sees_every_change(filesystem(path, st.st_dev))  # inotify sees every change here

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

    def names(self, match: Matcher, known: Container[str] = ()) -> list[str]:
        """The names in the directory that match, unsorted (`known`: names
        that matched already, not asked again; none: all are asked at once,
        in C)."""
        if not known:
            return match.select(os.listdir(self.fd))
        return [name for name in os.listdir(self.fd) if name in known or match(name)]

    def listing(self) -> set[str]:
        """Every name in the directory, matching or not (a set: what a
        listing under a watch compares with the names it knows, in C)."""
        return set(os.listdir(self.fd))

    def stat_all(self, names: Iterable[str]) -> tuple[dict[str, FileFact], dict[str, str]]:
        """Stat many names: their facts (name -> fact, in the order of
        `names`), and why each unusable one was skipped; names gone
        meanwhile are left out.  The plain regular file takes a fast path
        (a listing at start stats 100,000 of them, and its facts go into
        the record's line as this very dict: `Candidates.replace_all`)."""
        facts = {}
        skipped = {}
        fd = self.fd
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    # tuple.__new__: the NamedTuple's own __new__ is a Python call.
                    fact = (st.st_mtime_ns, name, st.st_ctime_ns, st.st_size, st.st_ino, 0)
                    facts[name] = _new_tuple(FileFact, fact)
                else:
                    facts[name] = self._fact(name, st)
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
            return FileFact(st.st_mtime_ns, name, st.st_ctime_ns, st.st_size, st.st_ino)
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
            target.st_mtime_ns,
            name,
            max(st.st_ctime_ns, target.st_ctime_ns),
            target.st_size,
            target.st_ino,
            st.st_ino,
        )


def filesystem(path: str, dev: int, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The filesystem type of a directory (its device `dev`), from the
    mount table: the last mount of that device, else the mount point
    that is the longest prefix of its real path; None when unknown."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(dev)}:{os.minor(dev)}"
    real = os.path.realpath(path)
    by_dev = by_prefix = None
    longest = -1
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        fstype = tail.split()[0]
        if fields[2] == device:
            by_dev = fstype
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > longest:
            by_prefix, longest = fstype, len(point)
    return by_dev or by_prefix


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (a space is backslash 040) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def names_in(directory: str) -> Iterator[str]:
    """The names in a directory, one at a time (os.scandir: no list of
    them all; the history's load matches 100,000 of them against its
    keys, `replay.read`); OSError if it cannot be listed."""
    with os.scandir(directory) as entries:
        for entry in entries:
            yield entry.name


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
