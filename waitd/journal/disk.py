# SPDX-License-Identifier: MIT
"""Small facts of the disk that the journal and the spool share.

`fsync_dir` makes a rename or a create in a directory durable (fsync of
the directory itself); it raises OSError as os.open and os.fsync do.
`kind_of` names the type of a file that is not a regular one, for the
errors that refuse it ("a FIFO", "a directory", ...).  `fdatasync_beside`
starts fdatasync(2) of a file in a helper thread, for the caller to sync
another file meanwhile: two syncs of one file system under way at once
share one journal commit and one flush of the disk's cache, where two
in turn cost two (issue 21: the outbox's and the history's, at a start).
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor

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


_syncer: ThreadPoolExecutor | None = None


def fdatasync_beside(fd: int) -> Future[None]:
    """fdatasync(fd) under way in a helper thread (one, made at the first
    call); the future's `result()` waits for it and raises its OSError."""
    global _syncer
    if _syncer is None:
        _syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="waitd-fdatasync")
    return _syncer.submit(os.fdatasync, fd)
