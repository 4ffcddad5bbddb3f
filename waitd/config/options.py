# SPDX-License-Identifier: MIT
"""Record options, the `key=value` fields past the seventh of incoming(5).

`parse` turns a line's option fields into one `Options` and the list of
its problems (an unknown option, naming the known ones; a repeated one; a
bad value; a `key=` or `done=` naming a field the pattern does not have;
options that do not go together), every problem of the line, as `table`
wants them: the options are also checked together when one has a bad
value (each check with the options it is about read well), and with
problems the `Options` hold the values that were read well, for the
checks the table makes with the world (run=celery's broker).  It is
pure.  A value holds no whitespace: a space is written `\\040`, as in
the history.

`Options.fields` is what a FORMAT (`key=`, `done=`) and the handler's
environment see of one file, and `Options.format` renders a FORMAT: both
as `namefields` says (the pattern's fields and the built-in ones; None
when the pattern does not parse a name or the values do not fit a
FORMAT).  `Options.group` is the record's `groupspec.Spec` (the member
lists read in `groupspec`'s notation).  With `fields=json` a FORMAT may
also name the top-level fields of the file's JSON body (a message a
source put in a queue): those are read by the spool (`spool.state`), and
a FORMAT's fields are then checked against each file, not here.

This module runs nothing and looks at no file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from waitd.config import groupspec, namefields, optvalues

MAX_JOBS = 1000
MAX_RETRIES = 1000
MAX_TIMEOUT_S = 31_536_000  # 365 days
MAX_RETRY_S = 3600  # the delay doubles up to this
_OCTAL = re.compile(r"\\([0-3][0-7][0-7])")


@dataclass(frozen=True)  # not slotted: the pattern's parser is cached on it
class Options:
    """A record's options, with their defaults (a 7-field line has these)."""

    jobs: int = 1  # handlers of this record at once
    timeout_s: float | None = None  # a run longer than this is killed
    retries: int = 0  # more attempts after a temporary failure
    retry_s: float = 60.0  # the delay before the first retry; doubles
    key: str | None = None  # FORMAT: runs of equal keys never overlap
    pattern: str | None = None  # trollsift pattern of the file names
    done: str | None = None  # FORMAT: the companion marking a file complete
    topic: str | None = None  # the subject of events (default: the telem)
    critical: str | None = None  # groups: the members a group cannot do without
    wanted: str | None = None  # groups: the members waited for until timeliness
    all: str | None = None  # groups: more members taken if they come in time
    timeliness_s: float = 1200.0  # groups: how long after its first member a group waits
    tolerance_s: float = 30.0  # groups: start times this close are one group
    slot_min: float | None = None  # groups: start times floored to this many minutes
    vary: str | None = None  # groups: fields that may differ within a group
    claim: bool = False  # the incoming-dir is a queue's incoming/: claim files by rename
    next: str | None = None  # the queue a handled file goes to (its directory)
    out_limit: int | None = None  # claim nothing while the next queue's incoming holds this many
    out_wait_s: float = 10.0  # how often the out-limit is looked at again
    run: str = "local"  # where handlers run: local (spawned here) or celery (on workers)
    fields_from: str = "name"  # name: the name's fields (pattern=); json: also a JSON file's top-level ones
    area: str | None = None  # regions: the area(s) whose granules of a pass make a group (`table.per_area`)
    duration_s: float | None = None  # regions: a granule's length when the name gives no end_time
    sensor: str | None = None  # regions: the instrument when the name gives none

    @cached_property
    def group(self) -> groupspec.Spec | None:
        """How the record groups its files, if it does (critical= or wanted=,
        or area=)."""
        if self.area is not None:
            return groupspec.Spec(
                critical=frozenset(),
                wanted=frozenset(),
                accepted=frozenset(),
                timeliness_s=self.timeliness_s,
                tolerance_s=self.tolerance_s,
                slot_min=None,
                vary=(),
                region=groupspec.Region(tuple(self.area.split(",")), self.duration_s, self.sensor),
            )
        if self.critical is None and self.wanted is None:
            return None
        critical = groupspec.members(self.critical) if self.critical else frozenset()
        wanted = groupspec.members(self.wanted) if self.wanted else frozenset()
        extra = groupspec.members(self.all) if self.all else frozenset()
        return groupspec.Spec(
            critical=critical,
            wanted=wanted,
            accepted=critical | wanted | extra,
            timeliness_s=self.timeliness_s,
            tolerance_s=self.tolerance_s,
            slot_min=self.slot_min,
            vary=tuple(v for v in (self.vary or "").split(",") if v),
        )

    def described(self) -> list[str]:
        """`key=value` for every option as it will be used (`--check -v`)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            name = _NAMES_BY_ATTR[f.name]
            if name == "topic" and value is None:
                out.append("topic=(the telem)")
            elif isinstance(value, bool):
                out.append(f"{name}={'yes' if value else 'no'}")
            elif value is None:
                out.append(f"{name}=(none)")
            elif isinstance(value, float):
                out.append(f"{name}={value:g}")
            else:
                out.append(f"{name}={_escape(str(value))}")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Each option by its name in the table, as it will be used."""
        return {_NAMES_BY_ATTR[f.name]: getattr(self, f.name) for f in fields(self)}

    def retry_delay_s(self, attempt: int) -> float:
        """The delay before attempt `attempt + 1`, after `attempt` failed."""
        return min(float(MAX_RETRY_S), self.retry_s * 2 ** min(attempt - 1, 32))

    @cached_property
    def _parser(self) -> namefields.Parser | None:
        return namefields.parser(self.pattern) if self.pattern is not None else None

    def fields(self, name: str, directory: str, telem: str) -> dict[str, Any] | None:
        """What a FORMAT sees of the file `name`; None when the pattern does
        not parse it (`namefields.of`)."""
        return namefields.of(self._parser, name, directory, telem)

    @staticmethod
    def format(fmt: str, values: Mapping[str, Any]) -> str | None:
        """A FORMAT rendered with the file's fields, or None if they do not fit it."""
        return namefields.render(fmt, values)


