# SPDX-License-Identifier: MIT
"""waitd.conf's keys: for each section, the keys it takes and what each value may be.

`DAEMON`, `CELERY`, `REDUCE` (`waitd reduce`'s), and `COMMON` with
`BY_TYPE` (a sink's keys: those of
every sink and those of its type, `SINK_TYPES`) map each key to the
attribute or setting it fills, its converter and whether it is required;
`DEFAULTS` are a sink type's settings when not given, and `KEY_OF` names
the key of an attribute.  Each converter returns the value as used or
raises ValueError saying what it expected: `conf` makes that an error of
the line.  `host_port` and `url` are also the command line's
(`--metrics`, `waitd worker --broker`).

This module is pure: it reads text.  The file's form (sections, comments,
keys given twice) and the checks of keys taken together are `conf`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from waitd.config.errors import TableError
from waitd.config.options import MAX_JOBS

SINK_TYPES = ("jsonl", "posttroll", "stomp")
STOMP_FORMATS = ("waitd", "isis")  # a stomp sink's bodies: waitd's event JSON, or ISIS's replies
MAX_BACKOFF_S = 3600
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9_.:-]+|\[[0-9A-Fa-f:.]+\]")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
_DESTINATION = re.compile(r"/\S+")


def _whole(least: int, most: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not least <= Decimal(text) <= most:
            raise ValueError(f"expected a whole number from {least} to {most}")
        return int(text)

    return convert


def _seconds(text: str) -> float:
    if not _DECIMAL.fullmatch(text) or not Decimal("0.01") <= Decimal(text) <= MAX_BACKOFF_S:
        raise ValueError(f"expected a plain decimal number of seconds from 0.01 to {MAX_BACKOFF_S}")
    return float(text)


def _name(text: str) -> str:
    if not NAME.fullmatch(text):
        raise ValueError("expected a name of letters, digits, _ . - (at most 64)")
    return text


def host_port(text: str, default_host: str | None = None, least_port: int = 1) -> tuple[str, int]:
    """`HOST:PORT` (or `PORT` alone with a default host); ValueError if bad.
    An IPv6 address is written in brackets: `[::1]:9100`."""
    host, colon, port = text.rpartition(":")
    if not colon:
        if default_host is None:
            raise ValueError("expected HOST:PORT")
        host = default_host
    if not _HOST.fullmatch(host) or (":" in host and not host.startswith("[")):
        raise ValueError(f"bad host {host!r} (an IPv6 address goes in brackets: [::1]:PORT)")
    return host.strip("[]"), _whole(least_port, 65535)(port)


def _metrics(text: str) -> tuple[str, int]:
    return host_port(text, "127.0.0.1")


def url(text: str) -> str:
    if not _URL.fullmatch(text):
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0")
    return text


def _records(text: str) -> frozenset[int]:
    numbers = text.replace(",", " ").split()
    if not numbers or not all(n.isascii() and n.isdigit() and 1 <= int(n) <= 1_000_000 for n in numbers):
        raise ValueError("expected record numbers, such as 1 3")
    return frozenset(int(n) for n in numbers)


def _text(text: str) -> str:
    if not text:
        raise ValueError("empty")
    return text


def _path(text: str) -> str:
    if not text or "\0" in text:
        raise ValueError("expected a file name (relative to PASSDIR, or absolute)")
    return text


def _absolute(text: str) -> str:
    if not text.startswith("/") or "\0" in text:
        raise ValueError("expected an absolute directory name")
    return text


def _destination(text: str) -> str:
    if not _DESTINATION.fullmatch(text):
        raise ValueError("expected a destination such as /queue/ReductionComplete")
    return text


def _address(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if scheme != "tcp" or not sep:
        raise ValueError("expected tcp://HOST:PORT, such as tcp://127.0.0.1:40000")
    if rest.startswith("*"):
        raise ValueError("give the address to bind, not *: waitd binds one interface")
    host_port(rest, least_port=0)
    return text


def _nameservers(text: str) -> list[str] | bool:
    if text.lower() in ("false", "no", "none"):
        return False
    names = text.replace(",", " ").split()
    if not names or not all(_HOST.fullmatch(n) for n in names):
        raise ValueError("expected false, or host names of posttroll nameservers")
    return names


def _sensors(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ValueError("expected instrument names joined by commas, such as seviri or avhrr-3,hirs-4")
    return names


def _stomp_format(text: str) -> str:
    if text not in STOMP_FORMATS:
        raise ValueError(f"expected one of {', '.join(STOMP_FORMATS)}")
    return text


# Each section's keys: key -> (attribute or setting name, converter, required).
Keys = Mapping[str, tuple[str, Callable[[str], Any], bool]]
DAEMON: Keys = {
    "jobs": ("jobs", _whole(1, MAX_JOBS), False),
    "instance": ("instance", _name, False),
    "metrics": ("metrics", _metrics, False),
    "http": ("http", _metrics, False),
}


def _yes_no(text: str) -> bool:
    if text not in ("yes", "no"):
        raise ValueError("expected yes or no")
    return text == "yes"


HTTP: Keys = {"control": ("control", _yes_no, False), "token": ("token", _path, False)}
CELERY: Keys = {"broker": ("broker", url, True), "queue": ("queue", _name, False)}
REDUCE: Keys = {"archive": ("archive", _absolute, False)}
REGIONS: Keys = {"areas": ("areas", _path, True), "tle": ("tle", _path, True)}
COMMON: Keys = {
    "type": ("type", str, True),
    "records": ("records", _records, False),
    "retry": ("retry_s", _seconds, False),
    "retry-max": ("retry_max_s", _seconds, False),
}
BY_TYPE: Mapping[str, Keys] = {
    "jsonl": {"path": ("path", _path, True)},
    "posttroll": {
        "address": ("address", _address, True),
        "nameservers": ("nameservers", _nameservers, False),
        "name": ("name", _name, False),
        "sensor": ("sensor", _sensors, False),
    },
    "stomp": {
        "host": ("host", _text, False),
        "port": ("port", _whole(1, 65535), False),
        "user": ("user", _text, False),
        "password": ("password", _text, False),
        "started": ("started", _destination, False),
        "complete": ("complete", _destination, False),
        "error": ("error", _destination, False),
        "skipped": ("skipped", _destination, False),
        "format": ("format", _stomp_format, False),
    },
}
KEY_OF = {attr: key for keys in (COMMON, *BY_TYPE.values()) for key, (attr, _, _) in keys.items()}
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "jsonl": {},
    "posttroll": {"nameservers": False, "name": "waitd"},
    "stomp": {"host": "127.0.0.1", "port": 61613, "format": "waitd"},
}


def convert(
    values: Mapping[str, tuple[int, str]], keys: Keys, where: str, path: str, line: int, errors: list[TableError]
) -> tuple[dict[str, Any], bool]:
    """A section's raw values (line, text by key) read by `keys`: the values
    read well, by attribute, and whether all were; each problem (an unknown
    key, a bad value, a required key missing) added to `errors` with its
    line, the section named by `where` (its header is on `line`)."""
    out: dict[str, Any] = {}
    ok = True
    for key, (at, raw) in values.items():
        if key not in keys:
            errors.append(TableError(path, at, f"{where}: unknown key {key!r} (known: {', '.join(keys)})"))
            ok = False
            continue
        attr, read, _ = keys[key]
        try:
            out[attr] = read(raw)
        except ValueError as exc:
            errors.append(TableError(path, at, f"{where}: {key} = {raw}: {exc}"))
            ok = False
    for key, (_, _, required) in keys.items():
        if required and key not in values:
            errors.append(TableError(path, line, f"{where}: no {key} = (it is required)"))
            ok = False
    return out, ok
