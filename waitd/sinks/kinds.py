# SPDX-License-Identifier: MIT
"""The kinds of sink, and what each takes from the outbox.

Each kind of sink is a class with `open` (connect, bind and announce,
open the file: the sink's process calls it when it starts, before any
event), `send` (deliver a batch of events, all of them, or raise; it
opens again what a failure closed), `flush` (what `send` delivered, made
durable: called before the place after it is saved), `reopen` (HUP) and
`close`; `wants` says which events it delivers at all (the others are
passed over).  `send`, then `flush`, return only once the batches are
delivered as far as the kind can tell (a broker's kinds deliver at
`send`; `jsonl` syncs its file at `flush`, one fdatasync for many
batches).  Any exception means "not delivered": the sink's process backs
off and sends again what it had not passed.

    jsonl      every event, appended to `path` (`sinks.jsonl`)
    posttroll  `ready` events as pytroll messages (`sinks.posttroll`)
    stomp      `started` and `ended` events to a STOMP broker (`sinks.stomp`)

`make` builds a kind's sink from its settings; `TAKES` names the event
types each kind takes, so that waitd writes to the outbox only what some
sink will deliver (`daemon.events`).  The libraries (posttroll, stomp.py)
are imported when a sink of that kind opens, so a waitd without such
sinks needs neither.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from waitd.formats import events as ev
from waitd.sinks.jsonl import JsonLines
from waitd.sinks.posttroll import Posttroll
from waitd.sinks.stomp import Stomp

# What each kind takes from the outbox (None: every event).
TAKES: dict[str, frozenset[str] | None] = {
    "jsonl": None,
    "posttroll": frozenset({ev.Ready.type}),
    "stomp": frozenset({ev.Started.type, ev.Ended.type}),
}


class Sink(Protocol):
    def wants(self, event: ev.Event) -> bool: ...
    def open(self) -> None: ...
    def send(self, events: list[ev.Event]) -> None: ...
    def flush(self) -> None: ...
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
