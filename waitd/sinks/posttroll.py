# SPDX-License-Identifier: MIT
"""The `posttroll` sink: pytroll messages of `ready` events on a ZeroMQ PUB socket.

Each `ready` event becomes a pytroll `file` message (a `dataset` message
for a group, the group's own fields `channel_name` and `segment` left
out; a `collection` message for a region's group, with its
`collection_area_id`, as pytroll's geographic gatherer sends it),
subject the record's `topic=` (a leading / added), data: the pattern's
fields (times as datetimes again), `uri` and `uid` (the file
name), `sensor` when configured.  The address is bound and announced to
the nameservers at open (`nameservers =`), and no message goes out within
POSTTROLL_SETTLE_S of a bind, so that subscribers connect first.  `send`
returns once the messages are sent: ZeroMQ PUB has no acknowledgement,
and a subscriber not connected misses them, as with trollstalker.

posttroll is imported when the sink opens: a waitd without such a sink
does not need it.  Failures are the library's exceptions (an address in
use, say): the sink's process backs off and tries again.
"""

from __future__ import annotations

import datetime
import os
import re
import time
from typing import Any

from waitd.formats import events as ev

POSTTROLL_SETTLE_S = 1.0  # after binding: subscribers (re)connect before the first message
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}:[0-9]{2})?")
_GROUP_FIELDS = ("channel_name", "segment")


def _datetimes(fields: dict[str, Any]) -> dict[str, Any]:
    """The pattern's fields with their times as datetimes again."""
    return {
        k: datetime.datetime.fromisoformat(v) if isinstance(v, str) and _ISO.fullmatch(v) else v
        for k, v in fields.items()
    }


def subject(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def message(event: ev.Event, sensor: list[str] | None) -> tuple[str, str, dict[str, Any]]:
    """(subject, type, data) of the pytroll message of a `ready` event."""
    about = event.about
    fields = _datetimes(dict(about.fields or {}))
    if about.paths is not None and "collection_area_id" in fields:
        data = dict(fields)
        data["collection"] = [{"uri": p, "uid": os.path.basename(p)} for p in about.paths]
        kind = "collection"
    elif about.paths is not None:
        data = {k: v for k, v in fields.items() if k not in _GROUP_FIELDS}
        data["dataset"] = [{"uri": p, "uid": os.path.basename(p)} for p in about.paths]
        kind = "dataset"
    else:
        assert about.path is not None
        data = dict(fields)
        data.update(uri=about.path, uid=os.path.basename(about.path))
        kind = "file"
    if sensor:
        data["sensor"] = list(sensor)
    return subject(about.topic or about.telem or "waitd"), kind, data


class Posttroll:
    """pytroll messages on a ZeroMQ PUB socket bound to one address."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._publisher: Any = None
        self._broadcaster: Any = None
        self._bound_at = 0.0  # monotonic

    def wants(self, event: ev.Event) -> bool:
        return isinstance(event, ev.Ready)

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

    def send(self, events: list[ev.Event]) -> None:
        from posttroll.message import Message

        self.open()
        settle_s = self._bound_at + POSTTROLL_SETTLE_S - time.monotonic()
        if settle_s > 0:
            time.sleep(settle_s)  # just bound: subscribers (re)connect before the first message
        for event in events:
            topic, kind, data = message(event, self.settings.get("sensor"))
            self._publisher.send(Message(topic, kind, data).encode())

    def flush(self) -> None:
        pass  # delivered by `send`

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        if self._broadcaster is not None:
            self._broadcaster.stop()
            self._broadcaster = None
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
