# SPDX-License-Identifier: MIT
"""The worker's Celery application: waitd's app with the task's body registered.

`make` takes the app `run.executors.celery_app.make` builds (the task's
name and every setting, one definition for the sender and the worker) and
registers `task.run` under the task's name, with early acknowledgement and
its result stored.  Only `waitd worker` (`worker.main`) builds it; waitd
itself sends the task by its name and never imports this package.
"""

from __future__ import annotations

from typing import Any

from waitd.run.executors import celery_app
from waitd.worker import task


def make(broker: str, queue: str) -> Any:
    """The Celery app of `waitd worker` for this broker and queue."""
    app = celery_app.make(broker, queue)
    app.task(name=celery_app.TASK, ignore_result=False, acks_late=False)(task.run)
    return app
