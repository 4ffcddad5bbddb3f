# SPDX-License-Identifier: MIT
"""What the loop sleeps on: signals and every descriptor it waits for, in one epoll set.

`Wakeups` catches the handled signals with handlers that only pass the
signal number on (the loop's `note_signal` queues it);
`signal.set_wakeup_fd` writes a byte to a pipe for each, so a signal that
arrives just before the loop goes to sleep still wakes it.  The
descriptors the loop waits for join the same epoll set: those given at the
start (inotify's, the control socket's, the executors' wake-up
descriptors) and those `watch` adds or changes and `discard` takes out (a
connection of the control socket, readable or writable; a pidfd that is
about to close).
`wait` sleeps until one is ready or the timeout, drains the pipe, and
returns the ready descriptors.  On close every handled signal goes back
to its default and the old wake-up descriptor is restored.

This module does no I/O of its own but the pipe's, and never logs: a
signal handler must not.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable, Iterable


class Wakeups:
    def __init__(self, signals: Iterable[int], on_signal: Callable[[int], None], fds: Iterable[int] = ()) -> None:
        self._signals = tuple(signals)
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in self._signals:
            signal.signal(signum, lambda signum, frame: on_signal(signum))
        # epoll itself, not `selectors`: its wrapper costs a turn several
        # microseconds (a key looked up for each ready descriptor) that the
        # loop does not use.
        self._epoll = select.epoll()
        self._masks: dict[int, int] = {}
        self.watch(self._read)
        for fd in fds:
            self.watch(fd)

    def watch(self, fd: int, for_writing: bool = False) -> None:
        """Wake when fd is readable, or writable with for_writing."""
        mask = select.EPOLLOUT if for_writing else select.EPOLLIN
        if self._masks.get(fd) == mask:
            return
        try:
            if fd in self._masks:
                self._epoll.modify(fd, mask)
            else:
                self._epoll.register(fd, mask)
        except FileNotFoundError:  # closed and its number taken again: the kernel dropped the old one
            self._epoll.register(fd, mask)
        self._masks[fd] = mask

    def discard(self, fd: int) -> None:
        if self._masks.pop(fd, None) is None:
            return
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # closed already: the kernel dropped it

    def wait(self, timeout: float) -> set[int]:
        """Sleep until a signal, a ready descriptor or the timeout; the
        descriptors that are ready (a timeout of 0 looks without sleeping;
        the wait is rounded up to the millisecond, never short)."""
        ready = {fd for fd, _ in self._epoll.poll(max(0.0, timeout), len(self._masks))}
        if self._read in ready:
            # Drained when a read comes back short (a byte written since is
            # seen by the next select): no read that fails with EAGAIN, and
            # none at all when no signal came (a turn's system calls count).
            try:
                while len(os.read(self._read, 4096)) == 4096:
                    pass
            except BlockingIOError:
                pass
        return ready

    def close(self) -> None:
        for signum in self._signals:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(self._old_fd)
        self._epoll.close()
        os.close(self._read)
        os.close(self._write)

    def __enter__(self) -> Wakeups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
