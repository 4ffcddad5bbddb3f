# SPDX-License-Identifier: MIT
"""waitd's Celery application: one task, `waitd.run`, and its settings.

Both sides build the same app from waitd.conf's `[celery]` (`make`): waitd
sends the task and reads its result, `waitd worker` runs it.  The broker
is also the result backend (Redis).  The settings that matter:

- early acknowledgement (`task_acks_late` off, the default, said aloud):
  a message is acknowledged before its task runs, so a worker that dies
  mid-run loses the run, and it is never redelivered (at most once);
- STARTED stored when a task starts: another worker that gets a revoke
  of it then leaves its state alone (Celery marks a PENDING task REVOKED),
  so REVOKED "terminated" means the handler was killed, and a task whose
  worker died stays STARTED, without a result;
- one message reserved at a time per pool process (prefetch 1), and a
  task carries `expires=` (its start plus its timeout): a message that
  waited too long, or that the broker restored after a dead worker, is
  discarded, never run late;
- JSON only; short socket timeouts, so that nothing waits long on a
  broker that is down; results stored with retries (a worker whose handler
  ends while Redis is down keeps the result until Redis is back).

Importing Celery takes a while: only `make` does it, when a record has
`run=celery` or `waitd worker` starts.
"""

from __future__ import annotations

from typing import Any

from waitd import remote

TASK = "waitd.run"
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0


def make(broker: str, queue: str) -> Any:
    """The Celery app for this broker and queue, with waitd's task."""
    from celery import Celery

    app = Celery("waitd", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=False,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_track_started=True,  # a started task is left alone by the revokes of the other workers
        task_default_queue=queue,
        task_publish_retry=False,  # waitd's sender retries, without blocking the loop
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_transport_options={
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        },
        redis_socket_timeout=SOCKET_TIMEOUT_S,
        redis_socket_connect_timeout=CONNECT_TIMEOUT_S,
        redis_retry_on_timeout=False,
        result_backend_always_retry=True,
        result_backend_max_retries=1_000_000,
        result_backend_max_sleep_between_retries_ms=1000,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        result_extended=False,
    )
    app.task(name=TASK, ignore_result=False, acks_late=False)(remote.run)
    return app
