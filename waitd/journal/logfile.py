# SPDX-License-Identifier: MIT
"""incoming.log, waitd's own log: opened safely, reopened on HUP.

`setup_logging` points the "waitd" logger at $PASSDIR/incoming.log (and,
in the foreground, at stderr too), one line a message: a local time stamp
to the millisecond, the level, the message (`LOG_FORMAT`, which tlogview
reads).  The file is opened without following a planted symbolic link;
`LogFile.reopen` opens it again after a rotation (HUP), and keeps writing
to the file opened before if it cannot, with an error.  waitd and each of
its sink processes set it up the same way.

Failures: `WaitdError` naming the file when it cannot be opened at all.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

from waitd.config.errors import WaitdError
from waitd.config.passdir import log_path

log = logging.getLogger("waitd")

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
LOG_DATE = "%Y-%m-%d %H:%M:%S"


class LogFile(logging.StreamHandler):  # type: ignore[type-arg]
    """incoming.log, opened without following a planted symlink, reopenable."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace", buffering=1)

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            try:
                self.stream = self._open()
            except OSError as exc:
                problem: OSError | None = exc  # keep writing to the old one
            else:
                problem = None
                old.close()
        finally:
            self.release()
        if problem is not None:
            log.error("%s; still writing to the file opened before", _refusal(self.path, problem))

    def fileno(self) -> int:
        return int(self.stream.fileno())


def setup_logging(passdir: str, foreground: bool) -> LogFile:
    logger = logging.getLogger("waitd")
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    formatter = logging.Formatter(LOG_FORMAT, LOG_DATE)
    path = log_path(passdir)
    try:
        logfile = LogFile(path)
    except OSError as exc:
        raise _refusal(path, exc) from exc
    logfile.setFormatter(formatter)
    logger.addHandler(logfile)
    if foreground:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(formatter)
        logger.addHandler(err)
    logger.propagate = False
    return logfile


def _refusal(path: str, exc: OSError) -> WaitdError:
    """The error for a file of waitd's own in PASSDIR that it cannot open."""
    if exc.errno == errno.ELOOP:
        return WaitdError(f"{path}: is a symbolic link; waitd does not follow links in PASSDIR")
    return WaitdError(f"{path}: cannot open: {exc.strerror or exc}")
