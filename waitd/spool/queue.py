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
step over it.  A claim never replaces a file in pending/I: a name still
there (under way, or waiting for its retry) is not claimed again until it
has left.  After the run the owner deletes the file, renames it into
the incoming of the next queue (`forward`; across filesystems by a copy
into that queue's tmp, an fsync and a rename), or into errors.  Nothing
but the owner touches a file in pending/I; at start an instance puts back
into incoming what it claimed but never ran (`release`).

Names: no move replaces a file.  A name taken in the directory a file
goes to is `numbered`, the number before its suffix (x.dat: x.1.dat), so
that the template that took it still matches it; `unnumbered` undoes it,
for the expiry in errors/.  `enqueue` copies regular files only, and
never waits in open(2) (a FIFO, a device).

NFS: a rename is atomic on the server, but a client that retransmits one
whose reply was lost can be told ENOENT although it succeeded; `claim`
then looks at the target before giving the file up.

This module moves files and nothing else: which to claim, and when, is
the readiness rules' and the scheduler's (`decide`), where a file goes
after its run `handoff.disposal`'s; what the history says, the launcher's.
Errors: OSError from the system calls, with the path named by the caller.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

from waitd.journal.disk import fsync_dir, kind_of

try:
    # CPython's own SHA-1, hashlib.sha1's digest without loading OpenSSL's
    # libcrypto (3.5 MB resident at every start; waitd has no other use for it).
    from _sha1 import sha1
except ImportError:  # an interpreter built without it
    from hashlib import sha1

SUBDIRS = ("incoming", "pending", "tmp", "errors")
_CHUNK = 1 << 20


def default_instance(passdir: str) -> str:
    """The host's name and a hash of PASSDIR: unique per daemon, stable."""
    digest = sha1(os.path.abspath(passdir).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def valid_instance(name: str) -> bool:
    return bool(name) and name not in (".", "..") and all(c.isalnum() or c in "._-" for c in name) and name.isascii()


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue directory (claim=yes): its incoming/, pending/ and errors/."""

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

    def cannot_make(self) -> str | None:
        """Why `make` would fail now, in strerror's words, or None: a look
        that makes nothing (waitd --check, and -g before detaching)."""
        if all(os.path.isdir(os.path.join(self.root, d)) for d in SUBDIRS):
            return None
        try:
            st = os.stat(self.root)
        except OSError as exc:
            return exc.strerror or str(exc)
        if not stat.S_ISDIR(st.st_mode):
            return os.strerror(errno.ENOTDIR)
        if not os.access(self.root, os.W_OK | os.X_OK):
            return os.strerror(errno.EACCES)
        return None

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
    when another instance took it first.  Never over a file: FileExistsError
    when pending/INSTANCE/NAME is there (a file of that name still under
    way, or waiting for its retry).  Only this instance writes into its
    pending directory, so where RENAME_NOREPLACE is missing (NFS) looking
    first is no race."""
    source = os.path.join(queue.incoming, name)
    target = os.path.join(queue.pending(instance), name)
    try:
        if not _rename_noreplace(source, target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    except FileNotFoundError:
        # Lost the race, or an NFS retransmission of a rename that did happen.
        try:
            st = os.stat(target, follow_symlinks=False)
        except OSError:
            return None
        return target if st.st_ino == ino else None
    return target


def release(path: str, queue: Queue, fits: Callable[[str], bool] | None = None) -> str:
    """Put a claimed file back into incoming (never over another; a name
    taken is numbered, preferring a name `fits` accepts)."""
    return _move_unique(path, queue.incoming, fits=fits)


def to_errors(path: str, queue: Queue, fits: Callable[[str], bool] | None = None) -> str:
    """Move a file into errors under its own name (numbered if taken)."""
    return _move_unique(path, queue.errors, fits=fits)


def forward(path: str, nxt: Queue) -> str:
    """Hand a file on to the next queue's incoming: a rename on one
    filesystem, else a copy into its tmp, fsync'd, renamed in."""
    try:
        return _move_unique(path, nxt.incoming)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    name = os.path.basename(path)
    target = _via_tmp(path, nxt, name)
    os.unlink(path)
    return target


def enqueue(source: str, queue: Queue) -> str:
    """Put a copy of a file into the queue: written and fsync'd in tmp,
    then renamed into incoming, so nobody ever sees it half-written."""
    return _via_tmp(source, queue, os.path.basename(source))


def _via_tmp(source: str, queue: Queue, name: str) -> str:
    """A synced copy in the queue's tmp, renamed into its incoming; no
    copy is left in tmp when either step fails."""
    tmp = os.path.join(queue.tmp, f".{name}.{os.getpid()}.part")
    _copy_synced(source, tmp)
    try:
        return _move_unique(tmp, queue.incoming, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _not_regular(mode: int) -> OSError:
    kind = kind_of(mode)
    return OSError(errno.EINVAL, f"not a regular file ({kind})")


def _copy_synced(source: str, target: str) -> None:
    # The type is checked before the open, and the open never waits: a FIFO
    # would block it until a writer came, a device may do anything.
    mode = os.stat(source).st_mode
    if not stat.S_ISREG(mode):
        raise _not_regular(mode)
    src_fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(src_fd, "rb") as src:
        mode = os.fstat(src_fd).st_mode
        if not stat.S_ISREG(mode):  # replaced since the look
            raise _not_regular(mode)
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
        st = os.fstat(src_fd)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    fsync_dir(os.path.dirname(target))


def numbered(name: str, n: int) -> list[str]:
    """The names NAME takes, as the n-th of its name in one directory: the
    number goes before its suffixes (x.dat: x.1.dat; x.tar.gz: x.1.tar.gz),
    or before its last suffix (a.b.c.hdf: a.b.c.1.hdf), so that a template
    such as *.dat still matches; a name without a dot gets it at the end
    (x: x.1).  A leading dot is no suffix's."""
    dots = [i for i, c in enumerate(name) if c == "." and i > 0]
    if not dots:
        return [f"{name}.{n}"]
    names = [f"{name[:i]}.{n}{name[i:]}" for i in (dots[0], dots[-1])]
    return names[:1] if dots[0] == dots[-1] else names


def unnumbered(name: str) -> list[str]:
    """The names NAME may have had before `numbered` gave it a number: the
    name without one of its all-digit dot-separated parts."""
    parts = name.split(".")
    return [".".join(parts[:i] + parts[i + 1 :]) for i in range(1, len(parts)) if parts[i].isdigit()]


def _move_unique(path: str, directory: str, name: str | None = None, fits: Callable[[str], bool] | None = None) -> str:
    """Rename `path` into `directory` as NAME, or when taken as a `numbered`
    NAME (one `fits` accepts, where one does): with RENAME_NOREPLACE, an
    entry there is never overwritten, even by a race.  A rename, not a link
    and an unlink: a consumer watching with inotify sees a file moved in,
    complete, not one created."""
    name = name or os.path.basename(path)
    if _rename_noreplace(path, os.path.join(directory, name)):
        return os.path.join(directory, name)
    for n in range(1, 10_000):
        names = numbered(name, n)
        fitting = [c for c in names if fits(c)] if fits is not None else []
        target = os.path.join(directory, (fitting or names)[0])
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


def rename_noreplace(path: str, target: str) -> bool:
    """Rename `path` to `target` unless it exists; False if it does (a
    source puts a message's file into incoming so: `sources.spooler`)."""
    return _rename_noreplace(path, target)


def move_unique(path: str, directory: str, name: str) -> str:
    """Rename `path` into `directory` as NAME, or a `numbered` NAME."""
    return _move_unique(path, directory, name)
