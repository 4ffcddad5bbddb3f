# SPDX-License-Identifier: MIT
"""incoming.log, waitd's own log: opened safely, reopened on HUP.

`setup_logging` points the "waitd" logger at $PASSDIR/incoming.log (and,
in the foreground, at stderr too), one line a message: a local time stamp
to the millisecond, the level, the message (`LOG_FORMAT`, which tlogview
reads).  The file is opened without following a planted symbolic link;
`LogFile.reopen` opens it again after a rotation (HUP), and keeps writing
to the file opened before if it cannot, with an error.  waitd and each of
its sink processes set it up the same way.

Cost: waitd logs two lines a handler run, so a line is made cheaply: no
caller's frame, thread or process looked up for a record (LOG_FORMAT uses
none), the time stamp made once a second, and a record's line formatted
once for both handlers (`_Formatter`); and the loop holds the lines of a
turn (`held`) and writes them with one write(2) a file when the turn is
over, not one each while it starts handlers.  A run's two lines go
straight into the held lines (`say`: no LogRecord, some seventy Python
calls a file fewer) when every handler is one of waitd's own.

Failures: `WaitdError` naming the file when it cannot be opened at all.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import sys
import time
from typing import Any

from waitd.config.errors import WaitdError
from waitd.config.passdir import log_path

log = logging.getLogger("waitd")

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
LOG_DATE = "%Y-%m-%d %H:%M:%S"


class _Formatter(logging.Formatter):
    """LOG_FORMAT with its time stamp made once a second, and each record's
    line made once, for all the handlers that share this formatter."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, LOG_DATE)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, _datefmt: str | None = None) -> str:  # noqa: N802 - logging's
        return self._seconds(int(record.created))

    def _seconds(self, second: int) -> str:
        if second != self._second:
            self._stamp = time.strftime(LOG_DATE, time.localtime(second))
            self._second = second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        made = record.__dict__.get("_waitd_line")
        if made is None:
            made = record.__dict__["_waitd_line"] = super().format(record)
        return str(made)


_FORMATTER = _Formatter()  # the one of waitd's handlers (`setup_logging`)


class _Holding(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that can hold its lines and write them at once."""

    _held: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is None:
            super().emit(record)
        else:
            try:
                self._held.append(self.format(record) + self.terminator)  # under the handler's lock
            except Exception:
                self.handleError(record)

    def write_held(self, holding: bool = False) -> None:
        """Write what was held, with one write; stop holding (unless `holding`)."""
        with self.lock:  # type: ignore[union-attr]
            held, self._held = self._held, ([] if holding and self._held is not None else None)
            if held:
                try:
                    self._put(held)
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": held[-1]}))

    def _put(self, held: list[str]) -> None:
        """The held lines with one write(2) straight to the stream's
        descriptor (its buffer flushed first), encoded as the stream does;
        else through the stream (one with no descriptor: a test's capture)."""
        stream = self.stream
        fd = -1  # the descriptor under a text stream that encodes and writes nothing else of its own
        if type(stream) is io.TextIOWrapper:  # (no newline translation on Linux)
            try:
                fd = stream.fileno()
            except (OSError, ValueError):
                fd = -1
        if fd < 0:
            stream.write("".join(held))
            self.flush()
            return
        data = "".join(held).encode(stream.encoding, stream.errors)
        stream.flush()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


# While a turn holds the lines and every handler of the logger is waitd's
# own with its formatter, `say` appends a line to them without a LogRecord.
_straight: list[_Holding] | None = None
_SEEN: list[list[Any]] = [[], []]  # the logger's handlers when last seen, and of them waitd's own (`_Turn`)
_LEVELS = {level: logging.getLevelName(level) for level in (logging.INFO, logging.WARNING, logging.ERROR)}


class _Turn:
    """What `held` gives: the hold of a turn's lines, as a class with its
    own `__enter__` and `__exit__` rather than a generator under
    `contextlib` (a turn a file in a drain: some ten calls fewer)."""

    __slots__ = ("_handlers",)

    def __enter__(self) -> None:
        global _straight
        every = log.handlers
        if every != _SEEN[0]:  # the handlers changed (a test's, setup_logging's): waitd's own sorted out again
            _SEEN[:] = [list(every), [h for h in every if isinstance(h, _Holding)]]
        handlers = self._handlers = _SEEN[1]
        own = handlers == every and not log.filters
        for handler in handlers:
            with handler.lock:  # type: ignore[union-attr]  # logging's lock, made by Handler.__init__
                if handler._held is None:
                    handler._held = []
            own = own and handler.formatter is _FORMATTER and handler.level == logging.NOTSET
        _straight = handlers if own and handlers else None

    def __exit__(self, *_exc: object) -> None:
        global _straight
        _straight = None
        for handler in self._handlers:
            handler.write_held()


def held() -> _Turn:
    """Hold the lines of the "waitd" logger's handlers until the end of the
    `with` block (a turn of the loop), then write each handler's with one write."""
    return _Turn()


def write_held() -> None:
    """Write the lines held so far in this turn now, and go on holding: a
    reply of the control socket goes out after the lines of what it did
    (`waitd -s ...` returns with them in incoming.log)."""
    for handler in log.handlers:
        if isinstance(handler, _Holding) and handler._held:
            handler.write_held(holding=True)


def say(level: int, text: str) -> None:
    """Log `text` (made already) at `level` on the "waitd" logger: in a
    turn that holds the lines, straight into the handlers' held lines, as
    LOG_FORMAT would make it (a handler run's two lines: issue 21's cost);
    else through logging."""
    handlers = _straight
    if handlers is None:
        log.log(level, "%s", text)
        return
    if not log.isEnabledFor(level):
        return
    now = time.time()
    second = int(now)
    f = _FORMATTER  # its `stamp`, inline: two calls fewer a line
    local = f._stamp if second == f._second else f._seconds(second)
    name = _LEVELS.get(level) or logging.getLevelName(level)
    line = f"{local}.{int((now - second) * 1000):03d} {name} {text}\n"
    for handler in handlers:
        if handler._held is not None:  # held() set them holding
            handler._held.append(line)


class LogFile(_Holding):
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
    # What LOG_FORMAT does not show is not looked up for each record (the
    # logging HOWTO's "Optimization"): the caller's frame, thread, process.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    formatter = _FORMATTER
    path = log_path(passdir)
    try:
        logfile = LogFile(path)
    except OSError as exc:
        raise _refusal(path, exc) from exc
    logfile.setFormatter(formatter)
    logger.addHandler(logfile)
    if foreground:
        err = _Holding(sys.stderr)
        err.setFormatter(formatter)
        logger.addHandler(err)
    logger.propagate = False
    return logfile


def _refusal(path: str, exc: OSError) -> WaitdError:
    """The error for a file of waitd's own in PASSDIR that it cannot open."""
    if exc.errno == errno.ELOOP:
        return WaitdError(f"{path}: is a symbolic link; waitd does not follow links in PASSDIR")
    return WaitdError(f"{path}: cannot open: {exc.strerror or exc}")
