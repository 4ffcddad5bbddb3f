# SPDX-License-Identifier: MIT
"""`waitd -s`: talk to the daemon running on a PASSDIR.

`command` carries out one verb: `status` prints the status report (from
waitd.status, or with --json the daemon's status document, asked through
the control socket); `reload`, `stop`, `idle`, `resume` and `wake` send
HUP, TERM, INT, CONT and ALRM to the daemon holding the pid file
(`pidfile.holder`); `retry` and `cancel` ask the daemon, through the
control socket, to run the files named again or not at all, and print
one line per file.  `-s reload` checks the table first and then waits
until the status file says the daemon took it (or why not), at most
RELOAD_WAIT_S; `-s stop` waits until the daemon is gone, at most its own
stop timeout and kill grace (from the status file) and STOP_MARGIN_S.
`--no-wait` returns once the signal is sent.

This module changes nothing in PASSDIR: the daemon acts on the signals
and the requests; it writes the status file (`daemon.control`).

Exit status: 0 when everything asked was done; 1 when no daemon runs,
it cannot be signalled or reached, a stop or reload was not confirmed in
time, or a file could not be retried or cancelled; 2 for an invalid
table (reload) or a missing PATH.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from waitd.cli import taskapi
from waitd.config.errors import EXIT_FAILURE, EXIT_USAGE, UsageError, WaitdError
from waitd.config.passdir import pid_path, table_path
from waitd.daemon import control, pidfile, sock
from waitd.formats.status import TableReport
from waitd.run.executors import celery_problem

SIGNALS = {
    "reload": signal.SIGHUP,
    "stop": signal.SIGTERM,
    "idle": signal.SIGINT,
    "resume": signal.SIGCONT,
    "wake": signal.SIGALRM,
}
RELOAD_WAIT_S = 10.0
STOP_MARGIN_S = 10.0  # beyond the daemon's own stop timeout and kill grace
POLL_S = 0.05


def command(passdir: str, verb: str, paths: Sequence[str], wait: bool, json_out: bool) -> int:
    """Carry out `waitd -s VERB [PATH...]`; the exit status."""
    if verb in ("retry", "cancel"):
        if not paths:
            raise UsageError(f"-s {verb} needs one or more PATHs")
        return _files(passdir, verb, paths)
    if paths:
        raise UsageError(f"-s {verb} takes no PATH")
    if verb == "status":
        return _status(passdir, json_out)
    if verb == "reload":
        return _reload(passdir, wait)
    pid = _send(passdir, verb)
    print(f"waitd: sent {SIGNALS[verb].name} to pid {pid}")
    if verb != "stop" or not wait:
        return 0
    if _stopped(passdir, pid):
        print(f"waitd: pid {pid} stopped")
        return 0
    print(f"waitd: pid {pid} is still stopping (handlers running?); see waitd -s status", file=sys.stderr)
    return EXIT_FAILURE


def _status(passdir: str, json_out: bool) -> int:
    held = pidfile.holder(passdir)
    if json_out:
        if held is None:
            raise WaitdError(f"no waitd is running on {passdir}")
        reply = sock.ask(passdir, {"cmd": "status"})
        if not reply.get("ok"):
            raise WaitdError(str(reply.get("error", "the daemon refused the request")))
        json.dump(reply["status"], sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    if held is not None and held.pid is None:
        sys.stdout.write("waitd: running, starting (its pid is not written yet)\n")
        return 0
    pid = held.pid if held is not None else None
    sys.stdout.write(control.format_status(control.read_status(passdir), pid))
    return 0 if pid is not None else EXIT_FAILURE


def _files(passdir: str, verb: str, paths: Sequence[str]) -> int:
    """Ask the daemon to retry or cancel files; a line for each."""
    if pidfile.holder(passdir) is None:
        raise WaitdError(f"no waitd is running on {passdir}")
    return taskapi.ask_files(passdir, verb, paths)


def _reload(passdir: str, wait: bool) -> int:
    """Check the table, send HUP, and say whether the daemon took it."""
    from waitd.config import table

    path = table_path(passdir)
    _, errors = table.read(path, passdir, os.environ, celery_problem(passdir))
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        why = f"{table.summary(errors)}; not reloaded: the daemon keeps the table it has"
        print(f"waitd: {path}: {why}", file=sys.stderr)
        return EXIT_USAGE
    held = pidfile.holder(passdir)
    before = _reloads(passdir, held.pid) if held is not None and held.pid is not None else -1
    pid = _send(passdir, "reload")
    print(f"waitd: sent SIGHUP to pid {pid}")
    if not wait or before < 0:
        return 0
    taken = _reloaded(passdir, pid, before)
    if taken is None:
        print(f"waitd: pid {pid} has not confirmed the reload within {RELOAD_WAIT_S:g} s", file=sys.stderr)
        return EXIT_FAILURE
    if taken.errors:
        for reason in taken.errors:
            print(reason, file=sys.stderr)
        print(f"waitd: {path}: not reloaded: the daemon keeps the table it has", file=sys.stderr)
        return EXIT_USAGE
    print(f"waitd: pid {pid} took {path}: {taken.records} record(s), {taken.active} active")
    return 0


# -- signalling, and waiting for what the daemon did with it ---------------------


def _send(passdir: str, verb: str) -> int:
    """Signal the daemon of this PASSDIR; return its pid."""
    held = pidfile.holder(passdir)
    if held is None:
        raise WaitdError(f"no waitd is running on {passdir} (no daemon holds {pid_path(passdir)})")
    if held.pid is None:
        raise WaitdError(f"the waitd of {passdir} is starting and has not written its pid yet; try again")
    try:
        os.kill(held.pid, SIGNALS[verb])
    except ProcessLookupError:
        raise WaitdError(f"no waitd is running on {passdir} (pid {held.pid} ended just now)") from None
    except PermissionError as exc:
        raise WaitdError(f"cannot signal waitd pid {held.pid}: {exc.strerror}") from exc
    return held.pid


def _stopped(passdir: str, pid: int) -> bool:
    """Wait until the daemon `pid` no longer holds the PASSDIR; False if it
    still does after its stop timeout, its kill grace and a margin (from
    the status file)."""
    state = control.read_status(passdir)
    stop_s, grace_s = (state.stop_timeout_s, state.kill_grace_s) if state is not None else (30.0, 5.0)
    limit_s = stop_s + grace_s + STOP_MARGIN_S
    return _until(lambda: pidfile.running_pid(passdir) != pid and _gone(pid), limit_s)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts)."""
    import psutil  # only when waiting for a stop: not on every -s

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _reloads(passdir: str, pid: int) -> int:
    """How many HUPs the daemon `pid` has acted on so far (-1: unknown)."""
    state = control.read_status(passdir)
    if state is None or state.pid != pid:
        return -1
    return state.table.reloads


def _reloaded(passdir: str, pid: int, before: int) -> TableReport | None:
    """Wait until the daemon has acted on a HUP sent after it had acted on
    `before`; return the table part of its status, or None at the limit."""
    found: list[TableReport] = []

    def done() -> bool:
        state = control.read_status(passdir)
        if state is not None and state.pid == pid and state.table.reloads > before:
            found.append(state.table)
            return True
        return pidfile.running_pid(passdir) != pid

    _until(done, RELOAD_WAIT_S)
    return found[0] if found else None


def _until(condition: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True
