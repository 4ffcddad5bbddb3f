# SPDX-License-Identifier: MIT
"""`fields=json`: the top-level fields of a file's JSON body.

A file that a source put into a queue is a JSON object (a message's body).
A record with `fields=json` sees its top-level fields as it sees the
fields `pattern=` parses from a name: in `key=` (`key={rb_number}`), in
`done=`, and in the handler's environment (WAITD_F_RB_NUMBER).  `read`
gives them: strings, numbers and booleans as they are, anything else
(an object, a list, null) as its compact JSON text; only fields whose
names are identifiers (the environment's names are made of them).  None
when the file cannot be read, is bigger than MAX_BYTES, or is not a JSON
object: the caller leaves the file alone (logged once).
"""

from __future__ import annotations

import json
from typing import Any

MAX_BYTES = 1 << 20


def read(paths: tuple[str, ...]) -> dict[str, Any] | None:
    """The fields of the first of `paths` that exists (a queue file is in
    incoming, or in pending once claimed); None if it is not a JSON object."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return fields_of(data)
    return None


def fields_of(data: bytes) -> dict[str, Any] | None:
    """The fields of a JSON body; None if it is not an object (or too big)."""
    if len(data) > MAX_BYTES:
        return None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in body.items():
        if not key.isidentifier():
            continue
        if isinstance(value, str | int | float | bool):
            out[key] = value
        else:
            out[key] = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return out
