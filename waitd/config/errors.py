# SPDX-License-Identifier: MIT
"""The exceptions waitd raises, the exit codes they map to, and the guard for the others.

Every error waitd reports to an operator is one of these, so the command
line can turn it into a message and an exit status in one place.  The
message always names its subject first (a file and line, a path, a pid).

`Unexpected` is the last guard of the loop and of the control socket: an
error nobody expected (a bug) is logged with its traceback the first
time, then only counted, and the guard says how long to stay calm.  It
logs; it does no other I/O.
"""

from __future__ import annotations

import logging
import time

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


class Unexpected:
    """The loop's last guard: errors nobody expected (a bug).

    The first of a kind is logged with its traceback; the same one again
    only as a count, at most once a minute, so that a bug that fires on
    every turn cannot fill the disk with its log.  `note` also says how
    long the loop should stay calm before its next turn (doubling from
    50 ms to 1 s while the same error repeats), so that it cannot spin.
    """

    CALM_S = (0.05, 1.0)
    SUMMARY_S = 60.0

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.repeats = 0  # the same error, turn after turn
        self._last: tuple[str, ...] | None = None
        self._seen: dict[tuple[str, ...], int] = {}
        self._summary_at = 0.0

    def note(self, exc: BaseException, subject: str = "waitd") -> float:
        """Log `exc` (once, then counted) as `subject`'s; the calm to keep."""
        kind = _signature(exc)
        self.repeats = self.repeats + 1 if kind == self._last else 1
        self._last = kind
        count = self._seen.get(kind, 0) + 1
        self._seen[kind] = count
        now = time.monotonic()
        if count == 1:
            self.log.error("%s: unexpected error; carrying on", subject, exc_info=exc)
        elif now >= self._summary_at:
            self._summary_at = now + self.SUMMARY_S
            self.log.error("%s: unexpected error again (%d times so far): %s: %s", subject, count, kind[0], exc)
        low, high = self.CALM_S
        # The exponent is capped: 2 ** 1024 is past any float, and the guard
        # must not raise after a thousand turns of the same error.
        return min(high, low * 2 ** min(self.repeats - 1, 64))

    def clear(self) -> None:
        """A turn went well."""
        self.repeats = 0
        self._last = None


def _signature(exc: BaseException) -> tuple[str, ...]:
    """An error's kind: its type and where it was raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = (tb.tb_frame.f_code.co_filename, str(tb.tb_lineno)) if tb is not None else ("", "")
    return (type(exc).__name__, *where)
