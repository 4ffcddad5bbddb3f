# SPDX-License-Identifier: MIT
"""One handler run: its log file, its process, its end.

`start` opens the record's next log file and writes waitd's header line,
forks a child that waits on a pipe, appends the status 0 event (with the
child's pid) to the history and syncs it, and only then lets the child
execute the handler: the status 0 line is on disk before the handler runs,
and a start that cannot be recorded never runs.  The child gets its own
session, stdin from /dev/null, stdout and stderr on the log file, the
incoming directory as working directory, the WAITD_* environment, and no
descriptor of waitd's beyond 0-2.  argv is [process-name, /abs/path],
executed directly, never through a shell.

`poll` reaps a run without blocking and `finish` records its end: status 2
with `exit=` for any exit code, status 1 with `signal=` when killed, and
writes the footer line to the log file.

Failures: `StartError` when the log file cannot be opened, the start
cannot be recorded (`HistoryWriteError` as cause), or the handler cannot be
executed; in that last case the status 1 event with `error=` was already
appended (the file is not consumed and the caller backs off).
"""

from __future__ import annotations

import enum
import os
import signal
import time
from dataclasses import dataclass

from waitd.errors import HistoryWriteError, WaitdError
from waitd.history import Event, History, Status, escape
from waitd.scan import FileFact
from waitd.table import Record

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
_RESET_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCONT, signal.SIGALRM,
                  signal.SIGCHLD, signal.SIGPIPE, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class RunState(enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"  # TERM sent to its process group
    KILLED = "killed"  # KILL sent
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Run:
    """A handler process started on one file."""

    record: int
    process: str  # as written in the table: the history's PROCESS
    program: str  # the executable found for it
    path: str
    fact: FileFact
    pid: int
    log_name: str
    log_fd: int
    started_at: float  # time.time()
    started_mono: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended."""

    status: Status
    exit: int | None = None
    signal: str | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        if self.exit is not None:
            return f"exit status {self.exit}"
        return "ended in an unknown state"


class StartError(WaitdError):
    """A run could not start; `recorded` says if a status 1 event was written."""

    def __init__(self, message: str, recorded: bool) -> None:
        super().__init__(message)
        self.recorded = recorded


def log_path(passdir: str, record: int, letter: str) -> str:
    return os.path.join(passdir, "logfiles", f"incoming.{record}.{letter}")


def last_letter(passdir: str, record: int) -> str | None:
    """The letter of the record's most recent log file, if any exists."""
    newest: tuple[int, str] | None = None
    for letter in LETTERS:
        try:
            st = os.stat(log_path(passdir, record, letter), follow_symlinks=False)
        except OSError:
            continue
        if newest is None or st.st_mtime_ns > newest[0]:
            newest = (st.st_mtime_ns, letter)
    return newest[1] if newest else None


def next_letter(letter: str | None) -> str:
    return "A" if letter is None else LETTERS[(LETTERS.index(letter) + 1) % len(LETTERS)]


def start(
    record: Record, program: str, path: str, fact: FileFact, letter: str,
    passdir: str, history: History, base_env: dict[str, str],
) -> Run:
    """Start the handler on one file; see the module docstring."""
    log_name = log_path(passdir, record.number, letter)
    try:
        log_fd = os.open(log_name, _LOG_FLAGS, 0o644)
    except OSError as exc:
        raise StartError(f"cannot open log file {log_name}: {exc.strerror}", recorded=False) from exc
    started_at = time.time()
    _write(log_fd, _header(record, program, path, started_at))
    env = dict(base_env)
    env.update(WAITD_RECORD=str(record.number), WAITD_TELEM=record.telem, WAITD_FILE=path,
               WAITD_PASSDIR=passdir, WAITD_LOG=log_name)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, measured by its effects
        _child(record.process, program, path, os.path.dirname(path), log_fd, go_r, err_w, env)
    os.close(go_r)
    os.close(err_w)
    event = Event(path, record.process, fact.mtime_ns // 1_000_000_000, Status.STARTED,
                  pid=pid, at=started_at, version=fact.version)
    try:
        history.append(event, sync=True)
    except HistoryWriteError as exc:
        os.close(go_w)  # the child sees EOF and exits without exec
        os.close(err_r)
        os.waitpid(pid, 0)
        _write(log_fd, f"waitd: not started: {exc}\n")
        os.close(log_fd)
        raise StartError(f"cannot record the start, not running it: {exc}", recorded=False) from exc
    os.write(go_w, b"g")
    os.close(go_w)
    report = _read_all(err_r)
    os.close(err_r)
    run = Run(record.number, record.process, program, path, fact, pid, log_name, log_fd,
              started_at, time.monotonic())
    if report:
        os.waitpid(pid, 0)
        error = os.strerror(int(report)) if report.isdigit() else report.decode("ascii", "replace")
        recorded = finish(run, Outcome(Status.UNKNOWN, error=error), history)
        raise StartError(f"cannot execute {program}: {error}", recorded=recorded)
    return run


def poll(run: Run) -> Outcome | None:
    """Reap the run if it ended; None while it runs."""
    try:
        pid, status = os.waitpid(run.pid, os.WNOHANG)
    except ChildProcessError:
        return Outcome(Status.UNKNOWN, error="lost: not a child of waitd any more")
    if pid == 0:
        return None
    return outcome_of(status)


def outcome_of(wait_status: int) -> Outcome:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return Outcome(Status.UNKNOWN, signal=signal_name(-code))
    return Outcome(Status.KNOWN, exit=code)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def finish(run: Run, outcome: Outcome, history: History) -> bool:
    """Write the footer and the end event; return False if the event could
    not be written (the caller keeps it to write later)."""
    took = time.monotonic() - run.started_mono
    footer = f"waitd: end record={run.record} {_outcome_fields(outcome)} took={took:.3f} at={_stamp(time.time())}\n"
    _write(run.log_fd, footer)
    os.close(run.log_fd)
    event = end_event(run, outcome, took)
    try:
        history.append(event)
    except HistoryWriteError:
        return False
    return True


def end_event(run: Run, outcome: Outcome, took: float) -> Event:
    return Event(run.path, run.process, run.fact.mtime_ns // 1_000_000_000, outcome.status,
                 pid=run.pid, exit=outcome.exit, signal=outcome.signal, error=outcome.error,
                 at=time.time(), took=took, version=run.fact.version)


def signal_group(run: Run, signum: int) -> None:
    """Signal the run's process group (its session), ignoring a gone one."""
    try:
        os.killpg(run.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _outcome_fields(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"error={escape(outcome.error)}"
    if outcome.signal is not None:
        return f"signal={outcome.signal}"
    return f"exit={outcome.exit}"


def _header(record: Record, program: str, path: str, at: float) -> str:
    return (f"waitd: start record={record.number} telem={escape(record.telem)} "
            f"program={escape(program)} file={escape(path)} at={_stamp(at)}\n")


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}" + \
        time.strftime("%z", time.localtime(at))


def _write(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    except OSError:
        pass  # a full disk must not stop the run; the history still says it


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 256):
        chunks.append(chunk)
    return b"".join(chunks)


def _child(process: str, program: str, path: str, cwd: str, log_fd: int, go_r: int, err_w: int,
           env: dict[str, str]) -> None:  # pragma: no cover - runs in the child only
    code = 126
    try:
        signal.set_wakeup_fd(-1)
        for signum in _RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        keep = sorted({go_r, err_w})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        if os.read(go_r, 1) != b"g":
            os._exit(code)  # waitd could not record the start: do not run
        os.chdir(cwd)
        code = 127
        os.execve(program, [process, path], env)
    except OSError as exc:
        try:
            os.write(err_w, str(exc.errno or 0).encode() if exc.errno else str(exc).encode())
        except OSError:
            pass
    except BaseException:  # noqa: B036 - nothing may return into waitd's code
        pass
    os._exit(code)
