# SPDX-License-Identifier: MIT
"""Fixtures that run the real waitd on a temporary PASSDIR.

`Station` is a PASSDIR with an `in/` directory, a table, handler scripts,
and the waitd process started on it.  Tests wait on conditions with
`wait_for(condition, timeout)`, never on fixed sleeps.  The autouse fixture
fails a test that leaves a child process behind.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from waitd.journal.history import Event, parse_line

ROOT = Path(__file__).resolve().parent.parent

# Bytecode: the suite starts some thousand Pythons on this tree (daemons,
# `waitd -s`, workers), and a Python that finds no bytecode compiles every
# module it imports, a third of its start's CPU.  Where PYTHONDONTWRITEBYTECODE
# is set (as in some containers) nothing would ever write it: the tree is
# compiled once at the start of the session (`pytest_configure`), and the
# test processes write the bytecode of the test modules they rewrite.  Both
# go into the tree's __pycache__ directories, which git ignores.
sys.dont_write_bytecode = False

START_S = 30.0  # how long a daemon may take to be ready before a test fails


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, before its workers start
        import compileall

        compileall.compile_dir(ROOT / "waitd", quiet=1)


# The longest tests (7-35 s each in a run of four processes on two cores,
# mostly waiting), longest first as measured (2026-12-06): each test
# process starts with its share of them, so that none ends the run with a
# queue of them.  xdist's default scheduler ("load") hands each process a
# first batch of consecutive tests (a quarter of its share of the
# collection), then more batches as they run out: the slow tests are dealt
# round-robin to the heads of those first batches, and the others follow
# one file at a time.  (Sorted to the front, the slow tests all went to the
# first process, one after another.)
SLOW_FIRST = (
    "test_sources.py::test_every_message_runs_at_most_once",
    "test_events_stomp.py::test_broker_down",
    "test_regions.py::test_a_record_of_two_areas_runs_each",  # mostly waiting: 20-30 s under load
    "test_regions.py::test_the_daemon_gathers_a_pass_across_kill_9",
    "test_daemon_celery.py::test_killed_worker",
    "test_events_crash.py::test_kills",
    "test_daemon_crash.py::",
    "test_daemon_celery.py::test_redis_down",
    "test_daemon_celery.py::test_many_files",
    "test_regions.py::test_a_pass_in_order_out_of_order",
    "test_daemon_celery.py::test_an_adopted_run",
    "test_daemon_celery.py::test_restart_adopts",
    "test_daemon_claim.py::test_simultaneous_starts",
    "test_daemon_groups.py::test_a_restart_keeps",
    "test_daemon_celery.py::test_timeout_and_cancel",
    "test_daemon_celery.py::test_a_stop_leaves",
    "test_sources.py::test_each_message_runs_once",
    "test_daemon_queues.py::test_a_queue_records_removals",
    "test_daemon_queues.py::test_sigkill",
    "test_daemon_options.py::test_timeout_kills",
    "test_daemon_queues.py::test_three_instances",
    "test_daemon_celery.py::test_a_hung_broker",
    "test_events_posttroll.py::test_one_file_message",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, slow in enumerate(SLOW_FIRST) if slow in item.nodeid), len(SLOW_FIRST))

    slow = sorted((item for item in items if rank(item) < len(SLOW_FIRST)), key=rank)
    # The tests of the run's one install last: it is made in the background
    # from the end of the collection (`pytest_collection_finish`), a minute
    # mostly of pip waiting on PyPI, and a test process that took one of them
    # earlier would wait for it, idle.
    last = [item for item in items if rank(item) == len(SLOW_FIRST) and "installed" in item.fixturenames]
    # The others one file at a time, round-robin (each file's in its order):
    # any batch then mixes files, and a file of tests that mostly wait (the
    # segment_gatherer peer's timeliness) is not all in one batch.
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        if rank(item) == len(SLOW_FIRST) and item not in last:
            by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
    rest = [item for row in itertools.zip_longest(*by_file.values()) for item in row if item is not None] + last
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    batch = max(2, len(items) // workers // 4)  # the first batch xdist's "load" gives each process
    if workers == 1 or batch * workers > len(items):
        items[:] = slow + rest
        return
    ordered: list[pytest.Item] = []
    others = iter(rest)
    for w in range(workers):
        mine = slow[w::workers]
        ordered += mine + list(itertools.islice(others, max(0, batch - len(mine))))
    items[:] = ordered + list(others)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the run's one install (test_install.py) in the background as
    soon as a test that needs it is to run."""
    if not session.config.option.collectonly and any("installed" in item.fixturenames for item in session.items):
        from test_install import begin

        begin(shared_dir())


