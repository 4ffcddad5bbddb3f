# SPDX-License-Identifier: MIT
"""A real Redis (Debian `redis-server`) and real `waitd worker`s, for tests and benchmarks.

`Redis(workdir)` runs `redis-server` on a free loopback port with no
persistence of its own (`--save '' --appendonly no`); `start` returns once
it answers PING (about 0.1 s).  `stop` shuts it down saving its data to
its directory first (SHUTDOWN SAVE: an operator's stop of a Redis that
persists), and `start` again on the same port loads it back, so that an
outage loses nothing that Redis held; `kill` loses it all.

`Worker(broker, queue, log)` runs `waitd worker` (concurrency as asked)
in a process group of its own; `ready` returns once Celery's log says
ready (about 1 s here).  `pool()`
gives the pids of its pool processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
START_TIMEOUT_S = 20.0


def available() -> bool:
    return shutil.which("redis-server") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.workdir / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                + ["--dir", str(self.workdir), "--dbfilename", "dump.rdb"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        _wait(self.ping, START_TIMEOUT_S, f"redis-server on port {self.port}")

    def command(self, *args: str) -> bytes:
        """One command through a plain socket (RESP), its raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args))
            return s.recv(65536)

    def ping(self) -> bool:
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SHUTDOWN SAVE: its data to its directory, for the next start."""
        assert self.proc is not None
        try:
            self.command("SHUTDOWN", "SAVE")
        except OSError:
            pass  # it closes the connection as it goes
        self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Worker:
    """A `waitd worker` process."""

    def __init__(
        self, broker: str, queue: str, log: Path, concurrency: int = 2, env: dict | None = None, passdir: str = ""
    ) -> None:
        self.broker, self.queue, self.log, self.concurrency = broker, queue, log, concurrency
        self.passdir = passdir  # given: the broker and queue come from its waitd.conf
        self.env = dict(env or os.environ, PYTHONPATH=str(ROOT))
        self.proc: subprocess.Popen[bytes] | None = None
        self._children: list[psutil.Process] = []

    def launch(self) -> Worker:
        """Start it (`ready` waits for it: start several, then wait)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "waitd", "worker", "--concurrency", str(self.concurrency)]
                + (["--passdir", self.passdir] if self.passdir else ["--broker", self.broker, "--queue", self.queue]),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # a process group of its own, as job control or systemd gives it
            )
        return self

    def ready(self) -> Worker:
        assert self.proc is not None
        ready = f"waitd-{self.proc.pid}@"
        _wait(
            lambda: (ready in self.text() and " ready." in self.text()) or self.proc.poll() is not None,
            START_TIMEOUT_S,
            "waitd worker to be ready",
        )
        assert self.proc.poll() is None, self.text()
        return self

    def text(self) -> str:
        try:
            return self.log.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def pool(self) -> list[int]:
        assert self.proc is not None
        return [p.pid for p in psutil.Process(self.proc.pid).children()]

    def stop(self) -> None:
        self.terminate()
        self.wait()

    def terminate(self, signum: int = signal.SIGTERM) -> None:
        """TERM: a warm shutdown (about 2 s: terminate several, then wait);
        KILL: at once, its pool processes too (a test's end)."""
        self._children = []
        if self.proc is not None and self.proc.poll() is None:
            self._children = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.send_signal(signum)
            if signum == signal.SIGKILL:
                for child in self._children:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()

    def wait(self) -> None:
        """Wait for its end after `terminate`, KILL if it lingers; its pool too."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in self._children):
            time.sleep(0.01)  # a killed pool process is gone, or a zombie until init reaps it
        for p in self._children:
            if _alive(p):
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()

    def kill(self) -> None:
        """SIGKILL its main process only (its pool processes linger a while)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def kill_group(self) -> None:
        """SIGKILL its whole process group (`kill -9 -- -PGID`): the main
        process and its pool processes at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
