# SPDX-License-Identifier: MIT
"""waitd.conf(5): the daemon's settings, its event sinks, and Celery's.

`parse` turns the text of $PASSDIR/waitd.conf into one `Conf` and a list
of `TableError`s, every problem of the file in line order, each naming the
file and the line, as the table's are: an unknown section or key (naming
the known ones), a key given twice, a bad value, a missing key, keys that
do not go together (checked also when one of them is bad), a jsonl sink's
file in a directory that does not exist.  `read` reads the file and looks
for those directories; a file that does not exist is an empty `Conf` (no
sinks, nothing set).  It is pure otherwise: it opens no socket and starts
nothing; `--check` prints its errors, a start refuses them (exit 2) and a
HUP keeps the previous settings when there are any.

The format is INI as waitd.conf(5) gives it: `[daemon]`, `[celery]`,
`[http]`, `[reduce]` (`waitd reduce`'s), `[regions]`, one `[sink NAME]` per sink
and one `[source NAME]` per source (its keys and checks are
`sourceconf`'s); `key = value` lines; a line whose first non-blank
character is `#` or `;` is a comment, and so is the rest of a line from
a `#` or `;` that follows a blank.  Values hold no newline.

Each section's keys and what each value may be are `confkeys`'s.  What a
sink's keys mean is for the sink (`sinks.kinds`); this module checks each
value (with `confkeys`) and the keys taken together, and hands the sink a
plain dict (`Sink.settings`), which is also what the sink's child process
is given.  The `[celery]` values are
parsed and checked here for the Celery executor, which reads them from
`Conf.celery`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from waitd.config import confkeys
from waitd.config.confkeys import (
    BY_TYPE,
    CELERY,
    COMMON,
    DAEMON,
    DEFAULTS,
    HTTP,
    KEY_OF,
    NAME,
    REDUCE,
    REGIONS,
    SINK_TYPES,
    Keys,
)
from waitd.config.errors import TableError
from waitd.config.sourceconf import Source
from waitd.config.sourceconf import build as build_source

_COMMENT = re.compile(r"\s[#;].*$")


@dataclass(frozen=True, slots=True)
class DaemonConf:
    """`[daemon]`: what the command line may also say (it wins)."""

    jobs: int | None = None  # --jobs
    instance: str | None = None  # --instance (queues)
    metrics: tuple[str, int] | None = None  # --metrics: host, port
    http: tuple[str, int] | None = None  # --http: host, port


@dataclass(frozen=True, slots=True)
class HttpConf:
    """`[http]`: whether the HTTP server takes POSTs (retry, cancel, pause,
    resume), and the file holding the token they must carry."""

    control: bool = False
    token: str | None = None  # relative to PASSDIR; mode 0600 (checked when waitd reads it)


@dataclass(frozen=True, slots=True)
class CeleryConf:
    """`[celery]`: the broker and queue of the Celery executor."""

    broker: str
    queue: str = "waitd"


@dataclass(frozen=True, slots=True)
class RegionsConf:
    """`[regions]`: the area definitions (pyresample YAML) and the directory
    of orbital elements (TLE files) of the records with area=; paths
    relative to PASSDIR, or absolute."""

    areas: str
    tle: str


@dataclass(frozen=True, slots=True)
class Sink:
    """One `[sink NAME]` section, checked."""

    name: str
    type: str
    line: int  # of its section header
    records: frozenset[int] | None = None  # only these records' events; None: all
    retry_s: float = 1.0  # first back-off while its broker is down; doubles
    retry_max_s: float = 60.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # the type's own keys, checked

    def as_dict(self) -> dict[str, Any]:
        """What the sink's process is given (JSON)."""
        return {
            "name": self.name,
            "type": self.type,
            "records": sorted(self.records) if self.records is not None else None,
            "retry_s": self.retry_s,
            "retry_max_s": self.retry_max_s,
            "settings": dict(self.settings),
        }


@dataclass(frozen=True, slots=True)
class ReduceConf:
    """`[reduce]`: what `waitd reduce` reads."""

    archive: str | None = None  # where each reduction's output is copied too


