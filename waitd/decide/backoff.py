# SPDX-License-Identifier: MIT
"""Back-off: when a record's handler keeps failing, it starts nothing a while.

Postfix's "throttling command": a record whose handler could not be
executed, or whose last FAST_FAILS runs each failed within FAST_FAIL_S,
starts nothing for BACKOFF_FIRST_S, then twice as long at each new
back-off, up to BACKOFF_MAX_S.  A success ends it and forgets the fast
failures; so does a reload (`Backoff()` anew).

`restart_delay` and `spawn_delay` are the rule for waitd's own helper
processes (a sink's, a source's): one that dies within RESTART_FAST_S of
its start, after a first restart, or that cannot be started, is started
again after RESTART_FIRST_S, then twice as long each time, up to
RESTART_MAX_S; one that lived longer is started again at once.

`Backoff` is the rule's state, a value: `ended` and `not_started` return
the next one, and why it holds the record back when it does (the caller
logs that).  This module is pure: the clock is an argument (monotonic
seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FAST_FAIL_S = 1.0
FAST_FAILS = 5
BACKOFF_FIRST_S = 10.0
BACKOFF_MAX_S = 600.0
RESTART_FAST_S = 10.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0


def restart_delay(delay_s: float, lived_s: float, restarts: int) -> float:
    """The wait before a helper process that died is started again
    (`delay_s`: the last such wait; `restarts`: how many it had)."""
    if lived_s < RESTART_FAST_S and restarts > 0:
        return RESTART_FIRST_S if delay_s == 0 else min(RESTART_MAX_S, delay_s * 2)
    return 0.0


def spawn_delay(delay_s: float) -> float:
    """The wait before trying again to start a helper process that could
    not be started."""
    return min(RESTART_MAX_S, max(RESTART_FIRST_S, delay_s * 2))


@dataclass(frozen=True, slots=True)
class Backoff:
    """A record's back-off after failures: how long the last one was, and until when."""

    delay_s: float = 0.0  # of the last back-off (0: none since the last success)
    until: float = 0.0  # monotonic: no start before
    fast: int = 0  # failures in a row, each within FAST_FAIL_S

    def holding(self, now: float) -> bool:
        return now < self.until

    def ended(self, ok: bool, took: float, now: float) -> tuple[Backoff, str | None]:
        """After a run's end (`ok`: exit 0); and why it backs off, if it does."""
        if ok:
            return NONE, None
        fast = self.fast + 1 if took < FAST_FAIL_S else 0
        if fast < FAST_FAILS:
            return replace(self, fast=fast), None
        return self._hold(now, 0), f"the last {FAST_FAILS} runs each failed within {FAST_FAIL_S:g} s"

    def not_started(self, now: float) -> Backoff:
        """After a handler that could not be started."""
        return self._hold(now, self.fast)

    def _hold(self, now: float, fast: int) -> Backoff:
        delay = BACKOFF_FIRST_S if self.delay_s == 0 else min(BACKOFF_MAX_S, 2 * self.delay_s)
        return Backoff(delay, now + delay, fast)


NONE = Backoff()  # no back-off, no failure counted: what a success leaves (one value, not one a run)
