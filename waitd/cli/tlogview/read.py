# SPDX-License-Identifier: MIT
"""tlogview: read waitd's own log and the logs of its handler runs.

Without options it prints $PASSDIR/incoming.log; `-f` then follows it
across a rotation (the file renamed and a new one opened by waitd on HUP,
or the file truncated in place); `-n` keeps the last N entries.  `-r N`
prints the handler logs of record N (logfiles/incoming.N.L), newest first
by the start time in waitd's header line (as waitd itself orders them), and `--list` tables every handler log from the
header and footer lines waitd writes around the handler's output.
`--since`, `--level` and `-g` filter what is printed.

The parsing is pure and kept apart from the I/O: `group` turns log lines
into entries (a line that does not start with a time stamp and a level,
such as a traceback line, belongs to the entry before it), `Filter` judges
an entry, `parse_run` reads a handler log's first line and its tail, and
`parse_since` reads a time or an age.  This module never writes to
PASSDIR and imports nothing of the daemon but the history's escaping and
runner's order of log letters.

Display choices: text that is not UTF-8 is shown with backslash escapes; on
a terminal, control characters in log lines (a handler can print anything)
are shown as \\xNN so that they cannot drive the terminal; a file name from
a header is shown unescaped when it is printable text, and as written in
the header (octal escapes, as in the history) when it is not.

Failures: a missing PASSDIR or log prints `tlogview: PATH: what: reason`
and exits 1; a bad command line exits 2.  Limits: `-f` polls every POLL_S
seconds and, like tail(1), misses a truncation after which the file grew
past the point already read before the next poll; `-g` in `-f` mode sees
continuation lines only when they arrive with their entry.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO, TypeVar

from waitd import __version__
from waitd.journal.history import unescape
from waitd.run.runner import header_time, newest_first

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
T = TypeVar("T")
POLL_S = 0.2
FOLLOW_LINES = 10  # entries printed before following, as tail -f does
TAIL_BYTES = 65536  # how much of a handler log's end is searched for the footer
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ([A-Z]+) ")
_AGE = re.compile(r"(\d+(?:\.\d*)?)([smhd])")
# The footer is searched anywhere in a line: output without a final
# newline has it glued to its last line.
_FOOTER = re.compile(r"waitd: end (record=\S*(?: \S+=\S*)*)[ \t\r]*$")
_NOT_STARTED = "waitd: not started: "
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_LOG_NAME = re.compile(r"incoming\.(\d+)\.([A-Z])")
_SGR = dict(DEBUG="2", WARNING="33", ERROR="31", CRITICAL="1;31", title="1", waitd="36", bad="31", open="33")


class Fail(Exception):
    """A file tlogview needs cannot be read; the message names it."""


# -- incoming.log ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of incoming.log with its continuation lines."""

    lines: tuple[str, ...]
    stamp: str | None  # "YYYY-MM-DD HH:MM:SS.mmm", local time; None: no head line
    level: str | None  # "INFO", ...; None for lines that continue an earlier entry


def group(lines: Iterable[str]) -> Iterator[Entry]:
    """Group log lines into entries; lines without a stamp join the last."""
    current: list[str] = []
    stamp = level = None
    for line in lines:
        m = _STAMP.match(line)
        if m and m[2].lower() in LEVELS:
            if current:
                yield Entry(tuple(current), stamp, level)
            current, stamp, level = [line], m[1], m[2]
        else:
            current.append(line)
    if current:
        yield Entry(tuple(current), stamp, level)


@dataclass(frozen=True, slots=True)
class Filter:
    """What the operator asked to see: since when, from which level, which text."""

    since: float | None = None  # seconds since the epoch
    level: str = "debug"
    grep: str | None = None

    @property
    def active(self) -> bool:
        return self.since is not None or self.level != "debug" or self.grep is not None

    def keep(self, entry: Entry, previous: bool) -> bool:
        """Judge an entry; lines that continue an entry follow its fate."""
        if entry.level is None or entry.stamp is None:
            return previous
        if self.since is not None and entry.stamp < local_stamp(self.since):
            return False
        if LEVELS[entry.level.lower()] < LEVELS[self.level]:
            return False
        return self.grep is None or any(self.grep in line for line in entry.lines)


