# SPDX-License-Identifier: MIT
"""A run's response: the one JSON object a handler may leave at WAITD_RESPONSE.

A handler may write one JSON object, at most `MOST` bytes, to the file
named by WAITD_RESPONSE.  `parse` reads its bytes into a `Response`: the
object as written (`document`), and the two keys waitd itself acts on:

    retry_in  a number of seconds, 0 or more: on exit 75, the delay
              before the retry (bounded by the caller: never above the
              retry cap)
    skip      a string: on exit 0, the run ends as skipped (why)

Every other key is the handler's own, carried as it is (in the `ended`
event, and by a `format = isis` sink into its reply).  A file that is
empty or absent is no response.  `parse` raises `BadResponse`, saying
what is wrong, for a file that is too big, not UTF-8 JSON, not an object,
or whose `retry_in` or `skip` has the wrong kind of value: the caller
logs it and the run's outcome stays what its exit says.

`tail` gives the last few KiB of a text (a run's log) as a string, for a
reply that carries a log.

This module reads and writes no file; it parses bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MOST = 65536  # bytes of a response
TAIL = 4096  # bytes of a log's tail in a reply


class BadResponse(ValueError):
    """A response waitd cannot take: why, in words."""


@dataclass(frozen=True, slots=True)
class Response:
    """A run's response: the object the handler wrote at WAITD_RESPONSE."""

    document: Mapping[str, Any] = field(default_factory=dict)

    @property
    def retry_in(self) -> float | None:
        value = self.document.get("retry_in")
        return float(value) if value is not None else None

    @property
    def skip(self) -> str | None:
        value = self.document.get("skip")
        return str(value) if value is not None else None


def parse(data: bytes) -> Response | None:
    """The response in a file's bytes; None for an empty file; BadResponse."""
    if len(data) > MOST:
        raise BadResponse(f"more than {MOST} bytes")
    if not data.strip():
        return None
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadResponse(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BadResponse(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadResponse("not JSON: nested too deeply") from None
    if not isinstance(document, dict):
        raise BadResponse(f"not a JSON object but {type(document).__name__}")
    retry_in = document.get("retry_in")
    if retry_in is not None and not (
        isinstance(retry_in, int | float) and not isinstance(retry_in, bool) and math.isfinite(retry_in)
    ):
        raise BadResponse(f"retry_in is {retry_in!r}, not a number of seconds")
    skip = document.get("skip")
    if skip is not None and not isinstance(skip, str):
        raise BadResponse(f"skip is {skip!r}, not a string saying why")
    return Response(document)


def tail(data: bytes, most: int = TAIL) -> str:
    """The last `most` bytes of a text, from the start of a line if one
    begins in them, decoded leniently."""
    if len(data) > most:
        data = data[-most:]
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data = data[newline + 1 :]
    return data.decode("utf-8", "replace")