def parse(
    items: list[str], not_option: Callable[[str], str] = "{!r} is not key=value".format
) -> tuple[Options, list[str]]:
    """The options of a line's fields past the seventh, and every problem,
    in field order (`not_option` says what a field without `=` is)."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    seen: set[str] = set()
    failed: set[str] = set()  # options given with a bad value
    for item in items:
        name, eq, raw = item.partition("=")
        if not eq:
            problems.append(not_option(item))
            continue
        spec = _SPECS.get(name)
        if spec is None:
            problems.append(f"unknown option {name!r} (known: {', '.join(_SPECS)})")
            continue
        if name in seen:
            problems.append(f"option {name!r} given twice")
            continue
        seen.add(name)
        try:
            values[spec.attr] = spec.convert(_unescape(raw))
        except ValueError as exc:
            problems.append(f"option {name}={raw}: {exc}")
            failed.add(name)
    options = Options(**values)
    problems.extend(_check_together(options, failed))
    return options, problems


def _check_together(options: Options, failed: set[str]) -> list[str]:
    """What is wrong with the options taken together: every problem, each
    checked only when the options it is about were read well (a bad
    value is its own error, not the cause of others)."""
    problems: list[str] = []
    fields_of_pattern: set[str] = set()
    if options.pattern is not None and "pattern" not in failed:
        fields_of_pattern = set(namefields.parser(options.pattern).keys())
    if "pattern" not in failed and not failed & {"critical", "wanted", "all", "area"}:
        problems += _check_group(options, fields_of_pattern)
    if "pattern" not in failed:
        problems += _check_region(options, fields_of_pattern, failed)
    if "claim" not in failed:
        problems += _check_queue(options, failed)
    if not failed & {"run", "timeout"}:
        problems += _check_run(options)
    if "pattern" not in failed and options.fields_from != "json":  # json: a body's fields, known only then
        problems += _check_fields(options, fields_of_pattern)
    return problems


def _check_fields(options: Options, fields_of_pattern: set[str]) -> list[str]:
    """A FORMAT may name the built-in fields and the pattern's."""
    known = set(namefields.BUILTIN) | fields_of_pattern
    problems = []
    for option in ("key", "done"):
        fmt = getattr(options, option)
        if fmt is None:
            continue
        for field in namefields.named(fmt):
            if field not in known:
                where = "the pattern's fields or " if options.pattern else "(no pattern=) "
                problems.append(
                    f"option {option}={_escape(fmt)}: no field {{{field}}} in {where}{', '.join(namefields.BUILTIN)}"
                )
    return problems


def _check_group(options: Options, fields: set[str]) -> list[str]:
    """Groups need a pattern with the fields their lists and options use."""
    spec = options.group
    grouping = [n for n in ("all", "timeliness", "tolerance", "slot", "vary") if _given(options, n)]
    if spec is None:
        return [f"option {n}= is for groups: give critical= or wanted= too" for n in grouping]
    problems = []
    if options.done is not None:
        problems.append("done= and groups do not go together (a group's member is complete by its wait age)")
    if spec.region is not None:
        return problems  # its own checks: _check_region
    if options.pattern is None:
        problems.append("critical= and wanted= need pattern=: the fields of a name say its group and member")
        return problems  # no fields to check the lists against
    for field_name, used in (
        ("channel_name", any(c for c, _ in spec.accepted)),
        ("segment", any(s for _, s in spec.accepted)),
    ):
        if used and field_name not in fields:
            problems.append(f"the member lists name {field_name}s, but pattern= has no {{{field_name}}} field")
    if not spec.accepted - {("", "")} and ("channel_name" in fields or "segment" in fields):
        problems.append("the member lists are empty (:) but pattern= has channel_name or segment fields")
    for name in spec.vary:
        if name not in fields:
            problems.append(f"option vary= names {name}, which pattern= does not have")
    if options.slot_min is not None and groupspec.TIME_FIELD not in fields:
        problems.append(f"option slot= needs a {{{groupspec.TIME_FIELD}}} field in pattern=")
    return problems