def local_stamp(at: float) -> str:
    """The incoming.log stamp of a moment, which compares as text."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def parse_since(text: str, now: float) -> float:
    """Read `--since`: a local time (2026-11-23 08:00) or an age (90s, 15m, 2h, 3d)."""
    text = text.strip()
    m = _AGE.fullmatch(text)
    if m:
        return now - float(m[1]) * UNITS_S[m[2]]
    try:
        return datetime.fromisoformat(text).timestamp()  # a naive time is local
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2026-11-23 08:00) nor an age (90s, 15m, 2h, 3d)") from None


# -- handler logs ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunLog:
    """What a handler log's header and footer say about one run."""

    record: int
    letter: str
    file: str | None  # escaped, as in the header; None without a header
    start: float | None  # seconds since the epoch
    took: float | None
    outcome: str  # "exit 0", "signal SIGTERM", "error: ...", "running?"
    ok: bool


def parse_fields(text: str) -> dict[str, str]:
    """Split `key=value key=value` (values escaped, so without spaces)."""
    fields = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if eq:
            fields[key] = value
    return fields


def parse_run(record: int, letter: str, head: str, tail: str) -> RunLog:
    """Read a run from its log's first line and the end of the log."""
    start = parse_fields(head[len("waitd: start ") :]) if head.startswith("waitd: start ") else {}
    end: dict[str, str] | None = None
    outcome = "running?"
    for line in tail.split("\n"):
        m = _FOOTER.search(line)
        if m:
            end = parse_fields(m[1])
        elif line.startswith(_NOT_STARTED):
            outcome = "not started: " + line[len(_NOT_STARTED) :].strip()
    ok = False
    if end is not None:
        if "exit" in end:
            outcome, ok = f"exit {end['exit']}", end["exit"] == "0"
        elif "signal" in end:
            outcome = f"signal {show_name(end['signal'])}"
        elif "error" in end:
            outcome = f"error: {show_name(end['error'])}"
        else:
            outcome = "ended?"
    took = _float(end.get("took") if end else None)
    return RunLog(record, letter, start.get("file"), _iso_time(start.get("at")), took, outcome, ok)


def show_name(escaped: str) -> str:
    """An escaped header value for display: plain when printable, else as written."""
    try:
        name = unescape(escaped)
    except ValueError:
        return escaped
    # Bytes that are not UTF-8 come back as surrogates, which are not printable.
    return name if name.isprintable() else escaped


def _iso_time(text: str | None) -> float | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


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


# -- output ---------------------------------------------------------------


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


def _read(path: str, what: str = "cannot read") -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Fail(f"{path}: {what}: {exc.strerror}") from exc


def _lines(data: bytes) -> list[str]:
    # Split on newlines only: str.splitlines would also split on \f, \x1c ...
    return data.decode("utf-8", "backslashreplace").split("\n")


def _print_entries(out: Output, entries: Iterable[Entry], keep: Filter, previous: bool) -> bool:
    for entry in entries:
        previous = keep.keep(entry, previous)
        if previous:
            for line in entry.lines:
                out.line(line, entry.level or "")
    return previous


def show_log(out: Output, path: str, keep: Filter, last: int | None, follow: bool) -> int:
    """Print incoming.log (its last entries), then follow it if asked."""
    data = _read(path, "cannot read (has waitd run on this PASSDIR?)")
    cut = data.rfind(b"\n") + 1
    previous = not keep.active
    chosen = []
    for entry in group(_lines(data[: cut - 1]) if cut else []):
        previous = keep.keep(entry, previous)
        if previous:
            chosen.append(entry)
    chosen = _last(chosen, FOLLOW_LINES if last is None and follow else last)
    _print_entries(out, chosen, Filter(), True)
    out.stream.flush()
    if follow:
        _follow(out, path, cut, data[cut:], keep, previous)
    return 0


