# SPDX-License-Identifier: MIT
"""Queue directories: the filer protocol (Postfix's queue, maildir, Mentat).

A queue is a directory Q with four subdirectories on one filesystem:

    Q/tmp        where a producer writes a file
    Q/incoming   complete files only: a producer renames each in from tmp
    Q/pending/I  the files instance I has claimed and works on
    Q/errors     files whose handling failed for good

Whoever renames a file from incoming into pending/I owns it: the rename is
atomic, so of several waitd sharing the queue (on one host, or on several
over NFS) exactly one gets each file; the others find it gone (ENOENT) and
step over it.  After the run the owner deletes the file, renames it into
the incoming of the next queue (`forward`; across filesystems by a copy
into that queue's tmp, an fsync and a rename), or into errors.  Nothing
but the owner touches a file in pending/I; at start an instance puts back
into incoming what it claimed but never ran (`release`).

NFS: a rename is atomic on the server, but a client that retransmits one
whose reply was lost can be told ENOENT although it succeeded; `claim`
then looks at the target before giving the file up.

This module moves files and nothing else: which to claim, and when, is the
view's and the scheduler's; what the history says, the launcher's.
Errors: OSError from the system calls, with the path named by the caller.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import socket
import stat
from dataclasses import dataclass

SUBDIRS = ("incoming", "pending", "tmp", "errors")
_CHUNK = 1 << 20


def default_instance(passdir: str) -> str:
    """The host's name and a hash of PASSDIR: unique per daemon, stable."""
    digest = hashlib.sha1(os.path.abspath(passdir).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def valid_instance(name: str) -> bool:
    return bool(name) and name not in (".", "..") and all(c.isalnum() or c in "._-" for c in name) and name.isascii()


@dataclass(frozen=True, slots=True)
class Queue:
    root: str

    @classmethod
    def of_incoming(cls, incoming: str) -> Queue:
        return cls(os.path.dirname(incoming))

    @property
    def incoming(self) -> str:
        return os.path.join(self.root, "incoming")

    @property
    def tmp(self) -> str:
        return os.path.join(self.root, "tmp")

    @property
    def errors(self) -> str:
        return os.path.join(self.root, "errors")

    def pending(self, instance: str) -> str:
        return os.path.join(self.root, "pending", instance)

    def make(self, instance: str | None = None) -> None:
        """Make the subdirectories that are missing; refuse a queue spread
        over filesystems (a rename between them is not atomic)."""
        dirs = [os.path.join(self.root, d) for d in SUBDIRS]
        if instance is not None:
            dirs.append(self.pending(instance))
        for path in dirs:
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass
        devices = {os.stat(path).st_dev for path in dirs}
        if len(devices) > 1:
            raise OSError(errno.EXDEV, f"{self.root}: its subdirectories are on several filesystems")

    def count(self, sub: str = "incoming") -> int:
        """How many entries a subdirectory holds (the out-limit's measure)."""
        try:
            with os.scandir(os.path.join(self.root, sub)) as it:
                return sum(1 for e in it if not e.name.startswith("."))
        except OSError:
            return 0

    def pending_counts(self) -> dict[str, int]:
        """The files in pending, by instance."""
        out = {}
        try:
            with os.scandir(os.path.join(self.root, "pending")) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        out[entry.name] = self.count(os.path.join("pending", entry.name))
        except OSError:
            pass
        return out


def claim(queue: Queue, name: str, instance: str, ino: int) -> str | None:
    """Rename incoming/NAME into pending/INSTANCE; its new path, or None
    when another instance took it first."""
    source = os.path.join(queue.incoming, name)
    target = os.path.join(queue.pending(instance), name)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        # Lost the race, or an NFS retransmission of a rename that did happen.
        try:
            st = os.stat(target, follow_symlinks=False)
        except OSError:
            return None
        return target if st.st_ino == ino else None
    return target


def release(path: str, queue: Queue) -> str:
    """Put a claimed file back into incoming (never over another)."""
    return _move_unique(path, queue.incoming)


def to_errors(path: str, queue: Queue) -> str:
    """Move a file into errors under its own name (NAME.N if taken)."""
    return _move_unique(path, queue.errors)


def forward(path: str, nxt: Queue) -> str:
    """Hand a file on to the next queue's incoming: a rename on one
    filesystem, else a copy into its tmp, fsync'd, renamed in."""
    try:
        return _move_unique(path, nxt.incoming)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    name = os.path.basename(path)
    tmp = os.path.join(nxt.tmp, f".{name}.{os.getpid()}.part")
    _copy_synced(path, tmp)
    target = _move_unique(tmp, nxt.incoming, name)
    os.unlink(path)
    return target


def enqueue(source: str, queue: Queue) -> str:
    """Put a copy of a file into the queue: written and fsync'd in tmp,
    then renamed into incoming, so nobody ever sees it half-written."""
    name = os.path.basename(source)
    tmp = os.path.join(queue.tmp, f".{name}.{os.getpid()}.part")
    _copy_synced(source, tmp)
    return _move_unique(tmp, queue.incoming, name)


def _copy_synced(source: str, target: str) -> None:
    with open(source, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise OSError(errno.EINVAL, f"{source}: not a regular file")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(target)
            raise
        os.close(fd)
    st = os.stat(source)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    _fsync_dir(os.path.dirname(target))


def _move_unique(path: str, directory: str, name: str | None = None) -> str:
    """Rename `path` into `directory` as NAME, or NAME.1, NAME.2, ... when
    taken: with RENAME_NOREPLACE, an entry there is never overwritten, even
    by a race.  A rename, not a link and an unlink: a consumer watching with
    inotify sees a file moved in, complete, not one created."""
    name = name or os.path.basename(path)
    for n in range(10_000):
        target = os.path.join(directory, name if n == 0 else f"{name}.{n}")
        if _rename_noreplace(path, target):
            return target
    raise OSError(errno.EEXIST, f"{directory}: no free name for {name}")


_LIBC = ctypes.CDLL(None, use_errno=True)
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(path: str, target: str) -> bool:
    """Rename unless the target exists; False if it does."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(path), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), path)
    # A filesystem without RENAME_NOREPLACE (NFS): look, then rename.
    if os.path.lexists(target):
        return False
    os.rename(path, target)
    return True


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
