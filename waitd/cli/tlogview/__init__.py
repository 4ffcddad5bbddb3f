# SPDX-License-Identifier: MIT
"""tlogview: read waitd's own log and the logs of its handler runs.

Without options it prints $PASSDIR/incoming.log; `-f` then follows it
across a rotation; `-n` keeps the last N entries (`follow`).  `-r N`
prints the handler logs of record N (logfiles/incoming.N.L), newest first
by the start time in waitd's header line, and `--list` tables every
handler log from the header and footer lines waitd writes around the
handler's output (`show`).  `--since`, `--level` and `-g` filter what is
printed.  The parsing is pure and kept apart from the I/O (`read`); this
module is the command line: `main` reads the arguments and calls one of
them.  tlogview never writes to PASSDIR and imports nothing of the daemon
but the history's escaping, PASSDIR's names and runner's order of log
letters.

Failures: a missing PASSDIR or log prints `tlogview: PATH: what: reason`
and exits 1; a bad command line exits 2.  Ctrl-C (the way out of `-f`) and
a reader that stops reading (`tlogview | head`) exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from waitd import __version__
from waitd.cli.tlogview.follow import show_log
from waitd.cli.tlogview.read import LEVELS, Fail, Filter, parse_since
from waitd.cli.tlogview.show import Output, list_runs, show_runs
from waitd.config.passdir import log_path


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


def _passdir(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The PASSDIR asked for, once the options are known to go together."""
    if args.letter is not None and args.record is None:
        parser.error("-l L needs -r N")
    if args.follow and args.record is not None:
        parser.error("-f follows incoming.log only; it does not go with -r")
    if args.level != "debug" and (args.record is not None or args.list):
        parser.error("--level filters incoming.log only; it does not go with -r or --list")
    passdir = args.passdir or os.environ.get("PASSDIR")
    if not passdir:
        parser.error("no PASSDIR: give --passdir DIR or set the PASSDIR environment variable")
    return os.path.abspath(passdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    passdir = _passdir(parser, args)
    tty = sys.stdout.isatty()
    colour = args.color == "always" or (args.color == "auto" and tty and not os.environ.get("NO_COLOR"))
    out = Output(sys.stdout, colour, tty)
    keep = Filter(args.since, args.level, args.grep)
    try:
        if not os.path.isdir(passdir):
            why = os.strerror(2) if not os.path.exists(passdir) else "not a directory"
            raise Fail(f"{passdir}: cannot read PASSDIR: {why}")
        if args.list:
            return list_runs(out, passdir, args.record, keep, args.lines)
        if args.record is not None:
            return show_runs(out, passdir, args.record, args.letter, keep, args.lines)
        return show_log(out, log_path(passdir), keep, args.lines, args.follow)
    except Fail as exc:
        sys.stdout.flush()
        print(f"tlogview: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the way out of -f
        return 0
    except BrokenPipeError:  # `tlogview | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
