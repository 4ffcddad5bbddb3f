# SPDX-License-Identifier: MIT
"""What `waitd reduce` reads from an ISIS message, and the response it writes.

An ISIS reduction message (a JSON object) names the data (`data`, or
`file_path` in newer messages), the reduction script (`reduction_script`:
a path to reduce.py, or the script's text) and the arguments that override
the script's `reduce_vars` (`reduction_arguments`: `standard_vars` and
`advanced_vars`, each an object of names and values).  `of` reads them
into a `Reduction`, raising `BadMessage` saying what is wrong; a message
with no script at all is one to skip (`Reduction.script` None).

`overlay` gives a `reduce_vars` dictionary with the message's values over
the script's defaults, as ISIS's PostProcessAdmin does: the message's
names replace or add to the defaults, the rest stay.

`response` is the document `waitd reduce` leaves at WAITD_RESPONSE
(formats.response): the output directories it copied to, the archive,
the tail of the script's output, and, for a failure, `message` (and
`retry_in` for a failure the script asked to be retried).

This module is pure: it reads no file and runs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from waitd.formats.response import tail

VARS = ("standard_vars", "advanced_vars")  # reduce_vars' dictionaries a message may override


class BadMessage(ValueError):
    """A message `waitd reduce` cannot work on: why, in words."""


@dataclass(frozen=True, slots=True)
class Reduction:
    data: str  # the input file
    script: str | None  # a path to the script, or its text; None: nothing to run
    arguments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # by VARS

    @property
    def script_is_text(self) -> bool:
        """The message holds the script itself, not a path to it."""
        return self.script is not None and ("\n" in self.script or not self.script.startswith("/"))


def of(message: Any) -> Reduction:
    """The reduction a message asks for; BadMessage if it cannot be done."""
    if not isinstance(message, Mapping):
        raise BadMessage("the message is not a JSON object")
    data = message.get("data") if message.get("data") is not None else message.get("file_path")
    if not isinstance(data, str) or not data:
        raise BadMessage("the message has no data (or file_path): the input file")
    script = message.get("reduction_script")
    if script is not None and not isinstance(script, str):
        raise BadMessage("reduction_script is not a string (a path, or the script's text)")
    arguments = message.get("reduction_arguments") or {}
    if not isinstance(arguments, Mapping):
        raise BadMessage("reduction_arguments is not an object")
    found: dict[str, Mapping[str, Any]] = {}
    for name in VARS:
        values = arguments.get(name) or {}
        if not isinstance(values, Mapping):
            raise BadMessage(f"reduction_arguments.{name} is not an object")
        found[name] = values
    return Reduction(data, script or None, found)


def overlay(defaults: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """A reduce_vars dictionary: the message's values over the defaults."""
    return {**(defaults or {}), **given}


def outputs(returned: Any) -> list[str]:
    """The directories a script's main() returned: None, one, or several."""
    if returned is None:
        return []
    if isinstance(returned, str | os.PathLike):
        return [os.fspath(returned)]
    if isinstance(returned, Iterable) and all(isinstance(d, str | os.PathLike) for d in returned):
        return [os.fspath(d) for d in returned]
    raise BadMessage(f"main() returned {returned!r}, not a directory or a list of them")


def response(
    copied: list[str],
    archive: str | None,
    log: bytes,
    message: str | None = None,
    retry_in: float | None = None,
    skip: str | None = None,
) -> dict[str, Any]:
    """The response document of a reduction."""
    doc: dict[str, Any] = {"output_dirs": copied, "log": tail(log)}
    if archive is not None:
        doc["archive"] = archive
    if message is not None:
        doc["message"] = message
    if retry_in is not None:
        doc["retry_in"] = retry_in
    if skip is not None:
        doc["skip"] = skip
    return doc
