# SPDX-License-Identifier: MIT
"""The exceptions waitd raises, and the exit codes they map to.

Every error waitd reports to an operator is one of these, so the command
line can turn it into a message and an exit status in one place.  The
message always names its subject first (a file and line, a path, a pid).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_RUNNING = 3


class WaitdError(Exception):
    """Base of every error waitd raises on purpose."""

    exit_code = EXIT_FAILURE


class UsageError(WaitdError):
    """Bad command line or environment (no PASSDIR, say)."""

    exit_code = EXIT_USAGE


class TableError(WaitdError):
    """One problem in the record table, with the file and line it is on."""

    exit_code = EXIT_USAGE

    def __init__(self, path: str, line: int, what: str) -> None:
        # Line 0 is the file as a whole (it cannot be read, say).
        super().__init__(f"{path}:{line}: {what}" if line else f"{path}: {what}")
        self.path = path
        self.line = line
        self.what = what


class AlreadyRunning(WaitdError):
    """Another waitd holds the pid file of this PASSDIR."""

    exit_code = EXIT_RUNNING

    def __init__(self, pidfile: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "starting; its pid is not written yet"
        super().__init__(f"{pidfile}: another waitd is running on this PASSDIR ({who})")
        self.pid = pid


class HistoryWriteError(WaitdError):
    """An event could not be appended to the history (full disk, say)."""

    def __init__(self, path: str, cause: OSError) -> None:
        super().__init__(f"{path}: cannot append event: {cause.strerror or cause}")
        self.path = path
