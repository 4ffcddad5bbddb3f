# SPDX-License-Identifier: MIT
"""A cancel message: the file it names is not run, wherever it is.

`Canceller.cancel(NAME)` first remembers the NAME in the source's ledger
(`Spooler.remember_cancel`: a message of that NAME that comes later goes
to Q/errors at once), then asks waitd through its control socket, as
`waitd -s cancel Q/incoming/NAME` does: a waiting file is cancelled (a
final failure: waitd moves it into Q/errors and records it), a running
one is killed (status 1 `error=cancelled`).  When waitd does not know the
file yet (not listed yet, or waitd is down), the source moves it from
Q/incoming into Q/errors itself, a rename no claim can race with (the
one that loses finds no file); when the claim won, waitd is asked again.
It returns what became of the file, for the log.

The control socket's protocol (one JSON object a line, one reply) is
`daemon.sock`'s; this is a client of it, as `waitd -s` is.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from waitd.config.passdir import socket_path
from waitd.journal.disk import fsync_dir
from waitd.sources.spooler import Spooler
from waitd.spool import queue as q

TIMEOUT_S = 10.0


def ask(passdir: str, request: dict[str, Any]) -> dict[str, Any]:
    """waitd's reply to a request; OSError or ValueError if none came."""
    path = socket_path(passdir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT_S)
        if len(os.fsencode(path)) < 100:
            s.connect(path)
        else:  # a deep PASSDIR: the directory through a descriptor (as daemon.sock does)
            fd = os.open(passdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                s.connect(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
            finally:
                os.close(fd)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError("not a JSON object")
    return reply


class Canceller:
    def __init__(self, passdir: str, spooler: Spooler) -> None:
        self.passdir = passdir
        self.spooler = spooler
        self.by = f"source {spooler.source}: a cancel message"

    def cancel(self, name: str) -> str:
        """Cancel the file NAME; what became of it."""
        self.spooler.remember_cancel(name)
        queue = self.spooler.queue
        path = os.path.join(queue.incoming, name)
        said = self._ask(path)
        if said is not None and said[0]:
            return said[1]
        if os.path.lexists(path):
            try:
                moved = q.move_unique(path, queue.errors, name)
            except FileNotFoundError:
                pass  # claimed meanwhile: waitd knows it now
            else:
                fsync_dir(queue.errors)
                return f"moved to {moved}"
            said = self._ask(path)
            if said is not None and said[0]:
                return said[1]
        if said is None:
            return "waitd does not answer; remembered: it will not run when it comes"
        return f"{said[1]}; remembered: it will not run when it comes"

    def _ask(self, path: str) -> tuple[bool, str] | None:
        try:
            reply = ask(self.passdir, {"cmd": "cancel", "paths": [path], "by": self.by})
        except (OSError, ValueError):
            return None
        results = reply.get("results") or [{}]
        return bool(reply.get("ok")), str(results[0].get("message") or reply.get("error") or "")
