# SPDX-License-Identifier: MIT
"""Finish the runs a previous waitd left open.

A status 0 with no later status for its key means waitd died while that
handler ran.  `Orphans.adopt` sorts those runs: a handler that still runs
(same pid, created when the run started: psutil) is watched, and its end is
recorded as status 1 by `Orphans.ended` once it is gone; any other run is
recorded as status 1 at once.  Either way the file is not run again.

This module writes nothing: it returns the events, and the loop appends
them to the history (or keeps them while the disk is full).  A run whose
pid never reached the history (waitd died between the two status 0 lines)
cannot be watched and is finished at once.

A watched handler counts as its record's running handler (the loop starts
no other one for that record) and its file is busy (never removed under
it).  Its end is seen at once where the kernel offers a pidfd for it (the
descriptor joins the loop's selector), else at the next poll.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, Iterable

import psutil

from waitd.history import Event, Status, escape

log = logging.getLogger("waitd")


class Orphans:
    """Handlers of a previous waitd that still run."""

    def __init__(self) -> None:
        self.waiting: list[Event] = []
        self._pidfds: dict[tuple[str, str], int] = {}  # readable once the handler is gone

    def adopt(self, open_runs: Iterable[Event]) -> list[Event]:
        """Watch the live ones; return the status 1 events of the others."""
        lost = []
        for event in open_runs:
            if _alive(event):
                log.warning(
                    "%s: handler pid %d of a previous waitd still runs; waiting for it", escape(event.path), event.pid
                )
                self.waiting.append(event)
                assert event.pid is not None
                try:
                    self._pidfds[event.key] = os.pidfd_open(event.pid)
                except (AttributeError, OSError):
                    pass  # no pidfd (an old kernel): its end is seen at a poll
            else:
                log.warning(
                    "%s: waitd stopped while its handler ran; recorded as status 1 (unknown)", escape(event.path)
                )
                lost.append(_lost(event))
        return lost

    def fds(self) -> list[int]:
        """Descriptors that become readable when an adopted handler ends."""
        return list(self._pidfds.values())

    def busy(self, path: str) -> bool:
        return any(event.path == path for event in self.waiting)

    def ended(self, forget_fd: Callable[[int], None] = lambda fd: None, poll: bool = True) -> list[Event]:
        """The status 1 events of watched handlers that are gone now: those
        whose pidfd says so, and at a `poll` any of them."""
        if not self.waiting:
            return []
        readable = set(select.select(self.fds(), [], [], 0)[0]) if self._pidfds else set()
        asked = [e for e in self.waiting if poll or self._pidfds.get(e.key) in readable]
        gone = [event for event in asked if not _alive(event)]
        for event in gone:
            self.waiting.remove(event)
            fd = self._pidfds.pop(event.key, None)
            if fd is not None:
                forget_fd(fd)
                os.close(fd)
            log.warning(
                "%s: handler pid %s of a previous waitd ended; recorded as status 1 (unknown)",
                escape(event.path),
                event.pid,
            )
        return [_lost(event) for event in gone]


def _lost(event: Event) -> Event:
    return Event(
        event.path, event.process, event.mtime, Status.UNKNOWN, pid=event.pid, at=time.time(), version=event.version
    )


def _alive(event: Event) -> bool:
    """True if the run's pid runs and was created when the run started."""
    if event.pid is None or event.at is None:
        return False
    try:
        proc = psutil.Process(event.pid)
        return abs(proc.create_time() - event.at) < 2.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    except (ValueError, OverflowError):
        return False  # no process can have that pid (-1, say)
