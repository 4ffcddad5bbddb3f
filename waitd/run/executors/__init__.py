# SPDX-License-Identifier: MIT
"""How a run's handler is executed: on this host, or on a Celery worker.

`Executor` is the one interface the launcher and the loop use, whatever
executes the handler; a run holds the executor that runs it
(`Run.executor`), and asks it, never its kind:

- `ident`: the id a run carries in its status 0 before it starts (a
  Celery task's), or None;
- `start` a run (its status 0 already on disk), `poll` it for its
  `Outcome`, `signal` its process group (or revoke its task);
- `adopt` a handler a dead waitd left running, from its status 0;
- `describe` a run for a log line ("pid 12", "celery task ...");
- `ready`: whether it takes runs now (a broker reachable);
- `remote`: its handlers run elsewhere: no pid here, and a stop of waitd
  leaves them running for the next waitd to adopt; `term`: what a TERM
  does, in the words of a log line.

`local.Local` executes handlers here; `celery.Remote` (the only module
that knows Celery) sends them to workers; `dispatch.Dispatch` gives each
record its executor, by its `run=`.  `celery_problem` is what the
table asks of a `run=celery` record (`celery_app.problem`), imported only
when the table has one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from waitd.decide.outcome import Outcome
    from waitd.formats.history_line import Event
    from waitd.run.runs import Run


class Executor(Protocol):
    remote: bool
    term: str

    def ident(self) -> str | None: ...
    def start(self, run: Run, program: str, argv: list[str], env: dict[str, str], cwd: str) -> None: ...
    def poll(self, run: Run) -> Outcome | None: ...
    def signal(self, run: Run, signum: int) -> None: ...
    def adopt(self, event: Event) -> bool: ...
    def describe(self, run: Run) -> str: ...
    def ready(self) -> bool: ...


def celery_problem(passdir: str) -> Callable[[], str | None]:
    """What a `run=celery` record of PASSDIR lacks (`celery_app.problem`),
    for `table.read`, which asks it only of a table with such a record: a
    start without one neither imports `celery_app` nor looks Celery up
    nor reads waitd.conf a second time (issue 21)."""

    def problem() -> str | None:
        from waitd.run.executors import celery_app

        return celery_app.problem(passdir)

    return problem
