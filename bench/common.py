# SPDX-License-Identifier: MIT
"""Helpers shared by the benchmarks: the machine, work directories,
processes, files, the history, and the report.

Every process is started in its own session (`start_new_session=True`) so
that `Proc.stop` can end it and whatever it spawned by process group;
`no_leftovers` is the last guard and kills any child of the benchmark still
alive.  Temporary directories come from `workdir` and are removed on exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import math
import os
import platform
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from waitd.journal.history import BadValue, Event, Status, parse_line

ROOT = Path(__file__).resolve().parent.parent
TMP_BASE = "/tmp"


# -- the report -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One figure against the issue's target."""

    what: str
    value: str
    target: str
    met: bool | None  # None: not measured (a run failed)

    def line(self) -> str:
        mark = {True: "met", False: "MISSED", None: "n/a"}[self.met]
        return f"  {self.what:<44} {self.value:>14}   target {self.target:<22} {mark}"


@dataclass(slots=True)
class Report:
    """What one scenario measured: printed lines and target checks."""

    lines: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def check(self, what: str, value: str, target: str, met: bool | None) -> None:
        c = Check(what, value, target, met)
        self.checks.append(c)
        print(c.line(), flush=True)


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool
    idle_s: float

    @property
    def scale(self) -> float:
        """The factor that shortens counts and durations for --quick."""
        return 0.2 if self.quick else 1.0

    def n(self, full: int) -> int:
        return max(1, int(full * self.scale))


# -- the machine ------------------------------------------------------------------


def machine() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    fs = filesystem(TMP_BASE)
    load = os.getloadavg()
    return [
        f"cores {os.cpu_count()} ({model}); kernel {platform.release()}; "
        f"Python {platform.python_version()} ({sys.executable})",
        f"temp dir {TMP_BASE}: {fs}",
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {speed_reference()}",
    ]


def speed_reference() -> str:
    """A fixed pure-Python loop and a fixed spawn loop, timed now: this VM's
    speed varies (up to 2x within an hour), so runs compare only next to these."""
    t0 = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i
    cpu = time.perf_counter() - t0
    spawn = spawn_loop_posix(200)
    return f"speed reference: 2M-step Python loop {cpu * 1000:.0f} ms, 200 posix_spawn of /bin/true {spawn:.2f} s"


def filesystem(path: str) -> str:
    """The mount that holds `path`: type, device and options."""
    best = ("", "?", "?", "?")
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, dev, fstype, opts)
    mnt, dev, fstype, opts = best
    return f"{fstype} on {dev} mounted at {mnt} ({opts})"


# -- directories and files ----------------------------------------------------------


@contextlib.contextmanager
def workdir(tag: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"waitd-bench-{tag}-", dir=TMP_BASE))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_files(directory: Path, count: int, prefix: str, suffix: str = ".dat", mtime: float | None = None) -> list[str]:
    """Create `count` small files; give them `mtime` if set; return the names."""
    names = []
    fd_dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            name = f"{prefix}{i:07d}{suffix}"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd_dir)
            os.write(fd, b"x\n")
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
            os.close(fd)
            names.append(name)
    finally:
        os.close(fd_dir)
    return names


def write_table(passdir: Path, lines: list[str]) -> None:
    """Write the table: the last step of every set-up.  Then sync, so that
    the write-back of the set-up (100,000 files, a 140 MB history) does not
    run during, and count against, what is measured next."""
    (passdir / "incoming").write_text("".join(line + "\n" for line in lines))
    os.sync()


def history_events(passdir: Path) -> Iterator[Event]:
    """The history's whole lines, read by waitd's own parser.

    A corrupt line is skipped and one with a malformed value counts as what
    it stands for, as waitd itself reads them.
    """
    try:
        f = open(passdir / "incoming.history", encoding="ascii", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if not line.endswith("\n"):
                continue
            try:
                yield parse_line(line[:-1])
            except BadValue as exc:
                yield exc.event
            except ValueError:
                continue


def start_times(passdir: Path) -> dict[str, float]:
    """Path -> when waitd started its handler, from the history.

    waitd compacts the history when it has grown well past its live size,
    even in the middle of a run, and then only the latest event of each
    file stays: its end.  So a start is the `at=` of a status 0 if it is
    still there, else the end's `at=` minus its `took=`.
    """
    times: dict[str, float] = {}
    for event in history_events(passdir):
        took = 0.0 if event.status is Status.STARTED else event.took
        if event.at is None or took is None:
            continue
        start = event.at - took
        if event.path not in times or start < times[event.path]:
            times[event.path] = start
    return times


# -- processes ----------------------------------------------------------------------


def waitd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "waitd", *args]


def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}:{path}" if path else str(ROOT))


