# SPDX-License-Identifier: MIT
"""Decide which files to remove, and remove them safely.

Two rules, per DESIGN.md: a matching file in the spool longer than
hours-too-old (measured from max(mtime, ctime)) is expired, handled or not;
and of the files whose run ended with exit 0, all but the newest keep-after
are removed.  `expired` and `over_keep` are pure plans; `remove` carries one
out through the directory's descriptor: `lstat` the name, check it is still
the same entry (inode) and a regular file or a symlink, then `unlink` it
relative to the descriptor, which never follows a link and never leaves
the directory.

This module does not decide whether a file is being worked on or whether
every record that matches it is done; the loop filters those first.
Errors: `remove` returns a reason string instead of raising, so the loop can
log it and carry on.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from waitd.scan import FileFact

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


def remove(dir_fd: int, fact: FileFact) -> str | None:
    """Remove one directory entry if it is still the one planned.

    Return None when removed (or already gone), else why not.
    """
    try:
        st = os.stat(fact.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if st.st_ino != fact.entry_ino:
        return "replaced by another file since it was seen"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return "no longer a regular file"
    try:
        os.unlink(fact.name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        return exc.strerror or str(exc)
    return None
