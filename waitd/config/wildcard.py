# SPDX-License-Identifier: MIT
"""Name templates, incoming(5): fnmatch(3) with FNM_PERIOD, as a regular expression.

`matcher` compiles a record's name template into a predicate on file names
that answers as glibc's `fnmatch(template, name, FNM_PERIOD)` does in the C
locale: `*`, `?`, bracket expressions with ranges, negation (`!` or `^`) and
the twelve POSIX character classes with their ASCII meaning, `\\` escaping
the next character inside and outside brackets, a leading dot of a name
matched only by a literal dot at the template's start, and a `[` that no
`]` closes taken as a literal `[`.  It compiles into one regular expression;
each `*` but the last matches the shortest stretch, once (an atomic group),
as glibc does, so that no name makes the matching backtrack without end.
The predicate, a `Matcher`, also takes many names at once (`select`: a
first listing's 100,000, each asked in C), and `but` makes one that
leaves some names out (waitd's own files in PASSDIR).

`check` raises ValueError, saying why, for what glibc cannot match or
waitd does not support: a template ending in a lone backslash (fnmatch(3)
matches no name with it), a range left open at the end, a character class
other than the twelve, an equivalence class `[=a=]` or a collating symbol
`[.a.]` (any unescaped `[` followed by `.` or `=` inside brackets), and a
`[` followed by `:` inside brackets that does not begin a class.  `matcher`
refuses the same.  The caller adds the file and line.

Limits: characters compare as Unicode code points, one at a time, and a
range is the code points between its ends; the tests compare with glibc on
ASCII only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import filterfalse

# The classes of the C/POSIX locale, as bodies of regular expression sets.
CLASSES: dict[str, str] = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t-\\r ",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}
_CLASS = re.compile(r"\[:([a-y]*):\]")
_STAR = None  # marks a `*` among the parts of a template


def matcher(template: str) -> Matcher:
    """Return a predicate matching names against `template`, as fnmatch(3) does."""
    # A leading dot only where the template has one: the regex says so
    # itself, so that `Matcher.select` asks nothing of a name in Python.
    dot_ok = template.startswith((".", "\\."))
    return Matcher(re.compile(("" if dot_ok else r"(?!\.)") + _translate(template), re.DOTALL).fullmatch)


class Matcher:
    """A template's predicate on names: `matcher(template)(name)`, or many
    names at once with `select` (a listing of 100,000 names at start, each
    asked in C); `but(own)` is the same one that never matches a name
    `own` says is not to match."""

    __slots__ = ("_fullmatch", "_own")

    def __init__(self, fullmatch: Callable[[str], object], own: Callable[[str], bool] | None = None) -> None:
        self._fullmatch = fullmatch
        self._own = own

    def __call__(self, name: str) -> bool:
        return self._fullmatch(name) is not None and not (self._own is not None and self._own(name))

    def select(self, names: Iterable[str]) -> list[str]:
        """The names that match, in their order."""
        chosen = filter(self._fullmatch, names)
        return list(chosen if self._own is None else filterfalse(self._own, chosen))

    def but(self, own: Callable[[str], bool]) -> Matcher:
        return Matcher(self._fullmatch, own)


def check(template: str) -> None:
    """Raise ValueError saying why, if `template` is one the table refuses."""
    _translate(template)


def _translate(template: str) -> str:
    """The regular expression (without anchors) for a template, or ValueError."""
    if "\0" in template:
        raise ValueError("has a NUL character, which no file name has")
    parts: list[str | None] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        i += 1
        if c == "*":
            parts.append(_STAR)
        elif c == "?":
            parts.append(".")
        elif c == "\\":
            if i == n:
                raise ValueError("ends in a lone backslash, which fnmatch(3) matches with no name (write \\\\ for one)")
            parts.append(re.escape(template[i]))
            i += 1
        elif c == "[":
            bracket = _bracket(template, i)
            if bracket.end is None:  # no `]` closes it: a literal `[`
                parts.append(re.escape(c))
            else:
                parts.append(bracket.regex())
                i = bracket.end
        else:
            parts.append(re.escape(c))
    return _join(parts)


def _join(parts: list[str | None]) -> str:
    """Join the parts; each `*` before the last takes the shortest stretch, once."""
    segments: list[str] = [""]
    for part in parts:
        if part is _STAR:
            if segments[-1] or len(segments) == 1:
                segments.append("")
        else:
            segments[-1] += part
    if len(segments) == 1:
        return segments[0]
    head, *middle, tail = segments
    return head + "".join(f"(?>.*?{s})" for s in middle) + ".*" + tail


@dataclass(slots=True)
class _Bracket:
    """A bracket expression of a template as read: its items and where it ends."""

    negate: bool = False
    items: list[str] = field(default_factory=list)
    end: int | None = None  # index after the closing `]`; None: unclosed

    def regex(self) -> str:
        if not self.items:
            return "." if self.negate else "(?!)"
        return f"[{'^' if self.negate else ''}{''.join(self.items)}]"

    def add(self, lo: str, hi: str | None = None) -> None:
        if hi is None:
            self.items.append(re.escape(lo))
        elif lo <= hi:  # a reversed range is empty, as in fnmatch(3)
            self.items.append(f"{re.escape(lo)}-{re.escape(hi)}")


def _bracket(t: str, i: int) -> _Bracket:
    """Read a bracket expression from just after its `[`, in fnmatch(3)'s order.

    Items are read one by one; a `]` ends the expression only after an
    item, so `[]a]` and `[!]a]` hold a `]`.  Reaching the end of the
    template instead leaves `end` None.
    """
    n = len(t)
    b = _Bracket(negate=t[i : i + 1] in ("!", "^"))
    i += b.negate
    while i < n:
        c = t[i]
        i += 1
        if c == "\\":
            if i == n:
                raise ValueError("ends in a lone backslash, which fnmatch(3) matches with no name (write \\\\ for one)")
            c = t[i]
            i += 1
        elif c == "[" and i < n and t[i] in ":.=":
            m = _CLASS.match(t, i - 1)
            if t[i] != ":" or m is None or m.group(1) not in CLASSES:
                raise ValueError(_refusal(t, i - 1))
            b.items.append(CLASSES[m.group(1)])
            i = m.end()
            if i < n and t[i] == "]":
                b.end = i + 1
                return b
            continue
        if t.startswith("-", i) and not t.startswith("]", i + 1):
            i = _range(t, i + 1, c, b)
        else:
            b.add(c)
        if i < n and t[i] == "]":
            b.end = i + 1
            return b
    return b


def _range(t: str, i: int, lo: str, b: _Bracket) -> int:
    """Read the end of a range `lo-hi` at `i`; add it; return the index after it."""
    if i == len(t):
        raise ValueError("ends in an open range, which fnmatch(3) matches with no name")
    hi = t[i]
    i += 1
    if hi == "\\":
        if i == len(t):
            raise ValueError("ends in a lone backslash, which fnmatch(3) matches with no name (write \\\\ for one)")
        hi = t[i]
        i += 1
    elif hi == "[" and i < len(t) and t[i] in ":.=":
        raise ValueError(f"has a range ending in '[' followed by '{t[i]}' (write \\[ for a '[' that ends a range)")
    b.add(lo, hi)
    return i


def _refusal(t: str, at: int) -> str:
    """Why an unescaped `[` followed by `:`, `.` or `=` inside brackets is refused."""
    m = _CLASS.match(t, at)
    if m is not None:
        return f"has an unknown character class [:{m.group(1)}:] (known: {', '.join(CLASSES)})"
    kind = {":": "a character class", ".": "a collating symbol", "=": "an equivalence class"}[t[at + 1]]
    what = t[at : at + 2]
    if what == "[:":
        return f"has '[:' inside brackets that is not {kind} such as [:digit:] (write \\[ for a '[')"
    return f"has '{what}' inside brackets: {kind} is not supported (write \\[ for a '[')"
