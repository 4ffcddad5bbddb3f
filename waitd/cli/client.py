# SPDX-License-Identifier: MIT
"""`waitd -s`: talk to the daemon running on a PASSDIR.

`command` carries out one verb: `status` prints the status report (from
waitd.status, or with --json the daemon's status document, asked through
the control socket); `reload`, `stop`, `idle`, `resume` and `wake` send
HUP, TERM, INT, CONT and ALRM (reload checks the table first and waits
for the daemon to take it; stop waits for the daemon to exit); `retry`
and `cancel` ask the daemon, through the control socket, to run the
files named again or not at all, and print one line per file.

Exit status: 0 when everything asked was done; 1 when no daemon runs,
it cannot be reached, or a file could not be retried or cancelled; 2 for
an invalid table (reload) or a missing PATH.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from waitd.config import table
from waitd.config.errors import EXIT_FAILURE, EXIT_USAGE, UsageError, WaitdError
from waitd.daemon import control, pidfile, sock
from waitd.formats.history_line import escape
from waitd.worker import app as celery_app


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
    pid = control.send(passdir, verb)
    print(f"waitd: sent {control.SIGNALS[verb].name} to pid {pid}")
    if verb != "stop" or not wait:
        return 0
    if control.stopped(passdir, pid):
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
    reply = sock.ask(passdir, {"cmd": verb, "paths": [os.path.abspath(p) for p in paths]})
    if "results" not in reply:
        raise WaitdError(str(reply.get("error", "the daemon refused the request")))
    for result in reply["results"]:
        stream = sys.stdout if result.get("ok") else sys.stderr
        print(f"waitd: {escape(str(result.get('path')))}: {result.get('message')}", file=stream)
    return 0 if reply.get("ok") else EXIT_FAILURE


def _reload(passdir: str, wait: bool) -> int:
    """Check the table, send HUP, and say whether the daemon took it."""
    table_path = os.path.join(passdir, "incoming")
    _, errors = table.read(table_path, passdir, os.environ, celery_app.problem(passdir))
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        print(
            f"waitd: {table_path}: {table.summary(errors)}; not reloaded: the daemon keeps the table it has",
            file=sys.stderr,
        )
        return EXIT_USAGE
    held = pidfile.holder(passdir)
    before = control.reloads(passdir, held.pid) if held is not None and held.pid is not None else -1
    pid = control.send(passdir, "reload")
    print(f"waitd: sent SIGHUP to pid {pid}")
    if not wait or before < 0:
        return 0
    taken = control.reloaded(passdir, pid, before)
    if taken is None:
        print(f"waitd: pid {pid} has not confirmed the reload within {control.RELOAD_WAIT_S:g} s", file=sys.stderr)
        return EXIT_FAILURE
    if taken.errors:
        for reason in taken.errors:
            print(reason, file=sys.stderr)
        print(f"waitd: {table_path}: not reloaded: the daemon keeps the table it has", file=sys.stderr)
        return EXIT_USAGE
    print(f"waitd: pid {pid} took {table_path}: {taken.records} record(s), {taken.active} active")
    return 0
