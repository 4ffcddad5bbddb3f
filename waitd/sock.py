# SPDX-License-Identifier: MIT
"""The control socket, $PASSDIR/waitd.sock: one JSON request, one reply.

`Server` listens on a UNIX stream socket made with mode 0600 (the umask is
tightened around bind(2), so it is never open to others, not even for a
moment), and answers each connection with one JSON object on one line for
the one JSON object a line it reads.  A peer is served only if SO_PEERCRED
says it is root or waitd's own user; anyone else gets an error reply and
is closed.  The loop calls `serve` when the socket is readable; a request
is read with a short timeout, so a peer that stalls cannot hold the loop
for long.  `ask` is the client: `waitd -s status --json`, `-s retry`,
`-s cancel`.

Requests are objects with a "cmd" (status, retry, cancel) and, for retry
and cancel, "paths"; replies have "ok" and either what was asked or
"error".  The daemon decides what each command does (`loop`).

Failures: the server logs a socket it cannot make and runs without one
(the signal verbs still work); a bad request gets an error reply.  `ask`
raises WaitdError naming the socket when no daemon answers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from typing import Any

from waitd.errors import WaitdError

log = logging.getLogger("waitd")

MAX_REQUEST = 1 << 20
READ_TIMEOUT_S = 2.0
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_path(passdir: str) -> str:
    return os.path.join(passdir, "waitd.sock")


class Server:
    """The listening socket of the daemon."""

    def __init__(self, passdir: str) -> None:
        self.path = socket_path(passdir)
        self.sock: socket.socket | None = None
        self._ino: int | None = None

    def open(self) -> bool:
        """Make the socket; False (logged) if it cannot be made."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("%s: cannot look at it: %s; no control socket", self.path, exc.strerror)
            return False
        else:
            if not stat.S_ISSOCK(st.st_mode):
                log.error("%s: is not a socket; not replacing it; no control socket (remove it)", self.path)
                return False
            os.unlink(self.path)  # a socket a dead waitd left: we hold the pid file
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with _short(self.path) as address:
                sock.bind(address)
        except OSError as exc:
            sock.close()
            log.error("%s: cannot make the control socket: %s", self.path, exc.strerror or exc)
            return False
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self.sock = sock
        self._ino = os.lstat(self.path).st_ino
        return True

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def serve(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Answer the connections waiting to be accepted."""
        if self.sock is None:
            return
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: accept failed: %s", self.path, exc.strerror)
                return
            with conn:
                try:
                    self._one(conn, answer)
                except OSError as exc:
                    log.warning("%s: a request failed: %s", self.path, exc.strerror or exc)

    def _one(self, conn: socket.socket, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        conn.settimeout(READ_TIMEOUT_S)
        _, uid, _ = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        if uid not in (0, os.getuid()):
            log.warning("%s: refused a request of uid %d (only root and uid %d may ask)", self.path, uid, os.getuid())
            _send(conn, {"ok": False, "error": f"permission denied: uid {uid} is neither root nor waitd's user"})
            return
        data = b""
        while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            _send(conn, {"ok": False, "error": f"bad request: {exc}"})
            return
        _send(conn, answer(request))

    def close(self) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        try:
            if os.lstat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass


@contextlib.contextmanager
def _short(path: str) -> Iterator[str]:
    """An address for `path` that fits a UNIX socket's 108 bytes, however
    deep PASSDIR is: the directory through a descriptor of it in /proc."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
    conn.sendall((json.dumps(reply) + "\n").encode())


def ask(passdir: str, request: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon of this PASSDIR; its reply."""
    path = socket_path(passdir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            with _short(path) as address:
                sock.connect(address)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise WaitdError(f"{path}: no waitd answers on its control socket (is it running?)") from None
            raise WaitdError(f"{path}: cannot connect: {exc.strerror or exc}") from None
        try:
            sock.sendall((json.dumps(request) + "\n").encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the request was read: the reply says why
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise WaitdError(f"{path}: no reply: {exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise WaitdError(f"{path}: the daemon's reply is not JSON: {data[:80]!r}") from None
    if not isinstance(reply, dict):
        raise WaitdError(f"{path}: the daemon's reply is not a JSON object")
    return reply
