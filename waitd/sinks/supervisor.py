# SPDX-License-Identifier: MIT
"""waitd's side of the sinks: their processes, started, watched, restarted.

`Sinks` keeps one child process (`waitd.sinks.child`) per `[sink NAME]` of
waitd.conf.  `apply` takes the sinks of a (re)read waitd.conf: a new one
gets its place at the end of the outbox and its process; one whose
settings changed is restarted with them; one no longer there is stopped
and its place forgotten (its backlog is dropped, and its segments may go).
`check`, at each turn of the loop, reaps a process that died and starts it
again: at once the first time, then, while it keeps dying within
10 s of its start, after a back-off of 1 s doubling up to 60 s
(`decide.backoff.restart_delay`; logged each time).  `hup` passes a HUP
on (reopen the log and the `jsonl` file; a process is started with HUP
blocked until its handler is set, so that a HUP right after its start,
as on a reload that changed it, does not kill it), `stop` ends them all (TERM, KILL after
STOP_GRACE_S).

Nothing here waits on a sink: a process is spawned, signalled and polled
(waitpid WNOHANG), never waited for, but by `stop` at waitd's exit.
`report` says, for `-s status` and the metrics, each sink's process, its
backlog (events written and not yet passed) and whether it is down.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from waitd.config.conf import Sink
from waitd.config.passdir import events_path
from waitd.decide import backoff
from waitd.formats.status import SinkReport
from waitd.journal import outbox

log = logging.getLogger("waitd")

STOP_GRACE_S = 3.0
_HIDDEN = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass(slots=True)
class Child:
    """A sink's process: running or not, its restarts, and when to start it again."""

    sink: Sink
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic
    restarts: int = 0
    delay_s: float = 0.0
    due: float | None = None  # monotonic: start it again then


class Sinks:
    def __init__(self, passdir: str, foreground: bool) -> None:
        self.passdir = passdir
        self.directory = events_path(passdir)
        self.foreground = foreground
        self.children: dict[str, Child] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in _HIDDEN}
        self.running = False  # processes are started only once the loop runs
        self.retiring: list[tuple[subprocess.Popen[bytes], float]] = []  # TERM sent; KILL at

    @property
    def names(self) -> list[str]:
        return list(self.children)

    def apply(self, sinks: tuple[Sink, ...], place_new: Any) -> None:
        """Take the sinks of waitd.conf; `place_new(name)` gives a new one its place."""
        wanted = {s.name: s for s in sinks}
        for name in list(self.children):
            child = self.children[name]
            if name not in wanted:
                self._end(child)
                del self.children[name]
                outbox.forget_place(self.directory, name)
                log.info("sink %s: no longer in waitd.conf; stopped, its backlog dropped", name)
            elif wanted[name].as_dict() != child.sink.as_dict():
                self._end(child)
                child.sink = wanted[name]
                child.due = time.monotonic()
                log.info("sink %s: its settings changed; started again with them", name)
        for name, sink in wanted.items():
            if name not in self.children:
                place_new(name)
                self.children[name] = Child(sink, due=time.monotonic())
        if self.running:
            self.check(time.monotonic())

    def start(self) -> None:
        self.running = True
        self.check(time.monotonic())

    def check(self, now: float, exited: bool = True) -> None:
        """Reap the processes that ended (`exited`: some child of waitd may
        have; False spares a poll of each, every turn); start those due."""
        for old, kill_at in list(self.retiring):
            if old.poll() is not None:
                self.retiring.remove((old, kill_at))
            elif now >= kill_at:
                old.kill()
        for child in self.children.values():
            proc = child.proc
            if exited and proc is not None and proc.poll() is not None:
                self._died(child, now)
            if self.running and child.proc is None and child.due is not None and now >= child.due:
                self._spawn(child, now)

    def _died(self, child: Child, now: float) -> None:
        assert child.proc is not None
        code = child.proc.returncode
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        child.proc = None
        child.delay_s = backoff.restart_delay(child.delay_s, now - child.started, child.restarts)
        child.due = now + child.delay_s
        when = f"in {child.delay_s:g} s" if child.delay_s else "now"
        log.warning("sink %s: its process %s; starting it again %s", child.sink.name, how, when)

    def _spawn(self, child: Child, now: float) -> None:
        argv = [sys.executable, *(["-I"] if sys.flags.isolated else []), "-m", "waitd.sinks.child"]
        argv += [self.passdir, str(os.getpid()), "1" if self.foreground else "0"]
        # A HUP (a reload that changed the sink, logrotate) must not kill
        # the process before it has set its handler: it starts with HUP
        # blocked (the mask survives exec), and takes one sent meanwhile
        # once its handler is in place.  Here a HUP waits the while.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=self.env, start_new_session=True
            )
        except OSError as exc:
            log.error("sink %s: cannot start its process: %s", child.sink.name, exc.strerror or exc)
            child.delay_s = backoff.spawn_delay(child.delay_s)
            child.due = now + child.delay_s
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(child.sink.as_dict()).encode())  # small: the pipe takes it at once
            proc.stdin.close()
        except OSError:
            pass  # it died at once: check() sees it
        if child.started:
            child.restarts += 1
        child.proc, child.started, child.due = proc, now, None

    def _end(self, child: Child) -> None:
        """TERM a process, not waiting for it: `check` reaps it, or KILLs it
        after the grace (its successor waits for the sink's lock)."""
        proc, child.proc = child.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            self.retiring.append((proc, time.monotonic() + STOP_GRACE_S))

    def deadline(self) -> float | None:
        if not self.children and not self.retiring:
            return None  # none configured, none retiring: no list made (asked before each wait)
        dues = [c.due for c in self.children.values() if c.due is not None and c.proc is None]
        dues += [kill_at for _, kill_at in self.retiring]
        return min(dues) if dues and self.running else None

    def hup(self) -> None:
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """TERM every process, then KILL what is left after the grace."""
        self.running = False
        procs = [c.proc for c in self.children.values() if c.proc is not None] + [p for p, _ in self.retiring]
        self.retiring = []
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            _reap(proc, max(0.0, deadline - time.monotonic()))
        for child in self.children.values():
            child.proc = None

    def report(self, last_seq: int) -> list[SinkReport]:
        """Each sink as `-s status` shows it."""
        out = []
        for name, child in self.children.items():
            place, state = outbox.read_place(self.directory, name)
            alive = child.proc is not None and child.proc.poll() is None
            down = state.get("down_since")
            out.append(
                SinkReport(
                    name=name,
                    type=child.sink.type,
                    pid=child.proc.pid if alive and child.proc is not None else None,
                    backlog=max(0, last_seq - place.seq) if place is not None else 0,
                    down_since=float(down) if isinstance(down, int | float) else None,
                    error=str(state["error"]) if state.get("error") is not None else None,
                    restarts=child.restarts,
                )
            )
        return out


def _reap(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
