# SPDX-License-Identifier: MIT
"""inotify wake-ups for the incoming directories.

`Watcher` adds an inotify watch (inotify_simple) on each active incoming
directory and turns the kernel's events into the names that changed, per
directory, so the loop stats those names instead of listing the directory:
a file closed after writing, moved in, created, touched, deleted or moved
out.  The descriptor joins the signal wake-up pipe in the loop's selector.

A name created in the directory is reported OPENED until its writer closes
it (the kernel reports the close even when the writer dies), so the loop
does not hand a file to its handler while it is still being written.

Polling every --interval stays the ground truth; inotify only makes waitd
earlier.  So nothing here is fatal: where inotify cannot be had (ENOSPC on
the watch limit, EMFILE on instances, a kernel without it) the watcher
logs a warning once and that directory is only polled; NFS and other
network filesystems, where the kernel sees no remote change, are covered
by the poll.  A queue overflow (IN_Q_OVERFLOW) is reported as `overflow`
and the loop lists every directory again.  inotify_simple is given the C
library this process has already loaded (`ctypes.CDLL(None)`), so that it
does not look it up with `ldconfig -p` in a child process at each start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

OPENED = "opened"
CLOSED = "closed"

try:  # pragma: no cover - depends on the platform
    import ctypes

    import inotify_simple
    from inotify_simple import INotify
    from inotify_simple import flags as _flags

    if getattr(inotify_simple, "_libc", None) is None:
        # Its first INotify looks the C library up with ctypes.util's
        # find_library, which runs `ldconfig -p` in a child process at each
        # start of waitd (issue 21); the C library is already loaded here.
        inotify_simple._libc = ctypes.CDLL(None, use_errno=True)

    _MASK = (
        _flags.CLOSE_WRITE
        | _flags.MOVED_TO
        | _flags.CREATE
        | _flags.ATTRIB
        | _flags.DELETE
        | _flags.MOVED_FROM
        | _flags.DELETE_SELF
        | _flags.MOVE_SELF
        | _flags.ONLYDIR
    )
    # Plain ints: the flags are an IntEnum, and `read` tests each event's mask.
    _GONE = int(_flags.IGNORED | _flags.DELETE_SELF | _flags.MOVE_SELF | _flags.UNMOUNT)
    _OVERFLOW = int(_flags.Q_OVERFLOW)
    _CREATE = int(_flags.CREATE)
    _CLOSED = int(_flags.CLOSE_WRITE | _flags.MOVED_TO | _flags.MOVED_FROM | _flags.DELETE)
except ImportError:  # pragma: no cover
    INotify = None


@dataclass(slots=True)
class Changes:
    """What one read of the inotify queue said."""

    # directory -> name -> OPENED (created, not yet closed by its writer),
    # CLOSED (closed after writing, moved in or out, deleted) or None
    # (touched otherwise): what the last event about the name said.
    names: dict[str, dict[str, str | None]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # directories no longer watched
    overflow: bool = False


class Watcher:
    """One inotify instance watching a set of directories."""

    def __init__(self, enabled: bool = True) -> None:
        self._inotify = None
        self._by_wd: dict[int, str] = {}
        self._by_dir: dict[str, int] = {}
        self._identity: dict[str, tuple[int, int]] = {}  # (device, inode) watched
        self._warned = False
        self._failed: set[str] = set()
        if not enabled:
            return
        if INotify is None:
            self._warn("inotify_simple is not installed")
            return
        try:
            self._inotify = INotify(nonblocking=True)
        except OSError as exc:
            self._warn(exc.strerror or str(exc))

    def _warn(self, why: str) -> None:
        if not self._warned:
            log.warning("inotify unavailable (%s); polling every interval only", why)
            self._warned = True

    def fileno(self) -> int | None:
        return self._inotify.fileno() if self._inotify is not None else None

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def watching(self, directory: str) -> bool:
        return directory in self._by_dir

    def watch(self, directory: str, identity: tuple[int, int]) -> bool:
        """Watch the directory (device, inode) that `directory` names now;
        False (warned once) if inotify cannot.  A path that names another
        directory than the one watched (renamed away and made again) gets
        a new watch: a watch follows its inode, not its path."""
        if self._inotify is None:
            return False
        if self._identity.get(directory) == identity:
            return True
        self._unwatch(directory)
        try:
            wd = self._inotify.add_watch(directory, _MASK)
        except OSError as exc:
            if directory not in self._failed:
                log.warning(
                    "%s: cannot watch with inotify (%s); polling it every interval", directory, exc.strerror or exc
                )
                self._failed.add(directory)
            return False
        self._by_wd[wd] = directory
        self._by_dir[directory] = wd
        self._identity[directory] = identity
        return True

    def _unwatch(self, directory: str) -> None:
        wd = self._by_dir.pop(directory, None)
        self._identity.pop(directory, None)
        if wd is None:
            return
        self._by_wd.pop(wd, None)
        if self._inotify is not None:
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass  # gone with its directory

    def unwatch_all_but(self, keep: set[str]) -> None:
        """Drop the watches of directories no longer in the table."""
        for directory in [d for d in self._by_dir if d not in keep]:
            self._unwatch(directory)

    def read(self) -> Changes:
        """Read every queued event without blocking (inotify_simple's read:
        the events in the queue, none waited for)."""
        changes = Changes()
        if self._inotify is None:
            return changes
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            return changes
        except OSError as exc:
            log.warning("inotify read failed (%s); listing every directory", exc.strerror or exc)
            changes.overflow = True
            return changes
        self._take(events, changes)
        return changes

    def _take(self, events: list[Any], changes: Changes) -> None:
        """Take inotify_simple's events into `changes` (masks tested as
        plain ints: the flags are an IntEnum, slow to combine)."""
        by_wd, names_of = self._by_wd, changes.names
        for wd, mask, _cookie, name in events:
            if mask & _OVERFLOW:
                changes.overflow = True
                continue
            directory = by_wd.get(wd)
            if directory is None:
                continue
            if mask & _GONE:
                # Moved or deleted: the watch is of no use any more (after a
                # move it would report the directory under its new name).
                changes.gone.add(directory)
                if self._by_dir.get(directory) == wd:
                    self._unwatch(directory)
                continue
            if not name:
                continue
            names = names_of.get(directory)
            if names is None:
                names = names_of[directory] = {}
            if mask & _CREATE:
                names[name] = OPENED
            elif mask & _CLOSED:
                names[name] = CLOSED
            elif name not in names:
                names[name] = None

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