@dataclass(frozen=True, slots=True)
class Conf:
    """What waitd.conf says, each section's defaults where it says nothing."""

    path: str = ""
    daemon: DaemonConf = DaemonConf()
    sinks: tuple[Sink, ...] = ()
    celery: CeleryConf | None = None
    http: HttpConf = HttpConf()
    reduce: ReduceConf | None = None
    sources: tuple[Source, ...] = ()  # [source NAME]: work from messages (`sourceconf`)
    regions: RegionsConf | None = None


def read(path: str) -> tuple[Conf, list[TableError]]:
    """Read and parse waitd.conf; a missing file is an empty Conf."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return Conf(path), []
    except OSError as exc:
        return Conf(path), [TableError(path, 0, f"cannot read: {exc.strerror}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return Conf(path), [TableError(path, line, "not valid UTF-8 text")]
    return parse(text, path, os.path.isdir)


@dataclass(slots=True)
class _Section:
    """One section of waitd.conf as read: its raw values, by key, with their lines."""

    kind: str  # daemon, celery, sink, source
    name: str  # the sink's or source's name
    line: int
    values: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (line, raw value)


def parse(text: str, path: str, isdir: Callable[[str], bool] = lambda directory: True) -> tuple[Conf, list[TableError]]:
    """Parse the text of waitd.conf; return the Conf and every error.
    `isdir` says whether a directory exists (a jsonl sink's file goes in
    one); `read` asks the system, and the default says yes."""
    errors: list[TableError] = []
    sections = _sections(text, path, errors)
    daemon = DaemonConf()
    celery = None
    http = HttpConf()
    reduce = None
    regions = None
    sinks = []
    sources = []
    for section in sections:
        if section.kind == "daemon":
            daemon = _build(section, path, errors, DAEMON, DaemonConf)
        elif section.kind == "http":
            http = _build(section, path, errors, HTTP, HttpConf) or http
            if http.control and http.token is None:
                errors.append(TableError(path, section.line, "[http]: control = yes needs token = FILE"))
        elif section.kind == "celery":
            celery = _build(section, path, errors, CELERY, CeleryConf)
        elif section.kind == "reduce":
            reduce = _build(section, path, errors, REDUCE, ReduceConf)
        elif section.kind == "source":
            source = build_source(section.name, section.line, section.values, path, errors)
            if source is not None:
                sources.append(source)
        elif section.kind == "regions":
            regions = _build(section, path, errors, REGIONS, RegionsConf)
        else:
            sink = _sink(section, path, errors, isdir)
            if sink is not None:
                sinks.append(sink)
    errors.sort(key=lambda e: e.line)
    if errors:
        return Conf(path), errors
    conf = Conf(
        path,
        daemon or DaemonConf(),
        tuple(sinks),
        celery,
        reduce=reduce,
        sources=tuple(sources),
        regions=regions,
        http=http,
    )
    return conf, []


def _sections(text: str, path: str, errors: list[TableError]) -> list[_Section]:
    """The sections of the file with their raw values; errors of form."""
    sections: list[_Section] = []
    seen: dict[str, int] = {}
    current: _Section | None = None
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        line = _COMMENT.sub("", line).strip()
        if line.startswith("["):
            current = _header(line, lineno, path, seen, errors)
            if current is not None:
                sections.append(current)
            else:
                current = _Section("bad", "", lineno)  # its keys go with it, its error said
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            errors.append(TableError(path, lineno, f"expected [section] or key = value, got {line[:40]!r}"))
        elif current is None:
            errors.append(TableError(path, lineno, f"key {key!r} before any [section]"))
        elif current.kind == "bad":
            continue
        elif key in current.values:
            errors.append(TableError(path, lineno, f"{_where(current)}: key {key!r} given twice"))
        else:
            current.values[key] = (lineno, value)
    return sections


def _header(line: str, lineno: int, path: str, seen: dict[str, int], errors: list[TableError]) -> _Section | None:
    if not line.endswith("]"):
        errors.append(TableError(path, lineno, f"section header {line!r} lacks its ]"))
        return None
    words = line[1:-1].split()
    kind = words[0] if words else ""
    if kind in ("daemon", "celery", "http", "reduce", "regions") and len(words) == 1:
        section = _Section(kind, "", lineno)
    elif kind in ("sink", "source") and len(words) == 2 and NAME.fullmatch(words[1]):
        section = _Section(kind, words[1], lineno)
    elif kind in ("sink", "source"):
        errors.append(TableError(path, lineno, f"{line}: a {kind} is [{kind} NAME], NAME letters, digits, _ . -"))
        return None
    else:
        errors.append(
            TableError(
                path,
                lineno,
                f"unknown section {line} (known: [daemon], [sink NAME], [source NAME], [celery], [http], "
                "[reduce], [regions])",
            )
        )
        return None
    title = " ".join(words)
    if title in seen:
        errors.append(TableError(path, lineno, f"[{title}] given twice (first on line {seen[title]})"))
        return None
    seen[title] = lineno
    return section


def _where(section: _Section) -> str:
    return f"[{section.kind} {section.name}]" if section.name else f"[{section.kind}]"


def _convert(section: _Section, path: str, errors: list[TableError], keys: Keys) -> tuple[dict[str, Any], bool]:
    """The section's values read well, by attribute; and whether all were."""
    return confkeys.convert(section.values, keys, _where(section), path, section.line, errors)


