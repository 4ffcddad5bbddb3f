# SPDX-License-Identifier: MIT
"""A sink's own process: read the outbox from its place, deliver, move on.

waitd starts one for each `[sink NAME]` of waitd.conf (`supervisor.Sinks`) as
`python -m waitd.sinks.child PASSDIR PARENT-PID FOREGROUND`, the sink's
settings as JSON on its standard input.  It lowers its own priority (nice
NICE, and SCHED_BATCH: its wake-up at each event never preempts waitd or
a handler): when the CPU is short, the handlers' starts come first and
the events wait in the outbox.  It dies with waitd (the kernel
sends it TERM when its parent exits: PR_SET_PDEATHSIG), and holds
`events/NAME.lock` while it runs, so that two never deliver for one sink.

The sink is opened when the process starts, before any event comes (a
posttroll sink binds its address and announces it to its nameservers, a
stomp sink connects, a jsonl sink opens its file), so that subscribers
can find it and `-s status` shows it down when it cannot be; an open that
fails is a failure like a delivery's (below).

The loop: take the next batch of whole lines after the sink's place
(`journal.outbox.Reader`), read each as its typed event
(`formats.events.from_json`; one that is not is skipped with a warning),
keep the events this sink wants (its kind's and its `records =`),
deliver them (the sink of its kind: `kinds.make`), then save the new place
(`journal.outbox.write_place`, atomically) after the sink's `flush` (the
jsonl file's fdatasync): at most every SAVE_EVERY_S while
events keep coming, so that a stream of small batches does not cost a
rename and a sync each, and at once when the outbox has nothing more, or at TERM.
An event is delivered before its place is saved, so a crash of this
process, of waitd or of the broker makes events be delivered again (at
most SAVE_EVERY_S of them, or a batch), never lost: at least once, and
the ids tell the repeats.  With nothing to read, it sleeps on inotify until a
segment grows or a new one comes (at most a second).

A delivery (or an open) that fails (the broker down, a full disk, an
address in use) is logged once, with the back-off, and tried again after
`retry =` seconds, doubling up to `retry-max =`; the state (down since when, why) is saved with the place
for `waitd -s status` (and taken up by the sink's next process: a sink
down stays down, without a second warning, until it works).  When it
works again, that is logged too.  A place
that cannot be saved (a full disk under events/) is logged once, and
nothing more is delivered until it is saved, tried with the same back-off:
the sink neither dies over it nor runs ahead of its saved place.  HUP
reopens incoming.log and the sink's file (`jsonl`); TERM ends it after the
batch under way; waitd starts the process with HUP blocked, unblocked once
its handler is set (a HUP sent meanwhile is taken then, not fatal).  It
writes to incoming.log as waitd does, each line
starting with `sink NAME:`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from waitd.config.passdir import events_path
from waitd.formats import events as ev
from waitd.journal import outbox
from waitd.journal.logfile import setup_logging
from waitd.sinks import kinds
from waitd.spool.locks import wait_flock

log = logging.getLogger("waitd")

BATCH = 500
IDLE_S = 1.0
NICE = 10  # below waitd and its handlers: delivery may lag, a start must not
SAVE_EVERY_S = 0.05  # the place is written at most this often (and when idle, or stopping)
_PR_SET_PDEATHSIG = 1


class Stop(Exception):
    pass


class SinkProcess:
    def __init__(self, passdir: str, config: dict[str, Any]) -> None:
        self.passdir = passdir
        self.name = config["name"]
        self.records = set(config["records"]) if config.get("records") is not None else None
        self.retry_s = float(config.get("retry_s", 1.0))
        self.retry_max_s = float(config.get("retry_max_s", 60.0))
        self.directory = events_path(passdir)
        self.sink = kinds.make(config["type"], config.get("settings", {}), passdir)
        self.stop = False
        self.reopen = False
        self.down_since: float | None = None
        self.saved = outbox.Place(0, 0, 0)  # the place last written to NAME.offset
        self.save_due = 0.0  # monotonic: the next place may be written then
        self.error: str | None = None
        self.unsaved_since: float | None = None  # the place could not be saved since then (a full disk)
        self.opened = False  # the sink's file, socket or connection is open
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._inotify: Any = None

    def wanted(self, event: ev.Event) -> bool:
        if self.records is not None and event.about.record not in self.records:
            return False
        return self.sink.wants(event)

    def run(self) -> int:
        self._signals()
        lock = self._lock()
        try:
            self._watch()
            reader = self._reader()
            backoff = self.retry_s
            while not self.stop:
                backoff = self._turn(reader, backoff)
            if reader.place != self.saved:
                self._commit(reader)
            reader.close()
        finally:
            self.sink.close()
            os.close(lock)
        return 0

    def _reader(self) -> outbox.Reader:
        """The outbox from the sink's saved place, and the state saved with it."""
        place, state = outbox.read_place(self.directory, self.name)
        # Down in the process before this one: down still, until it works.
        down = state.get("down_since")
        if isinstance(down, int | float):
            self.down_since, self.error = float(down), str(state.get("error") or "")
        reader = outbox.Reader(self.directory, place or outbox.Place(0, 0, 0))
        self.saved = reader.place
        log.info("sink %s: delivering from event %d", self.name, reader.place.seq + 1)
        return reader

    def _turn(self, reader: outbox.Reader, backoff: float) -> float:
        """Deliver the next batch, or wait; the back-off of the next failure."""
        if self.reopen:
            self.reopen = False
            self._reopen()
        if not self._ready(reader):
            self._sleep(backoff)
            return min(self.retry_max_s, backoff * 2)
        events, place = reader.batch(BATCH)
        chosen = [e for e in map(self._typed, events) if e is not None and self.wanted(e)]
        if chosen and not self._attempt(functools.partial(self.sink.send, chosen)):
            self._sleep(backoff)
            return min(self.retry_max_s, backoff * 2)
        if place != reader.place:
            reader.place = place
            if time.monotonic() >= self.save_due and not self._commit(reader):
                self._sleep(backoff)
                return min(self.retry_max_s, backoff * 2)
        elif not events:
            self._rest(reader)
        return self.retry_s

    def _ready(self, reader: outbox.Reader) -> bool:
        """Ready to deliver: the place saved (after a full disk) and the sink
        open (bound, connected: before the first event comes, so that
        subscribers can find it and -s status tells the truth)."""
        if self.unsaved_since is not None and not self._commit(reader):
            return False  # a full disk: nothing more is delivered until the place is saved
        return self.opened or self._attempt(self.sink.open)

    def _rest(self, reader: outbox.Reader) -> None:
        """Nothing to deliver: save the place when it may be, or sleep until
        more comes."""
        if reader.place == self.saved:
            self._idle()
        elif time.monotonic() >= self.save_due:
            self._commit(reader)
        else:  # until the place may be saved, or more comes
            self._sleep(self.save_due - time.monotonic(), wake_on_write=True)

    def _commit(self, reader: outbox.Reader) -> bool:
        """Make what was delivered durable (the sink's `flush`), then save the
        place after it; False if either failed.  A flush that fails sends
        the reader back to the saved place: those events are delivered again."""
        if not self._attempt(self.sink.flush):
            reader.place = self.saved
            return False
        return self._save(reader.place)

    def _typed(self, obj: dict[str, Any]) -> ev.Event | None:
        """An event of the outbox, typed; None (logged) if it is not one."""
        try:
            return ev.from_json(obj)
        except ValueError as exc:
            log.warning("sink %s: event %s skipped: %s", self.name, obj.get("seq", "?"), exc)
            return None

    def _attempt(self, action: Callable[[], None]) -> bool:
        """Open the sink, deliver a batch, or flush; False if it failed (the
        sink is then down: logged once, its state saved with the place
        last saved, the one after what is durable)."""
        try:
            action()
        except Exception as exc:  # whatever the library raises: not delivered
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.sink.close()
            self.opened = False
            if self.down_since is None:
                self.down_since = time.time()
                self.error = why
                log.warning(
                    "sink %s: cannot deliver (%s); trying again after %g s, doubling up to %g s, until it works",
                    self.name,
                    why,
                    self.retry_s,
                    self.retry_max_s,
                )
                self._save(self.saved)
            return False
        self.opened = True
        if self.down_since is not None:
            log.info("sink %s: delivering again after %.1f s", self.name, time.time() - self.down_since)
            self.down_since = None
            self.error = None
            self._save(self.saved)  # -s status: up again, even with nothing to deliver
        return True

    def _save(self, place: outbox.Place) -> bool:
        """Save the place; False if it cannot be (a full disk), logged once."""
        state = {"down_since": self.down_since, "error": self.error, "pid": os.getpid()}
        try:
            outbox.write_place(self.directory, self.name, place, state)
        except OSError as exc:
            if self.unsaved_since is None:
                self.unsaved_since = time.time()
                log.warning(
                    "sink %s: cannot save its place (%s); delivering nothing more until it can, "
                    "trying again after %g s, doubling up to %g s",
                    self.name,
                    exc.strerror or exc,
                    self.retry_s,
                    self.retry_max_s,
                )
            return False
        if self.unsaved_since is not None:
            log.info("sink %s: its place saved again after %.1f s", self.name, time.time() - self.unsaved_since)
            self.unsaved_since = None
        self.saved = place
        self.save_due = time.monotonic() + SAVE_EVERY_S
        return True

    # -- waiting ----------------------------------------------------------------

    def _signals(self) -> None:
        def on_term(signum: int, frame: Any) -> None:
            self.stop = True

        def on_hup(signum: int, frame: Any) -> None:
            self.reopen = True

        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for waitd (hibernate)
        signal.signal(signal.SIGHUP, on_hup)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked by waitd until now (sinks.py)

    def _watch(self) -> None:
        try:
            import inotify_simple

            self._inotify = inotify_simple.INotify()
            flags = inotify_simple.flags
            self._inotify.add_watch(self.directory, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
        except (ImportError, OSError):
            self._inotify = None  # polled each IDLE_S

    def _idle(self) -> None:
        self._sleep(IDLE_S, wake_on_write=True)

    def _sleep(self, seconds: float, wake_on_write: bool = False) -> None:
        fds = [self._wake_r]
        if wake_on_write and self._inotify is not None:
            fds.append(self._inotify.fileno())
        deadline = time.monotonic() + seconds
        while not self.stop and not self.reopen:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select(fds, [], [], left)
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            if self._inotify is not None and self._inotify.fileno() in ready:
                # Only a segment that grew or came is news: the places
                # saved beside them (this sink's own too) are not.
                if any(e.name.endswith(".jsonl") for e in self._inotify.read(timeout=0)):
                    return

    def _lock(self) -> int:
        path = outbox.lock_path(self.directory, self.name)
        said = f"sink {self.name}: another process of this sink still runs; waiting for it to end"
        fd = wait_flock(path, lambda: self.stop, lambda: log.warning("%s", said))
        if fd is None:
            raise Stop
        return fd

    def _reopen(self) -> None:
        for handler in log.handlers:
            reopen = getattr(handler, "reopen", None)
            if reopen is not None:
                reopen()
        try:
            self.sink.reopen()
        except OSError as exc:
            log.error("sink %s: cannot reopen: %s", self.name, exc.strerror or exc)


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
    with contextlib.suppress(OSError):
        os.nice(NICE)
    with contextlib.suppress(OSError):
        # SCHED_BATCH: a sink woken by waitd's write to the outbox does not
        # preempt waitd or a handler (issue 21: its wake-ups cost the
        # start that wrote the event); with nice NICE, it runs when they wait.
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    setup_logging(passdir, foreground)
    try:
        config = json.loads(sys.stdin.read())
        return SinkProcess(passdir, config).run()
    except Stop:
        return 0
    except Exception:
        log.exception("sink: unexpected error; waitd starts the sink again")
        return 1


if __name__ == "__main__":
    sys.exit(main())
