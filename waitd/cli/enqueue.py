# SPDX-License-Identifier: MIT
"""`waitd --enqueue QUEUE FILE...`: files into a queue, each by its tmp/.

Its own module so that the other command lines do not load the queue's
code.  Exit status: 0 when every file was enqueued, else 1 (each failure
said on stderr), 75 "queue full" while QUEUE/incoming holds --max files
or more; `WaitdError` when QUEUE is not a queue directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from waitd.config.errors import UsageError, WaitdError
from waitd.formats.history_line import escape
from waitd.spool import queue

EXIT_QUEUE_FULL = 75  # EX_TEMPFAIL: try again later (--max)


def enqueue(root: str, paths: Sequence[str], most: int | None = None) -> int:
    """`--enqueue Q [--max N] FILE...`: each file into Q, by its tmp/,
    fsync'd; with --max, none once Q/incoming holds N files (exit 75)."""
    if not paths:
        raise UsageError("--enqueue QUEUE needs one or more files")
    target = queue.Queue(os.path.abspath(root))
    try:
        target.make()
    except OSError as exc:
        raise WaitdError(f"{root}: not a queue directory: {exc.strerror or exc}") from exc
    failed = 0
    for n, path in enumerate(paths):
        if most is not None and (held := target.count("incoming")) >= most:
            left = " ".join(escape(p) for p in paths[n:])
            print(
                f"waitd: {escape(target.incoming)}: queue full ({held} files, --max {most}); not enqueued: {left}",
                file=sys.stderr,
            )
            return EXIT_QUEUE_FULL
        try:
            where = queue.enqueue(path, target)
        except OSError as exc:
            print(f"waitd: {escape(path)}: not enqueued: {exc.strerror or exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"waitd: {escape(path)}: enqueued as {escape(where)}")
    return 1 if failed else 0
