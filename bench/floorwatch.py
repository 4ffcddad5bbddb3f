# SPDX-License-Identifier: MIT
"""The arrivals' durable floor: the least a watcher that keeps waitd's
promise of a durable start must do for each file (issue 21).

`python -m bench.floorwatch SPOOL HANDLER HISTORY`: plain Python, no
waitd.  It watches SPOOL with inotify (moved-to and close-write, as the
inotifywait loop does) and for each `*.dat` named, one at a time as
waitd runs a record's files: appends a history-sized line to HISTORY and
fdatasyncs it (the durable start), runs HANDLER on the file with
posix_spawn, and waits for it.  Nothing else: no log file, no log line,
no stat, no scheduler.  What waitd spends beyond this, in latency or in
CPU, is its own; what this spends beyond the inotifywait loop is the
durable start's price (an fdatasync, and Python's start of a process).
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time

import inotify_simple


def main(argv: list[str]) -> int:
    spool, handler, history = argv
    inotify = inotify_simple.INotify()
    inotify.add_watch(spool, inotify_simple.flags.MOVED_TO | inotify_simple.flags.CLOSE_WRITE)
    fd = os.open(history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("watching", flush=True)
    while True:
        for event in inotify.read():
            if not fnmatch.fnmatch(event.name, "*.dat"):
                continue
            path = os.path.join(spool, event.name)
            line = f"{path} {handler} 0 0 at={time.time():.6f} status=0 " + "x" * 40 + "\n"
            os.write(fd, line.encode("utf-8", "surrogateescape"))
            os.fdatasync(fd)
            pid = os.posix_spawn(handler, [handler, path], os.environ)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