def _follow(out: Output, path: str, pos: int, partial: bytes, keep: Filter, previous: bool) -> None:
    """Print what is appended to `path`; reopen it when it is replaced or shrinks."""
    f = open(path, "rb")
    try:
        f.seek(pos)
        st = os.fstat(f.fileno())
        ident = (st.st_dev, st.st_ino)
        while True:
            data = f.read()
            if data:
                partial += data
                cut = partial.rfind(b"\n") + 1
                if cut:
                    previous = _print_entries(out, group(_lines(partial[: cut - 1])), keep, previous)
                    partial = partial[cut:]
                    out.stream.flush()
                continue
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None  # renamed away, not yet created again: keep reading the old one
            if now is not None and (now.st_dev, now.st_ino) != ident:
                # Rotated: the old file was read to its end just above.
                if partial:
                    previous = _print_entries(out, group(_lines(partial)), keep, previous)
                    partial = b""
                f.close()
                f = open(path, "rb")
                st = os.fstat(f.fileno())
                ident = (st.st_dev, st.st_ino)
                continue
            if os.fstat(f.fileno()).st_size < f.tell():
                f.seek(0)  # truncated in place (copytruncate)
                partial = b""
                continue
            time.sleep(POLL_S)
    finally:
        f.close()


def _log_paths(passdir: str, record: int | None) -> list[tuple[int, str, str]]:
    directory = os.path.join(passdir, "logfiles")
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise Fail(f"{directory}: cannot list handler logs: {exc.strerror}") from exc
    found = []
    for name in names:
        m = _LOG_NAME.fullmatch(name)
        if m and (record is None or int(m[1]) == record):
            found.append((int(m[1]), m[2], os.path.join(directory, name)))
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


def list_runs(out: Output, passdir: str, record: int | None, keep: Filter, last: int | None) -> int:
    """Print the table of handler logs, by record, oldest run first."""
    runs = [_run_of(*found) for found in _log_paths(passdir, record)]
    if keep.since is not None:
        runs = [r for r in runs if r.start is not None and r.start >= keep.since]
    runs.sort(key=lambda r: (r.record, r.start or 0.0, r.letter))
    table = format_table(runs)
    body = _last([row for row in table[1:] if keep.grep is None or keep.grep in row[0]], last)
    for text, key in [table[0], *body]:
        out.line(text, key)
    return 0


def show_runs(out: Output, passdir: str, record: int, letter: str | None, keep: Filter, last: int | None) -> int:
    """Print the handler logs of one record, newest first (or just one)."""
    if letter is not None:
        paths = [os.path.join(passdir, "logfiles", f"incoming.{record}.{letter}")]
    else:
        found = _log_paths(passdir, record)
        if not found:
            raise Fail(f"{os.path.join(passdir, 'logfiles')}: no handler logs of record {record}")
        by_letter = {letter: path for _, letter, path in found}
        paths = [by_letter[letter] for letter in newest_first({lt: _started(p) for lt, p in by_letter.items()})]
    shown = 0
    for path in paths:
        lines = _lines(_read(path))
        if lines and lines[-1] == "":
            lines.pop()
        head, body = (lines[:1], lines[1:]) if lines and lines[0].startswith("waitd: start ") else ([], lines)
        if keep.since is not None:
            at = _iso_time(parse_fields(head[0]).get("at")) if head else None
            if at is None or at < keep.since:
                continue
        if keep.grep is not None:
            body = [line for line in body if keep.grep in line]
            if not body:
                continue
        body = _last(body, last)
        if letter is None:
            if shown:
                out.line("")
            out.line(f"==> {path} <==", "title")
        shown += 1
        for line in head + body:
            out.line(line, _line_key(line))
    return 0


