# SPDX-License-Identifier: MIT
"""systemd's notification protocol, read from a real datagram socket.

The test binds a Unix datagram socket and gives its path to waitd as
NOTIFY_SOCKET, as systemd does for a Type=notify service, with
WATCHDOG_USEC as WatchdogSec= sets it; then reads what waitd sends.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from conftest import deliver, wait_for

WATCHDOG_USEC = 300_000  # a ping every 0.15 s


class Notifications:
    """What arrives on the socket, one message (its lines) each."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[list[str]] = []

    def read(self) -> list[list[str]]:
        """Take what has arrived so far (without waiting)."""
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode().split("\n"))

    def seen(self, line: str) -> list[int]:
        """The indexes of the messages holding this line (or line prefix)."""
        return [i for i, m in enumerate(self.read()) if any(x == line or x.startswith(line) for x in m)]

    def close(self) -> None:
        self.sock.close()


def test_ready_reloading_status_watchdog_and_stopping_on_a_real_socket(station):
    notes = Notifications(str(station.root / "notify"))
    try:
        station.env.update(NOTIFY_SOCKET=str(station.root / "notify"), WATCHDOG_USEC=str(WATCHDOG_USEC))
        station.handler("h", f'env > "{station.passdir}/env.$(basename "$1")"\n')
        station.table(f"x {station.incoming} *.d {station.passdir}/h 0 -1 0")
        station.start()
        wait_for(lambda: notes.seen("READY=1"), 10, "READY=1")
        first = notes.read()[notes.seen("READY=1")[0]]
        assert any(x.startswith("STATUS=active: 1/1 records active") for x in first), first
        # The watchdog is pinged from the loop, every half of WATCHDOG_USEC,
        # while waitd has nothing else to do.
        began, before = time.monotonic(), len(notes.seen("WATCHDOG=1"))
        wait_for(lambda: len(notes.seen("WATCHDOG=1")) >= before + 4, 10, "four more watchdog pings")
        assert time.monotonic() - began >= 3 * WATCHDOG_USEC / 2e6  # no more often than asked
        # STATUS= follows what waitd does.
        deliver(station, "a.d")
        wait_for(lambda: (station.passdir / "env.a.d").exists() and len(station.ends()) == 1, 10, "the run")
        wait_for(lambda: notes.seen("STATUS=active: 1/1 records active, 0 running, 0 waiting"), 10, "a STATUS=")
        env = (station.passdir / "env.a.d").read_text()
        assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env  # the socket is waitd's, not theirs
        # HUP: RELOADING=1 (with the time, as sd_notify(3) asks), then READY=1.
        station.signal(signal.SIGHUP)
        wait_for(lambda: notes.seen("RELOADING=1"), 10, "RELOADING=1")
        reloading = notes.seen("RELOADING=1")[0]
        assert any(x.startswith("MONOTONIC_USEC=") for x in notes.read()[reloading])
        wait_for(lambda: [i for i in notes.seen("READY=1") if i > reloading], 10, "READY=1 after the reload")
        assert station.stop() == 0
        stopping = notes.seen("STOPPING=1")
        assert len(stopping) == 1 and stopping[0] > reloading
        assert len(notes.seen("READY=1")) == 2
    finally:
        notes.close()


def test_without_notify_socket_nothing_is_sent_and_a_watchdog_pid_not_its_own_is_ignored(station):
    notes = Notifications(str(station.root / "notify"))
    try:
        # WATCHDOG_PID names another process: the watchdog is not waitd's.
        station.env.update(
            NOTIFY_SOCKET=str(station.root / "notify"), WATCHDOG_USEC=str(WATCHDOG_USEC), WATCHDOG_PID=str(os.getpid())
        )
        station.recorder()
        station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
        station.start()
        wait_for(lambda: notes.seen("READY=1"), 10, "READY=1")
        deliver(station, "a.d")
        wait_for(lambda: len(station.ends()) == 1, 10, "a run")
        assert station.stop() == 0
        assert notes.seen("STOPPING=1") and not notes.seen("WATCHDOG=1")
    finally:
        notes.close()
