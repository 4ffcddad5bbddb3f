# SPDX-License-Identifier: MIT
"""The `stomp` sink: started, complete and error messages to a STOMP broker.

`started` events go to the destination `started =`, `ended` ones with
outcome ok to `complete =`, failed or retrying ones to `error =` (with
`retry_in`, seconds, when a retry is set), skipped ones to `skipped =`
(or `complete =` when it is not set); the body is the event's JSON with
`file` (its path, or a group's paths).  With `format = isis` the
messages are ISIS's autoreduction replies (`formats.isis`: the source
message with the outcome in ISIS's fields), each kind to its destination
or ISIS's default queue.  Each message has the event's id in its header
`waitd-event-id`: delivery is at least once, and a consumer can drop a
repeat.  Messages are persistent, and
`send` returns only once the broker acknowledged the last of a batch with
a receipt (RECEIPT_TIMEOUT_S at most).

stomp.py is imported when the sink opens: a waitd without such a sink
does not need it.  Failures (no receipt in time, the connection lost, the
library's exceptions) mean "not delivered": the sink's process backs off
and sends the batch again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from waitd.formats import events as ev
from waitd.formats import isis

RECEIPT_TIMEOUT_S = 10.0


def message(event: ev.Event, settings: dict[str, Any], now: float) -> tuple[str, dict[str, Any]] | None:
    """(destination, body) of the STOMP message of an event; None if it has none."""
    if settings.get("format") == "isis":
        return _isis(event, settings, now)
    if isinstance(event, ev.Started):
        where = settings.get("started")
    elif isinstance(event, ev.Ended):
        if event.outcome == "skipped":
            where = settings.get("skipped") or settings.get("complete")
        else:
            where = settings.get("complete") if event.outcome == "ok" else settings.get("error")
    else:
        return None
    if not where:
        return None
    body = ev.to_json(event)
    about = event.about
    body["file"] = about.path if about.path is not None else list(about.paths or ())
    if isinstance(event, ev.Ended) and event.retry_at is not None:
        body["retry_in"] = round(max(0.0, event.retry_at - now), 3)
    return where, body


def _isis(event: ev.Event, settings: dict[str, Any], now: float) -> tuple[str, dict[str, Any]] | None:
    """An ISIS reply (`formats.isis`), to its destination or ISIS's default."""
    if not isinstance(event, ev.Started | ev.Ended):
        return None
    made = isis.reply(ev.to_json(event), now)
    if made is None:
        return None
    kind, body = made
    return settings.get(kind) or isis.DEFAULTS[kind], body


class Stomp:
    """STOMP SENDs, persistent, the last of a batch with a receipt waited for."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._conn: Any = None
        self._receipts: set[str] = set()
        self._lost = False
        self._cond = threading.Condition()
        self._count = 0
        self._generation = 0  # of the connection: a late callback of an old one is ignored

    def wants(self, event: ev.Event) -> bool:
        return message(event, self.settings, 0.0) is not None

    def open(self) -> None:
        if self._conn is not None and self._conn.is_connected() and not self._lost:
            return
        self.close()
        import stomp

        conn = stomp.Connection([(self.settings["host"], self.settings["port"])], reconnect_attempts_max=1, timeout=5)
        self._generation += 1
        conn.set_listener("waitd", _Listener(self, self._generation))
        self._lost = False
        kwargs = {}
        if self.settings.get("user") is not None:
            kwargs = {"username": self.settings["user"], "passcode": self.settings["password"]}
        conn.connect(wait=True, **kwargs)
        self._conn = conn

    def send(self, events: list[ev.Event]) -> None:
        self.open()
        now = time.time()
        messages = [(e, *m) for e, m in ((e, message(e, self.settings, now)) for e in events) if m is not None]
        if not messages:
            return
        self._count += 1
        receipt = f"waitd-{os.getpid()}-{self._count}"
        for i, (event, where, body) in enumerate(messages):
            headers = {"persistent": "true", "waitd-event-id": event.id}
            if i == len(messages) - 1:
                headers["receipt"] = receipt
            self._conn.send(where, json.dumps(body, sort_keys=True), content_type="application/json", headers=headers)
        with self._cond:
            if not self._cond.wait_for(lambda: receipt in self._receipts or self._lost, RECEIPT_TIMEOUT_S):
                raise TimeoutError(f"no receipt from the broker in {RECEIPT_TIMEOUT_S:g} s")
            if receipt not in self._receipts:
                raise ConnectionError("the broker closed the connection")
            self._receipts.discard(receipt)

    def flush(self) -> None:
        pass  # delivered by `send`

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # it is gone already
                pass

    def note(self, generation: int, receipt: str | None = None, lost: bool = False) -> None:
        with self._cond:
            if generation != self._generation:
                return
            if receipt is not None:
                self._receipts.add(receipt)
            self._lost = self._lost or lost
            self._cond.notify_all()


class _Listener:
    """stomp.py's callbacks (its receiver thread): receipts, errors, loss."""

    def __init__(self, sink: Stomp, generation: int) -> None:
        self.sink = sink
        self.generation = generation

    def on_receipt(self, frame: Any) -> None:
        self.sink.note(self.generation, receipt=frame.headers.get("receipt-id"))

    def on_error(self, frame: Any) -> None:
        self.sink.note(self.generation, lost=True)

    def on_disconnected(self) -> None:
        self.sink.note(self.generation, lost=True)
