# SPDX-License-Identifier: MIT
"""`--http [ADDR:]PORT`: the status page and the task API over HTTP.

    GET  /                the page for people (page.html: no script or
                          style from elsewhere; it polls /status.json and
                          /page.json every few seconds)
    GET  /status.json     the status document (as `waitd -s status --json`)
    GET  /page.json       what the page adds: the last hour's runs by
                          record (the timeline) and the tail of each
                          running run's log
    GET  /files/PATH      one file's story (as `waitd -s show PATH --json`)
    GET  /metrics         the Prometheus metrics (the registry of
                          --metrics, one registry served by both)
    POST /retry /cancel /pause /resume   {"paths": [...]}: only with
                          `[http] control = yes`, and the token of its
                          token file (mode 0600) as `Authorization: Bearer`

The server is the standard library's ThreadingHTTPServer, in a thread of
its own, each connection in a thread of its own with a socket timeout: a
slow client holds only its own thread.  It is the one prometheus-client's
server is built on (so --metrics already runs it), kept with Python
itself, and it needs no event loop in a daemon that has its own select
loop: a framework (aiohttp, a WSGI server) would add a dependency and an
event loop or worker model for five paths and a few requests a second.

It never touches the daemon's state: it serves the last status document
the loop handed over whole (`snapshot`, each time the loop builds one)
and the runs that ended (`ended`, an observer of the journal, kept an
hour; those of the hour before its start are read from the history's last
HISTORY_TAIL bytes, once, by the first /page.json), and it sends /files
and the POSTs to the loop as control-socket requests (`ask`: a queue and
a wake-up pipe the loop watches): the loop answers them in its turn
(`serve`, with `Commands.answer`, the one implementation of each verb)
and the thread waits for the reply at most REPLY_WAIT_S.

Errors: a path of no record is the story's own error (404); a bad
request 400; a body over MAX_BODY 413; a POST without control 403, with a
wrong or no token 401; a loop that does not answer in time 503.  Nothing
is changed by a refused request.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import queue
import stat
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from waitd.config import wildcard
from waitd.config.errors import WaitdError
from waitd.formats import events
from waitd.formats.history_line import Status, parse_line

log = logging.getLogger("waitd")

MAX_BODY = 64 * 1024
REPLY_WAIT_S = 5.0
CLIENT_TIMEOUT_S = 10.0
TIMELINE_S = 3600.0
TIMELINE_MAX = 20000  # runs kept for the timeline, whatever the hour holds
TAIL_BYTES = 2048
HISTORY_TAIL = 4 << 20  # of the history read for the timeline of the hour before a start
VERBS = ("retry", "cancel", "pause", "resume")
Answer = Callable[[dict[str, Any]], dict[str, Any]]


class _Request:
    """A request for the loop, and its reply once answered."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.reply: dict[str, Any] | None = None
        self.done = threading.Event()


