# SPDX-License-Identifier: MIT
"""The control socket, $PASSDIR/waitd.sock: one JSON request, one reply.

`Server` listens on a UNIX stream socket made with mode 0600 (the umask is
tightened around bind(2), so it is never open to others, not even for a
moment), and answers each connection with one JSON object on one line for
the one JSON object a line it reads.  A peer is served only if SO_PEERCRED
says it is root or waitd's own user; anyone else gets an error reply and
is closed.  Nothing blocks: the loop watches the listening socket and each
connection under way, and calls `serve` with the ready ones; a request is
read and its reply sent as the peer allows, and a connection not done
within CONN_TIMEOUT_S is given up, so a peer that stalls or reads slowly
holds neither the loop nor another peer.  `ask` is the client: `waitd -s
status --json`, `-s retry`, `-s cancel`.

Requests are objects with a "cmd" (status, retry, cancel) and, for retry
and cancel, "paths"; replies have "ok" and either what was asked or
"error".  The daemon decides what each command does (`commands`).

A request is at most MAX_REQUEST bytes and nested at most MAX_DEPTH
deep (a real one is an object holding a list): anything else, a line that
is not JSON or not an object, gets an error reply and the connection is
closed, as after every reply; so a hostile or broken peer costs one read
and one reply, never a traceback nor a second look.

Failures: the server logs a socket it cannot make and runs without one
(the signal verbs still work); a bad request gets an error reply.  A
command that fails (a bug) gets an error reply too, its traceback logged
once and then only counted (`errors.Unexpected`).  `ask` raises
WaitdError naming the socket when no daemon answers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from waitd.config.errors import Unexpected, WaitdError
from waitd.config.passdir import socket_path
from waitd.journal import logfile

log = logging.getLogger("waitd")

MAX_REQUEST = 1 << 20
MAX_DEPTH = 32  # of [ and { in a request: json would recurse until RecursionError
CONN_TIMEOUT_S = 5.0  # a request read and its reply sent within this, or given up
MAX_CONNECTIONS = 64  # requests under way at once; one more gives up the oldest
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string: its brackets do not nest
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass
class _Conn:
    """A connection being served: its request so far, then its reply's rest."""

    sock: socket.socket
    deadline: float  # monotonic: given up then
    data: bytes = b""
    reply: memoryview | None = field(default=None)