def _build(section: _Section, path: str, errors: list[TableError], keys: Keys, kind: Any) -> Any:
    values, ok = _convert(section, path, errors, keys)
    return kind(**values) if ok else None


def _sink(section: _Section, path: str, errors: list[TableError], isdir: Callable[[str], bool]) -> Sink | None:
    kind = section.values.get("type", (section.line, ""))[1]
    if kind not in SINK_TYPES:
        lineno = section.values.get("type", (section.line, ""))[0]
        what = f"type = {kind}: unknown" if kind else "no type = (it is required)"
        errors.append(TableError(path, lineno, f"{_where(section)}: {what} (known: {', '.join(SINK_TYPES)})"))
        return None
    values, ok = _convert(section, path, errors, {**COMMON, **BY_TYPE[kind]})
    common: dict[str, Any] = {k: values.pop(k) for k in ("records", "retry_s", "retry_max_s") if k in values}
    values.pop("type", None)
    settings = {**DEFAULTS[kind], **values}
    # Checked together too when a value is bad, each check with the keys it
    # is about: as given when it asks whether they are, as read otherwise.
    given = set(section.values)
    bad = given - {"type"} - {KEY_OF[attr] for attr in (*values, *common)}
    problems = _check_sink(kind, settings, common, given, bad)
    errors.extend(TableError(path, section.line, f"{_where(section)}: {p}") for p in problems)
    if kind == "jsonl" and "path" in settings:
        directory = os.path.dirname(os.path.join(os.path.dirname(os.path.abspath(path)), settings["path"]))
        if not isdir(directory):
            lineno, raw = section.values["path"]
            errors.append(TableError(path, lineno, f"{_where(section)}: path = {raw}: no such directory {directory}"))
            ok = False
    if not ok or problems:
        return None
    return Sink(section.name, kind, section.line, settings=settings, **common)


def _check_sink(
    kind: str, settings: Mapping[str, Any], common: Mapping[str, Any], given: set[str], bad: set[str]
) -> list[str]:
    """What is wrong with a sink's keys taken together: every problem."""
    problems = []
    if not bad & {"retry", "retry-max"} and common.get("retry_max_s", 60.0) < common.get("retry_s", 1.0):
        problems.append("retry-max is less than retry")
    if kind == "stomp" and settings.get("format") != "isis" and not given & {"started", "complete", "error", "skipped"}:
        problems.append("give at least one of started =, complete =, error =, skipped = (the destinations)")
    if kind == "stomp" and ("user" in given) != ("password" in given):
        problems.append("give user = and password = together")
    if (
        kind == "posttroll"
        and not bad & {"address", "nameservers"}
        and settings.get("address", "").endswith(":0")
        and settings["nameservers"] is False
    ):
        problems.append("address port 0 (any free port) needs nameservers =: no subscriber could find it")
    return problems
