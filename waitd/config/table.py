# SPDX-License-Identifier: MIT
"""The record table, incoming(5): parse it into records, check them.

`parse` turns the text of $PASSDIR/incoming into a tuple of `Record`s and a
list of `TableError`s, every problem of every bad line in line and field
order, each naming the file and line; `summary` counts them.  This list is
what `--check` prints, what a start refuses with and what a HUP logs.
`read` reads the file and parses it.  A line with `area=A,B` is a
record per area (`per_area`), numbered on from the line's number, each
with its own identity: its process-name in the history is `PROCESS
area=A` (`Record.command` is the process-name as written, what runs).
`parse` reads no file and runs
nothing, so it is what `--check` and the tests drive; it looks at the
system only where a field asks for it (`~user` in the password database,
and whether `next=` names the record's own queue: by inode when both
exist).  `matcher` compiles a record's name template as fnmatch(3) reads
it (module `wildcard`); a template it refuses is an error of its line.

This module does not check the record against the system (does its
directory exist, can its handler be executed: `spool.activation` does),
watch directories or run anything.  Fields past the seventh are
`key=value` options, parsed and checked by `options` into the record's
`Options`; their problems are errors of the line like any other.

Numbers are plain decimals (`decimal`, also used for the command line's
seconds): ASCII digits, and for wait-until-age and hours-too-old a point
and more digits; keep-after is digits or -1.  Each has a maximum no
operator needs (MAX_WAIT_S, MAX_TOO_OLD_H, MAX_KEEP) that nothing
downstream can overflow with: float() and int() would take 1e300, nan,
1_000, +2 or the digits of other scripts.

Limits: `$VAR` and `${VAR}` expand from the environment given to `parse`; an
unset variable is an error rather than being left in the path.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from waitd.config import options, wildcard
from waitd.config.errors import TableError
from waitd.config.options import Options
from waitd.config.wildcard import matcher as matcher  # the loop compiles templates through the table

if TYPE_CHECKING:  # loaded by `read` for the first area= record only (datetime, its orbital elements)
    from waitd.config import geodata

FIELDS = 7
PUBLISH = "-"  # process-name of a publish-only record: it runs nothing
MAX_WAIT_S = 31_536_000  # 365 days
MAX_TOO_OLD_H = 876_000  # 100 years
MAX_KEEP = 1_000_000_000
_VAR = re.compile(r"\$(\w+|\{[^}]*\})")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # [0-9], not \d: ASCII digits only
_WHOLE = re.compile(r"[0-9]+")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that surrogateescape kept
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Record:
    """One line of the table: where files arrive and what to run on them."""

    number: int  # 1-based, counting records only
    line: int  # line number in the table file
    telem: str
    directory: str  # absolute, after ~ and $VAR expansion
    template: str  # fnmatch(3) wildcard matched against names in `directory`
    process: str  # as written in the table
    wait_s: float
    keep: int  # -1 keeps every processed file
    too_old_h: float  # 0 never removes
    options: Options = Options()  # fields 8 and on
    geo: geodata.Geodata | None = field(default=None, compare=False)  # area=: its areas and orbital elements

    @property
    def topic(self) -> str:
        return self.options.topic if self.options.topic is not None else self.telem

    @property
    def command(self) -> str:
        """The process-name as written in the table: what runs."""
        return command_of(self.process)

    @property
    def publish_only(self) -> bool:
        """Process `-`: a ready file (or group) is published, nothing runs."""
        return self.command == PUBLISH


def command_of(process: str) -> str:
    """The process-name as written, of a history's process-name: a record
    of one area of several (`area=A,B`) is kept as `PROCESS area=A`, and a
    process-name of the table never holds a space."""
    return process.split(" ", 1)[0]


Regions = Callable[[], tuple["geodata.Geodata | None", str | None]]
Celery = Callable[[], str | None]  # what a run=celery record lacks here, if anything


def parse(
    text: str,
    path: str,
    passdir: str,
    env: Mapping[str, str],
    celery: Celery | None = None,
    regions: Regions | None = None,
) -> tuple[tuple[Record, ...], list[TableError]]:
    """Parse the table text; return the good records and every error found.
    `celery` gives what a `run=celery` record lacks here (`run.executors.celery_problem`),
    asked once, at the first such record, and an error of each such line,
    with its others.  `regions` gives the
    geodata of area= records, or what is wrong with it (`geodata.load`):
    asked once, at the first such record, and an error of each such line;
    without it, area= records are not checked against the areas."""
    records: list[Record] = []
    errors: list[TableError] = []
    number = 0
    # Each asked once, at the first line that needs it.
    lacks: Celery = functools.cache(celery) if celery is not None else lambda: None
    areas = functools.cache(regions) if regions is not None else None
    # Lines end at "\n" only, as an editor counts them: str.splitlines()
    # would also break at a form feed or U+2028 and shift the line numbers.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        # `read` decodes with surrogateescape: a bad byte costs its line only.
        undecodable = _UNDECODABLE.search(stripped) is not None
        if undecodable:
            errors.append(TableError(path, lineno, "not valid UTF-8 text"))
        if not stripped or stripped.startswith("#"):
            continue
        # A bad line still takes its record number, so that the numbers of
        # the records after it (and their log files) do not shift when it is
        # fixed.
        number += 1
        span = _areas_written(stripped.split())  # a record of n areas takes n numbers, bad or good
        if undecodable:
            number += span - 1
            continue
        record, problems = _record(stripped.split(), number, lineno, passdir, env, lacks)
        if record is not None and record.options.area is not None and areas is not None:
            record, problems = _regional(record, areas)
        if record is not None:
            records.extend(per_area(record))
        errors.extend(TableError(path, lineno, problem) for problem in problems)
        number += span - 1
    return tuple(records), errors


def per_area(record: Record) -> list[Record]:
    """The records of a line: with `area=A,B,...` one per area, numbered on
    from the line's own, each with its area alone and its own identity
    (process-name `PROCESS area=A`: its history, its work); a record of
    one area, or of none, as it is."""
    names = record.options.area.split(",") if record.options.area is not None else []
    if len(names) < 2:
        return [record]
    return [
        replace(
            record,
            number=record.number + k,
            process=f"{record.process} area={name}",
            options=replace(record.options, area=name),
        )
        for k, name in enumerate(names)
    ]


def _areas_written(fields: list[str]) -> int:
    """How many areas a line's `area=` names (1 without one), as written."""
    for f in fields[FIELDS:]:
        if f.startswith("area="):
            return max(1, len(f.split(",")))
    return 1


