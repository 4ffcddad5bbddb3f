# SPDX-License-Identifier: MIT
"""Which executor runs what: each record's, and what the loop waits on.

`Dispatch` gives each record its executor by its `run=`: `celery.Remote`
for `run=celery` (once waitd.conf has a [celery] broker; until then one
that takes no runs), `local.Local` for the others; each run then holds
its own (`Run.executor`).  At start, an open run whose status 0 carries a
task id is a remote one's (`of_event`).  It also holds what the loop
waits on (`wakeup_fds`: a pipe the remote executor writes to when a
result comes, the pidfds of adopted handlers; `drain`, `release`) and
what the status shows of the broker (`report`, `down`).

A change of [celery] on HUP takes effect at the next start of waitd
(logged); a first [celery] starts the remote executor at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from waitd.config.conf import CeleryConf
from waitd.decide.outcome import Outcome
from waitd.formats.history_line import Event
from waitd.run.executors import Executor
from waitd.run.executors.local import Local
from waitd.run.runs import Run

if TYPE_CHECKING:
    from waitd.run.executors.celery import Remote

log = logging.getLogger("waitd")


class Dispatch:
    """The executor of each record, and what the loop waits on."""

    def __init__(self, local: Local, celery: CeleryConf | None) -> None:
        self.local = local
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.remote: Remote | None = None
        self.configure(celery)
        self._none = _Unconfigured()

    def configure(self, celery: CeleryConf | None) -> None:
        """waitd.conf reread: a first [celery] starts the executor; a change
        of broker or queue takes effect at the next start."""
        if self.remote is None and celery is not None:
            # Imported here: a waitd without [celery] never loads it.
            from waitd.run.executors.celery import Remote

            self.remote = Remote(celery, self._wake)
        elif self.remote is not None and celery != self.remote.conf:
            log.warning("waitd.conf: [celery] changed; the change takes effect when waitd starts again")

    def of(self, run: str) -> Executor:
        """The executor of a record's runs (its `run=`)."""
        if run != "celery":
            return self.local
        return self.remote if self.remote is not None else self._none

    def of_event(self, event: Event) -> Executor:
        """The executor of an open run in the history (a task id: Celery's)."""
        return self.local if event.task is None else self.of("celery")

    def report(self) -> dict[str, Any] | None:
        """The broker's state for the status document; None without one
        in use (no [celery], or no run=celery record has asked yet)."""
        return self.remote.report() if self.remote is not None and self.remote.started else None

    def down(self, run: str) -> bool:
        """True when runs of that kind cannot start: their broker was tried
        and found unreachable (not while it is still being connected to)."""
        state = self.report() if run == "celery" else None
        return state is not None and state["down_since"] is not None

    def wakeup_fds(self) -> list[int]:
        return [*self.local.wakeup_fds(), self._read]

    def drain(self) -> None:
        """Empty the wake-up pipe (each turn of the loop)."""
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def release(self, forget: Callable[[int], None]) -> None:
        """Close the wake-up descriptors of runs that ended, once `forget`
        (the loop's selector) has let go of each."""
        self.local.release(forget)

    def _wake(self) -> None:
        try:
            os.write(self._write, b"x")
        except BlockingIOError:
            pass  # full: the loop wakes anyway


class _Unconfigured:
    """The executor of run=celery records while waitd.conf has no [celery]."""

    remote = True
    term = "revoking its celery task (terminate)"

    def ident(self) -> str | None:
        import uuid

        return str(uuid.uuid4())

    def ready(self) -> bool:
        return False

    def start(self, run: Run, program: str, argv: list[str], env: dict[str, str], cwd: str) -> None:
        raise OSError(0, "waitd.conf has no [celery] broker")

    def poll(self, run: Run) -> Outcome | None:
        return None

    def signal(self, run: Run, signum: int) -> None:
        pass

    def adopt(self, event: Event) -> bool:
        return False

    def describe(self, run: Run) -> str:
        return f"celery task {run.task}"
