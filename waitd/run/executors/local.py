# SPDX-License-Identifier: MIT
"""The local executor: handlers run as child processes of waitd, on this host.

`Local` is the `Executor` of this host: the handler is executed with
os.posix_spawn (vfork and exec in glibc) in its own session, stdin from
/dev/null, stdout and stderr on the run's log file, the incoming directory
as working directory, the signal dispositions and mask a fresh process
has (also for a signal waitd was started with ignored: `ignored_signals`),
and no descriptor of waitd's beyond 0-2 (`seal_descriptors` made every
other one close-on-exec).  argv is [process-name, path...], never
through a shell.

An adopted handler is not waitd's child: its end is seen through a pidfd
(Linux 5.3) that joins the loop's selector (`wakeup_fds`; once it ended,
`release` lets the loop forget it before it is closed), or at a poll
where there is none, and its outcome is unknown (status 1).

Failures: `start` raises OSError when the handler cannot be executed;
`signal` ignores a process group already gone; `poll` of a pid reaped
elsewhere gives an unknown outcome.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable

from waitd.decide.outcome import Outcome
from waitd.formats.history_line import Event, Status
from waitd.run.runs import Run

# Python ignores these; a handler starts with them at their defaults.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_FIXED = (signal.SIGKILL, signal.SIGSTOP)


def ignored_signals() -> tuple[int, ...]:
    """The signals ignored in waitd now (Python's own, and those it was
    started with ignored, as nohup or a daemon's signal map leave them):
    a handler starts with them at their defaults.  exec(2) resets the
    caught ones by itself."""
    ignored = {s for s in signal.valid_signals() if s not in _FIXED and signal.getsignal(s) == signal.SIG_IGN}
    return tuple(sorted(ignored.union(_RESET_SIGNALS)))


_STDIN = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)  # a handler's file actions
_DUP2 = os.POSIX_SPAWN_DUP2

# A recorded start and the process's own start time may differ this much.
CREATE_SLACK_S = 2.0


class Local:
    """Handlers run as child processes of waitd, on this host."""

    remote = False
    term = "TERM to its process group"

    def __init__(self) -> None:
        self._home: int | None = None
        self._defaults: tuple[int, ...] | None = None  # `ignored_signals` at the first start
        self._pidfds: dict[int, int] = {}  # pid of an adopted handler -> its pidfd
        self._spent: list[int] = []  # pidfds of adopted handlers that ended: to forget, then close

    def ident(self) -> str | None:
        return None

    def ready(self) -> bool:
        return True

    def describe(self, run: Run) -> str:
        return f"pid {run.pid}"

    def start(self, run: Run, program: str, argv: list[str], env: dict[str, str], cwd: str) -> None:
        """Execute the handler in its own session; set `run.pid`."""
        actions = [_STDIN, (_DUP2, run.log_fd, 1), (_DUP2, run.log_fd, 2)]
        # posix_spawn has no working directory of its own (before glibc's
        # addchdir_np, which Python 3.11 does not offer), so waitd steps into
        # the directory for the spawn and back out; it is single-threaded.
        home = self._home_fd()
        if self._defaults is None:
            self._defaults = ignored_signals()  # waitd's dispositions are set by then, and stay
        os.chdir(cwd)
        try:
            run.pid = os.posix_spawn(
                program, argv, env, file_actions=actions, setsid=True, setsigmask=(), setsigdef=self._defaults
            )
        finally:
            try:
                os.fchdir(home)
            except OSError:  # pragma: no cover - an O_PATH descriptor of a directory
                pass  # never lose the pid of a handler that started

    def _home_fd(self) -> int:
        """A descriptor of waitd's own working directory (O_PATH: it needs no
        read permission), taken before the first spawn leaves it."""
        if self._home is None:
            self._home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._home

    def poll(self, run: Run) -> Outcome | None:
        """The run's outcome if it ended (reaping it), else None."""
        pid = run.pid
        assert pid is not None
        if run.adopted:
            return self._poll_adopted(pid)
        try:
            pid, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return Outcome(Status.UNKNOWN)  # reaped elsewhere: its end is unknown
        if pid == 0:
            return None
        return outcome_of(os.waitstatus_to_exitcode(status))

    def _poll_adopted(self, pid: int) -> Outcome | None:
        fd = self._pidfds.get(pid)
        if fd is not None and not select.select([fd], [], [], 0)[0]:
            return None
        if fd is None and _alive(pid):
            return None
        if fd is not None:
            self._spent.append(self._pidfds.pop(pid))
        return Outcome(Status.UNKNOWN)

    def signal(self, run: Run, signum: int) -> None:
        """Signal the run's process group (its session), ignoring a gone one."""
        if run.pid is None:
            return
        try:
            os.killpg(run.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def adopt(self, event: Event) -> bool:
        """Watch the handler of an open run if it still runs (same pid,
        created when the run started); False if it does not."""
        if not _same_process(event):
            return False
        assert event.pid is not None
        try:
            self._pidfds[event.pid] = os.pidfd_open(event.pid)
        except (AttributeError, OSError):
            pass  # no pidfd (an old kernel): its end is seen at a poll
        return True

    def wakeup_fds(self) -> list[int]:
        return list(self._pidfds.values())

    def release(self, forget: Callable[[int], None]) -> None:
        """Close the pidfds of adopted handlers that ended, each once
        `forget` (the loop's selector) has let go of it."""
        while self._spent:
            fd = self._spent.pop()
            forget(fd)
            os.close(fd)


def _same_process(event: Event) -> bool:
    """True if the run's pid runs and was created when the run started."""
    if event.pid is None or event.at is None:
        return False
    import psutil  # only for the runs a previous waitd left: not worth every start's 3 MB

    try:
        proc = psutil.Process(event.pid)
        return abs(proc.create_time() - event.at) < CREATE_SLACK_S and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, OverflowError):
        return False


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, OverflowError):
        return False


def seal_descriptors() -> None:
    """Make every descriptor above 2 close-on-exec, those inherited too.

    Python opens its own close-on-exec already; this catches what waitd's
    parent left open, so that no handler inherits it.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = [str(fd) for fd in range(3, 1024)]
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # closed meanwhile (the listing's own descriptor)


def outcome_of(code: int) -> Outcome:
    """The outcome of an exit code as waitstatus_to_exitcode gives it (-N:
    signal N); one Outcome a code (it is frozen), made once."""
    found = _OUTCOMES.get(code)
    if found is None:
        found = _OUTCOMES[code] = _outcome(code)
    return found


_OUTCOMES: dict[int, Outcome] = {}  # at most 256 exits and 64 signals


def _outcome(code: int) -> Outcome:
    if code < 0:
        return Outcome(Status.UNKNOWN, signal=signal_name(-code))
    return Outcome(Status.KNOWN, exit=code)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"
