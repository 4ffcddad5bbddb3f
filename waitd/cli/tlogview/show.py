# SPDX-License-Identifier: MIT
"""tlogview's output, and the logs of handler runs: `-r N` and `--list`.

`Output` writes to stdout, with colour and control-character escaping on
a terminal only.  `show_runs` prints the handler logs of one record
(logfiles/incoming.N.L), newest first by the start time in waitd's header
line (as waitd itself orders them), or the one log of `-l L`; `list_runs`
prints the `--list` table of every handler log, read from the header and
footer lines waitd writes around the handler's output (`format_table`).
`--since` and `-g` filter both.

Display choices: on a terminal, control characters in log lines (a
handler can print anything) are shown as \\xNN so that they cannot drive
the terminal; a file name from a header is shown unescaped when it is
printable text, and as written in the header (octal escapes, as in the
history) when it is not.

This module writes nothing but to stdout.  Failures: `Fail` names the
logfiles/ directory that cannot be listed or a log that cannot be read.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import TextIO, TypeVar

from waitd.cli.tlogview.read import (
    Fail,
    Filter,
    RunLog,
    footer_ok,
    lines,
    parse_run,
    read_file,
    show_name,
)
from waitd.config.passdir import handler_log_path, logfiles_path, parse_handler_log_name
from waitd.formats import handler_log
from waitd.formats.handler_log import newest_first
from waitd.run.template import header_time  # not run.runner: the daemon's modules

T = TypeVar("T")
TAIL_BYTES = 65536  # how much of a handler log's end is searched for the footer

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_SGR = dict(DEBUG="2", WARNING="33", ERROR="31", CRITICAL="1;31", title="1", waitd="36", bad="31", open="33")


class Output:
    """stdout, with colour and control-character escaping on a terminal only."""

    def __init__(self, stream: TextIO, colour: bool, tty: bool) -> None:
        self.stream, self.colour, self.tty = stream, colour, tty

    def line(self, text: str, key: str = "") -> None:
        if self.tty:
            text = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
        if self.colour and key in _SGR:
            text = f"\033[{_SGR[key]}m{text}\033[0m"
        self.stream.write(text + "\n")


def last(items: list[T], n: int | None) -> list[T]:
    """The last `n` items (all of them for None)."""
    return items if n is None else items[max(0, len(items) - n) :]


# -- --list ----------------------------------------------------------------


def format_table(runs: Sequence[RunLog]) -> list[tuple[str, str]]:
    """The `--list` table as (line, colour key) pairs, the heading first."""
    rows = [("REC", "L", "START", "TOOK", "OUTCOME", "FILE", "title")]
    for r in runs:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.start)) if r.start is not None else "-"
        took = f"{r.took:.3f}s" if r.took is not None else "-"
        name = show_name(r.file) if r.file is not None else "?"
        colour = "" if r.ok else "open" if r.outcome == "running?" else "bad"
        rows.append((str(r.record), r.letter, start, took, r.outcome, name, colour))
    widths = [max(len(row[i]) for row in rows) for i in range(5)] + [0]
    pad = [str.rjust, str.ljust, str.ljust, str.rjust, str.ljust, str.ljust]  # numbers to the right
    return [("  ".join(pad[i](row[i], widths[i]) for i in range(6)).rstrip(), row[6]) for row in rows]


def list_runs(out: Output, passdir: str, record: int | None, keep: Filter, n: int | None) -> int:
    """Print the table of handler logs, by record, oldest run first."""
    runs = [_run_of(*found) for found in _log_paths(passdir, record)]
    if keep.since is not None:
        runs = [r for r in runs if r.start is not None and r.start >= keep.since]
    runs.sort(key=lambda r: (r.record, r.start or 0.0, r.letter))
    table = format_table(runs)
    body = last([row for row in table[1:] if keep.grep is None or keep.grep in row[0]], n)
    for text, key in [table[0], *body]:
        out.line(text, key)
    return 0


def _log_paths(passdir: str, record: int | None) -> list[tuple[int, str, str]]:
    """(record, letter, path) of each handler log there (of `record` only, if given)."""
    directory = logfiles_path(passdir)
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise Fail(f"{directory}: cannot list handler logs: {exc.strerror}") from exc
    found = []
    for name in names:
        parsed = parse_handler_log_name(name)
        if parsed is not None and (record is None or parsed[0] == record):
            found.append((parsed[0], parsed[1], os.path.join(directory, name)))
    return found


def _run_of(record: int, letter: str, path: str) -> RunLog:
    try:
        with open(path, "rb") as f:
            head = f.readline()
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError as exc:
        raise Fail(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_run(
        record, letter, head.decode("utf-8", "backslashreplace").rstrip("\n"), tail.decode("utf-8", "backslashreplace")
    )


# -- -r N ------------------------------------------------------------------


def show_runs(out: Output, passdir: str, record: int, letter: str | None, keep: Filter, n: int | None) -> int:
    """Print the handler logs of one record, newest first (or just one)."""
    if letter is not None:
        paths = [handler_log_path(passdir, record, letter)]
    else:
        paths = _newest_first(passdir, record)
    shown = 0
    for path in paths:
        chosen = _chosen_lines(path, keep, n)
        if chosen is None:
            continue
        if letter is None:
            if shown:
                out.line("")
            out.line(f"==> {path} <==", "title")
        shown += 1
        for line in chosen:
            out.line(line, _line_key(line))
    return 0


def _newest_first(passdir: str, record: int) -> list[str]:
    """The paths of the record's handler logs, the latest run's first."""
    found = _log_paths(passdir, record)
    if not found:
        raise Fail(f"{logfiles_path(passdir)}: no handler logs of record {record}")
    by_letter = {letter: path for _, letter, path in found}
    return [by_letter[letter] for letter in newest_first({lt: _started(p) for lt, p in by_letter.items()})]


def _chosen_lines(path: str, keep: Filter, n: int | None) -> list[str] | None:
    """waitd's header and the last `n` lines of a handler log that pass
    the filter; None when the log is filtered out (started before
    `--since`, or no line holds the `-g` text)."""
    text = lines(read_file(path))
    if text and text[-1] == "":
        text.pop()
    header = handler_log.parse_header(text[0]) if text else None
    head, body = (text[:1], text[1:]) if header is not None else ([], text)
    if keep.since is not None:
        at = header.at if header is not None else None
        if at is None or at < keep.since:
            return None
    if keep.grep is not None:
        body = [line for line in body if keep.grep in line]
        if not body:
            return None
    return head + last(body, n)


def _line_key(line: str) -> str:
    """Colour waitd's own lines in a handler log; a failed end in red."""
    if line.startswith(handler_log.HEADER_START):
        return "waitd"
    if handler_log.not_started(line) is not None:
        return "bad"
    ok = footer_ok(line)
    return "" if ok is None else "waitd" if ok else "bad"


def _started(path: str) -> int:
    """When a run started (ms), from waitd's header; else the file's mtime."""
    at = header_time(path)
    if at is not None:
        return at
    try:
        return os.stat(path).st_mtime_ns // 1_000_000
    except OSError:
        return 0
