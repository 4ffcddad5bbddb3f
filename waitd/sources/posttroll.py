# SPDX-License-Identifier: MIT
"""The `posttroll` source: pytroll `file`, `dataset` and `collection` messages.

`open` makes posttroll's subscriber: on `addresses =` directly, or the
publishers of `services =` found through the nameserver of `nameservers =`
(the first; posttroll's NSSubscriber asks one), for `topics =`.  `take`
reads what came (at most its timeout for the first): a `file` message is
one message, its data (with `uri` and `uid`) the body; a `dataset` gives
one per member (the member's `uri` and `uid` over the message's other
fields), a `collection` one per member of each of its datasets; other
types are passed over.  A message's id is its `uid` (the default NAME),
so a file seen again (two publishers, a restart of one) is a NAME taken.
posttroll has no acknowledgement: `ack` does nothing.  posttroll is
imported when the source opens.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from waitd.sources.spooler import Message

BATCH = 200


class PosttrollSource:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._sub: Any = None
        self._recv: Any = None

    def describe(self) -> str:
        return " ".join(self.settings.get("addresses") or self.settings.get("nameservers") or [])

    def open(self) -> None:
        self.close()
        from posttroll.subscriber import create_subscriber_from_dict_config

        config: dict[str, Any] = {"topics": list(self.settings["topics"])}
        if self.settings.get("addresses"):
            config.update(addresses=list(self.settings["addresses"]), nameserver=False)
        else:
            config.update(nameserver=self.settings["nameservers"][0], timeout=2)
            if self.settings.get("services"):
                config["services"] = list(self.settings["services"])
        self._sub = create_subscriber_from_dict_config(config)
        self._recv = self._sub.recv(timeout=0.05)

    def take(self, timeout_s: float) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < BATCH:
            msg = next(self._recv)
            if msg is None:
                if out or time.monotonic() >= deadline:
                    break
                continue
            out.extend(messages(msg.type, msg.data, msg.subject))
        return out

    def ack(self, messages: list[Message]) -> None:
        pass

    def close(self) -> None:
        sub, self._sub = self._sub, None
        self._recv = None
        if sub is not None:
            try:
                sub.close()
            except Exception:  # closing what is broken already
                pass


def messages(kind: str, data: Any, subject: str = "") -> list[Message]:
    """The messages of one posttroll message (pure)."""
    if not isinstance(data, dict):
        return []
    if kind == "file":
        members = [data]
    elif kind == "dataset":
        members = [_member(data, m, "dataset") for m in data.get("dataset") or [] if isinstance(m, dict)]
    elif kind == "collection":
        members = []
        for part in data.get("collection") or []:
            if isinstance(part, dict):
                inner = _member(data, part, "collection")
                members += [_member(inner, m, "dataset") for m in inner.get("dataset") or [] if isinstance(m, dict)]
    else:
        return []
    out = []
    for body in members:
        body = _plain(body)
        uid = body.get("uid") or str(body.get("uri", "")).rsplit("/", 1)[-1]
        out.append(Message(id=str(uid), body=body, headers={"subject": subject, "type": kind}))
    return out


def _member(outer: dict[str, Any], member: dict[str, Any], key: str) -> dict[str, Any]:
    return {**{k: v for k, v in outer.items() if k != key}, **member}


def _plain(value: Any) -> Any:
    """Datetimes as ISO text, for the JSON body."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.timedelta):
        return str(value) if isinstance(value, dt.timedelta) else value.isoformat()
    return value
