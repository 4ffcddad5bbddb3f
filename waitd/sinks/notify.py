# SPDX-License-Identifier: MIT
"""systemd's notification protocol (sd_notify(3)), for `Type=notify`.

With `NOTIFY_SOCKET` set (systemd sets it for a Type=notify service), waitd
sends datagrams to that socket: READY=1 once it is up (pid file held,
history read, control socket open), with STATUS= its first one-line
summary; RELOADING=1 and then READY=1 around a HUP (the READY=1 once the
table and waitd.conf are reread), STOPPING=1 on TERM, STATUS= the summary
each time it changes (it is made with the status document), and
WATCHDOG=1 every half of WATCHDOG_USEC when the unit sets WatchdogSec=
(only when WATCHDOG_PID, if set, is waitd's pid).  A path starting with
`@` is in the abstract namespace.  Without NOTIFY_SOCKET everything is a
no-op.  The variables are taken out of the environment handlers get: the
socket is waitd's, not theirs.  A send that fails is ignored (systemd
gone, socket full): notifications never stop waitd.

The protocol is a few lines, so no library is used.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notify:
    def __init__(self, env: MutableMapping[str, str]) -> None:
        path = env.get("NOTIFY_SOCKET") or ""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        for name in VARIABLES:
            env.pop(name, None)
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self._sock: socket.socket | None = None
        if path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_s: float | None = None
        if self._sock is not None and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6 / 2
        self._next_ping = 0.0
        self._status = ""
        self._ready = False  # STATUS= waits for the first READY=1, and goes with it

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), self._address)
        except OSError:
            pass

    def ready(self) -> None:
        """READY=1, with the last STATUS= (at start: the first summary)."""
        self._ready = True
        self.send("READY=1", *([f"STATUS={self._status}"] if self._status else []))

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            if self._ready:
                self.send(f"STATUS={text}")

    def watchdog(self, now: float) -> float | None:
        """Ping the watchdog if due; when the next ping is due (None: no watchdog)."""
        if self.watchdog_s is None:
            return None
        if now >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.watchdog_s
        return self._next_ping

    def due(self) -> float | None:
        """When the next watchdog ping is due (None: no watchdog)."""
        return self._next_ping if self.watchdog_s is not None else None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
