# SPDX-License-Identifier: MIT
"""waitd.conf's `[source NAME]` sections: work that arrives as messages.

`build` turns one section's raw values (`conf` reads the file's form) into
a checked `Source`, or None with its errors added, each naming the file
and the line.  The keys of every source (`COMMON`) and of each type
(`BY_TYPE`, `SOURCE_TYPES`):

    type          stomp or posttroll (required)
    queue         the waitd queue Q the messages go into (required; an
                  absolute directory; its incoming/, tmp/ and errors/ are
                  made when missing)
    name          FORMAT of a message's file name, from the fields of its
                  body (default: the message's id, or a posttroll uid)
    max-size      the largest body taken, in bytes (default 1 MiB); a
                  bigger one goes to Q/errors
    retry, retry-max   the back-off while the broker is down (1, 60)

    stomp:     host, port, user, password or passcode-file (a file of mode
               0600, read by the source's process: the secret stays out of
               waitd.conf), destinations (required: one or
               more, space or comma separated), cancel (a destination),
               heartbeat (seconds, 0: none; default 10), prefetch (default 100)
    posttroll: topics (required), addresses or nameservers (one of them),
               services

`Source.as_dict` is what the source's child process is given (JSON).
This module is pure: it reads text.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from waitd.config import namefields
from waitd.config.confkeys import _HOST, KEY_OF, Keys, _destination, _seconds, _text, _whole, convert
from waitd.config.errors import TableError

SOURCE_TYPES = ("stomp", "posttroll")
MAX_SIZE = 1 << 20  # the default largest body taken
MAX_SIZE_LIMIT = 1 << 30


def _queue(text: str) -> str:
    if not text.startswith("/") or "\0" in text:
        raise ValueError("expected the absolute path of a waitd queue directory")
    return os.path.normpath(text)


def _queue_file(text: str) -> str:
    if not text.startswith("/") or "\0" in text:
        raise ValueError("expected the absolute path of a file")
    return text


def _format(text: str) -> str:
    namefields.check_format(text)
    if "/" in text:
        raise ValueError("a file name has no /")
    return text


def _list(what: str, check: Callable[[str], Any]) -> Callable[[str], list[str]]:
    def convert(text: str) -> list[str]:
        items = text.replace(",", " ").split()
        if not items:
            raise ValueError(f"expected one or more {what}")
        for item in items:
            check(item)
        return items

    return convert


def _address(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rpartition(":")
    if scheme != "tcp" or not sep or not colon or not port.isdigit() or not host:
        raise ValueError("expected tcp://HOST:PORT addresses, such as tcp://127.0.0.1:40000")
    return text


def _host(text: str) -> str:
    if not _HOST.fullmatch(text):
        raise ValueError("expected host names")
    return text


def _topic(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError("expected topics such as /segment/SEVIRI")
    return text


def _word(text: str) -> str:
    return _text(text)


COMMON: Keys = {
    "type": ("type", str, True),
    "queue": ("queue", _queue, True),
    "name": ("name_format", _format, False),
    "max-size": ("max_size", _whole(1, MAX_SIZE_LIMIT), False),
    "retry": ("retry_s", _seconds, False),
    "retry-max": ("retry_max_s", _seconds, False),
}
BY_TYPE: Mapping[str, Keys] = {
    "stomp": {
        "host": ("host", _text, False),
        "port": ("port", _whole(1, 65535), False),
        "user": ("user", _text, False),
        "password": ("password", _text, False),
        "passcode-file": ("passcode_file", _queue_file, False),
        "destinations": ("destinations", _list("destinations such as /queue/ReductionPending", _destination), True),
        "cancel": ("cancel", _destination, False),
        "heartbeat": ("heartbeat_s", _whole(0, 3600), False),
        "prefetch": ("prefetch", _whole(1, 100_000), False),
    },
    "posttroll": {
        "topics": ("topics", _list("topics", _topic), True),
        "addresses": ("addresses", _list("addresses", _address), False),
        "nameservers": ("nameservers", _list("host names", _host), False),
        "services": ("services", _list("service names", _word), False),
    },
}
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "stomp": {"host": "127.0.0.1", "port": 61613, "heartbeat_s": 10, "prefetch": 100},
    "posttroll": {},
}
_KEY_OF = {**KEY_OF, **{attr: key for keys in (COMMON, *BY_TYPE.values()) for key, (attr, _, _) in keys.items()}}


@dataclass(frozen=True, slots=True)
class Source:
    """One `[source NAME]` section, checked."""

    name: str
    type: str
    line: int  # of its section header
    queue: str
    name_format: str | None = None
    max_size: int = MAX_SIZE
    retry_s: float = 1.0
    retry_max_s: float = 60.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # the type's own keys, checked

    def as_dict(self) -> dict[str, Any]:
        """What the source's process is given (JSON)."""
        return {
            "name": self.name,
            "type": self.type,
            "queue": self.queue,
            "name_format": self.name_format,
            "max_size": self.max_size,
            "retry_s": self.retry_s,
            "retry_max_s": self.retry_max_s,
            "settings": dict(self.settings),
        }

    def described(self) -> str:
        """The source as it will be used (`--check -v`), never its password."""
        keys = " ".join(f"{_KEY_OF.get(k, k)}={_shown(v)}" for k, v in self.settings.items() if k != "password")
        return (
            f"type={self.type} queue={self.queue} name={self.name_format or '(the message id)'} "
            f"max-size={self.max_size} retry={self.retry_s:g} retry-max={self.retry_max_s:g} {keys}"
        )


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def build(
    name: str, line: int, values: Mapping[str, tuple[int, str]], path: str, errors: list[TableError]
) -> Source | None:
    """The section `[source NAME]` (its raw values by key), checked; None
    with its errors added when it is not valid."""
    where = f"[source {name}]"
    lineno, kind = values.get("type", (line, ""))
    if kind not in SOURCE_TYPES:
        what = f"type = {kind}: unknown" if kind else "no type = (it is required)"
        errors.append(TableError(path, lineno, f"{where}: {what} (known: {', '.join(SOURCE_TYPES)})"))
        return None
    keys = {**COMMON, **BY_TYPE[kind]}
    out, ok = convert(values, keys, where, path, line, errors)
    problems = _check(kind, out, set(values))
    errors.extend(TableError(path, line, f"{where}: {p}") for p in problems)
    if not ok or problems:
        return None
    common = {k: out.pop(k) for k in ("queue", "name_format", "max_size", "retry_s", "retry_max_s") if k in out}
    out.pop("type", None)
    return Source(name, kind, line, settings={**DEFAULTS[kind], **out}, **common)


def _check(kind: str, values: Mapping[str, Any], given: set[str]) -> list[str]:
    """What is wrong with a source's keys taken together."""
    problems = []
    if values.get("retry_max_s", 60.0) < values.get("retry_s", 1.0):
        problems.append("retry-max is less than retry")
    secrets = given & {"password", "passcode-file"}
    if kind == "stomp" and len(secrets) > 1:
        problems.append("give password = or passcode-file =, not both")
    elif kind == "stomp" and ("user" in given) != bool(secrets):
        problems.append("give user = with password = or passcode-file =")
    if kind == "stomp" and values.get("cancel") in values.get("destinations", ()):
        problems.append("cancel = is one of destinations =: cancels and work need destinations of their own")
    if kind == "posttroll" and ("addresses" in given) == ("nameservers" in given):
        problems.append("give one of addresses = (connect to publishers) and nameservers = (find them)")
    return problems
