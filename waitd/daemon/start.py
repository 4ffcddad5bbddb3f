# SPDX-License-Identifier: MIT
"""Starting the daemon: its log, the pid file, the history, the loop.

`serve` runs waitd in this process (`waitd -f`, `--once`, `--demo`):
incoming.log opened (`journal.logfile.setup_logging`: never through a
planted link, reopened on HUP, also on stderr in the foreground), the
signals caught
(queued until the loop installs its own handlers), the pid file claimed,
logfiles/ made if missing, the history loaded, the runs of a previous
life recovered, the loop run.  `detach` forks a daemon (python-daemon,
with waitd's own empty signal map) that runs `serve` and tells the
waiting `waitd -g` through a pipe whether it came up, and if not, why.
A sink's process sets up its log the same way.  Both leave by `os._exit`
once `serve` has returned (`leave` in the foreground): by then every file
is written and closed, the sinks reaped, and the threads left are
daemons; the interpreter's teardown (freeing each module and object one
by one: some 50 ms of CPU with Celery loaded) would only delay the exit
of a `waitd --once` (issue 21).  After the history's load,
`fixed_mmap_threshold` keeps glibc's heap from holding on to what the
load freed (issue 21: the peak RSS of a start at scale).

Failures: a file of PASSDIR that cannot be opened is a WaitdError naming
it; one before the daemon is up reaches the operator's terminal.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import NoReturn

from waitd.config import table
from waitd.config.conf import Conf
from waitd.config.errors import WaitdError
from waitd.config.passdir import history_path
from waitd.daemon import pidfile
from waitd.daemon.loop import HANDLED_SIGNALS, Daemon, Settings
from waitd.journal.history import History
from waitd.journal.logfile import setup_logging
from waitd.run import runner
from waitd.spool.directory import names_in

log = logging.getLogger("waitd")


def serve(
    settings: Settings,
    records: Sequence[table.Record],
    foreground: bool,
    ready: Callable[[], None] | None = None,
    conf: Conf | None = None,
) -> int:
    """Open the log, catch the signals, claim the pid file, open the
    history, recover, and run the loop.

    The signals are caught before the pid file names this process: a HUP
    or TERM sent as soon as it appears is queued and acted on by the loop.
    `ready` is called once the daemon is up: pid file written, history
    read.
    """
    passdir = settings.passdir
    # The log first, so that a stale pid file's warning reaches incoming.log.
    logfile = setup_logging(passdir, foreground)
    signals: deque[int] = deque()
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, lambda signum, frame: signals.append(signum))  # queued until the loop runs
    with pidfile.PidFile(passdir):
        runner.make_logfiles(passdir)
        # The start allocates some hundred thousand objects that all live on
        # (a file's fact, its place in line): the cyclic collector would only
        # walk them again and again.  The loop turns it on after its first
        # turn (`Daemon._loop`).
        gc.disable()
        try:
            history = History(history_path(passdir))
            # The files long gone are forgotten as the history is read, so that
            # their lines and the first listing are never in memory at once;
            # the file itself is rewritten after the first pass.
            history.load(names_in)
            fixed_mmap_threshold()  # after the load: its chunks of a megabyte come from the heap
            daemon = Daemon(
                settings,
                records,
                history,
                reopen_log=logfile.reopen,
                signals=signals,
                conf=conf or Conf(),
                foreground=foreground,
            )
            daemon.recover()
            if ready is not None:
                ready()
            return daemon.run()
        finally:
            gc.enable()  # the loop did, unless the start failed


def leave(code: int) -> NoReturn:
    """Exit with `code` after a foreground `serve`: the log's handlers
    flushed and closed, stdout and stderr flushed, and no teardown of the
    interpreter (see the module)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing more can be said there
    os._exit(code)


# glibc's mallopt(3) parameter, and its initial value (bytes).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def fixed_mmap_threshold() -> None:
    """Keep glibc's malloc from raising its mmap threshold any more.

    A block above the threshold is mapped on its own and unmapped when it
    is freed.  glibc raises the threshold to the size of each such block
    freed (up to 32 MB): after the history's 5 MB table is freed at start,
    every array below that size, the first listing's among them (its
    names, the tables of its dict as it grows), comes from the heap, whose
    holes stay resident (5 MB at a start with 100,000 files, issue 21).
    Set after the load, whose chunks of a megabyte are better served from
    the heap again and again than mapped, and faulted in, each time (0.2 s
    of a million lines); from then on a block over 128 KiB (a listing of
    16,000 names) is mapped and unmapped each time.  Another C library
    (no mallopt) is left as it is.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    malloc_trim(0)


def detach(settings: Settings, records: Sequence[table.Record], settings_conf: Conf) -> int:
    """Fork; the child becomes the daemon and reports back through a pipe."""
    import daemon  # python-daemon

    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child:
        os.close(write_fd)
        report = b""
        while chunk := os.read(read_fd, 4096):
            report += chunk
        os.close(read_fd)
        os.waitpid(child, 0)
        if report.startswith(b"ok"):
            return 0
        status, _, message = report.decode("utf-8", "replace").partition(" ")
        sys.stderr.write(message or "waitd: the daemon exited before it was ready\n")
        return int(status) if status.isdigit() else 1
    os.close(read_fd)
    code = 1
    reported = False

    def ready() -> None:
        nonlocal reported
        _report(write_fd, 0, "ok\n")
        reported = True

    try:
        # Our own signal_map: python-daemon's would make TERM raise SystemExit
        # instead of draining the handlers.  The loop installs the real ones.
        context = daemon.DaemonContext(
            working_directory="/",
            umask=0o022,
            files_preserve=[write_fd],
            detach_process=True,
            # Nothing ignored either: handlers would inherit an ignored signal
            # through exec, and a detached daemon has no terminal to stop it.
            signal_map={},
        )
        context.open()
        code = serve(settings, records, foreground=False, ready=ready, conf=settings_conf)
    except WaitdError as exc:
        code = exc.exit_code
        if not reported:
            _report(write_fd, code, f"waitd: {exc}\n")
        log.critical("waitd: %s", exc)
    except Exception as exc:  # the operator must see why, not a silent exit
        if not reported:
            why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
            _report(write_fd, 1, f"waitd: cannot start: {why}\n")
        log.exception("waitd: %s", "stopped by an unexpected error" if reported else "cannot start")
    os._exit(code)


def _report(fd: int, code: int, message: str) -> None:
    """Tell the waiting `waitd -g` how the start went ("ok" or "CODE message"), once."""
    try:
        os.write(fd, (message if code == 0 else f"{code} {message}").encode())
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass
