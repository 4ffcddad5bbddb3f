# SPDX-License-Identifier: MIT
"""`waitd --enqueue QUEUE FILE...`: files into a queue, each by its tmp/.

Its own module so that the other command lines do not load the queue's
code.  Exit status: 0 when every file was enqueued, else 1 (each failure
said on stderr); `WaitdError` when QUEUE is not a queue directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from waitd.config.errors import UsageError, WaitdError
from waitd.formats.history_line import escape
from waitd.spool import queue


def enqueue(root: str, paths: Sequence[str]) -> int:
    """`--enqueue Q FILE...`: each file into Q, by its tmp/, fsync'd."""
    if not paths:
        raise UsageError("--enqueue QUEUE needs one or more files")
    target = queue.Queue(os.path.abspath(root))
    try:
        target.make()
    except OSError as exc:
        raise WaitdError(f"{root}: not a queue directory: {exc.strerror or exc}") from exc
    failed = 0
    for path in paths:
        try:
            where = queue.enqueue(path, target)
        except OSError as exc:
            print(f"waitd: {escape(path)}: not enqueued: {exc.strerror or exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"waitd: {escape(path)}: enqueued as {escape(where)}")
    return 1 if failed else 0
