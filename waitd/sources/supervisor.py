# SPDX-License-Identifier: MIT
"""waitd's side of the sources: their processes, started, watched, restarted.

`Sources` keeps one child process (`waitd.sources.child`) per `[source
NAME]` of waitd.conf.  `apply` takes the sources of a (re)read waitd.conf:
a new one gets its process; one whose settings changed is restarted with
them; one no longer there is stopped.  `check`, at each turn of the loop,
reaps a process that died and starts it again: at once the first time,
then, while it keeps dying within 10 s of its start, after a
back-off of 1 s doubling up to 60 s (`decide.backoff.restart_delay`;
logged each time).  `hup` passes a HUP on (reopen the log; a process starts with HUP blocked until its
handler is set), `stop` ends them all (TERM, KILL after STOP_GRACE_S).

Nothing here waits on a source: a process is spawned, signalled and
polled, never waited for, but by `stop` at waitd's exit.  `report` says,
for `-s status`, each source's process and the state it saved
(`sources/NAME.state`: connected or since when not and why, the
messages taken).
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

from waitd.config.passdir import sources_path
from waitd.config.sourceconf import Source
from waitd.decide import backoff
from waitd.formats.status import SourceReport

log = logging.getLogger("waitd")

STOP_GRACE_S = 3.0
_HIDDEN = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass(slots=True)
class Child:
    """A source's process: running or not, its restarts, and when to start it again."""

    source: Source
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic
    restarts: int = 0
    delay_s: float = 0.0
    due: float | None = None  # monotonic: start it again then


class Sources:
    def __init__(self, passdir: str, foreground: bool) -> None:
        self.passdir = passdir
        self.foreground = foreground
        self.children: dict[str, Child] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in _HIDDEN}
        self.running = False  # processes are started only once the loop runs
        self.retiring: list[tuple[subprocess.Popen[bytes], float]] = []  # TERM sent; KILL at

    def apply(self, sources: tuple[Source, ...]) -> None:
        """Take the sources of waitd.conf."""
        wanted = {s.name: s for s in sources}
        for name in list(self.children):
            child = self.children[name]
            if name not in wanted:
                self._end(child)
                del self.children[name]
                log.info("source %s: no longer in waitd.conf; stopped", name)
            elif wanted[name].as_dict() != child.source.as_dict():
                self._end(child)
                child.source = wanted[name]
                child.due = time.monotonic()
                log.info("source %s: its settings changed; started again with them", name)
        for name, source in wanted.items():
            if name not in self.children:
                self.children[name] = Child(source, due=time.monotonic())
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
        log.warning("source %s: its process %s; starting it again %s", child.source.name, how, when)

    def _spawn(self, child: Child, now: float) -> None:
        argv = [sys.executable, *(["-I"] if sys.flags.isolated else []), "-m", "waitd.sources.child"]
        argv += [self.passdir, str(os.getpid()), "1" if self.foreground else "0"]
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # until its handler is set
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=self.env, start_new_session=True
            )
        except OSError as exc:
            log.error("source %s: cannot start its process: %s", child.source.name, exc.strerror or exc)
            child.delay_s = backoff.spawn_delay(child.delay_s)
            child.due = now + child.delay_s
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(child.source.as_dict()).encode())  # small: the pipe takes it at once
            proc.stdin.close()
        except OSError:
            pass  # it died at once: check() sees it
        if child.started:
            child.restarts += 1
        child.proc, child.started, child.due = proc, now, None

    def _end(self, child: Child) -> None:
        """TERM a process, not waiting for it (its successor waits for the lock)."""
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
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self.children.values():
            child.proc = None

    def report(self) -> list[SourceReport]:
        """Each source as `-s status` shows it."""
        out = []
        for name, child in self.children.items():
            state = read_state(self.passdir, name)
            pid = child.proc.pid if child.proc is not None and child.proc.poll() is None else None
            down = state.get("down_since")
            out.append(
                SourceReport(
                    name=name,
                    type=child.source.type,
                    queue=child.source.queue,
                    pid=pid,
                    connected=bool(state.get("connected")) and pid is not None and state.get("pid") == pid,
                    down_since=float(down) if isinstance(down, int | float) else None,
                    error=str(state["error"]) if state.get("error") is not None else None,
                    taken=_count(state, "taken"),
                    repeated=_count(state, "repeated"),
                    refused=_count(state, "refused"),
                    cancels=_count(state, "cancels"),
                    restarts=child.restarts,
                )
            )
        return out


def read_state(passdir: str, name: str) -> dict[str, Any]:
    try:
        with open(os.path.join(sources_path(passdir), f"{name}.state"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _count(state: dict[str, Any], key: str) -> int:
    value = state.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
