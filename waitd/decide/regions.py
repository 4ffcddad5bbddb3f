# SPDX-License-Identifier: MIT
"""Regions: the granules of a polar pass that cover an area, as a group.

A record with `area=` handles groups whose members are predicted rather
than listed, as pytroll's region collector (pytroll-collectors) gathers
them.  Each file's pattern fields give its granule: `platform_name`,
`start_time`, `end_time` (or start plus `duration=`) and `sensor` (or
`sensor=`).  From the orbital elements of that platform nearest in time
to the granule (within MAX_ELEMENTS_AGE), trollsched draws the
instrument's swath over the granule's time (`Pass.area_coverage`):

- a granule that does not overlap the area is no member (said once);
  a swath that a circle of the sphere holds apart from one holding the
  area cannot overlap it, and is known off the area without the
  polygons' intersection (the costly part: `_cap`, `_apart`);
- the first granule of a pass that does overlap it predicts the pass:
  granule after granule forward and backward, each one `duration` on,
  while the swath still overlaps the area; those start times are the
  group's expected members, and the earliest names the pass;
- a granule whose start is within TOLERANCE of a predicted start of a
  known pass is that member, at no cost: what is computed is kept per
  (platform, instrument), the predictions and the granules found off the
  area, so a pass costs a few swath overlaps whatever its granules do.

The group is then a `groups.Group` with its `expected` members, and
`groups.look` says when it runs (all in, or its timeliness with those
that are), as for listed groups.  `RegionIndex` has `groups.Index`'s
interface, so the spool's gatherer (`spool/gather.py`) files names into
either.  The geometry is pyresample's, pyorbital's and trollsched's: I/O-
free computation; the areas and the elements come as data
(`config.geodata`), and this module reads no file and has no clock.
"""

from __future__ import annotations

import datetime
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyorbital.orbital import Orbital
from pyorbital.tlefile import SATELLITES
from pyresample.boundary import AreaDefBoundary
from trollsched.satpass import Pass

from waitd.config.geodata import Elements, Geodata
from waitd.config.groupspec import Member, Spec
from waitd.decide.groups import Group, Quiet, forget

TOLERANCE = datetime.timedelta(seconds=3)  # a granule is a predicted one this close, as the collector has it
MAX_ELEMENTS_AGE = datetime.timedelta(days=14)  # orbital elements further from a granule are none
MAX_PASS_GRANULES = 200  # a prediction stops here whatever the swath does
MAX_GRANULE = datetime.timedelta(hours=2)  # a granule longer than this is no granule of a pass
KEPT_PASSES = 256  # passes remembered per (platform, instrument)
_STAMP = "%Y%m%dT%H%M%S"


@dataclass(frozen=True, slots=True)
class Granule:
    platform: str
    sensor: str
    start: datetime.datetime  # naive, UTC
    end: datetime.datetime


def granule(values: Mapping[str, Any], spec: Spec) -> Granule | str:
    """A file's granule from its pattern fields, or why it has none."""
    assert spec.region is not None
    platform, start = values.get("platform_name"), values.get("start_time")
    if not isinstance(platform, str) or not isinstance(start, datetime.datetime):
        return "its name gives no platform_name and start_time"
    start = _naive(start)
    end = values.get("end_time")
    if isinstance(end, datetime.datetime):
        end = _naive(end)
        if end.year == 1900:  # a time of day only: the start's day, or the next
            end = datetime.datetime.combine(start.date(), end.time())
            if end < start:
                end += datetime.timedelta(days=1)
    elif spec.region.duration_s is not None:
        end = start + datetime.timedelta(seconds=spec.region.duration_s)
    else:
        return "its name gives no end_time, and the record has no duration="
    if not start < end <= start + MAX_GRANULE:
        return f"its end_time {end:%Y-%m-%dT%H:%M:%S} is not after its start_time, or over {MAX_GRANULE} after it"
    sensor = values.get("sensor") or spec.region.sensor
    if isinstance(sensor, list | tuple):
        sensor = sensor[0] if sensor else None
    if not isinstance(sensor, str) or not sensor:
        return "its name gives no sensor, and the record has no sensor="
    return Granule(platform, sensor.split(",")[0], start, end)


