# SPDX-License-Identifier: MIT
"""One handler run: its log file, its process, its end.

A start has three steps.  `prepare` opens the record's next log file and
writes waitd's header line.  `commit` appends the status 0 events of every
start of a pass and syncs the history once (a group commit): each status 0
line is on disk before its handler runs, and a start that cannot be
recorded never runs.  `launch` executes the handler (os.posix_spawn, which
is vfork and exec in glibc), then appends a second status 0 line, not
synced, with the handler's pid, so that a later waitd can find a handler
that outlived it.  The handler gets its own session, stdin from /dev/null,
stdout and stderr on the log file, the incoming directory as working
directory, the WAITD_* environment, no descriptor of waitd's beyond 0-2
(`seal_descriptors` makes every other one close-on-exec), and the signal
dispositions and mask a fresh process has.  argv is [process-name,
/abs/path], executed directly, never through a shell.

`poll` reaps a run without blocking and `finish` records its end: status 2
with `exit=` for any exit code, status 1 with `signal=` when killed, and
writes the footer line to the log file.

Failures raise `StartError`: when the log file cannot be opened, when the
starts cannot be recorded (`HistoryWriteError` as cause; none of the group
is), or when the handler cannot be executed; in that last case the status
1 event with `error=` was already appended (the file is not consumed and
the caller backs off).
"""

from __future__ import annotations

import datetime
import os
import signal
import stat
import time
from dataclasses import dataclass, replace

from waitd.errors import HistoryWriteError, WaitdError
from waitd.history import Event, History, Status, escape
from waitd.scan import FileFact
from waitd.table import Record

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOG_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


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


def make_logfiles(passdir: str) -> bool:
    """Make $PASSDIR/logfiles if it is missing; True if it was made.

    Raise WaitdError for one that is a symbolic link or not a directory
    (never followed, never replaced), or that cannot be made.
    """
    path = os.path.join(passdir, "logfiles")
    made = True
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        made = False
    except OSError as exc:
        raise WaitdError(f"{path}: cannot make the directory: {exc.strerror or exc}") from exc
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise WaitdError(f"{path}: is a symbolic link; waitd does not follow links in PASSDIR")
    if not stat.S_ISDIR(st.st_mode):
        raise WaitdError(f"{path}: is not a directory")
    return made


def log_path(passdir: str, record: int, letter: str) -> str:
    return os.path.join(passdir, "logfiles", f"incoming.{record}.{letter}")


def last_letter(passdir: str, record: int) -> str | None:
    """The letter of the record's most recent run's log file, if any.

    Runs are ordered by the start time in the header line waitd wrote at
    the top of each log, before the handler ran: not by the file's mtime,
    which a handler's background child writing to the log later bumps.  A
    file without waitd's header is not one of its logs and is ignored.
    """
    started = {}
    for letter in LETTERS:
        at = header_time(log_path(passdir, record, letter))
        if at is not None:
            started[letter] = at
    order = newest_first(started)
    return order[0] if order else None


def header_time(path: str) -> int | None:
    """The start time (ms since the epoch) in a log's header line, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.read(fd, 8192)
    except OSError:
        return None
    finally:
        os.close(fd)
    line, newline, _ = head.partition(b"\n")
    if not newline or not line.startswith(b"waitd: start record="):
        return None
    stamp = line.rpartition(b" at=")[2].decode("ascii", "replace")
    try:
        return int(datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)
    except ValueError:
        return None


def newest_first(times: dict[str, int]) -> list[str]:
    """Log letters ordered newest first by their start times.

    Runs started within one millisecond share a time.  Letters are used in
    a cycle, so those of one tick form a run A, B, C (or Y, Z, A) whose
    last letter is the newest: ties are ordered by the position in that run.
    """

    def rank(letter: str) -> tuple[int, int]:
        tied = {other for other, m in times.items() if m == times[letter]}
        i = LETTERS.index(letter)
        steps = 0  # how far the run of tied letters goes back from this one
        while steps < len(LETTERS) - 1 and LETTERS[(i - steps - 1) % len(LETTERS)] in tied:
            steps += 1
        return (times[letter], steps)

    return sorted(times, key=rank, reverse=True)


def next_letter(letter: str | None) -> str:
    return "A" if letter is None else LETTERS[(LETTERS.index(letter) + 1) % len(LETTERS)]


@dataclass(frozen=True, slots=True)
class Pending:
    """A start prepared but not yet recorded: its log file is open."""

    run: Run  # pid 0 until launched
    started: Event  # the status 0 event
    env: dict[str, str]
    letter: str  # of its log file


def prepare(
    record: Record, program: str, path: str, fact: FileFact, letter: str, passdir: str, base_env: dict[str, str]
) -> Pending:
    """Open the run's log file and write its header."""
    log_name = log_path(passdir, record.number, letter)
    try:
        # Unlink and create rather than truncate: cheaper on ext4 (no flush of
        # the old blocks), and O_EXCL never follows a planted symlink.
        try:
            os.unlink(log_name)
        except FileNotFoundError:
            pass
        log_fd = os.open(log_name, _LOG_FLAGS, 0o644)
    except OSError as exc:
        raise StartError(f"cannot open log file {log_name}: {exc.strerror}", recorded=False) from exc
    started_at = time.time()
    _write(log_fd, _header(record, program, path, started_at))
    env = dict(base_env)
    env.update(
        WAITD_RECORD=str(record.number),
        WAITD_TELEM=record.telem,
        WAITD_FILE=path,
        WAITD_PASSDIR=passdir,
        WAITD_LOG=log_name,
    )
    started = Event(
        path, record.process, fact.mtime_ns // 1_000_000_000, Status.STARTED, at=started_at, version=fact.version
    )
    run = Run(record.number, record.process, program, path, fact, 0, log_name, log_fd, started_at, time.monotonic())
    return Pending(run, started, env, letter)


