# SPDX-License-Identifier: MIT
"""The pid file, $PASSDIR/waitd.pid: one daemon per PASSDIR.

`PidFile.acquire` claims the PASSDIR with a POSIX record lock (fcntl
F_SETLK) on the pid file, held for the daemon's life; the kernel drops it
when the daemon dies, however it dies.  The lock, not the pid written in
the file, decides: a pid file nobody holds is stale whatever it says, and
a held one is live even while it is still empty (the moment between its
creation and the write of the pid), so of two daemons started at the same
moment exactly one gets the PASSDIR and the other raises `AlreadyRunning`.
`holder` answers "who holds it?" for `waitd -s` without taking the lock
(F_GETLK), so a status query never gets in the way of a starting daemon;
`running_pid` is its pid.

What a crash leaves: a pid file with no lock on it, which the next daemon
takes over with a warning.  On a clean stop the file is removed while the
lock is still held; a daemon that locked the removed file in that moment
sees that the path names another file (or none) and tries again.

Limits: a POSIX lock is dropped when its process closes *any* descriptor
of the file, so the daemon never opens waitd.pid again once it holds it
(it writes and removes it through the held descriptor and its path).  A
pid file that is a symbolic link is never followed: it is removed and
replaced, as a stale one.  A daemon in another pid namespace shows as the
holder with pid 0 (unknown).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import struct
from dataclasses import dataclass

from waitd.config.errors import AlreadyRunning, WaitdError
from waitd.config.passdir import pid_path

log = logging.getLogger("waitd")

_FLOCK = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (x86_64, aarch64)
_OPEN = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class Holder:
    """The daemon holding a pid file: its pid, or None while not known yet
    (the file is still empty and the lock says nothing, another namespace)."""

    pid: int | None


def holder(passdir: str) -> Holder | None:
    """The live daemon of this PASSDIR, or None when no one holds its pid file."""
    path = pid_path(passdir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # none, a link (never ours), or unreadable
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        locked, l_pid = lock_probe(fd)
        if not locked:
            return None
        written = _read_pid(fd)
        return Holder(written if written is not None else (l_pid or None))
    finally:
        os.close(fd)


def lock_probe(fd: int) -> tuple[bool, int]:
    """Whether another process holds a POSIX lock on fd's file, and its pid
    (0 when the kernel cannot say: another namespace, another NFS client)."""
    probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    l_type, _, _, _, l_pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    return l_type != fcntl.F_UNLCK, l_pid


def running_pid(passdir: str) -> int | None:
    """The pid of the live waitd of this PASSDIR, or None (also while its
    pid is not written yet)."""
    held = holder(passdir)
    return held.pid if held is not None else None


def stale_pid(passdir: str) -> int | None:
    """The pid named by a pid file no daemon holds (a crash left it), or None."""
    try:
        fd = os.open(pid_path(passdir), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return _read_pid(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def stale_message(passdir: str, pid: int) -> str:
    return f"{pid_path(passdir)}: stale pid file (pid {pid} holds no lock on it: it is gone); replacing it"


class PidFile:
    """The claim on a PASSDIR: the pid file, locked for the daemon's life."""

    def __init__(self, passdir: str) -> None:
        self.path = pid_path(passdir)
        self._fd = -1

    def acquire(self) -> None:
        """Lock and write the pid file; raise AlreadyRunning if held."""
        for _ in range(5):
            fd = self._open()
            if fd < 0:
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise WaitdError(f"{self.path}: cannot lock the pid file: {exc.strerror}") from exc
                held = holder(os.path.dirname(self.path))
                os.close(fd)
                raise AlreadyRunning(self.path, held.pid if held else None) from None
            if not self._still_there(fd):
                os.close(fd)  # removed by a daemon stopping just now: again
                continue
            old = _read_pid(fd)
            if old is not None and old != os.getpid():
                log.warning("%s", stale_message(os.path.dirname(self.path), old))
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as exc:
                os.close(fd)
                raise WaitdError(f"{self.path}: cannot write the pid file: {exc.strerror}") from exc
            self._fd = fd
            return
        raise WaitdError(f"{self.path}: cannot claim the pid file (it keeps changing under waitd)")

    def _open(self) -> int:
        """Open the pid file; -1 after removing a planted symbolic link."""
        try:
            fd = os.open(self.path, _OPEN, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                log.warning("%s: stale pid file (a symbolic link, never followed); replacing it", self.path)
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                except OSError as rm:
                    raise WaitdError(f"{self.path}: cannot remove the planted link: {rm.strerror}") from rm
                return -1
            raise WaitdError(f"{self.path}: cannot create pid file: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise WaitdError(f"{self.path}: is not a regular file; remove it")
        return fd

    def _still_there(self, fd: int) -> bool:
        mine = os.fstat(fd)
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)

    def release(self) -> None:
        """Remove the pid file (still locked), then drop the lock; never raise."""
        if self._fd < 0:
            return
        try:
            if self._still_there(self._fd):
                os.unlink(self.path)
            else:
                log.warning("%s: pid file is gone or not ours any more; leaving it", self.path)
        except OSError as exc:
            log.warning("%s: cannot remove pid file: %s", self.path, exc.strerror)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0)
    except OSError:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and 0 < int(text) < 1 << 31 else None