def _line_key(line: str) -> str:
    """Colour waitd's own lines in a handler log; a failed end in red."""
    if line.startswith("waitd: start "):
        return "waitd"
    if line.startswith(_NOT_STARTED):
        return "bad"
    m = _FOOTER.search(line)
    if m is None:
        return ""
    return "waitd" if parse_fields(m[1]).get("exit") == "0" else "bad"


def _last(items: list[T], n: int | None) -> list[T]:
    return items if n is None else items[max(0, len(items) - n) :]


def _started(path: str) -> int:
    """When a run started (ms), from waitd's header; else the file's mtime."""
    at = header_time(path)
    if at is not None:
        return at
    try:
        return os.stat(path).st_mtime_ns // 1_000_000
    except OSError:
        return 0


# -- command line ---------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlogview",
        description="Read waitd's log ($PASSDIR/incoming.log) and the logs of its handler runs.",
        epilog="WHEN is a local time (2026-11-23 08:00) or an age (90s, 15m, 2h, 3d). "
        "LEVEL is debug, info, warning, error or critical.",
    )
    add = p.add_argument
    add("--passdir", metavar="DIR", help="the PASSDIR (default: $PASSDIR)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("-f", "--follow", action="store_true", help="follow incoming.log, across log rotation")
    what.add_argument("--list", action="store_true", help="a table of the handler runs, read from their logs")
    add("-r", "--record", metavar="N", type=_number(1, "a record number"), help="the handler logs of record N")
    add("-l", "--letter", metavar="L", type=_letter, help="with -r: only the log with letter L (A to Z)")
    add("-n", "--lines", metavar="N", type=_number(0, "a count"), help="only the last N entries, lines or rows")
    add("--since", metavar="WHEN", type=_since, help="only what happened since WHEN")
    add("--level", metavar="LEVEL", type=str.lower, choices=list(LEVELS), default="debug", help="lowest level shown")
    add("-g", "--grep", metavar="TEXT", help="only entries, lines or rows that contain TEXT")
    add("--color", choices=["auto", "always", "never"], default="auto", help="auto: on a terminal, unless NO_COLOR")
    add("--version", action="version", version=f"tlogview (waitd) {__version__}")
    return p


def _number(low: int, what: str) -> Callable[[str], int]:
    def number(text: str) -> int:
        if not text.isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} (at least {low})")
        return int(text)

    return number


def _letter(text: str) -> str:
    if len(text) != 1 or not text.isascii() or not text.isalpha():
        raise argparse.ArgumentTypeError(f"{text!r} is not a log letter (A to Z)")
    return text.upper()


def _since(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.letter is not None and args.record is None:
        parser.error("-l L needs -r N")
    if args.follow and args.record is not None:
        parser.error("-f follows incoming.log only; it does not go with -r")
    if args.level != "debug" and (args.record is not None or args.list):
        parser.error("--level filters incoming.log only; it does not go with -r or --list")
    passdir = args.passdir or os.environ.get("PASSDIR")
    if not passdir:
        parser.error("no PASSDIR: give --passdir DIR or set the PASSDIR environment variable")
    tty = sys.stdout.isatty()
    colour = args.color == "always" or (args.color == "auto" and tty and not os.environ.get("NO_COLOR"))
    out = Output(sys.stdout, colour, tty)
    keep = Filter(args.since, args.level, args.grep)
    passdir = os.path.abspath(passdir)
    try:
        if not os.path.isdir(passdir):
            why = os.strerror(2) if not os.path.exists(passdir) else "not a directory"
            raise Fail(f"{passdir}: cannot read PASSDIR: {why}")
        if args.list:
            return list_runs(out, passdir, args.record, keep, args.lines)
        if args.record is not None:
            return show_runs(out, passdir, args.record, args.letter, keep, args.lines)
        return show_log(out, os.path.join(passdir, "incoming.log"), keep, args.lines, args.follow)
    except Fail as exc:
        sys.stdout.flush()
        print(f"tlogview: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the way out of -f
        return 0
    except BrokenPipeError:  # `tlogview | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