def commit(pendings: list[Pending], history: History) -> None:
    """Append the status 0 events of these starts with one sync (a group
    commit); if that fails none is recorded, each log file says so, and
    StartError is raised."""
    try:
        history.append_all([p.started for p in pendings], sync=True)
    except HistoryWriteError as exc:
        for p in pendings:
            footer = f"waitd: end record={p.run.record} error={escape('not started: ' + str(exc))} took=0.000"
            _write(p.run.log_fd, f"{footer} at={_stamp(time.time())}\n")
            os.close(p.run.log_fd)
        raise StartError(f"cannot record the start, not running it: {exc}", recorded=False) from exc


def launch(pending: Pending, history: History) -> Run:
    """Execute the handler of a committed start."""
    run = pending.run
    try:
        pid = _spawn(run.program, [run.process, run.path], pending.env, run.log_fd, os.path.dirname(run.path))
    except OSError as exc:
        error = exc.strerror or str(exc)
        recorded = finish(run, Outcome(Status.UNKNOWN, error=error), history)
        raise StartError(f"cannot execute {run.program}: {error}", recorded=recorded) from exc
    run = replace(run, pid=pid)
    try:
        # The pid lets a later waitd find a handler that outlived it.  Not
        # synced: it only matters if waitd dies, and then the page cache has it.
        history.append(replace(pending.started, pid=pid))
    except HistoryWriteError:
        pass
    return run


def _spawn(program: str, argv: list[str], env: dict[str, str], log_fd: int, cwd: str) -> int:
    """Execute the handler in its own session; return its pid.

    posix_spawn has no working directory of its own (before glibc's
    addchdir_np, which Python 3.11 does not offer), so waitd steps into the
    directory for the spawn and back out; it is single-threaded.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
    ]
    home = _home_fd()
    os.chdir(cwd)
    try:
        return os.posix_spawn(
            program, argv, env, file_actions=actions, setsid=True, setsigmask=(), setsigdef=_RESET_SIGNALS
        )
    finally:
        try:
            os.fchdir(home)
        except OSError:  # pragma: no cover - an O_PATH descriptor of a directory
            pass  # never lose the pid of a handler that started


def _home_fd() -> int:
    """A descriptor of waitd's own working directory (O_PATH: it needs no
    read permission), taken before the first spawn leaves it."""
    global _HOME_FD
    if _HOME_FD is None:
        _HOME_FD = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return _HOME_FD


_HOME_FD: int | None = None
# Python ignores these; a handler starts with them at their defaults.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


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


def poll(run: Run) -> Outcome | None:
    """Reap the run if it ended; None while it runs."""
    try:
        pid, status = os.waitpid(run.pid, os.WNOHANG)
    except ChildProcessError:
        return Outcome(Status.UNKNOWN, error="reaped elsewhere; its end is unknown")
    if pid == 0:
        return None
    return outcome_of(os.waitstatus_to_exitcode(status))


def outcome_of(code: int) -> Outcome:
    """The outcome of an exit code as waitstatus_to_exitcode gives it (-N: signal N)."""
    if code < 0:
        return Outcome(Status.UNKNOWN, signal=signal_name(-code))
    return Outcome(Status.KNOWN, exit=code)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def finish(run: Run, outcome: Outcome, history: History, took: float | None = None) -> bool:
    """Write the footer and the end event; return False if the event could
    not be written (the caller keeps it to write later)."""
    took = time.monotonic() - run.started_mono if took is None else took
    footer = f"waitd: end record={run.record} {_outcome_fields(outcome)} took={took:.3f} at={_stamp(time.time())}\n"
    if not _ends_line(run.log_fd):
        footer = "\n" + footer  # the footer gets a line of its own
    _write(run.log_fd, footer)
    os.close(run.log_fd)
    event = end_event(run, outcome, took)
    try:
        history.append(event)
    except HistoryWriteError:
        return False
    return True


def end_event(run: Run, outcome: Outcome, took: float) -> Event:
    return Event(
        run.path,
        run.process,
        run.fact.mtime_ns // 1_000_000_000,
        outcome.status,
        pid=run.pid or None,
        exit=outcome.exit,
        signal=outcome.signal,
        error=outcome.error,
        at=time.time(),
        took=took,
        version=run.fact.version,
    )


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
    return (
        f"waitd: start record={record.number} telem={escape(record.telem)} "
        f"program={escape(program)} file={escape(path)} at={_stamp(at)}\n"
    )


def _stamp(at: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))
        + f".{int(at % 1 * 1000):03d}"
        + time.strftime("%z", time.localtime(at))
    )


def _ends_line(fd: int) -> bool:
    try:
        size = os.fstat(fd).st_size
        return size == 0 or os.pread(fd, 1, size - 1) == b"\n"
    except OSError:
        return True


def _write(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    except OSError:
        pass  # a full disk must not stop the run; the history still says it