class Proc:
    """A process in its own session, its output in files, ended by `stop`."""

    def __init__(self, argv: list[str], out_dir: Path, name: str, **kw: object) -> None:
        self.name = name
        self.out = open(out_dir / f"{name}.out", "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env(),
            **kw,
        )  # type: ignore[call-overload]
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Its exit status, or None after `timeout` seconds.  Told as it
        exits (its pidfd), not at Popen.wait's next look, which waits up to
        50 ms between looks: a drain timed to the exit of `waitd --once`
        (`once_drain`) counted that much more than waitd took."""
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            fd = -1  # reaped already, or no pidfd: Popen's own wait
        if fd >= 0:
            try:
                if not select.select([fd], [], [], timeout)[0]:
                    return None
            finally:
                os.close(fd)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, group: bool = True) -> int:
        """Send `sig` (to the group, or the process alone), wait, then KILL the group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(self.pid, sig)
                else:
                    os.kill(self.pid, sig)
            if self.wait(timeout) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        # Whatever is left in its group (a shell loop's children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.out.close()
        return self.popen.returncode


def once_drain(root: Path, passdir: Path, n: int, timeout: float, say: Callable[[str], None]) -> float | None:
    """Drain the n ready files of `passdir` with `waitd --once`: the time
    from the first start to the exit, or None (said) if it failed."""
    proc = Proc(waitd_argv("--once", "--passdir", str(passdir)), root, "waitd")
    try:
        code = proc.wait(timeout=timeout)
        t_exit = time.time()
    finally:
        proc.stop(group=False)
    starts = start_times(passdir)
    if code != 0 or len(starts) != n:
        say(f"FAILED: exit {code}, {len(starts)} starts of {n} (see {root}/waitd.out)")
        return None
    return t_exit - min(starts.values())


def no_leftovers() -> list[int]:
    """Kill any child of the benchmark still alive; return their pids."""
    left = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(p.pid)
                p.kill()
    return left


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class LogTail:
    """Read a growing file incrementally and look for a text in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.buffer = ""

    def seen(self, text: str) -> bool:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return False
        self.buffer = self.buffer[-len(text) :] + chunk
        return text in self.buffer


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- baselines and statistics ----------------------------------------------------------


def sleeper(tools: Path, seconds: float) -> Path:
    """A handler that sleeps `seconds`: a small C program when a compiler
    is there, so that its own start costs well under a millisecond; else a
    shell script."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        source = tools / "sleeper.c"
        source.write_text(f"#include <unistd.h>\nint main(void) {{ usleep({round(seconds * 1e6)}); return 0; }}\n")
        out = tools / "sleeper"
        if subprocess.run([cc, "-O2", "-o", str(out), str(source)], capture_output=True).returncode == 0:
            return out
    script = tools / "sleeper.sh"
    script.write_text(f"#!/bin/sh\nexec sleep {seconds}\n")
    script.chmod(0o755)
    return script


def spawn_loop_subprocess(n: int) -> float:
    """Seconds to run /bin/true n times with subprocess.run."""
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/true"], check=False)
    return time.perf_counter() - t0


def spawn_loop_posix(n: int) -> float:
    """Seconds to run /bin/true n times with os.posix_spawn and waitpid."""
    environ = dict(os.environ)
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn("/bin/true", ["/bin/true"], environ)
        os.waitpid(pid, 0)
    return time.perf_counter() - t0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def durable_floor(n: int, directory: Path) -> tuple[float, float]:
    """(seconds, own CPU seconds) for n rounds of what a start must do at
    least, in plain Python: append a history-sized line, fdatasync it,
    posix_spawn /bin/true and wait for it (issue 21's "durable floor")."""
    environ = dict(os.environ)
    line = b"/tmp/waitd-bench/in/r0000000.dat /bin/true 1796544886 0 at=1796548488.950 " + b"x" * 60 + b"\n"
    fd = os.open(directory / "floor.history", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        t0, c0 = time.perf_counter(), own_cpu()
        for _ in range(n):
            os.write(fd, line)
            os.fdatasync(fd)
            os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], environ), 0)
        return time.perf_counter() - t0, own_cpu() - c0
    finally:
        os.close(fd)


