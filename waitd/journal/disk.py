# SPDX-License-Identifier: MIT
"""Small facts of the disk that the journal and the spool share.

`fsync_dir` makes a rename or a create in a directory durable (fsync of
the directory itself); it raises OSError as os.open and os.fsync do.
`kind_of` names the type of a file that is not a regular one, for the
errors that refuse it ("a FIFO", "a directory", ...).
`fdatasync_in_background` starts fdatasync(2) of a file in a helper
thread, for the caller to go on meanwhile and ask for its end later
(issue 21: the outbox's sync of a turn's start events, while their
handlers run and the loop turns).
"""

from __future__ import annotations

import os
import stat
import threading

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


class Syncing:
    """An fdatasync(2) under way in waitd's helper thread: `result()` waits
    for its end and raises its OSError."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()  # released by `start`: the thread syncs
        self._done = threading.Lock()
        self._done.acquire()  # released by the thread: the sync is over
        self._fd = -1
        self._error: OSError | None = None
        self._pending = False
        threading.Thread(target=self._run, name="waitd-fdatasync", daemon=True).start()

    def start(self, fd: int) -> Syncing:
        if self._pending:
            self._finish()  # one at a time: the last one's end first (its error was not asked for)
        self._fd, self._pending = fd, True
        self._go.release()
        return self

    def result(self) -> None:
        error = self._finish()
        if error is not None:
            raise error

    def _finish(self) -> OSError | None:
        if not self._pending:
            return None
        self._done.acquire()
        self._pending = False
        error, self._error = self._error, None
        return error

    def _run(self) -> None:
        while True:
            self._go.acquire()
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._error = exc
            self._done.release()


_syncer: Syncing | None = None


def fdatasync_in_background(fd: int) -> Syncing:
    """fdatasync(fd) under way in a helper thread (one, made at the first
    call; two locks hand the work over, not an executor's futures and
    queue: each start with sinks makes one, issue 21); `result()` waits
    for it and raises its OSError.  One at a time: a second call first
    waits for the end of the first."""
    global _syncer
    if _syncer is None:
        _syncer = Syncing()
    return _syncer.start(fd)
