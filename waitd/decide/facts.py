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
