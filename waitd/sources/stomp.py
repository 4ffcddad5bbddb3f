# SPDX-License-Identifier: MIT
"""The `stomp` source: messages from STOMP destinations (ActiveMQ, RabbitMQ).

`open` connects (heart-beats every `heartbeat =` seconds both ways, STOMP
1.1) and subscribes to each of `destinations =` and to `cancel =` with
`ack = client-individual` and a prefetch of `prefetch =` messages: the
broker keeps a message until this source acknowledges it, which it does
only once the message is in the queue (`spooler`), and gives it again to
the next connection if this one is lost first.  stomp.py's receiver
thread hands each MESSAGE frame over through a queue; `take` returns the
frames that came (at most BATCH, waiting at most its timeout for the
first), `ack` acknowledges them one by one.

A connection that is lost (the broker went away, no heart-beat) makes
`take` raise ConnectionError and forgets the frames not yet acknowledged
(the broker gives them again); the source's process then connects again
with its back-off.  stomp.py is imported when the source opens: a waitd
without such a source does not need it.
"""

from __future__ import annotations

import os
import queue
from typing import Any

from waitd.sources.spooler import Message

BATCH = 200
_LOST = object()


class StompSource:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._conn: Any = None
        self._frames: queue.Queue[Any] = queue.Queue()
        self._generation = 0

    def describe(self) -> str:
        return f"{self.settings['host']}:{self.settings['port']}"

    def open(self) -> None:
        self.close()
        import stomp

        beat = int(self.settings.get("heartbeat_s", 10)) * 1000
        conn = stomp.Connection(
            [(self.settings["host"], self.settings["port"])],
            reconnect_attempts_max=1,
            heartbeats=(beat, beat),
            timeout=5,
        )
        self._generation += 1
        self._frames = queue.Queue()
        conn.set_listener("waitd", _Listener(self._frames))
        kwargs = {}
        if self.settings.get("user") is not None:
            kwargs = {"username": self.settings["user"], "passcode": passcode(self.settings)}
        conn.connect(wait=True, **kwargs)
        headers = {"activemq.prefetchSize": str(self.settings.get("prefetch", 100))}
        for i, where in enumerate(self.settings["destinations"]):
            conn.subscribe(where, id=f"work-{i}", ack="client-individual", headers=headers)
        if self.settings.get("cancel"):
            conn.subscribe(self.settings["cancel"], id="cancel", ack="client-individual", headers=headers)
        self._conn = conn

    def take(self, timeout_s: float) -> list[Message]:
        """The messages that came, waiting at most `timeout_s` for the first."""
        out: list[Message] = []
        try:
            frame = self._frames.get(timeout=timeout_s)
            while True:
                if frame is _LOST:
                    raise ConnectionError("the broker closed the connection")
                out.append(_message(frame))
                if len(out) >= BATCH:
                    break
                frame = self._frames.get_nowait()
        except queue.Empty:
            pass
        if self._conn is None or not self._conn.is_connected():
            raise ConnectionError("not connected")
        return out

    def ack(self, messages: list[Message]) -> None:
        for msg in messages:
            self._conn.ack(msg.token[0], msg.token[1])

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # it is gone already
                pass


def passcode(settings: dict[str, Any]) -> str:
    """`password =`, or the first line of `passcode-file =`, which only its
    owner may read (PermissionError otherwise: the source is down, saying why)."""
    path = settings.get("passcode_file")
    if path is None:
        return str(settings["password"])
    with open(path, encoding="utf-8") as f:
        if os.fstat(f.fileno()).st_mode & 0o077:
            raise PermissionError(f"{path}: passcode-file is readable by others than its owner (chmod 600)")
        return f.readline().rstrip("\n")


def _message(frame: Any) -> Message:
    headers = frame.headers
    body = frame.body if isinstance(frame.body, bytes) else str(frame.body).encode("utf-8", "surrogateescape")
    return Message(
        id=headers.get("message-id", ""),
        body=body,
        headers=dict(headers),
        token=(headers.get("message-id"), headers.get("subscription")),
        cancel=headers.get("subscription") == "cancel",
    )


class _Listener:
    """stomp.py's callbacks (its receiver thread): frames in, loss noted."""

    def __init__(self, frames: queue.Queue[Any]) -> None:
        self.frames = frames

    def on_message(self, frame: Any) -> None:
        self.frames.put(frame)

    def on_error(self, frame: Any) -> None:
        self.frames.put(_LOST)

    def on_disconnected(self) -> None:
        self.frames.put(_LOST)