# Property tests: `examples(n)` is how many examples a costly one draws.  A
# thorough run (WAITD_SOAK=1, as for the crash tests' soak) draws the `n`
# its test names; `make test` a third of it, at least 50: each run draws new
# examples (no database on a fresh clone), so over the runs of CI the
# search goes as far, and a run costs a third of the CPU.
SOAK = os.environ.get("WAITD_SOAK") == "1"


def examples(n: int) -> int:
    return n if SOAK else max(50, n // 3)


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until it returns a true value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def deliver(station: Station, name: str, age_s: float = 5, directory: Path | None = None) -> bytes:
    """Deliver a file as transfer tools do: write a dot-name, then rename.

    A file written in place could be seen, with wait age 0, before its
    data and mtime are final, and then rightly run again as a new version.
    """
    tmp = station.drop("." + name + ".part", age_s=age_s, directory=directory)
    final = os.path.join(os.path.dirname(tmp), os.fsencode(name))
    os.rename(tmp, final)
    return final


def quiet_for(seconds: float, check) -> None:
    """Assert that `check()` stays true for `seconds` (an absence has no
    event to wait on: this is the window in which it must hold)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        time.sleep(0.02)
    assert check()


def waitd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "waitd", *args]


DAEMON_MODES = frozenset({"-f", "-g", "-i", "--once", "--demo", "worker"})


def in_process(args: tuple[str, ...] | list[str]) -> bool:
    """Whether `waitd_here` may run these arguments: --check or -s, no daemon."""
    return ("--check" in args or "-s" in args) and not DAEMON_MODES.intersection(args)


def waitd_here(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`waitd ARGV` run in this process: `cli.main` with `env` as the
    environment and its output captured; what `subprocess.run` would give.

    A Python started for each `waitd -s status` costs a third of a second
    of CPU, and tests poll the status: where the test is about what the
    command says or does, not about its process, this is the same code.
    """
    from waitd.cli import main as cli

    return run_here(cli.main, "waitd", argv, env)


def run_here(
    main: Callable[[list[str]], int], name: str, argv: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`main(argv)` in this process, with `env` as its environment (for its
    time only) and its output captured: the CompletedProcess of the command
    `name`, as `subprocess.run(..., capture_output=True, text=True)` gives."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse, as the command would exit
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess([name, *argv], code, out.getvalue(), err.getvalue())


class Station:
    """A PASSDIR on disk and (at most) one waitd running on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.passdir = root / "pass"
        self.incoming = self.passdir / "in"
        self.incoming.mkdir(parents=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PASSDIR=str(self.passdir))

    # -- files ------------------------------------------------------------

    def handler(self, name: str, body: str) -> Path:
        """Write an executable shell handler; `body` follows a #!/bin/sh line."""
        path = self.passdir / name
        path.write_text("#!/bin/sh\n" + body.lstrip("\n"))
        path.chmod(0o755)
        return path

    def recorder(self, name: str = "rec", extra: str = "") -> Path:
        """A handler that appends its argv[1] (NUL-terminated) to `ran`."""
        return self.handler(name, f'printf "%s\\0" "$1" >> "{self.passdir}/ran"\n{extra}')

    def gated(self, name: str = "gated", extra: str = "") -> Path:
        """A recorder that then waits until `open_gate(file)` (at most 60 s):
        a handler that runs exactly as long as the test wants."""
        return self.recorder(
            name,
            f'gate="{self.root}/gate.$(basename "$1")"\n'
            'i=0; while [ ! -e "$gate" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n' + extra,
        )

    def open_gate(self, name: str) -> None:
        (self.root / f"gate.{name}").touch()

    def table(self, *lines: str) -> None:
        (self.passdir / "incoming").write_text("\n".join(lines) + "\n")

    def drop(self, name: str | bytes, data: bytes = b"x", age_s: float = 0.0, directory: Path | None = None) -> bytes:
        """Deliver a file as transfer tools do: written elsewhere on the same
        filesystem, its mtime set `age_s` ago, then renamed in at once."""
        d = os.fsencode(directory or self.incoming)
        path = os.path.join(d, os.fsencode(name))
        staging = self.root / "staging"
        staging.mkdir(exist_ok=True)
        tmp = os.path.join(os.fsencode(staging), b"file")
        with open(tmp, "wb") as f:
            f.write(data)
        if age_s:
            t = time.time() - age_s
            os.utime(tmp, (t, t))
        os.rename(tmp, path)
        return path

    def ran(self) -> list[bytes]:
        try:
            data = (self.passdir / "ran").read_bytes()
        except FileNotFoundError:
            return []
        return [p for p in data.split(b"\0") if p]

    def history(self) -> list[Event]:
        try:
            text = (self.passdir / "incoming.history").read_text("ascii")
        except FileNotFoundError:
            return []
        # Whole lines only: one read while waitd appends may end in the
        # middle of a line (a write that crosses a page shows its first page).
        return [parse_line(line) for line in text.split("\n")[:-1] if line]

    def started(self) -> list[Event]:
        """Status 0 events that carry the handler's pid (one per run)."""
        return [e for e in self.history() if e.status == 0 and e.pid is not None]

    def ends(self) -> list[Event]:
        return [e for e in self.history() if e.status != 0]

    def log(self) -> str:
        try:
            return (self.passdir / "incoming.log").read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- the daemon ---------------------------------------------------------

    def start(
        self,
        *args: str,
        interval: float = 0.2,
        umask: int | None = None,
        pass_fds: tuple[int, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """Start `waitd -f` and wait until it is ready: this start's own
        "waitd started", then its first status file, written a moment after
        it (READY=1 goes with it; `waitd -s reload` waits for the daemon to
        act on the HUP only once the status names it).

        Its output goes to a file (`stderr()` reads it): a pipe nobody reads
        would stop a daemon that logs a lot.
        """
        assert self.proc is None or self.proc.poll() is not None
        starts = self.log().count("waitd started")
        launched = time.time()
        with open(self.root / "stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [*prefix, *waitd_cmd("-f", "--passdir", str(self.passdir), "--interval", str(interval), *args)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
                pass_fds=pass_fds,
            )
        # A deadline for a failure only: a start imports waitd (and, for
        # area= records, the geometry libraries: seconds of CPU) on a machine
        # that runs four test processes on two cores.
        wait_for(
            lambda: self.log().count("waitd started") > starts or self.proc.poll() is not None,
            START_S,
            "waitd to start",
        )
        wait_for(
            lambda: (
                self._status_since(launched)
                or "cannot write the status file" in self.log()
                or self.proc.poll() is not None
            ),
            START_S,
            "waitd's first status file",
        )
        return self.proc

    def _status_since(self, t: float) -> bool:
        """Whether waitd.status was written at `t` or later (the file
        system's clock is coarse: a few milliseconds behind time.time())."""
        try:
            return (self.passdir / "waitd.status").stat().st_mtime >= t - 0.02
        except FileNotFoundError:
            return False

    def stderr(self) -> str:
        try:
            return (self.root / "stderr").read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def run(self, *args: str, timeout: float = 30, process: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a waitd command to its end (--check, --once, -s ...).

        `--check` and `-s VERB` run in this process (`waitd_here`: the
        code the command runs, with no Python started for it), unless
        `process`; the daemon's modes (-f, -g, -i, --once) always run in
        a process of their own.
        """
        argv = ["--passdir", str(self.passdir), *args]
        if not process and in_process(args):
            return waitd_here(argv, self.env)
        return subprocess.run(waitd_cmd(*argv), env=self.env, capture_output=True, text=True, timeout=timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20) -> int:
        """TERM the daemon and wait for it; return its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return self.proc.returncode


@pytest.fixture
def station(tmp_path: Path):
    s = Station(tmp_path)
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.communicate()
    # A detached daemon (-g) is no child of the test: find it by its PASSDIR
    # (a sink's process, killed by the kernel with its waitd, may take a moment).
    deadline = time.monotonic() + 3
    while (left := waitds_on(s.passdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    assert not left, f"test left a daemon running on {s.passdir}: {[p.pid for p in left]}"


def waitds_on(passdir: Path) -> list[psutil.Process]:
    """Live processes started with this PASSDIR on their command line.

    Read from /proc/PID/cmdline: psutil's process_iter makes an object of
    each process of the machine, a few milliseconds a test more."""
    want = {os.fsencode(str(passdir)), os.fsencode(f"--passdir={passdir}")}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:  # gone since the listing, or not ours to read
            continue
        if want.intersection(argv):
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(int(name))
                if _alive(p):
                    found.append(p)
    return found


def descendants() -> list[psutil.Process]:
    """This process's children, theirs, and so on (zombies included), from
    /proc/PID/task/TID/children: a few small files, where psutil's
    `children(recursive=True)` reads every process's stat (some
    milliseconds, twice a test); psutil's where the kernel has no such files."""
    if not _PROC_CHILDREN:
        return psutil.Process().children(recursive=True)
    found: list[psutil.Process] = []
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:  # gone
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                with contextlib.suppress(psutil.NoSuchProcess):
                    found.append(psutil.Process(kid))
                    todo.append(kid)
    return found


_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


@pytest.fixture(autouse=True)
def no_leftover_children():
    """Fail a test that leaves a child process (a daemon, a handler) behind."""
    before = {p.pid for p in descendants()}
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in descendants() if p.pid not in before]
        left = [p for p in left if _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for p in left:
        p.kill()
    assert not left, f"test left processes behind: {[p.pid for p in left]}"


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def shared_dir() -> Path:
    """A directory of this run's own, shared by its test processes and open to
    other users: /tmp/waitd-tests-PID-START, named by the process that started
    the run (xdist's controller, whose children the workers are); removed at
    the end of the run (`pytest_sessionfinish`)."""
    path = _shared_path(os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid())
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        path.chmod(0o755)
    st = path.lstat()
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid(), f"{path}: not a directory of this user's"
    return path


def _shared_path(pid: int) -> Path:
    started = int(psutil.Process(pid).create_time() * 100)  # a pid used again is another run
    return Path(f"/tmp/waitd-tests-{pid}-{started}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the run's end: its workers are done
        shared = _shared_path(os.getpid())
        # The background install (test_install.begin), if the run ends first.
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            if not (shared / "install.json").exists():
                os.killpg(int((shared / "install.pid").read_text()), signal.SIGKILL)
        shutil.rmtree(shared, ignore_errors=True)


@contextlib.contextmanager
def small_tmpfs(mnt: Path, size: str = "1m"):
    """A tmpfs of `size` mounted on the directory `mnt` (made if missing),
    a disk the test can fill; skip when not root or when mounting fails."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to its last byte; return the filler
    file.  (The last page of each file already there keeps its free tail:
    a small append to one of them still fits, a longer one is cut short.)"""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (65536, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def read_jsonl(path: Path) -> list[dict]:
    """The events a jsonl sink wrote so far (whole lines)."""
    import json

    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


@pytest.fixture(scope="session")
def activemq(tmp_path_factory):
    """One real ActiveMQ for the session (per xdist worker), not persistent."""
    from peers.activemq import ActiveMQ, require

    require()
    broker = ActiveMQ(tmp_path_factory.mktemp("activemq"))
    broker.start()
    yield broker
    broker.stop()