def summary(errors: Sequence[TableError]) -> str:
    """How many errors on how many lines, for the line after the list."""
    lines = len({e.line for e in errors if e.line})
    return f"{len(errors)} error(s) on {lines} line(s)" if lines else f"{len(errors)} error(s)"


def read(
    path: str, passdir: str, env: Mapping[str, str], celery: Celery | None = None
) -> tuple[tuple[Record, ...], list[TableError]]:
    """Read and parse the table file at `path`; area= records get their
    geodata from PASSDIR's waitd.conf (`geodata.load`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return (), [TableError(path, 0, f"cannot read table: {exc.strerror}")]

    def regions() -> tuple[geodata.Geodata | None, str | None]:
        from waitd.config import geodata

        return geodata.load(passdir)

    return parse(data.decode("utf-8", "surrogateescape"), path, passdir, env, celery, regions)


def _regional(record: Record, regions: Regions) -> tuple[Record | None, list[str]]:
    """An area= record with its geodata, or what is wrong."""
    geo, problem = regions()
    if geo is None:
        return None, [problem or "area= has no geodata"]
    assert record.options.area is not None
    problem = geo.problem(record.options.area)
    if problem is not None:
        return None, [problem]
    return replace(record, geo=geo), []


def _record(
    fields: list[str], number: int, lineno: int, passdir: str, env: Mapping[str, str], celery: Celery
) -> tuple[Record | None, list[str]]:
    """The record of one line, or None and every problem of the line, in field order."""
    if len(fields) < FIELDS:
        return None, [f"expected {FIELDS} fields, got {len(fields)}"]
    telem, directory, template, process, wait, keep, too_old = fields[:FIELDS]
    problems: list[str] = []
    expanded = _field(problems, _expand, directory, passdir, env)
    _field(problems, _template, template)
    wait_s = _field(problems, _number, wait, "wait-until-age", MAX_WAIT_S, "seconds (365 days)")
    keep_n = _field(problems, _keep, keep)
    too_old_h = _field(problems, _number, too_old, "hours-too-old", MAX_TOO_OLD_H, "hours (100 years)")
    opts, bad = options.parse(
        fields[FIELDS:], f"expected {FIELDS} fields, got {len(fields)} (extra field {{!r}} is not key=value)".format
    )
    problems.extend(bad)
    if opts.run == "celery" and (lacking := celery()) is not None:
        problems.append(lacking)
    if opts.claim and expanded is not None and os.path.basename(expanded) != "incoming":
        problems.append(f"claim=yes: incoming-dir {directory!r} must be a queue's incoming/ directory (Q/incoming)")
    if opts.next is not None:
        opts = replace(opts, next=_field(problems, _expand, opts.next, passdir, env))
        if opts.next is not None and expanded is not None and _same_dir(opts.next, os.path.dirname(expanded)):
            problems.append(f"next={opts.next}: the record's own queue (a handled file would come back for ever)")
    if problems or expanded is None or wait_s is None or keep_n is None or too_old_h is None:
        return None, problems
    record = Record(
        number=number,
        line=lineno,
        telem=telem,
        directory=expanded,
        template=template,
        process=process,
        wait_s=wait_s,
        keep=keep_n,
        too_old_h=too_old_h,
        options=opts,
    )
    return record, []


def _field(problems: list[str], check: Callable[..., _T], *args: Any) -> _T | None:
    """`check(*args)`, or None with its ValueError's message added to `problems`."""
    try:
        return check(*args)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _template(template: str) -> None:
    if "/" in template:
        raise ValueError(f"name-template {template!r} must not contain '/': it matches names in one directory")
    try:
        wildcard.check(template)
    except ValueError as exc:
        raise ValueError(f"name-template {template!r} {exc}") from None