class Server:
    """The listening socket of the daemon."""

    def __init__(self, passdir: str) -> None:
        self.path = socket_path(passdir)
        self.sock: socket.socket | None = None
        self._ino: int | None = None
        self._conns: dict[int, _Conn] = {}
        self._errors = Unexpected(log)  # a command that failed: its traceback once, then a count
        # The loop's selector: watch(fd, for_writing) and unwatch(fd).
        self.watch: Callable[[int, bool], None] = lambda fd, for_writing: None
        self.unwatch: Callable[[int], None] = lambda fd: None

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

    def descriptors(self) -> set[int]:
        """The listening socket's descriptor and those of the connections
        being read or answered: the loop serves when any is ready."""
        own = {self.sock.fileno()} if self.sock is not None else set()
        return own | set(self._conns)

    def next_deadline(self) -> float | None:
        """When the oldest connection is to be given up (monotonic)."""
        if not self._conns:
            return None
        return min(c.deadline for c in self._conns.values())

    def asked(self, ready: set[int]) -> set[int]:
        """Which of the descriptors the wait saw ready are this server's
        (`descriptors`, without building them: a turn with no connection
        open looks at the listening socket alone)."""
        if self._conns:
            return ready & self.descriptors()
        if self.sock is not None and self.sock.fileno() in ready:
            return {self.sock.fileno()}
        return set()

    def serve(self, ready: set[int], answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Accept what waits, move each ready connection on (read its
        request, answer it, send the reply), and give up those that
        stalled past their deadline.  Nothing here blocks: a peer that
        sends slowly or reads its reply slowly costs no other one anything."""
        if self.sock is None:
            return
        if self.sock.fileno() in ready:
            self._accept(answer)
        for fd in sorted(ready & set(self._conns)):
            conn = self._conns.get(fd)
            if conn is not None:
                self._step(conn, answer)
        now = time.monotonic()
        late = [c for c in self._conns.values() if c.deadline <= now]
        for conn in late:
            self._drop(conn)
        if late:
            log.warning(
                "%s: gave up %d request(s): no whole request or reply within %g s", self.path, len(late), CONN_TIMEOUT_S
            )

    def _accept(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        assert self.sock is not None
        crowded = 0
        while True:
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("%s: accept failed: %s", self.path, exc.strerror)
                break
            sock.setblocking(False)
            if len(self._conns) >= MAX_CONNECTIONS:
                crowded += 1
                self._drop(min(self._conns.values(), key=lambda c: c.deadline))
            conn = _Conn(sock, time.monotonic() + CONN_TIMEOUT_S)
            self._conns[sock.fileno()] = conn
            self.watch(sock.fileno(), False)
            if self._admit(conn):
                self._step(conn, answer)  # the request is often there already
        if crowded:
            log.warning("%s: over %d requests under way: gave up the %d oldest", self.path, MAX_CONNECTIONS, crowded)

    def _admit(self, conn: _Conn) -> bool:
        """Whether SO_PEERCRED says the peer is root or waitd's own user;
        anyone else gets an error reply."""
        try:
            _, uid, _ = _CRED.unpack(conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        except OSError as exc:
            log.warning("%s: a request failed: %s", self.path, exc.strerror or exc)
            self._drop(conn)
            return False
        if uid in (0, os.getuid()):
            return True
        log.warning("%s: refused a request of uid %d (only root and uid %d may ask)", self.path, uid, os.getuid())
        self._reply(conn, {"ok": False, "error": f"permission denied: uid {uid} is neither root nor waitd's user"})
        return False

    def _step(self, conn: _Conn, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Read more of the request, or send more of the reply; once the
        request is whole, answer it (once: its reply is under way then)."""
        try:
            if conn.reply is not None:
                self._send_more(conn)
                return
            while not conn.data.endswith(b"\n") and len(conn.data) <= MAX_REQUEST:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                conn.data += chunk
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("%s: a request failed: %s", self.path, exc.strerror or exc)
            self._drop(conn)
            return
        request = _request(conn.data)
        conn.data = b""
        if isinstance(request, str):
            self._reply(conn, {"ok": False, "error": f"bad request: {request}"})
            return
        try:
            reply = answer(request)
        except Exception as exc:
            # A bug in a command: the peer hears of it, the loop goes on.
            self._errors.note(exc, f"{self.path}: a request")
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__} (logged in incoming.log)"}
        self._reply(conn, reply)

    def _reply(self, conn: _Conn, reply: dict[str, Any]) -> None:
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            self._errors.note(exc, f"{self.path}: a request")
            text = json.dumps({"ok": False, "error": f"internal error: {type(exc).__name__} (logged in incoming.log)"})
        conn.reply = memoryview((text + "\n").encode())
        logfile.write_held()  # what the request did is in incoming.log when its reply comes
        try:
            self._send_more(conn)
        except OSError as exc:
            log.warning("%s: a reply failed: %s", self.path, exc.strerror or exc)
            self._drop(conn)

    def _send_more(self, conn: _Conn) -> None:
        assert conn.reply is not None
        try:
            while conn.reply:
                conn.reply = conn.reply[conn.sock.send(conn.reply) :]
        except (BlockingIOError, InterruptedError):
            self.watch(conn.sock.fileno(), True)  # the rest when the peer has read
            return
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        self._conns.pop(fd, None)
        self.unwatch(fd)
        conn.sock.close()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
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


def _request(data: bytes) -> dict[str, Any] | str:
    """The request object of a line; or what is wrong with it."""
    if len(data) > MAX_REQUEST:
        return f"longer than {MAX_REQUEST} bytes"
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH}"
    try:
        request = json.loads(data)
    except (ValueError, RecursionError) as exc:
        return str(exc) if isinstance(exc, ValueError) else f"nested deeper than {MAX_DEPTH}"
    return request if isinstance(request, dict) else "not a JSON object"


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
