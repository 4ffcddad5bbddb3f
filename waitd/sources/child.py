# SPDX-License-Identifier: MIT
"""A source's own process: take messages, put each into its queue, acknowledge.

waitd starts one for each `[source NAME]` of waitd.conf (`supervisor.Sources`)
as `python -m waitd.sources.child PASSDIR PARENT-PID FOREGROUND`, the
source's settings as JSON on its standard input.  It dies with waitd
(PR_SET_PDEATHSIG), and holds `sources/NAME.lock` while it runs, so that
two never take messages for one source (a successor waits for it).

The loop: connect (the kind's `open`: `stomp`, `posttroll`), take the
messages that came (a batch, waiting at most TAKE_S), put the work into
the queue (`spooler.Spooler.put`: durably, exactly once), carry out the
cancels (`cancel.Canceller`), and only then acknowledge the batch.  A
connection that fails or is lost is logged once, with the back-off
(`retry =`, doubling up to `retry-max =`), and made again; when it works
again that is logged too.  A batch that cannot be put into the queue (a
full disk) is not acknowledged: the connection is closed, so that the
broker gives its messages again, and the source backs off the same way.

Its state (connected or since when not and why, the messages taken,
repeated, refused, the cancels) is written to `sources/NAME.state`
(atomically, at most every STATE_EVERY_S, and at once when the connection
comes or goes) for `waitd -s status`.  HUP reopens incoming.log; TERM
ends it after the batch under way.  It logs to incoming.log as waitd
does, each line starting with `source NAME:`.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Protocol

from waitd.config.passdir import sources_path
from waitd.formats.history_line import escape
from waitd.journal.logfile import setup_logging
from waitd.sources.cancel import Canceller
from waitd.sources.posttroll import PosttrollSource
from waitd.sources.spooler import Message, Spooler
from waitd.sources.stomp import StompSource
from waitd.spool.locks import wait_flock

log = logging.getLogger("waitd")

TAKE_S = 0.5
STATE_EVERY_S = 1.0
_PR_SET_PDEATHSIG = 1


class Kind(Protocol):
    def describe(self) -> str: ...
    def open(self) -> None: ...
    def take(self, timeout_s: float) -> list[Message]: ...
    def ack(self, messages: list[Message]) -> None: ...
    def close(self) -> None: ...


def make(kind: str, settings: dict[str, Any]) -> Kind:
    if kind == "stomp":
        return StompSource(settings)
    if kind == "posttroll":
        return PosttrollSource(settings)
    raise ValueError(f"unknown source type {kind!r}")


class Stop(Exception):
    pass


class SourceProcess:
    def __init__(self, passdir: str, config: dict[str, Any]) -> None:
        self.passdir = passdir
        self.name = config["name"]
        self.directory = sources_path(passdir)
        os.makedirs(self.directory, exist_ok=True)
        self.kind = make(config["type"], config.get("settings", {}))
        ledger = os.path.join(self.directory, f"{self.name}.names")
        self.spooler = Spooler(self.name, ledger, config["queue"], config.get("name_format"), config["max_size"])
        self.canceller = Canceller(passdir, self.spooler)
        self.retry_s = float(config.get("retry_s", 1.0))
        self.retry_max_s = float(config.get("retry_max_s", 60.0))
        self.stop = False
        self.reopen = False
        self.opened = False
        self.down_since: float | None = None
        self.error: str | None = None
        self.counts = {"taken": 0, "repeated": 0, "refused": 0, "cancels": 0}
        self.state_due = 0.0

    def run(self) -> int:
        self._signals()
        lock = self._lock()
        try:
            try:
                self.spooler.open()
            except OSError as exc:
                log.error("source %s: cannot use the queue %s: %s", self.name, self.spooler.queue.root, exc)
                return 1
            log.info("source %s: taking messages into %s", self.name, self.spooler.queue.incoming)
            backoff = self.retry_s
            while not self.stop:
                if self.reopen:
                    self._reopen()
                if self._turn():
                    backoff = self.retry_s
                else:
                    self._sleep(backoff)
                    backoff = min(self.retry_max_s, backoff * 2)
        finally:
            self.kind.close()
            self.spooler.close()
            self._save_state(force=True)
            os.close(lock)
        return 0

    def _turn(self) -> bool:
        """Connect if need be, take a batch and handle it; False if it failed."""
        try:
            if not self.opened:
                self.kind.open()
                self.opened = True
                self._up()
            messages = self.kind.take(TAKE_S)
        except Exception as exc:  # whatever the library raises: not connected
            self._down(_why(exc))
            return False
        if messages:
            try:
                self._handle(messages)
            except OSError as exc:
                # Not acknowledged: the broker gives them again, to the next connection.
                self._down(f"cannot put messages into {self.spooler.queue.root}: {exc.strerror or exc}")
                return False
        self._save_state()
        return True

    def _handle(self, messages: list[Message]) -> None:
        work = [m for m in messages if not m.cancel]
        for placed in self.spooler.put(work):
            key = {"incoming": "taken", "duplicate": "repeated"}.get(placed.where, "refused")
            self.counts[key] += 1
        for msg in messages:
            if msg.cancel:
                self._cancel(msg)
        try:
            self.kind.ack(messages)
        except Exception as exc:  # the connection went: they come again, and are known then
            self._down(_why(exc))

    def _cancel(self, msg: Message) -> None:
        _, name, why = self.spooler.read(msg)
        if why is not None:
            log.warning("source %s: cancel message %s: %s; ignored", self.name, escape(msg.id), why)
            return
        self.counts["cancels"] += 1
        done = self.canceller.cancel(name)
        log.info("source %s: %s: cancelled, as a message asked: %s", self.name, escape(name), done)

    def _up(self) -> None:
        if self.down_since is not None:
            log.info(
                "source %s: connected again to %s after %.1f s",
                self.name,
                self.kind.describe(),
                time.time() - self.down_since,
            )
        else:
            log.info("source %s: connected to %s", self.name, self.kind.describe())
        self.down_since, self.error = None, None
        self._save_state(force=True)

    def _down(self, why: str) -> None:
        self.kind.close()
        self.opened = False
        if self.down_since is None:
            self.down_since, self.error = time.time(), why
            log.warning(
                "source %s: not connected (%s); trying again after %g s, doubling up to %g s, until it works",
                self.name,
                why,
                self.retry_s,
                self.retry_max_s,
            )
            self._save_state(force=True)

    def _save_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.state_due:
            return
        self.state_due = now + STATE_EVERY_S
        state = {
            "pid": os.getpid(),
            "connected": self.opened,
            "down_since": self.down_since,
            "error": self.error,
            **self.counts,
        }
        path = os.path.join(self.directory, f"{self.name}.state")
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(path + ".tmp", path)
        except OSError:
            pass  # -s status shows the last one written

    # -- waiting ----------------------------------------------------------------

    def _signals(self) -> None:
        def on_term(signum: int, frame: Any) -> None:
            self.stop = True

        def on_hup(signum: int, frame: Any) -> None:
            self.reopen = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for waitd (hibernate)
        signal.signal(signal.SIGHUP, on_hup)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked by waitd until now

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def _lock(self) -> int:
        path = os.path.join(self.directory, f"{self.name}.lock")
        said = f"source {self.name}: another process of this source still runs; waiting for it"
        fd = wait_flock(path, lambda: self.stop, lambda: log.warning("%s", said))
        if fd is None:
            raise Stop
        return fd

    def _reopen(self) -> None:
        self.reopen = False
        for handler in log.handlers:
            reopen = getattr(handler, "reopen", None)
            if reopen is not None:
                reopen()


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _die_with_parent(parent: int) -> bool:
    """Ask for TERM when waitd exits; False if it is gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return os.getppid() == parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    passdir, parent, foreground = args[0], int(args[1]), args[2] == "1"
    if not _die_with_parent(parent):
        return 0
    setup_logging(passdir, foreground)
    try:
        config = json.loads(sys.stdin.read())
        return SourceProcess(passdir, config).run()
    except Stop:
        return 0
    except Exception:
        log.exception("source: unexpected error; waitd starts the source again")
        return 1


if __name__ == "__main__":
    sys.exit(main())
