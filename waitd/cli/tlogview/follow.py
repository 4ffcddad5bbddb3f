# SPDX-License-Identifier: MIT
"""tlogview on waitd's own log, $PASSDIR/incoming.log: print it, and follow it with `-f`.

`show_log` prints incoming.log, or its last `-n` entries, filtered by
`--since`, `--level` and `-g` (read.Filter: a continuation line goes with
its entry); with `-f` it prints the last FOLLOW_LINES entries as tail -f
does and then follows the file across a rotation (the file renamed and a
new one opened by waitd on HUP, or the file truncated in place).

This module writes nothing but to stdout.  Failures: `Fail` when the log
cannot be read.  Limits: `-f` polls every POLL_S seconds and, like
tail(1), misses a truncation after which the file grew past the point
already read before the next poll; `-g` in `-f` mode sees continuation
lines only when they arrive with their entry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from waitd.cli.tlogview.read import Entry, Filter, group, lines, read_file
from waitd.cli.tlogview.show import Output, last

POLL_S = 0.2
FOLLOW_LINES = 10  # entries printed before following, as tail -f does


def show_log(out: Output, path: str, keep: Filter, n: int | None, follow: bool) -> int:
    """Print incoming.log (its last entries), then follow it if asked."""
    data = read_file(path, "cannot read (has waitd run on this PASSDIR?)")
    cut = data.rfind(b"\n") + 1
    previous = not keep.active
    chosen = []
    for entry in group(lines(data[: cut - 1]) if cut else []):
        previous = keep.keep(entry, previous)
        if previous:
            chosen.append(entry)
    chosen = last(chosen, FOLLOW_LINES if n is None and follow else n)
    _print_entries(out, chosen, Filter(), True)
    out.stream.flush()
    if follow:
        _follow(out, path, cut, data[cut:], keep, previous)
    return 0


def _print_entries(out: Output, entries: Iterable[Entry], keep: Filter, previous: bool) -> bool:
    for entry in entries:
        previous = keep.keep(entry, previous)
        if previous:
            for line in entry.lines:
                out.line(line, entry.level or "")
    return previous


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
                    previous = _print_entries(out, group(lines(partial[: cut - 1])), keep, previous)
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
                    previous = _print_entries(out, group(lines(partial)), keep, previous)
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
