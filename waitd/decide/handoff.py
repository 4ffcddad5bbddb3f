# SPDX-License-Identifier: MIT
"""A queue's file after its run, and the room of the next queue (claim=yes).

`disposal` says where a claimed file goes once its run's end is in the
history (incoming(5), Queues):

    a retry set (retry_at=), or a retry that could not be executed
                                  RETRY    stays in pending, runs again here
    could not be executed (first attempt)
                                  RELEASE  back into the queue's incoming
    exit 0, with next=            FORWARD  into the next queue's incoming
    exit 0                        DELETE
    a final failure               ERRORS   into the queue's errors/

A file to be run again stays in this instance's pending, where its
attempts are counted (under the pending path, in this instance's
history), so that no instance takes it back at once while the cause of
its failure lasts.  `recorded` is the verdict of an end read back from
the history (at start: what a previous life left in pending).

`out_room` is out-limit= (`OutLimit`, a record's facts): no claim while the next queue's incoming holds
`limit` files or more, looked at again every out-wait= seconds; while
there is room it is counted afresh each time (`count`, the caller's
listing), so that the next queue never holds more than the limit.

This module is pure: it moves and counts nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from waitd.decide.outcome import Verdict
from waitd.formats.history_line import Event, Status


class Disposal(enum.Enum):
    RETRY = "stays in pending, to run again"
    RELEASE = "back into the queue"
    FORWARD = "handed on to the next queue"
    DELETE = "removed: handled with exit 0"
    ERRORS = "moved to errors/"


def disposal(verdict: Verdict, retry_at: float | None, attempt: int, forward: bool) -> Disposal:
    """Where a claimed file goes after its run (`forward`: the record has next=)."""
    if retry_at is not None or (verdict is Verdict.NOT_STARTED and attempt > 1):
        return Disposal.RETRY
    if verdict is Verdict.NOT_STARTED:
        return Disposal.RELEASE
    if verdict is Verdict.SUCCESS:
        return Disposal.FORWARD if forward else Disposal.DELETE
    return Disposal.ERRORS


def recorded(event: Event) -> Verdict:
    """How the recorded end of a run counts (a retry's is in its retry_at=)."""
    if not event.consumed:
        return Verdict.NOT_STARTED
    if event.succeeded:
        return Verdict.SUCCESS
    return Verdict.FINAL if event.status is Status.KNOWN else Verdict.UNKNOWN


@dataclass(slots=True)
class Outlook:
    """What the last look at a next queue said (out-limit=)."""

    at: float = float("-inf")  # monotonic or not: the caller's one clock
    full: bool = False


def out_room(
    last: Outlook, now: float, limit: int, wait_s: float, in_flight: int, count: Callable[[], int]
) -> tuple[int, Outlook, int]:
    """How many more files may be claimed now, given the runs not yet handed
    on (`in_flight`); the new look; and the count of the next queue's
    incoming (-1: not counted, the last look said full less than out-wait
    ago).  When the room is 0, the record looks again at `look.at + wait_s`."""
    if last.full and now - last.at < wait_s:
        return 0, last, -1
    files = count()
    return max(0, limit - files - in_flight), Outlook(now, files >= limit), files


@dataclass(slots=True)
class OutLimit:
    """out-limit= of a record that claims (its next queue's room)."""

    limit: int
    wait_s: float
    last: Outlook  # what the last look at the next queue said
    count: Callable[[], int]  # the files in the next queue's incoming now (a listing)
    queue: str = ""  # the next queue, as `Plan.looked` names it