def _naive(t: datetime.datetime) -> datetime.datetime:
    if t.tzinfo is None:
        return t
    return t.astimezone(datetime.UTC).replace(tzinfo=None)


def nearest(elements: tuple[Elements, ...], platform: str, when: datetime.datetime) -> Elements | str:
    """The platform's element set nearest in time, or why there is none."""
    number = SATELLITES.get(platform.strip().upper())
    if number is None:
        return f"pyorbital knows no satellite number for platform {platform!r}"
    sets = [e for e in elements if e.number == number.strip()]
    if not sets:
        return f"no orbital elements for {platform} (number {number}) in the TLE directory"
    best = min(sets, key=lambda e: abs(e.epoch - when))
    if abs(best.epoch - when) > MAX_ELEMENTS_AGE:
        return f"no orbital elements for {platform} within {MAX_ELEMENTS_AGE.days} days of {when:%Y-%m-%dT%H:%M:%S}"
    return best


@dataclass(slots=True)
class _Pass:
    """A predicted pass of one platform over the area."""

    starts: tuple[datetime.datetime, ...]  # the granules predicted to overlap the area, in order
    gid: str


@dataclass(frozen=True, slots=True)
class _Outline:
    """An area as trollsched's `area_coverage` takes it ready made (its
    `poly`), and a circle of the sphere that holds it (`_cap`)."""

    poly: Any  # pyresample SphPolygon
    cap: tuple[Any, float] | None


def _cap(poly: Any) -> tuple[Any, float] | None:
    """A circle on the unit sphere (centre, angular radius) holding the
    polygon: its vertices' mean direction and the farthest vertex from it.
    Under a hemisphere the circle is convex, so the polygon's edges (arcs
    of great circles) stay in it with their ends; the polygon's inside is
    the small side when its area is no more than the circle's.  None when
    that cannot be said."""
    points = np.asarray(poly.cvertices, dtype=np.float64)
    centre = points.mean(axis=0)
    norm = float(np.linalg.norm(centre))
    if norm < 1e-9:
        return None
    centre /= norm
    radius = float(np.arccos(np.clip(points @ centre, -1.0, 1.0)).max())
    if radius >= np.pi / 2 - 1e-6 or poly.area() > 2 * np.pi * (1 - np.cos(radius)) + 1e-9:
        return None
    return centre, radius


def _apart(a: tuple[Any, float] | None, b: tuple[Any, float] | None) -> bool:
    """Two circles that do not meet: what is in one misses what is in the other."""
    if a is None or b is None:
        return False
    angle = float(np.arccos(np.clip(a[0] @ b[0], -1.0, 1.0)))
    return angle > a[1] + b[1] + 1e-6


class Geometry:
    """The swaths of one area, computed once each (caches per platform).

    Whether a swath overlaps the area is trollsched's `area_coverage`, with
    the area's outline computed once; a swath whose circle (`_cap`) is
    apart from the area's cannot overlap it, and skips the polygons'
    intersection, the costly part."""

    def __init__(self, area: Any, elements: tuple[Elements, ...]) -> None:
        poly = AreaDefBoundary(area, frequency=100).contour_poly  # as area_coverage draws an area
        self.area = _Outline(poly, _cap(poly))
        self.elements = elements
        self._orbitals: dict[tuple[str, str], Orbital] = {}
        self.computed = 0  # swath overlaps computed (the bench counts them)

    def orbital(self, g: Granule) -> Orbital | str:
        found = nearest(self.elements, g.platform, g.start)
        if isinstance(found, str):
            return found
        key = (found.line1, found.line2)
        if key not in self._orbitals:
            self._orbitals[key] = Orbital(g.platform, line1=found.line1, line2=found.line2)
        return self._orbitals[key]

    def covers(self, orbital: Orbital, g: Granule, start: datetime.datetime) -> bool:
        """Does the instrument's swath over [start, start + length) overlap the area?"""
        self.computed += 1
        with warnings.catch_warnings():
            # The libraries' notes on their own deprecations, once a swath:
            # nothing the user of waitd can act on.
            warnings.simplefilter("ignore")
            swath = Pass(g.platform, start, start + (g.end - g.start), orb=orbital, instrument=g.sensor)
            if _apart(_cap(swath.boundary.contour_poly), self.area.cap):
                return False
            return bool(swath.area_coverage(self.area) > 0)

    def predict(self, orbital: Orbital, g: Granule) -> tuple[datetime.datetime, ...]:
        """The starts of the pass's granules that overlap the area, from one
        that does: step by the granule's length both ways while they do."""
        step = g.end - g.start
        found = [g.start]
        for sign in (1, -1):
            t = g.start
            for _ in range(MAX_PASS_GRANULES):
                t += sign * step
                if not self.covers(orbital, g, t):
                    break
                found.append(t)
        return tuple(sorted(found))


