# SPDX-License-Identifier: MIT
"""`waitd --demo`: waitd at work on a throw-away PASSDIR, for a newcomer.

`run` makes a PASSDIR under $TMPDIR (`waitd-demo-XXXXXXXX`) with an example
table of two records, their handlers and an incoming directory, forks a
director process that drops files on a schedule, and runs the daemon in
the foreground (`start.serve`, the same code as `waitd -f`) with its log on
stderr.  The newcomer sees files arrive (one written slowly under a dot
name and renamed in), wait their age, get handled, a handler fail, and
files pruned by keep-after and by hours-too-old.  The director then stops
the daemon with TERM and `run` prints where everything is.  It takes about
15 s; WAITD_DEMO_FAST=1 runs the same schedule about seven times faster
(the tests use it).

Ctrl-C ends the demo cleanly.  To waitd INT means hibernate, so the
director, which gets the terminal's INT as well, sends the daemon TERM; an
INT sent to the daemon alone makes it hibernate, and the director, seeing
that in the status file, stops it too.  The director exits when the daemon
does (it checks its parent), so nothing is left running.

Failures: a demo that does not finish within its deadline is stopped, says
so and exits 1; Ctrl-C exits 130.  The PASSDIR is left in place to read.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import NoReturn

from waitd.config import table
from waitd.config.errors import WaitdError
from waitd.config.passdir import history_path, table_path
from waitd.daemon import control, pidfile, start
from waitd.daemon.loop import Settings
from waitd.journal.history import parse_line

FAST_ENV = "WAITD_DEMO_FAST"
FAST_SCALE = 0.15
DEADLINE_S = 60.0

HANDLER = """\
#!/bin/sh
# Example handler.  waitd runs it as `gvar_incproc /full/path/of/file`, in
# the incoming directory, stdin from /dev/null, stdout and stderr into
# logfiles/incoming.N.L, with WAITD_RECORD, WAITD_TELEM, WAITD_FILE and
# WAITD_PASSDIR set.  Exit 0 means handled; keep-after may then remove it.
echo "gvar_incproc: record $WAITD_RECORD ($WAITD_TELEM) got $1"
echo "gvar_incproc: $(wc -c < "$1") bytes, first line: $(head -n 1 "$1")"
"""

FAILING = """\
#!/bin/sh
# Example of a handler that fails.  waitd records the exit status; a file
# whose run failed is never removed by keep-after, only by hours-too-old.
echo "check_incproc: $1: checksum mismatch" >&2
exit 3
"""

TABLE = """\
# incoming(5): one record a line, 7 fields:
# telem  incoming-dir  name-template  process-name  wait-until-age(s)  keep-after  hours-too-old
#
# *.g8 files are handled once nothing has written to them for {wait_g8:g} s;
# only the newest handled one is kept.
gvar   in  *.g8   {passdir}/gvar_incproc   {wait_g8:g}  1  0
# *.bad files go to a handler that fails; they are kept (-1) until they
# have been in the spool {too_old_h:g} h ({too_old_s:.0f} s).
check  in  *.bad  {passdir}/check_incproc  {wait_bad:g}  -1  {too_old_h:g}
"""


class _Schedule:
    """The demo's times in seconds, scaled for a fast run."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.wait_g8 = 4 * scale
        self.wait_bad = 1 * scale
        self.too_old_h = round(0.003 * scale, 6)  # 10.8 s at full speed

    def at(self, t: float) -> float:
        return t * self.scale


def run(interval: float) -> int:
    """Make the demo PASSDIR, start the director, serve until it says stop."""
    scale = FAST_SCALE if os.environ.get(FAST_ENV) else 1.0
    when = _Schedule(scale)
    passdir = tempfile.mkdtemp(prefix="waitd-demo-")
    _make_passdir(passdir, when)
    records, errors = table.read(table_path(passdir), passdir, os.environ)
    if errors:  # a bug in this module, not the user's doing
        raise WaitdError("demo: the example table is invalid: " + "; ".join(map(str, errors)))
    _say(f"PASSDIR is {passdir}; waitd's log follows (Ctrl-C ends the demo)")
    settings = Settings(passdir, interval_s=interval * scale, stop_timeout_s=5.0)
    sys.stdout.flush()
    sys.stderr.flush()
    daemon_pid = os.getpid()
    director = os.fork()
    if director == 0:
        _director(passdir, daemon_pid, when)  # never returns
    code = 1
    try:
        code = start.serve(settings, records, foreground=True)
    except KeyboardInterrupt:  # Ctrl-C before the daemon caught its signals
        code = 130
    finally:
        ended = _end_director(director)
    if code == 0:
        code = ended
    _summary(passdir, code)
    return code


def _make_passdir(passdir: str, when: _Schedule) -> None:
    os.mkdir(os.path.join(passdir, "in"))
    for name, text in (("gvar_incproc", HANDLER), ("check_incproc", FAILING)):
        path = os.path.join(passdir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    with open(table_path(passdir), "w") as f:
        f.write(
            TABLE.format(
                passdir=passdir,
                wait_g8=when.wait_g8,
                wait_bad=when.wait_bad,
                too_old_h=when.too_old_h,
                too_old_s=when.too_old_h * 3600,
            )
        )


# -- the director (a forked child) -----------------------------------------


def _director(passdir: str, daemon_pid: int, when: _Schedule) -> NoReturn:
    """Drop the demo files, then stop the daemon once they are all done."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = _direct(passdir, daemon_pid, when)
    except KeyboardInterrupt:
        _say("interrupted; stopping waitd with TERM (to waitd itself INT means hibernate)")
        code = 130
    except _DaemonGone:
        code = 1
    except BaseException as exc:  # a demo must not leave a daemon behind
        _say(f"director failed: {exc!r}; stopping waitd")
    try:
        os.kill(daemon_pid, signal.SIGTERM)
    except OSError:
        pass
    sys.stderr.flush()
    os._exit(code)


class _DaemonGone(Exception):
    pass


def _direct(passdir: str, daemon_pid: int, when: _Schedule) -> int:
    incoming = os.path.join(passdir, "in")
    start = time.monotonic()

    def until(t: float, done: Callable[[], bool] = lambda: False) -> bool:
        """Sleep until `t` s after the start (or `done`); False if the daemon hibernated."""
        while time.monotonic() - start < when.at(t) and not done():
            if os.getppid() != daemon_pid:
                raise _DaemonGone
            state = control.read_status(passdir)
            if state is not None and state.mode == "hibernating":
                _say("waitd hibernates (it got INT); the demo stops it with TERM")
                return False
            time.sleep(min(0.1, when.at(0.2)))
        return True

    steps: list[tuple[float, Callable[[], None]]] = [
        (1.0, lambda: _drop(incoming, "a.g8", b"GVAR a\n" + b"0" * 200)),
        (2.0, lambda: _slow(incoming, "b.g8", when, until)),
        (3.0, lambda: _drop(incoming, "report.bad", b"not what anyone wanted\n")),
        (8.0, lambda: _drop(incoming, "c.g8", b"GVAR c\n" + b"1" * 50)),
        (9.0, lambda: _show_status(passdir)),
    ]
    for t, step in steps:
        if not until(t):
            return 130
        step()
    names = [os.path.join(incoming, n) for n in ("a.g8", "b.g8", "c.g8", "report.bad")]
    if not until(DEADLINE_S, lambda: _all_done(passdir, incoming, names)):
        return 130
    if not _all_done(passdir, incoming, names):
        _say(f"gave up waiting after {when.at(DEADLINE_S):.0f} s; stopping waitd")
        return 1
    _say("every demo file is handled and pruned; stopping waitd with TERM")
    return 0


def _drop(incoming: str, name: str, data: bytes) -> None:
    with open(os.path.join(incoming, name), "wb") as f:
        f.write(data)
    _say(f"{name} arrives complete ({len(data)} bytes)")


def _slow(incoming: str, name: str, when: _Schedule, until: Callable[[float], bool]) -> None:
    """Write under a dot name in four pieces, then rename it in, as rsync does."""
    part = os.path.join(incoming, f".{name}.part")
    _say(f"{name} is being written slowly as .{name}.part (a dot name: no template matches it)")
    with open(part, "wb") as f:
        for i in range(4):
            f.write(f"GVAR {name} piece {i}\n".encode() + b"2" * 100)
            f.flush()
            if not until(2.0 + 0.8 * (i + 1)):
                break
    os.rename(part, os.path.join(incoming, name))
    _say(f"{name} renamed in; it is handled once {when.wait_g8:g} s have passed since its last write")


def _show_status(passdir: str) -> None:
    text = control.format_status(control.read_status(passdir), pidfile.running_pid(passdir))
    _say("this is what `waitd -s status` shows now:\n" + "".join(f"    {line}\n" for line in text.splitlines()))


def _all_done(passdir: str, incoming: str, paths: list[str]) -> bool:
    """Each demo file ran once, keep-after and expiry removed all but c.g8."""
    try:
        with open(history_path(passdir), encoding="ascii") as f:
            lines = f.read().splitlines()
        left = sorted(os.listdir(incoming))
    except OSError:
        return False
    ended = set()
    for line in lines:
        try:
            event = parse_line(line)
        except ValueError:
            continue
        if event.status != 0:
            ended.add(event.path)
    return ended >= set(paths) and left == ["c.g8"]


def _end_director(pid: int) -> int:
    """Reap the director (stopping it if the daemon ended first); its exit code."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGTERM)
            done, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 1
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 1


def _say(text: str) -> None:
    sys.stderr.write(f"demo: {text}\n")
    sys.stderr.flush()


def _tlogview() -> str:
    """How to call tlogview: by its full path when it is not on $PATH
    (as after `make demo`, which runs waitd from .venv/bin)."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "tlogview")
    if shutil.which("tlogview") is None and os.access(beside, os.X_OK):
        return beside
    return "tlogview"


def _summary(passdir: str, code: int) -> None:
    how = {0: "done", 130: "interrupted"}.get(code, "ended early")
    tlogview = _tlogview()
    print(f"""
demo: {how}.  Everything is in {passdir}:
  incoming          the record table (see incoming(5))
  incoming.log      waitd's own log, what scrolled by above
  incoming.history  one line per event: PATH PROCESS MTIME STATUS key=value...
  logfiles/         each handler run's output: incoming.RECORD.LETTER
  in/               the incoming directory; c.g8 stays (keep-after 1)
Read them with:
  {tlogview} --passdir {passdir} --list
  {tlogview} --passdir {passdir} -r 1
  {tlogview} --passdir {passdir}
Remove it with: rm -r {passdir}""")
    sys.stdout.flush()
