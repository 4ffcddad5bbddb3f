# SPDX-License-Identifier: MIT
"""Remove a file of the spool safely: the version planned, never a link's target.

`remove` carries out one removal that `decide.removal` planned, through
the directory's descriptor: `lstat` the name, check it is still the same
entry (inode) and the same version (mtime, size; a symlink's target too)
and a regular file or a symlink, then `unlink` it relative to the
descriptor, which never follows a link and never leaves the directory.
`remove_name` removes a name that never was a candidate (a companion of
done=): a regular file or a symlink, no version to compare.

Errors: both return a `Removal` instead of raising: removed, gone already
(someone else removed it: not logged, not counted), changed (a new
version under the name: the caller looks at it again) or refused with a
reason, which the caller logs once per version.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from typing import NamedTuple

from waitd.decide.facts import FileFact


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
