# SPDX-License-Identifier: MIT
"""How a record groups its files: the notation of its member lists, and `Spec`.

A record with `pattern=` and `critical=` and/or `wanted=` (and `all=`)
handles groups of files (`decide.groups`).  `members` reads the member
lists in segment_gatherer's own notation: items joined by `,`, each
`CHANNEL:SEGMENT` or `CHANNEL:FIRST-LAST` (a range, zero-padded as FIRST
is), `:SEGMENT` for a pattern without channels, `:` for the one file of a
pattern with neither; a list it cannot read is a ValueError saying what
is wrong, which `options` makes an error of the table's line.  `Spec` is
what a record's options say of its groups (`Options.group`): the members
expected and accepted, the timeliness, the tolerance of start times, the
slot, the fields that may vary; with `area=`, the `Region` whose
granules make a group (their members predicted, not listed).

This module is pure, as `options` is: it reads text.  What a group is at a
moment (ready, waiting, incomplete) is decided in `decide.groups`.
"""

from __future__ import annotations

from dataclasses import dataclass

TIME_FIELD = "start_time"
SEGMENT_FIELDS = ("channel_name", "segment")
Member = tuple[str, str]  # (channel, segment); "" where the pattern has none


@dataclass(frozen=True, slots=True)
class Region:
    """What a record with area= says of its groups: the areas, a granule's
    length when the name gives no end time, the instrument when the name
    gives none."""

    areas: tuple[str, ...]
    duration_s: float | None
    sensor: str | None


@dataclass(frozen=True, slots=True)
class Spec:
    """How a record groups its files."""

    critical: frozenset[Member]
    wanted: frozenset[Member]
    accepted: frozenset[Member]  # every member a group takes: critical, wanted and all=
    timeliness_s: float
    tolerance_s: float
    slot_min: float | None
    vary: tuple[str, ...]
    region: Region | None = None  # area=: the members are predicted per pass (`decide.regions`)

    @property
    def expected(self) -> frozenset[Member]:
        return self.critical | self.wanted


def members(text: str) -> frozenset[Member]:
    """Parse `CHANNEL:SEG,CHANNEL:FIRST-LAST,:SEG`; ValueError saying what is wrong."""
    out: set[Member] = set()
    for item in text.split(","):
        channel, colon, segments = item.partition(":")
        if not colon:
            raise ValueError(f"{item!r} is not CHANNEL:SEGMENT (write :{item} for no channel)")
        first, dash, last = segments.partition("-")
        if dash and first.isdigit() and last.isdigit() and first.isascii() and last.isascii():
            lo, hi = int(first), int(last)
            if lo > hi or hi - lo > 100_000:
                raise ValueError(f"range {segments!r} runs backwards or is too long")
            width = len(first) if len(first) > 1 and first[0] == "0" else 0
            out.update((channel, f"{i:0{width}d}" if width else str(i)) for i in range(lo, hi + 1))
        elif dash:
            raise ValueError(f"range {segments!r} is not FIRST-LAST in digits")
        else:
            out.add((channel, segments))
    return frozenset(out)