def _check_region(options: Options, fields: set[str], failed: set[str]) -> list[str]:
    """area= needs a pattern naming the platform and times; it lists no members."""
    if options.area is None:
        regional = [] if "area" in failed else [n for n in ("duration", "sensor") if _given(options, n)]
        return [f"option {n}= is for regions: give area= too" for n in regional]
    problems = [
        f"option {n}= and area= do not go together (a region's members are predicted)"
        for n in ("critical", "wanted", "all", "tolerance", "slot", "vary")
        if _given(options, n) or n in failed
    ]
    if options.pattern is None:
        return [*problems, "area= needs pattern=: a name's fields give the granule's platform and times"]
    problems += [f"area= needs a {{{n}}} field in pattern=" for n in ("platform_name", "start_time") if n not in fields]
    if "end_time" not in fields and options.duration_s is None and "duration" not in failed:
        problems.append("area= needs an {end_time} field in pattern= or duration=S (a granule's length)")
    if "sensor" not in fields and options.sensor is None and "sensor" not in failed:
        problems.append("area= needs a {sensor} field in pattern= or sensor=NAME (the instrument, e.g. avhrr)")
    return problems


def _check_queue(options: Options, failed: set[str]) -> list[str]:
    if not options.claim:
        return [
            f"option {n}= is for queues: give claim=yes too"
            for n in ("next", "out-limit", "out-wait")
            if _given(options, n)
        ]
    problems = []
    if options.group is not None:
        problems.append("claim=yes and groups do not go together (a group's files are claimed one by one)")
    if options.done is not None:
        problems.append("claim=yes and done= do not go together (a queue's incoming holds complete files only)")
    if options.out_limit is not None and options.next is None and "next" not in failed:
        problems.append("option out-limit= needs next=: it limits the next queue")
    return problems


def _check_run(options: Options) -> list[str]:
    if options.run == "celery" and options.timeout_s is None:
        return ["run=celery needs timeout=: a run whose worker dies is known lost only when its timeout passes"]
    return []


def _given(options: Options, name: str) -> bool:
    attr = _SPECS[name].attr
    return getattr(options, attr) != getattr(Options(), attr)


@dataclass(slots=True)
class _Spec:
    """An option of the table: the Options attribute it sets, and how its value reads."""

    attr: str
    convert: Callable[[str], Any]


_SPECS = {
    "jobs": _Spec("jobs", optvalues.whole(1, MAX_JOBS)),
    "timeout": _Spec("timeout_s", optvalues.seconds(True, MAX_TIMEOUT_S)),
    "retries": _Spec("retries", optvalues.whole(0, MAX_RETRIES)),
    "retry": _Spec("retry_s", optvalues.seconds(True, MAX_RETRY_S)),
    "key": _Spec("key", namefields.check_format),
    "pattern": _Spec("pattern", namefields.check_pattern),
    "done": _Spec("done", namefields.check_format),
    "topic": _Spec("topic", optvalues.text),
    "critical": _Spec("critical", optvalues.members),
    "wanted": _Spec("wanted", optvalues.members),
    "all": _Spec("all", optvalues.members),
    "timeliness": _Spec("timeliness_s", optvalues.seconds(True, MAX_TIMEOUT_S)),
    "tolerance": _Spec("tolerance_s", optvalues.seconds(False, MAX_TIMEOUT_S)),
    "slot": _Spec("slot_min", optvalues.minutes),
    "vary": _Spec("vary", optvalues.names),
    "claim": _Spec("claim", optvalues.yes_no),
    "next": _Spec("next", optvalues.text),
    "out-limit": _Spec("out_limit", optvalues.whole(1, 1_000_000_000)),
    "out-wait": _Spec("out_wait_s", optvalues.seconds(True, MAX_TIMEOUT_S)),
    "run": _Spec("run", optvalues.where),
    "fields": _Spec("fields_from", optvalues.fields_from),
    "area": _Spec("area", optvalues.areas),
    "duration": _Spec("duration_s", optvalues.seconds(True, 86400)),
    "sensor": _Spec("sensor", optvalues.text),
}
_NAMES_BY_ATTR = {spec.attr: name for name, spec in _SPECS.items()}


def _unescape(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), text)


def _escape(text: str) -> str:
    return "".join(c if c.isprintable() and not c.isspace() and c != "\\" else f"\\{ord(c):03o}" for c in text)
