# SPDX-License-Identifier: MIT
"""Where a sink delivers: a JSON-lines file, posttroll, a STOMP broker.

Each kind of sink is a class with `open` (connect, bind and announce,
open the file: the sink's process calls it when it starts, before any
event), `send` (deliver a batch of events, all of them, or raise; it
opens again what a failure closed), `reopen` (HUP) and `close`; `wants`
says which events it delivers at all (the others are passed over).
`send` returns only once the batch is delivered as far as the kind can
tell: written and synced for `jsonl`, sent for `posttroll` (ZeroMQ PUB
has no acknowledgement: a subscriber that is not connected misses the
message, as with trollstalker), and acknowledged by the broker with a
receipt for `stomp`.  Any exception means "not delivered": the
sink's process backs off and sends the batch again.

    jsonl      every event, one JSON object a line, appended to `path`
               (at open, a torn last line that a killed sink left is
               cut off: its batch is delivered again)
    posttroll  `ready` events: a pytroll `file` message for a file, a
               `dataset` message for a group, subject `topic=` (a leading
               / added), data: the pattern's fields (times as datetimes),
               `uri`, `uid` (the file name), `sensor` when configured;
               the address is bound and announced to the nameservers at
               open, and no message goes out within POSTTROLL_SETTLE_S of
               a bind (subscribers connect first)
    stomp      `started` to `started =`, `ended` ok to `complete =`,
               `ended` failed or retrying to `error =` (with `retry_in`,
               seconds), JSON bodies: the event and `file`

The libraries (posttroll, stomp.py) are imported when a sink of that kind
opens, so a waitd without such sinks needs neither.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import threading
import time
from typing import Any, Protocol

log = logging.getLogger("waitd")

_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}:[0-9]{2})?")
POSTTROLL_SETTLE_S = 1.0  # after binding: subscribers (re)connect before the first message
RECEIPT_TIMEOUT_S = 10.0
_GROUP_FIELDS = ("channel_name", "segment")


class Sink(Protocol):
    def wants(self, event: dict[str, Any]) -> bool: ...
    def open(self) -> None: ...
    def send(self, events: list[dict[str, Any]]) -> None: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...


def make(kind: str, settings: dict[str, Any], passdir: str) -> Sink:
    if kind == "jsonl":
        return JsonLines(os.path.join(passdir, settings["path"]))
    if kind == "posttroll":
        return Posttroll(settings)
    if kind == "stomp":
        return Stomp(settings)
    raise ValueError(f"unknown sink type {kind!r}")


class JsonLines:
    """Every event, appended to a file: one write and one fdatasync a batch."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def wants(self, event: dict[str, Any]) -> bool:
        return True

    def open(self) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                _cut_torn_line(self._fd, self.path)
            except OSError:
                self.close()
                raise

    def send(self, events: list[dict[str, Any]]) -> None:
        self.open()
        data = "".join(json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n" for e in events).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fdatasync(self._fd)

    def reopen(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _cut_torn_line(fd: int, path: str) -> None:
    """Cut off what follows the last newline: the part of a batch written by
    a sink killed in its write(2).  That batch was not passed, so its events
    are delivered again, whole, after the lines before it."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
        log.warning("%s: a torn last line (%d bytes) cut off; its events are delivered again", path, size - end)


def _datetimes(fields: dict[str, Any]) -> dict[str, Any]:
    """The pattern's fields with their times as datetimes again."""
    return {
        k: datetime.datetime.fromisoformat(v) if isinstance(v, str) and _ISO.fullmatch(v) else v
        for k, v in fields.items()
    }


def subject(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def posttroll_message(event: dict[str, Any], sensor: list[str] | None) -> tuple[str, str, dict[str, Any]]:
    """(subject, type, data) of the pytroll message of a `ready` event."""
    fields = _datetimes(event.get("fields") or {})
    if "paths" in event:
        data = {k: v for k, v in fields.items() if k not in _GROUP_FIELDS}
        data["dataset"] = [{"uri": p, "uid": os.path.basename(p)} for p in event["paths"]]
        kind = "dataset"
    else:
        data = dict(fields)
        data.update(uri=event["path"], uid=os.path.basename(event["path"]))
        kind = "file"
    if sensor:
        data["sensor"] = list(sensor)
    return subject(event.get("topic") or event.get("telem") or "waitd"), kind, data


class Posttroll:
    """pytroll messages on a ZeroMQ PUB socket bound to one address."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._publisher: Any = None
        self._broadcaster: Any = None
        self._bound_at = 0.0  # monotonic

    def wants(self, event: dict[str, Any]) -> bool:
        return event.get("type") == "ready"

    def open(self) -> None:
        if self._publisher is not None:
            return
        from posttroll.publisher import Publisher

        name = self.settings.get("name", "waitd")
        self._publisher = Publisher(self.settings["address"], name=name).start()
        nameservers = self.settings.get("nameservers")
        if nameservers:
            from posttroll.message_broadcaster import sendaddressservice

            host = self.settings["address"].rpartition(":")[0]
            address = f"{host}:{self._publisher.port_number}"
            self._broadcaster = sendaddressservice(name, address, [name], 2, nameservers)
            self._broadcaster.start()
        self._bound_at = time.monotonic()

    def send(self, events: list[dict[str, Any]]) -> None:
        from posttroll.message import Message

        self.open()
        settle_s = self._bound_at + POSTTROLL_SETTLE_S - time.monotonic()
        if settle_s > 0:
            time.sleep(settle_s)  # just bound: subscribers (re)connect before the first message
        for event in events:
            topic, kind, data = posttroll_message(event, self.settings.get("sensor"))
            self._publisher.send(Message(topic, kind, data).encode())

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        if self._broadcaster is not None:
            self._broadcaster.stop()
            self._broadcaster = None
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None


def stomp_message(event: dict[str, Any], settings: dict[str, Any], now: float) -> tuple[str, dict[str, Any]] | None:
    """(destination, body) of the STOMP message of an event; None if it has none."""
    kind = event.get("type")
    if kind == "started":
        where = settings.get("started")
    elif kind == "ended":
        where = settings.get("complete") if event.get("outcome") == "ok" else settings.get("error")
    else:
        return None
    if not where:
        return None
    body = dict(event)
    body["file"] = event.get("path", event.get("paths"))
    if event.get("retry_at") is not None:
        body["retry_in"] = round(max(0.0, event["retry_at"] - now), 3)
    return where, body


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

    def wants(self, event: dict[str, Any]) -> bool:
        return stomp_message(event, self.settings, 0.0) is not None

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

    def send(self, events: list[dict[str, Any]]) -> None:
        self.open()
        now = time.time()
        messages = [m for m in (stomp_message(e, self.settings, now) for e in events) if m is not None]
        if not messages:
            return
        self._count += 1
        receipt = f"waitd-{os.getpid()}-{self._count}"
        for i, (where, body) in enumerate(messages):
            headers = {"persistent": "true"}
            if i == len(messages) - 1:
                headers["receipt"] = receipt
            self._conn.send(where, json.dumps(body, sort_keys=True), content_type="application/json", headers=headers)
        with self._cond:
            if not self._cond.wait_for(lambda: receipt in self._receipts or self._lost, RECEIPT_TIMEOUT_S):
                raise TimeoutError(f"no receipt from the broker in {RECEIPT_TIMEOUT_S:g} s")
            if receipt not in self._receipts:
                raise ConnectionError("the broker closed the connection")
            self._receipts.discard(receipt)

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
