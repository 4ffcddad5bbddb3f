# SPDX-License-Identifier: MIT
"""A real ActiveMQ broker (Debian `activemq`) on a loopback port, for the tests.

`ActiveMQ(workdir)` writes a small activemq.xml (no JMX, no advisories, one
STOMP connector on 127.0.0.1:PORT, `persistent` as asked, its data in
`workdir`) and runs the broker's jar with Java directly: the package's
wrapper forces -Xmx512M and wants a user of its own.  `start` returns once
a STOMP client can connect (about 1-2 s here, the JVM's start); `stop`
sends TERM (it exits in well under a second) and KILL if it lingers;
`restart` starts it again on the same port and data directory, so that a
persistent broker keeps what it took.

`Consumer` subscribes to queues with client-individual acknowledgement
and keeps each message's destination and JSON body, in a thread of
stomp.py's; it reconnects after the broker comes back (`connect`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

HOME = Path("/usr/share/activemq")
START_TIMEOUT_S = 60.0
CONFIG = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
  http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="waitd-test" useJmx="false"
          persistent="{persistent}" dataDirectory="{data}" schedulerSupport="false" advisorySupport="false"
          useShutdownHook="false">
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


def available() -> bool:
    return (HOME / "bin" / "activemq.jar").exists() and shutil.which("java") is not None


def require() -> None:
    """Skip a test that needs ActiveMQ where there is none; but fail it where
    `make test` installs it (root on Debian: make deps): there a missing
    broker is a broken setup, and its tests must not pass unseen."""
    if available():
        return
    import pytest

    why = "ActiveMQ is not installed (make deps: apt-get install activemq)"
    if os.geteuid() == 0 and Path("/etc/debian_version").exists():
        pytest.fail(f"{why}; as root on Debian make deps installs it, so its tests are not skipped here")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ActiveMQ:
    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.workdir = Path(workdir)
        self.persistent = persistent
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "activemq.log"

    def start(self) -> None:
        conf = self.workdir / "conf"
        data = self.workdir / "data"
        tmp = self.workdir / "tmp"
        for d in (conf, data, tmp):
            d.mkdir(parents=True, exist_ok=True)
        xml = conf / "activemq.xml"
        xml.write_text(CONFIG.format(persistent=str(self.persistent).lower(), data=data, port=self.port))
        argv = [
            "java",
            "-Xmx160m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dactivemq.home={HOME}",
            f"-Dactivemq.base={self.workdir}",
            f"-Dactivemq.conf={conf}",
            f"-Dactivemq.data={data}",
            f"-Djava.io.tmpdir={tmp}",
            "-jar",
            str(HOME / "bin" / "activemq.jar"),
            "start",
            f"xbean:file:{xml}",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text("utf-8", "replace")[-2000:]
                self.stop()
                raise RuntimeError(f"ActiveMQ did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        """True once the STOMP connector answers a CONNECT."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
                return s.recv(9).startswith(b"CONNECTED")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def consumer(self, *queues: str) -> Consumer:
        return Consumer(self.port, queues)


class Consumer:
    """A STOMP subscriber: every message of its queues, acknowledged one by one."""

    def __init__(self, port: int, queues: tuple[str, ...]) -> None:
        self.port = port
        self.queues = queues
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []  # of each message, in the same order
        self._lock = threading.Condition()
        self.conn: Any = None
        self.connect()

    def connect(self) -> None:
        """Connect and subscribe (again, after the broker was restarted)."""
        import stomp

        self.conn = stomp.Connection([("127.0.0.1", self.port)], reconnect_attempts_max=1)
        self.conn.set_listener("test", self)
        self.conn.connect(wait=True)
        for i, queue in enumerate(self.queues):
            self.conn.subscribe(queue, id=str(i), ack="client-individual")

    def on_message(self, frame: Any) -> None:
        with self._lock:
            self.messages.append((frame.headers["destination"], json.loads(frame.body)))
            self.headers.append(dict(frame.headers))
            self._lock.notify_all()
            conn = self.conn
        conn.ack(frame.headers["message-id"], frame.headers["subscription"])

    def wait(self, count: int, timeout: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} STOMP messages in {timeout} s, expected {count}")
            return list(self.messages)

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:
            pass


def kill_leftover(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