class RegionIndex:
    """Which (area, pass) group each file belongs to: `groups.Index`'s
    interface, the members predicted."""

    def __init__(self, spec: Spec, telem: str, geo: Geodata) -> None:
        assert spec.region is not None
        self.spec = spec
        self.telem = telem
        self.area = spec.region.areas[0]  # one: the table makes a record per area (`table.per_area`)
        area = geo.area(self.area)
        assert not isinstance(area, str), area  # the table refuses the record otherwise
        self.geometry = Geometry(area, geo.elements)
        self.groups: dict[str, Group] = {}
        self._of: dict[str, tuple[Group, Member]] = {}
        self._passes: dict[tuple[str, str], OrderedDict[datetime.datetime, _Pass]] = {}
        self._off: dict[tuple[str, str], set[datetime.datetime]] = {}  # granule starts known off the area

    def group_of(self, name: str) -> tuple[Group, Member] | None:
        return self._of.get(name)

    def add(self, name: str, values: Mapping[str, Any], arrival_ns: int) -> tuple[Group, Member] | str:
        """File a name into its (area, pass) group; or why it is no member."""
        self.remove(name)
        g = granule(values, self.spec)
        if isinstance(g, str):
            return g
        found = self._place(g)
        if isinstance(found, str):
            return found
        pass_, member = found
        group = self.groups.get(pass_.gid)
        if group is None:
            expected = frozenset(("", t.strftime(_STAMP)) for t in pass_.starts)
            group = Group(pass_.gid, (), pass_.starts[0], arrival_ns, expected=expected)
            self.groups[group.gid] = group
        elif member in group.files and group.files[member] != name:
            return f"a second file for granule {member[1]} of group {group.gid} ({group.files[member]})"
        group.files[member] = name
        group.first_arrival_ns = min(group.first_arrival_ns, arrival_ns)
        self._of[name] = (group, member)
        return group, member

    def _place(self, g: Granule) -> tuple[_Pass, Member] | str:
        """The pass a granule is a predicted member of, computing it when it
        is new; or why the granule is no member."""
        key = (g.platform, g.sensor)
        passes = self._passes.setdefault(key, OrderedDict())
        off = self._off.setdefault(key, set())
        for pass_ in passes.values():
            for t in pass_.starts:
                if abs(t - g.start) < TOLERANCE:
                    return pass_, ("", t.strftime(_STAMP))
        if any(abs(t - g.start) < TOLERANCE for t in off):
            return self._off_area(g)
        try:
            orbital = self.geometry.orbital(g)
            if isinstance(orbital, str):
                return orbital
            if not self.geometry.covers(orbital, g, g.start):
                off.add(g.start)
                return self._off_area(g)
            starts = self.geometry.predict(orbital, g)
        except Exception as exc:  # noqa: BLE001 (the libraries' own: an instrument pyorbital does not know, say)
            return f"cannot draw the swath of {g.sensor} on {g.platform}: {type(exc).__name__}: {exc}"
        step = g.end - g.start
        off.update((starts[0] - step, starts[-1] + step))
        pass_ = _Pass(starts, f"{self.telem},area={self.area},platform_name={g.platform},pass={starts[0]:{_STAMP}}")
        passes[starts[0]] = pass_
        while len(passes) > KEPT_PASSES:
            passes.popitem(last=False)
        if len(off) > 4 * KEPT_PASSES:
            off.clear()  # recomputed when needed
        return pass_, ("", g.start.strftime(_STAMP))

    def _off_area(self, g: Granule) -> str:
        return Quiet(
            f"its granule ({g.platform} {g.sensor} {g.start:%Y-%m-%dT%H:%M:%S}) does not overlap area {self.area}"
        )

    def remove(self, name: str) -> None:
        forget(self.groups, self._of, name)