class Http:
    """The HTTP server and what it shares with the loop."""

    def __init__(
        self, host: str, port: int, token: str | None, metrics: Callable[[], bytes] | None, history: str | None = None
    ) -> None:
        self.token = token
        self.history = history  # the history file: the timeline's runs before this start, read once
        self.metrics = metrics
        self._doc: dict[str, Any] | None = None
        self._encoded: tuple[int, bytes] | None = None  # (id of the document, its JSON)
        self._lock = threading.Lock()
        self._ended: deque[dict[str, Any]] = deque(maxlen=TIMELINE_MAX)
        self._timeline: list[dict[str, Any]] = []
        self._earlier: list[dict[str, Any]] = []  # the runs of the hour before this start (the history's)
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.page = resources.files("waitd.daemon").joinpath("page.html").read_bytes()
        handler = type("Handler", (_Handler,), {"http": self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise WaitdError(f"--http {host}:{port}: cannot listen: {exc.strerror or exc}") from exc
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, name="waitd-http", daemon=True)
        self.thread.start()

    # -- the loop's side ----------------------------------------------------------

    def fileno(self) -> int:
        """Readable when a request waits for the loop."""
        return self._wake_r

    def serve(self, answer: Answer) -> None:
        """Answer the requests that wait (in the loop's turn)."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                request.reply = answer(request.body)
            except Exception as exc:  # a bug in a verb: the client hears of it, the loop goes on
                log.exception("waitd: an HTTP request failed")
                request.reply = {"ok": False, "error": f"internal error: {type(exc).__name__} (logged)"}
            request.done.set()

    def snapshot(self, doc: dict[str, Any]) -> None:
        """A new status document, handed over whole; the timeline with it."""
        cutoff = time.time() - TIMELINE_S
        while self._ended and self._ended[0]["end"] < cutoff:
            self._ended.popleft()
        timeline = list(self._ended)
        with self._lock:
            self._doc, self._timeline = doc, timeline

    def ended(self, event: events.Event) -> None:
        """An event of the journal: a run's end goes on the timeline."""
        if isinstance(event, events.Ended):
            took = event.took or 0.0
            about = event.about
            self._ended.append(
                {
                    "record": about.record,
                    "file": about.path or about.group,
                    "start": event.time - took,
                    "end": event.time,
                    "outcome": event.outcome,
                }
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the server's side ---------------------------------------------------------

    def status_json(self) -> bytes | None:
        with self._lock:
            doc = self._doc
            if doc is None:
                return None
            if self._encoded is None or self._encoded[0] != id(doc):
                self._encoded = (id(doc), json.dumps(doc, sort_keys=True).encode())
            return self._encoded[1]

    def page_json(self) -> bytes:
        with self._lock:
            doc, timeline = self._doc, self._timeline
        if self.history is not None and doc is not None:
            self._earlier = timeline_of(self.history, doc, time.time() - TIMELINE_S)
            self.history = None
        cutoff = time.time() - TIMELINE_S
        timeline = [r for r in self._earlier if r["end"] >= cutoff] + timeline
        tails = {}
        for rec in (doc or {}).get("records", []):
            for run in rec.get("running", []):
                if run.get("log"):
                    tails[run["log"]] = _tail(run["log"])
        return json.dumps({"timeline": timeline, "tails": tails, "control": self.token is not None}).encode()

    def ask(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send a request to the loop and wait for its reply (None: none in time)."""
        request = _Request(body)
        self._requests.put(request)
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the loop is woken already
        return request.reply if request.done.wait(REPLY_WAIT_S) else None


def timeline_of(history: str, doc: dict[str, Any], since: float) -> list[dict[str, Any]]:
    """The runs of the history's last HISTORY_TAIL bytes that ended after
    `since` and before this waitd started (the journal tells those after),
    each of the record of the status document whose directory,
    template and process take it (the first one)."""
    records = [(r["directory"], wildcard.matcher(r["template"]), r["process"], r["number"]) for r in doc["records"]]
    try:
        with open(history, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - HISTORY_TAIL))
            lines = f.read().split(b"\n")[1:-1]
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            e = parse_line(line.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            continue
        if e.status is Status.STARTED or e.at is None or e.took is None or not since <= e.at < doc["started_at"]:
            continue
        directory, name = os.path.split(e.path)
        number = next((n for d, match, p, n in records if d == directory and p == e.process and match(name)), None)
        if number is not None:
            outcome = "retrying" if e.retry_at is not None else "failed" if not e.succeeded else e.outcome or "ok"
            out.append({"record": number, "file": e.path, "start": e.at - e.took, "end": e.at, "outcome": outcome})
    return out


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class _Handler(BaseHTTPRequestHandler):
    http: Http
    timeout = CLIENT_TIMEOUT_S
    server_version = "waitd"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not logged: a browser polls

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            self._send(200, self.http.page, "text/html; charset=utf-8")
        elif path == "/status.json":
            body = self.http.status_json()
            if body is None:
                self._error(503, "no status yet: waitd is starting")
            else:
                self._send(200, body)
        elif path == "/page.json":
            self._send(200, self.http.page_json())
        elif path.startswith("/files/"):
            self._loop({"cmd": "show", "path": urllib.parse.unquote(path[len("/files") :])}, 404)
        elif path == "/metrics" and self.http.metrics is not None:
            self._send(200, self.http.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._error(404, f"no such page: {path} (/, /status.json, /files/PATH, /metrics)")

    def do_POST(self) -> None:
        verb = urllib.parse.urlsplit(self.path).path.strip("/")
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._error(411, "a POST needs its Content-Length")
            return
        if int(length) > MAX_BODY:
            self._error(413, f"a body of at most {MAX_BODY} bytes")
            self.close_connection = True
            return
        data = self.rfile.read(int(length))
        if verb not in VERBS:
            self._error(404, f"no such verb: {verb} (POST /retry, /cancel, /pause, /resume)")
        elif self.http.token is None:
            self._error(403, "read-only: waitd.conf's [http] has no control = yes")
        elif not _authorized(self.headers.get("Authorization", ""), self.http.token):
            self._error(401, "a wrong or missing token (Authorization: Bearer TOKEN)")
        else:
            try:
                body = json.loads(data)
            except ValueError:
                body = None
            paths = body.get("paths") if isinstance(body, dict) else None
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                self._error(400, 'the body is {"paths": ["/one/file", ...]}')
                return
            self._loop({"cmd": verb, "paths": paths}, 409)

    def _loop(self, request: dict[str, Any], refused: int) -> None:
        reply = self.http.ask(request)
        if reply is None:
            self._error(503, f"waitd did not answer within {REPLY_WAIT_S:g} s")
            return
        self._send(200 if reply.get("ok") else refused, json.dumps(reply).encode())

    def _error(self, code: int, message: str) -> None:
        self._send(code, json.dumps({"ok": False, "error": message}).encode())

    def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _authorized(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme == "Bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def read_token(path: str) -> str:
    """The token of [http] token = FILE; WaitdError if it cannot be used
    (missing, empty, or readable by others than waitd's user)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise WaitdError(f"{path}: cannot read the HTTP token: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        token = f.read(4096).decode("utf-8", "replace").strip()
    if mode & 0o077:
        raise WaitdError(f"{path}: the HTTP token file has mode {mode:04o}; it must be 0600 (chmod 600)")
    if len(token) < 8:
        raise WaitdError(f"{path}: the HTTP token is shorter than 8 characters")
    return token
