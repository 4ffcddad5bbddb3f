# SPDX-License-Identifier: MIT
"""One waitd per instance name and queue: a lock in the queue's pending/.

`InstanceLocks` holds a POSIX lock on Q/pending/.INSTANCE.lock while a
record claims from Q.  Two daemons with one --instance on one queue would
each take the other's pending files for its own: the second, at start,
would put the first's files under way back into incoming, and run them
again.  The lock is the kernel's (the NFS server's lock manager over NFS),
so it goes with its holder's death.  One descriptor per queue: closing any
descriptor of a file drops a process's POSIX locks on it.
`instance_in_use` looks before detaching, for the terminal.

`wait_flock` is the lock of a helper process of waitd's (a sink's, a
source's: one process each): it waits, telling once, while another
process of the same name holds it, and gives up when asked to stop.

Errors: `hold` returns the problem as a sentence (the record is then
inactive); nothing here raises.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Callable


def _lock_path(root: str, instance: str) -> str:
    return os.path.join(root, "pending", f".{instance}.lock")


class InstanceLocks:
    """The instance locks of the queues this daemon claims from."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._held: dict[str, int] = {}  # queue root -> the lock file's descriptor

    def hold(self, root: str) -> str | None:
        """Lock this instance's name in queue `root`; None, or the problem."""
        if root in self._held:
            return None
        path = _lock_path(root, self.instance)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return f"queue {root}: cannot open {path}: {exc.strerror or exc}"
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                who = f"instance {self.instance!r} is in use by another waitd ({holder})"
                return f"queue {root}: {who}; give each its own --instance"
            return f"queue {root}: cannot lock {path}: {exc.strerror or exc}"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # who holds it is a courtesy for the message above
        self._held[root] = fd
        return None

    def keep_only(self, roots: set[str]) -> None:
        """Let go of the queues no record claims from any more (after HUP)."""
        for root in [r for r in self._held if r not in roots]:
            os.close(self._held.pop(root))


def instance_in_use(root: str, instance: str) -> str | None:
    """Who holds this instance's name in queue `root` now, or None (a look
    before detaching, for the terminal; the daemon takes the lock itself)."""
    try:
        fd = os.open(_lock_path(root, instance), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # A shared lock of our own, let go at once (the close): refused
        # while another process holds the daemon's exclusive one.
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return _read_holder(fd) if exc.errno in (errno.EACCES, errno.EAGAIN) else None
    finally:
        os.close(fd)
    return None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "who, unknown"


def wait_flock(path: str, stopping: Callable[[], bool], waiting: Callable[[], None]) -> int | None:
    """The descriptor of `path` (made if need be) once this process holds
    its flock; `waiting` is called once if another holds it first; None
    (the descriptor closed) when `stopping` says so before then.  Raises
    OSError if the file cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if not said:
                waiting()
                said = True
        if stopping():
            os.close(fd)
            return None
        time.sleep(0.1)
