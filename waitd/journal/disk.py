# SPDX-License-Identifier: MIT
"""Two small facts of the disk that the journal and the spool share.

`fsync_dir` makes a rename or a create in a directory durable (fsync of
the directory itself); it raises OSError as os.open and os.fsync do.
`kind_of` names the type of a file that is not a regular one, for the
errors that refuse it ("a FIFO", "a directory", ...).
"""

from __future__ import annotations

import os
import stat

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a file")