def own_cpu() -> float:
    """This process's own CPU seconds (user + system, not its children's)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def promise_floor(directory: Path, spool: Path, names: list[str], jobs: int = 1) -> tuple[float, float]:
    """(seconds, own CPU seconds) for a run of each file of `spool` in
    plain Python doing, in a straight line, every system call waitd's
    promises make it do for a file (issue 21's "promise floor"; see
    waitd(8) for the promises): the file's lstat; its log file recycled
    as waitd does (open without following links, fstat, a write lease
    taken and let go, the old response unlinked, the header written,
    the rest cut off, O_APPEND); the start line appended and
    fdatasync'd; /bin/true spawned in its own session with stdin from
    /dev/null and its output to the log; the start line of incoming.log;
    the wait; the response looked for; the footer (fstat, write, close);
    the pid and end lines appended; the end line of incoming.log.  Its
    strings are f-strings of the same length as waitd's; what it does
    not do is decide anything: no table, no readiness, no scheduler, no
    escaping, no status.  With `jobs`, that many run at once: the
    files of the slots that ended together start together, their start
    lines made durable by one fdatasync (waitd's group commit)."""
    floor = _PromiseFloor(directory)
    todo = iter(enumerate(names))
    running: dict[int, _Run] = {}

    def start(free: int) -> None:
        runs = [floor.prepare(i, f"{spool}/{name}") for i, name in itertools.islice(todo, free)]
        if runs:
            os.fdatasync(floor.history)
        for run in runs:
            running[floor.spawn(run)] = run

    try:
        t0, c0 = time.perf_counter(), own_cpu()
        start(jobs)
        while running:
            ended = [os.waitpid(-1, 0)]
            while len(ended) < len(running) and (more := os.waitpid(-1, os.WNOHANG))[0]:
                ended.append(more)
            for pid, status in ended:
                floor.end(pid, status, running.pop(pid))
            start(len(ended))
        return time.perf_counter() - t0, own_cpu() - c0
    finally:
        floor.close()


@dataclass(slots=True)
class _Run:
    path: str
    log_name: str
    fd: int
    now: float
    start: str
    version: str
    mtime: int


class _PromiseFloor:
    """`promise_floor`'s start and end of a file, deciding nothing."""

    def __init__(self, directory: Path) -> None:
        self.environ = dict(os.environ)
        self.history = os.open(directory / "promise.history", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.journal = os.open(directory / "promise.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.logs = directory / "promise-logs"
        self.logs.mkdir(exist_ok=True)
        self.stamp = time.strftime("%Y-%m-%d %H:%M:%S")

    def prepare(self, i: int, path: str) -> _Run:
        """The file's log file made and its start line written (not synced)."""
        st = os.lstat(path)
        log_name = f"{self.logs}/incoming.1.{chr(65 + i % 26)}"
        try:
            fd = os.open(log_name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            os.fstat(fd)
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGCHLD)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(log_name + ".response")
        except FileNotFoundError:
            make = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(log_name, make, 0o644)
        now = time.time()
        head = f"waitd: start record=1 telem=bench at={now:.3f} program=/bin/true files={path}\n".encode()
        os.write(fd, head)
        os.ftruncate(fd, len(head))
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_APPEND)
        version = f"mtime_ns={st.st_mtime_ns} size={st.st_size} ino={st.st_ino}\n"
        start = f"{path} /bin/true {int(st.st_mtime)} 0 at={now:.3f} {version}"
        os.write(self.history, start.encode())
        return _Run(path, log_name, fd, now, start, version, int(st.st_mtime))

    def spawn(self, run: _Run) -> int:
        """The handler started (its start line durable); its pid."""
        pid = os.posix_spawn(
            "/bin/true",
            ["/bin/true", run.path],
            self.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, run.fd, 1),
                (os.POSIX_SPAWN_DUP2, run.fd, 2),
            ],
            setsid=True,
        )
        said = f"{self.stamp}.000 INFO record 1: started /bin/true on {run.path} (pid {pid}, log incoming.1.A)\n"
        os.write(self.journal, said.encode())
        return pid

    def end(self, pid: int, status: int, run: _Run) -> None:
        took = time.time() - run.now
        with contextlib.suppress(FileNotFoundError):
            os.close(os.open(run.log_name + ".response", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK))
        os.fstat(run.fd)
        footer = f"waitd: end record=1 exit={os.waitstatus_to_exitcode(status)} took={took:.3f} at={run.now:.3f}\n"
        os.write(run.fd, footer.encode())
        os.close(run.fd)
        pid_line = run.start.replace(" at=", f" pid={pid} at=", 1)
        at = f"at={run.now:.3f} took={took:.3f}"
        end = f"{run.path} /bin/true {run.mtime} 2 pid={pid} exit=0 {at} {run.version}"
        os.write(self.history, (pid_line + end).encode())
        said = f"{self.stamp}.000 INFO record 1: /bin/true on {run.path}: exit 0 after {took:.3f} s\n"
        os.write(self.journal, said.encode())

    def close(self) -> None:
        os.close(self.history)
        os.close(self.journal)


def wait_counting_cpu(proc: Proc, timeout: float) -> tuple[int | None, float]:
    """Wait for the process to exit, reading its own CPU time (user +
    system, not its children's) every 20 ms: (exit status or None, CPU s
    as last read, within 20 ms of its end)."""
    cpu = 0.0
    deadline = time.monotonic() + timeout
    try:
        p = psutil.Process(proc.pid)
        while proc.alive() and time.monotonic() < deadline:
            t = p.cpu_times()
            cpu = t.user + t.system
            time.sleep(0.02)
    except psutil.NoSuchProcess:
        pass
    return proc.wait(max(0.0, deadline - time.monotonic())), cpu


def startup_cpu(root: Path) -> float:
    """waitd's own CPU for `--once` on an empty spool (no handler runs, so
    the child's rusage is its own): what a drain's CPU is less."""
    passdir = root / "startup-pass"
    (passdir / "in").mkdir(parents=True)
    (passdir / "incoming").write_text("bench in *.dat /bin/true 60 -1 0\n")
    proc = subprocess.Popen(
        waitd_argv("--once", "--passdir", str(passdir)), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime
