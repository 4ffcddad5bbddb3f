# SPDX-License-Identifier: MIT
"""The geometry of regions as data: the areas and the orbital elements.

A record with `area=` (incoming(5)) needs waitd.conf's `[regions]`: the
area definitions (`areas = FILE`, pyresample's YAML) and the orbital
elements (`tle = DIR`, files of two-line element sets, as pyorbital reads
them).  `load` reads both for a PASSDIR and hands them over as one
`Geodata`: the areas file, each area built (pyresample's area definition)
when first asked for, and every element set found, with its satellite
number and epoch.  `decide.regions` computes with them and reads no file.

What cannot be used is said, each problem naming the file (and the line
where the YAML parser knows it): no `[regions]` section, an areas file
that cannot be read or does not parse, a TLE directory that cannot be
listed or holds no element set.  `Geodata.problem(names)` says what is
wrong with a record's area names: one the file does not define, one
pyresample cannot build, a dynamic area (no extent).  The table makes each an
error of the record's line (`table.parse`'s `regions`), so `--check`
tells them and a start or a HUP refuses them.

pyresample and pyorbital are imported here only when a record has
`area=` (`waitd[regions]`): a daemon without regions never loads them.
The result is kept while the files keep their size and mtime, so a HUP
rereads only what changed.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from waitd.config import conf
from waitd.config.passdir import conf_path

INSTALL_HINT = (
    "install pyresample, pyorbital and pytroll-schedule (pip install 'waitd[regions]', or make install EXTRAS=regions)"
)


@dataclass(frozen=True, slots=True)
class Elements:
    """One two-line element set."""

    number: str  # the satellite's catalogue number, as in the lines
    epoch: datetime.datetime  # naive, UTC
    line1: str
    line2: str


@dataclass(frozen=True, eq=False)
class Geodata:
    """The areas and orbital elements of a PASSDIR's records with area=.
    An area is built from the file's text when first asked for (`area`),
    so a file of hundreds of areas costs only those the table names."""

    areas_path: str
    text: str  # the areas file
    names: frozenset[str]  # the areas it defines
    elements: tuple[Elements, ...]  # every set found, by epoch
    _built: dict[str, Any] = field(default_factory=dict)  # name -> AreaDefinition, or why not (str)

    def area(self, name: str) -> Any:
        """The area definition of a name, or why there is none (a str)."""
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def _build(self, name: str) -> Any:
        if name not in self.names:
            known = ", ".join(sorted(self.names)) or "none"
            return f"{self.areas_path} defines no area {name} (it defines: {known})"
        import pyresample

        try:
            area = pyresample.area_config.load_area_from_string(self.text, name)
        except Exception as exc:  # noqa: BLE001 (pyresample raises what its parsers raise)
            return f"{self.areas_path}: area {name} does not parse: {_first_line(exc)}"
        if getattr(area, "area_extent", None) is None or getattr(area, "shape", None) is None:
            return f"{self.areas_path}: area {name} has no extent and shape (a dynamic area): it covers nothing yet"
        return area

    def problem(self, names: str) -> str | None:
        """What is wrong with a record's `area=NAME[,NAME...]`, if anything."""
        wrong = [found for n in names.split(",") if isinstance(found := self.area(n), str)]
        return f"area={names}: {'; '.join(wrong)}" if wrong else None


_cache: dict[tuple[Any, ...], tuple[Geodata | None, str | None]] = {}


def load(passdir: str) -> tuple[Geodata | None, str | None]:
    """The geodata of a PASSDIR's waitd.conf `[regions]`, or what is wrong."""
    path = conf_path(passdir)
    settings, errors = conf.read(path)
    if errors:
        return None, f"area= needs {path}'s [regions], and {path} has errors (see them)"
    if settings.regions is None:
        return None, f"area= needs the area definitions and orbital elements: {path} has no [regions] section"
    areas = os.path.join(passdir, settings.regions.areas)
    tle = os.path.join(passdir, settings.regions.tle)
    key = (areas, _stamp(areas), tle, _stamp(tle), *(_stamp(f) for f in _files(tle)))
    if key not in _cache:
        _cache.clear()
        _cache[key] = _read(areas, tle)
    return _cache[key]


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names if not n.startswith(".")]


def _read(areas_path: str, tle_dir: str) -> tuple[Geodata | None, str | None]:
    import yaml

    # pyorbital says at import that an optional accelerator is missing: not
    # the user's concern, and no line for waitd's stderr.
    logging.getLogger("pyorbital.geoloc").setLevel(logging.ERROR)
    try:
        import pyorbital.tlefile  # noqa: F401 (checked here: decide.regions needs them)
        import pyresample  # noqa: F401
        import trollsched.satpass  # noqa: F401
    except ImportError as exc:
        return None, f"area= needs {exc.name}, which is not installed: {INSTALL_HINT}"
    try:
        with open(areas_path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{areas_path}: cannot read the area definitions: {getattr(exc, 'strerror', None) or exc}"
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, f"{_where(areas_path, exc)}: the area definitions do not parse: {_first_line(exc)}"
    if not isinstance(document, dict) or not document:
        return None, f"{areas_path}: the area definitions do not parse: expected a mapping of area names"
    elements, problem = _elements(tle_dir)
    if problem is not None:
        return None, problem
    return Geodata(areas_path, text, frozenset(str(n) for n in document), elements), None


def _where(path: str, exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"{path}:{mark.line + 1}" if mark is not None else path


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().split("\n")
    return text[0] if text and text[0] else type(exc).__name__


def _elements(directory: str) -> tuple[tuple[Elements, ...], str | None]:
    """Every element set in the directory's files, by epoch."""
    from pyorbital.tlefile import ChecksumError, Tle

    try:
        os.listdir(directory)
    except OSError as exc:
        return (), f"{directory}: cannot list the orbital elements: {exc.strerror}"
    found: list[Elements] = []
    for path in _files(directory):
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                lines = [line.strip() for line in f]
        except OSError:
            continue
        for first, second in zip(lines, lines[1:], strict=False):
            if not (first.startswith("1 ") and second.startswith("2 ") and first[2:7] == second[2:7]):
                continue
            try:
                tle = Tle("waitd", line1=first, line2=second)
            except (ChecksumError, ValueError, IndexError):
                continue
            epoch = tle.epoch.astype("datetime64[us]").item()
            found.append(Elements(first[2:7].strip(), epoch, first, second))
    if not found:
        return (), f"{directory}: no orbital elements (two-line element sets) in its files"
    return tuple(sorted(found, key=lambda e: e.epoch)), None
