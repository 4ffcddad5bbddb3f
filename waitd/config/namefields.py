# SPDX-License-Identifier: MIT
"""The fields of a file's name: `pattern=` (trollsift) and the FORMATs of `key=` and `done=`.

What a FORMAT (`key=`, `done=`) and the handler's environment see of one
file: its name, stem, suffix, directory (`BUILTIN`: name, stem, suffix,
dir, telem) and the fields `pattern=` parses from the name (trollsift,
the pytroll convention).  `of` gives them for a name, or None when the
pattern does not parse it (the caller logs it once and leaves the file
alone); `render` renders a FORMAT with them, or None when the values do
not fit it.

`check_pattern` and `check_format` are the options' converters: a pattern
trollsift can use, a FORMAT whose fields are named; either raises
ValueError for a width no file name has (`MAX_WIDTH`: `{x:999999999999d}`
would take all memory, file after file) or a field within a field's
format specification.  `named` gives the base names of a FORMAT's fields,
which `options` checks against the pattern's.

This module is pure: it reads names, never files.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trollsift

    Parser = trollsift.Parser

BUILTIN = ("name", "stem", "suffix", "dir", "telem")
MAX_WIDTH = 255  # of a field in a FORMAT or pattern: NAME_MAX, the longest file name


def parser(pattern: str) -> Parser:
    """trollsift's parser of a pattern `check_pattern` accepted (trollsift
    is imported by the first `pattern=`: a table without one never loads it)."""
    import trollsift

    return trollsift.Parser(pattern)


def of(pattern: Parser | None, name: str, directory: str, telem: str) -> dict[str, Any] | None:
    """What a FORMAT sees of the file `name`; None when the pattern does
    not parse it."""
    stem, suffix = os.path.splitext(name)
    values: dict[str, Any] = {"name": name, "stem": stem, "suffix": suffix, "dir": directory, "telem": telem}
    if pattern is not None:
        try:
            parsed = pattern.parse(name)
        except Exception:
            # Not only ValueError: trollsift raises what its own code
            # meets (KeyError, OverflowError); a name is input, and input
            # that does not parse is left alone, never a traceback.
            return None
        values = {**parsed, **values}
    return values


def render(fmt: str, values: Mapping[str, Any]) -> str | None:
    """A FORMAT rendered with the file's fields, or None if they do not fit it."""
    try:
        return fmt.format_map(values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, OverflowError):
        return None


def check_pattern(text: str) -> str:
    """A trollsift pattern it can use; ValueError for a width no file name
    has, or a field trollsift cannot parse.  The parser is tried on a name
    here, so that it never raises on the files."""
    if not text:
        raise ValueError("empty")
    try:
        for _, field, spec, _ in string.Formatter().parse(text):
            if field is not None:
                _check_spec(field, spec or "")
        tried = parser(text)
        tried.keys()
    except (TypeError, KeyError) as exc:
        raise ValueError(str(exc)) from None
    try:
        tried.parse("")
    except (ValueError, TypeError):
        pass  # no match: the pattern works
    except Exception as exc:
        raise ValueError(f"trollsift cannot use it: {type(exc).__name__}: {exc}") from None
    return text


def named(fmt: str) -> list[str]:
    """The base names of the fields a format string uses; ValueError if
    malformed or if a field's width could not be a file name's."""
    names = []
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not base or base.isdigit():
            raise ValueError(f"{{{field}}}: fields are named, such as {{name}}")
        _check_spec(field, spec or "")
        names.append(base)
    return names


def _check_spec(field: str, spec: str) -> None:
    """ValueError when a field's format specification asks for more than
    a file name can hold (`{x:999999999999d}` would take all memory or
    overflow, file after file), or holds another field (whose value could)."""
    if "{" in spec:
        raise ValueError(f"{{{field}}}: a format specification may not hold another field ({spec})")
    # Digits are widths and precisions; in a time's strftime format, only
    # those of a directive (%10Y) are: the others are text.
    strftime = re.search(r"%[-_0^#]*[0-9]*[A-Za-z]", spec) is not None
    numbers = re.findall(r"%[-_0^#]*([0-9]+)", spec) if strftime else re.findall(r"[0-9]+", spec)
    for number in numbers:
        if len(number.lstrip("0")) > 4 or int(number) > MAX_WIDTH:
            raise ValueError(f"{{{field}}}: width {number} is more than {MAX_WIDTH} (the most a file name holds)")


def check_format(text: str) -> str:
    """A FORMAT whose fields are named and fit a file name; ValueError if not."""
    named(text)
    if not text:
        raise ValueError("empty")
    return text
