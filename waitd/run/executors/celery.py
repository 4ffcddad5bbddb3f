# SPDX-License-Identifier: MIT
"""The Celery executor: runs of `run=celery` records go to `waitd worker`s.

`Remote` is the executor of the records with `run=celery` (`dispatch`
gives each record its executor).  It never makes the loop wait on the
broker: `start` and `signal`
only queue the message, and two threads of its own do the broker's I/O:

- the sender publishes the tasks (`expires=` the run's start plus its
  timeout: a message that waited longer is discarded by the worker, never
  run late; shown in Celery's logs without the handler's environment) and
  the revokes (terminate: the pool process and the handler's process group
  are killed), in order, retrying while the broker is down; its Celery app
  has no result backend (`celery_app.make(results=False)`): the receiver
  reads the results;
- the receiver reads the results (Redis keys `celery-task-meta-ID`, told
  by the backend's publish on each one, and fetched again every second and
  after each reconnection, so that none is missed) and wakes the loop
  through a pipe (`wakeup_fds`); `poll` then takes the outcome and writes
  the handler's output into the run's log file.

A run is lost (status 1 `error=lost`, a temporary failure) when its worker
says so (its pool process or the worker itself died: Celery's
WorkerLostError, or the supervisor of `remote`), when its message expired
unrun, or when no result came `LOST_GRACE_S` after its revoke reached the
broker: the loop revokes a run at its timeout, and a live worker answers a
revoke at once (REVOKED), so silence then means the worker is gone.  Not
before the run's deadline (its timeout and `DEADLINE_SLACK_S`) is a
second past, when the worker's supervisor has killed the handler whatever
became of the revoke: a retry never overlaps it (with clocks in step).

While the broker is unreachable (either thread failing) `ready` is False:
the loop starts no run of a `run=celery` record; it is logged once when it
goes and once when it comes back.  A restart of waitd adopts the runs left
in flight by their task ids (`adopt`), from the status 0 lines of the
history, and records their results when they come.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from waitd.config.conf import CeleryConf
from waitd.decide.outcome import Outcome
from waitd.formats import handler_log
from waitd.formats.history_line import Event, Status
from waitd.run.executors import celery_app
from waitd.run.executors.local import signal_name
from waitd.run.runs import Run

log = logging.getLogger("waitd")

LOST_GRACE_S = 2.0  # after a revoke reached the broker, silence means the worker is gone
FETCH_EVERY_S = 1.0  # results fetched again, in case a notification was missed
BACKOFF_S = (0.2, 5.0)  # between attempts while the broker is down: first, most
DEADLINE_SLACK_S = 1.0  # the worker kills a handler this long after its timeout (waitd revokes first)
META_PREFIX = "celery-task-meta-"
_ENDED = ("SUCCESS", "FAILURE", "REVOKED")


@dataclass(slots=True)
class _Watch:
    """A task waitd waits for."""

    revoked: set[int]  # the signals of the revokes queued
    deadline: float | None = None  # time.time(): the worker has killed the handler by then
    revoked_at: float | None = None  # monotonic: the first revoke reached the broker


class Remote:
    """Runs on Celery workers, through the broker of `[celery]`."""

    def __init__(self, conf: CeleryConf, wake: Any) -> None:
        self.conf = conf
        self._wake = wake
        self._lock = threading.Lock()
        self._more = threading.Condition(self._lock)
        self._outbox: deque[tuple[str, str, Any]] = deque()  # (send|revoke, task id, what)
        self._watch: dict[str, _Watch] = {}
        self._results: dict[str, celery_app.Result] = {}
        self._fetch_now = threading.Event()
        self._ok = {"sender": False, "receiver": False}
        self._said_down = False
        self._down_since: float | None = None  # time.time() when the broker was first found unreachable
        self._problem = ""
        self._threads: list[threading.Thread] = []

    # -- the loop's side ---------------------------------------------------------

    remote = True
    term = "revoking its celery task (terminate)"

    def ident(self) -> str | None:
        return str(uuid.uuid4())

    def describe(self, run: Run) -> str:
        return f"celery task {run.task}"

    def ready(self) -> bool:
        self._begin()
        return all(self._ok.values())

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def report(self) -> dict[str, Any]:
        with self._lock:
            reachable, since, problem = all(self._ok.values()), self._down_since, self._problem
            in_flight = len(self._watch)
        return {
            "broker": celery_app.shown_url(self.conf.broker),
            "queue": self.conf.queue,
            "reachable": reachable,
            "down_since": None if reachable else since,
            "error": None if reachable else (problem or None),
            "in_flight": in_flight,
        }

    def start(self, run: Run, program: str, argv: list[str], env: dict[str, str], cwd: str) -> None:
        """Queue the task; the sender publishes it."""
        assert run.task is not None and run.timeout_s is not None
        self._begin()
        expires = run.started_at + run.timeout_s
        kwargs = {
            "program": program,
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "deadline": expires + DEADLINE_SLACK_S,
        }
        with self._more:
            self._watch[run.task] = _Watch(set(), expires + DEADLINE_SLACK_S)
            self._outbox.append(("send", run.task, (kwargs, expires)))
            self._more.notify()
        _write(run.log_fd, handler_log.task_line(run.task, self.conf.queue))

    def poll(self, run: Run) -> Outcome | None:
        """The run's outcome if its result came (its output written to its log)."""
        assert run.task is not None
        with self._lock:
            result = self._results.pop(run.task, None)
            if result is None:
                return None
            self._watch.pop(run.task, None)
        if result.output:
            _write(run.log_fd, result.output)
            if not result.output.endswith(b"\n"):
                _write(run.log_fd, b"\n")
        if result.note:
            _write(run.log_fd, result.note + "\n")
        return result.outcome

    def signal(self, run: Run, signum: int) -> None:
        """Revoke the task, terminating it (once for each signal)."""
        assert run.task is not None
        with self._more:
            watch = self._watch.get(run.task)
            if watch is None or signum in watch.revoked:
                return
            watch.revoked.add(signum)
            self._outbox.append(("revoke", run.task, signal_name(signum)))
            self._more.notify()

    def adopt(self, event: Event) -> bool:
        """Wait for the result of a run a previous waitd started."""
        assert event.task is not None
        self._begin()
        with self._lock:
            self._watch[event.task] = _Watch(set())
        self._fetch_now.set()
        return True

    # -- the threads ---------------------------------------------------------------

    def _begin(self) -> None:
        if self._threads:
            return
        for name, target in (("sender", self._sender), ("receiver", self._receiver)):
            thread = threading.Thread(target=target, name=f"waitd-celery-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _state(self, who: str, ok: bool, problem: object = None) -> None:
        """Note whether a thread reaches the broker; log a change once."""
        with self._lock:
            was = all(self._ok.values())
            self._ok[who] = ok
            now = all(self._ok.values())
            tell_down = not ok and not self._said_down
            tell_up = now and not was and self._said_down
            self._said_down = (self._said_down or not ok) and not now
            if not ok:
                self._problem = str(problem) if problem is not None else self._problem
                self._down_since = self._down_since or time.time()
            elif now:
                self._down_since, self._problem = None, ""
        if tell_down:
            log.error(
                "celery: broker %s unreachable (%s); runs of run=celery records wait until it is back",
                celery_app.shown_url(self.conf.broker),
                problem,
            )
        if tell_up:
            log.info(
                "celery: broker %s reachable again; runs of run=celery records resume",
                celery_app.shown_url(self.conf.broker),
            )
        if now and not was:
            self._wake()

    def _sender(self) -> None:
        sending: tuple[Any, Any, Any] | None = None  # (app, producer, queue) while connected
        pause = BACKOFF_S[0]
        fresh = True  # a failure of an app just made is the broker's, not a stale connection's
        while True:
            try:
                if sending is None:
                    sending, fresh = _connect(self.conf), True
                    self._state("sender", True)
                with self._more:
                    while not self._outbox:
                        self._more.wait()
                    kind, task, what = self._outbox[0]
                self._publish(*sending, kind, task, what)
            except Exception as exc:  # the broker's errors are many (kombu, redis, OSError)
                sending = None
                if not fresh:
                    fresh = True
                    continue  # the connection may be one the broker dropped before: try a new one at once
                self._state("sender", False, _problem(exc))
                time.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            pause, fresh = BACKOFF_S[0], False
            with self._lock:
                self._outbox.popleft()
                watch = self._watch.get(task)
                if kind == "revoke" and watch is not None and watch.revoked_at is None:
                    watch.revoked_at = time.monotonic()

    def _publish(self, app: Any, producer: Any, queue: Any, kind: str, task: str, what: Any) -> None:
        if kind == "send":
            kwargs, expires = what
            app.send_task(
                celery_app.TASK,
                kwargs=kwargs,
                task_id=task,
                queue=queue,
                expires=datetime.datetime.fromtimestamp(expires, datetime.UTC),
                argsrepr="()",
                kwargsrepr=_shown(kwargs),
                producer=producer,
                add_to_parent=False,  # the sender is no task of a worker's: no parent to look for twice
                # The queue is declared with each send, as Celery does (kombu
                # skips it while the connection that declared it lives): a
                # Redis that lost its bindings (restarted, no persistence)
                # with no worker up to declare it again would drop the task.
                # It is the queue of `[celery]` bound to the producer's
                # channel once (`_connect`), not its name: with the name,
                # kombu binds a copy of the queue and of its exchange at
                # each send to look up that declaration (issue 21: a tenth
                # of a send's CPU); the message is the same.
            )
        else:
            app.control.revoke(task, terminate=True, signal=what)

    def _receiver(self) -> None:
        import redis

        pause = BACKOFF_S[0]
        while True:
            try:
                client = redis.Redis.from_url(
                    self.conf.broker,
                    socket_timeout=celery_app.SOCKET_TIMEOUT_S,
                    socket_connect_timeout=celery_app.CONNECT_TIMEOUT_S,
                    protocol=2,  # issue 21: RESP3's push messages cost redis-py twice the CPU a message
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(META_PREFIX + "*")
                self._fetch(client)
                self._state("receiver", True)
                pause = BACKOFF_S[0]
                self._listen(client, pubsub)
            except Exception as exc:
                self._state("receiver", False, _problem(exc))
                time.sleep(pause)
                pause = min(pause * 2, BACKOFF_S[1])

    def _listen(self, client: Any, pubsub: Any) -> None:
        fetched = time.monotonic()
        while True:
            # A message a turn (none asked for at once: a poll a message); idle, it
            # wakes for its next fetch (adopted tasks wait for it), not 4 times a second.
            message = pubsub.get_message(timeout=max(0.0, fetched + FETCH_EVERY_S - time.monotonic()))
            if message is not None and message.get("type") == "pmessage":
                channel = _text(message["channel"])
                self._found(channel[len(META_PREFIX) :], message["data"])
            if self._fetch_now.is_set() or time.monotonic() - fetched >= FETCH_EVERY_S:
                fetched = time.monotonic()
                self._fetch(client)

    def _fetch(self, client: Any) -> None:
        """Read the result of every task waited for; a revoked one that
        stays silent is lost."""
        self._fetch_now.clear()
        began = time.monotonic()
        with self._lock:
            tasks = [t for t in self._watch if t not in self._results]
        for i in range(0, len(tasks), 500):
            chunk = tasks[i : i + 500]
            for task, data in zip(chunk, client.mget([META_PREFIX + t for t in chunk]), strict=True):
                if data is not None:
                    self._found(task, data)
        lost = []
        now = time.time()
        with self._lock:
            for task, watch in self._watch.items():
                if task in self._results or watch.revoked_at is None:
                    continue
                if watch.deadline is not None and now < watch.deadline + LOST_GRACE_S / 2:
                    continue  # the worker's own deadline kills the handler first: never two at once
                if began - watch.revoked_at >= LOST_GRACE_S:
                    note = f"waitd: lost: no result {LOST_GRACE_S:g} s after its revoke (its worker is gone)"
                    self._results[task] = celery_app.Result(Outcome(Status.UNKNOWN, lost=True), b"", note)
                    lost.append(task)
        if lost:
            self._wake()

    def _found(self, task: str, data: Any) -> None:
        """A task's stored state: its result if it ended.  Another
        client's task (told too, by the pattern) is not decoded."""
        if task not in self._watch:
            return  # looked up again under the lock below: one the loop adds later is fetched
        try:
            meta = json.loads(data)
        except (ValueError, TypeError):
            return
        if not isinstance(meta, dict) or meta.get("status") not in _ENDED:
            return
        with self._lock:
            watch = self._watch.get(task)
            if watch is None or task in self._results:
                return
            self._results[task] = celery_app.result_of(meta, watch.revoked)
        self._wake()


def _connect(conf: CeleryConf) -> tuple[Any, Any, Any]:
    """The sender's app, the producer it holds while it is connected
    (issue 21: one producer for every send, not one taken from Celery's
    pool and given back at each) and the queue bound to the producer's
    channel, once the broker answers; and what
    Celery would otherwise do at the first send, in the first run's time:
    the queue declared, the result backend (disabled: the receiver reads
    the results) looked up, the message sender made (it imports Celery's
    events)."""
    app = celery_app.make(conf.broker, conf.queue, results=False)
    producer = app.producer_pool.acquire(block=True)
    producer.channel.client.ping()
    queue = app.amqp.queues[conf.queue].bind(producer.channel)
    producer.maybe_declare(queue)
    app.backend  # noqa: B018 (each is made at its first use: that would be in the first run's send)
    app.amqp.send_task_message  # noqa: B018
    return app, producer, queue


def _shown(kwargs: dict[str, Any]) -> str:
    """The task's arguments as Celery shows them (its message's
    `kwargsrepr`, for its logs and monitors): the handler and its files,
    not its environment, which may hold secrets, and which Celery's own
    `saferepr` of it costs more than the rest of the send (issue 21)."""
    return repr({k: kwargs[k] for k in ("program", "argv", "cwd") if k in kwargs})


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _problem(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def _write(fd: int, data: str | bytes) -> None:
    if fd < 0:
        return
    try:
        os.write(fd, data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)
    except OSError:
        pass  # a full disk must not stop the run; the history still says it
