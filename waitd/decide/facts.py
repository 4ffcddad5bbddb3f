# SPDX-License-Identifier: MIT
"""The facts every decision receives: a file's stat, a record's identity.

`FileFact` is what one stat of a matching regular file said (the spool's
`Spool` makes them; a symlink's is its target's, with the link's own
inode and arrival); its `version` is the history's `Version`, what tells
one delivery of a file from the next.  `identity` is what makes a record
the same work across reloads, whatever its number: a run, a job and an
event carry it from where it is known.

This module is data only: no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from waitd.formats.history_line import Version

if TYPE_CHECKING:
    from waitd.config import table

FOREVER_NS = 1 << 62  # a hold with no end in sight: woken by the file's news, not a clock

Identity = tuple[str, str, str]  # a record's (incoming-dir, name-template, process-name)


def identity(record: table.Record) -> Identity:
    """What makes a record the same work across reloads, whatever its number."""
    return (record.directory, record.template, record.process)


# A NamedTuple rather than a frozen dataclass: a listing makes one per file
# and a tuple is built several times faster, and is smaller (issue 21: a
# start keeps 100,000 of them).  Its fields begin with the mtime and the
# name, so that facts order as the line does (oldest first, then by name):
# a record's line (`readiness.Candidates`) is a heap of the facts
# themselves, not of (time, name, fact) tuples.  Two facts of one name
# and mtime (a chmod, a rewrite within one tick) compare by their other
# fields, all numbers: they never raise.  Six fields, not seven: a tuple
# of six takes 96 bytes, one of seven 112; a symlink's own inode is a
# field of its own, 0 for any other file (no inode is numbered 0).
class FileFact(NamedTuple):
    """What one stat of a matching regular file said."""

    mtime_ns: int
    name: str
    ctime_ns: int
    size: int
    ino: int  # of the file itself (the target, for a symlink)
    link_ino: int = 0  # of the symlink itself, for a symlink; 0 for a regular file

    @property
    def entry_ino(self) -> int:
        """The inode of the directory entry: the link, for a symlink."""
        return self.link_ino or self.ino

    @property
    def is_link(self) -> bool:
        return self.link_ino != 0

    @property
    def version(self) -> Version:
        return Version(self.mtime_ns, self.size, self.ino)

    @property
    def spool_ns(self) -> int:
        """Since when the file is in the spool: an old mtime carried by
        `rsync -t` or `cp -p` does not count, the ctime of arrival does."""
        return max(self.mtime_ns, self.ctime_ns)