def _expand(directory: str, passdir: str, env: Mapping[str, str]) -> str:
    def var(m: re.Match[str]) -> str:
        name = m.group(1).strip("{}")
        if name not in env:
            raise ValueError(f"incoming-dir {directory!r}: ${name} is not set")
        return env[name]

    expanded = _VAR.sub(var, directory)
    if expanded.startswith("~"):
        user, _, rest = expanded[1:].partition("/")
        if user:
            home = os.path.expanduser("~" + user)
            if home.startswith("~"):
                raise ValueError(f"incoming-dir {directory!r}: no user {user!r}")
        else:
            home = env.get("HOME") or os.path.expanduser("~")
        expanded = os.path.join(home, rest)
    return os.path.normpath(os.path.join(passdir, expanded))


def decimal(text: str, most: int, unit: str, least: Decimal = Decimal(0)) -> float:
    """A plain decimal number from `least` to `most`, or ValueError saying why.

    The range is checked on the exact decimal, before any rounding to float.
    """
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a plain decimal number such as 30 or 0.5")
    if not least <= Decimal(text) <= most:
        raise ValueError(f"{text!r} is out of range: {least} to {most} {unit}")
    return float(text)


def _number(text: str, what: str, most: int, unit: str) -> float:
    try:
        return decimal(text, most, unit)
    except ValueError as exc:
        raise ValueError(f"{what} {exc}") from None


def _keep(text: str) -> int:
    if text == "-1":
        return -1
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"keep-after {text!r} is not a whole number such as 5, or -1 (keep every file)")
    if Decimal(text) > MAX_KEEP:  # not int(): it refuses more than 4300 digits
        raise ValueError(f"keep-after {text!r} is out of range: -1, or 0 to {MAX_KEEP}")
    return int(text)


def _same_dir(a: str, b: str) -> bool:
    """Whether two directory names are one directory: the same inode when
    both exist, else the same normalised name."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(a) == os.path.normpath(b)
