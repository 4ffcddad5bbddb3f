# SPDX-License-Identifier: MIT
"""Decide which files to remove, and remove them safely.

Two rules, per DESIGN.md: a matching file in the spool longer than
hours-too-old (measured from max(mtime, ctime)) is expired, handled or not;
and of the files whose run ended with exit 0, all but the newest keep-after
are removed.  `expired` and `over_keep` are pure plans; `remove` carries one
out through the directory's descriptor: `lstat` the name, check it is still
the same entry (inode) and the same version (mtime, size; a symlink's
target too) and a regular file or a symlink, then `unlink` it relative to
the descriptor, which never follows a link and never leaves the directory.

This module does not decide whether a file is being worked on or whether
every record that matches it is done; the loop filters those first.
Errors: `remove` returns a `Removal` instead of raising: removed, gone
already (someone else removed it: not logged, not counted), changed (a new
version under the name: the caller looks at it again) or refused with a
reason, which the caller logs once per version.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Iterable
from typing import NamedTuple

from waitd.spool.directory import FileFact

_HOUR_NS = 3600 * 1_000_000_000


def expired(facts: Iterable[FileFact], now_ns: int, too_old_h: float) -> list[FileFact]:
    """Files in the spool for at least `too_old_h` hours (0: never)."""
    if too_old_h <= 0:
        return []
    limit = now_ns - int(too_old_h * _HOUR_NS)
    return [f for f in facts if f.spool_ns <= limit]


def over_keep(done: Iterable[FileFact], keep: int) -> list[FileFact]:
    """Handled files beyond the newest `keep` (-1 keeps them all)."""
    if keep < 0:
        return []
    ordered = sorted(done, key=lambda f: (f.mtime_ns, f.name), reverse=True)
    return ordered[keep:]


class Outcome(enum.Enum):
    REMOVED = "removed"
    GONE = "already gone"  # someone else removed it: nothing to log or count
    CHANGED = "changed since it was seen"  # another version or file: look again
    REFUSED = "refused"  # cannot or must not be removed: see the reason


class Removal(NamedTuple):
    outcome: Outcome
    reason: str = ""


def remove(dir_fd: int, fact: FileFact) -> Removal:
    """Remove one directory entry if it is still the version planned.

    The whole version is compared, not the inode alone: a file rewritten
    in place (same inode, new size or mtime) is a new delivery, which the
    plan made for the old one must not remove.
    """
    try:
        st = os.stat(fact.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return Removal(Outcome.GONE)
    except OSError as exc:
        return Removal(Outcome.REFUSED, exc.strerror or str(exc))
    if st.st_ino != fact.entry_ino:
        return Removal(Outcome.CHANGED, "replaced by another file since it was seen")
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(fact.name, dir_fd=dir_fd)
        except OSError:
            pass  # dangling now: the link itself may go
        else:
            if (st.st_ino, st.st_mtime_ns, st.st_size) != (fact.ino, fact.mtime_ns, fact.size):
                return Removal(Outcome.CHANGED, "its target changed since it was seen")
    elif not stat.S_ISREG(st.st_mode):
        return Removal(Outcome.REFUSED, "no longer a regular file")
    elif (st.st_mtime_ns, st.st_size) != (fact.mtime_ns, fact.size):
        return Removal(Outcome.CHANGED, "rewritten in place since it was seen (a new version)")
    try:
        os.unlink(fact.name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return Removal(Outcome.GONE)
        return Removal(Outcome.REFUSED, exc.strerror or str(exc))
    return Removal(Outcome.REMOVED)


def remove_name(dir_fd: int, name: str) -> Removal:
    """Remove a name that is a regular file or a symlink (a companion file,
    which was never a candidate of its own: no version to compare)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return Removal(Outcome.GONE)
    except OSError as exc:
        return Removal(Outcome.REFUSED, exc.strerror or str(exc))
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return Removal(Outcome.REFUSED, "not a regular file")
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return Removal(Outcome.GONE)
    except OSError as exc:
        return Removal(Outcome.REFUSED, exc.strerror or str(exc))
    return Removal(Outcome.REMOVED)
