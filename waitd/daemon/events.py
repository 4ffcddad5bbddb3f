# SPDX-License-Identifier: MIT
"""Everything waitd tells the world besides its files: one object for the loop.

`Events` holds what waitd.conf and `--metrics` ask for, and what systemd
asks for: the journal's outbox (`outbox.Writer`, opened when there are
sinks, with the rule of which events they want), the sinks' processes
(`sinks.supervisor.Sinks`), the sources' processes
(`sources.supervisor.Sources`: work that arrives as messages), the Prometheus metrics (`metrics.Metrics`,
an observer of the journal's events and syncs) and the notifications
(`notify.Notify`).  The loop calls it at a few points only: `start`
(the loop runs), `tick` (each turn), `deadline`
(when it wants a turn), `reloading`, `reloaded` and `ready` (HUP),
`stopping` (TERM), `report` and `status` (the status document), `close`
(exit).  Without sinks and metrics the journal makes no events at all,
and the sinks' own modules (`sinks.kinds` and the kinds, `sinks.metrics`)
are not imported (issue 21: the CPU of each start).

Failures: the outbox directory cannot be made or opened (`WaitdError`,
at start: waitd does not start; on HUP: the sinks stay as they were).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from waitd.config import conf as conflib
from waitd.config.errors import WaitdError
from waitd.config.passdir import conf_path
from waitd.formats.status import SinkReport, Status
from waitd.journal.outbox import Writer
from waitd.journal.writer import Journal
from waitd.sinks.notify import Notify
from waitd.sinks.supervisor import Sinks
from waitd.sources.supervisor import Sources

if TYPE_CHECKING:
    from waitd.sinks.metrics import Metrics

log = logging.getLogger("waitd")


def _wants(sinks: Iterable[conflib.Sink]) -> Any:
    """Which events some sink will deliver: the others are not written."""
    if not sinks:
        return lambda kind, record: False
    from waitd.sinks import kinds  # the sinks' own modules: only for a waitd.conf that has sinks

    rules = [(kinds.TAKES[s.type], s.records) for s in sinks]
    known: dict[tuple[str, int | None], bool] = {}  # asked three times a file (issue 21)

    def wants(kind: str, record: int | None) -> bool:
        answer = known.get((kind, record))
        if answer is None:
            answer = known[kind, record] = any(
                (t is None or kind in t) and (r is None or record in r) for t, r in rules
            )
        return answer

    return wants


def _carries(sinks: Iterable[conflib.Sink]) -> Any:
    """Whose run events carry their file's JSON object: the records a
    `format = isis` sink takes (it replies with the source message)."""
    rules = [s.records for s in sinks if s.type == "stomp" and s.settings.get("format") == "isis"]
    if not rules:
        return lambda record: False  # asked at each start: no generator made for no sink
    return lambda record: any(r is None or record in r for r in rules)


class Events:
    def __init__(
        self,
        passdir: str,
        journal: Journal,
        env: MutableMapping[str, str],
        conf: conflib.Conf,
        metrics: tuple[str, int] | None = None,
        foreground: bool = False,
    ) -> None:
        self.passdir = passdir
        self.journal = journal
        self.conf = conf
        self.notify = Notify(env)
        self.sinks = Sinks(passdir, foreground)
        self.sources = Sources(passdir, foreground)
        self.metrics: Metrics | None = None
        self.metrics_at = metrics or conf.daemon.metrics
        if self.metrics_at is not None:
            from waitd.sinks.metrics import Metrics  # and prometheus_client: only with metrics

            self.metrics = Metrics(*self.metrics_at)
            journal.observers.append(self.metrics.observe)
            journal.sync_observers.append(self.metrics.synced)
        self._take(conf)

    def _take(self, conf: conflib.Conf) -> None:
        """Take the sinks of a waitd.conf."""
        journal = self.journal
        if conf.sinks and journal.outbox is None:
            opened = Writer(self.passdir)
            try:
                opened.open()
            except OSError as exc:
                raise WaitdError(f"{opened.directory}: cannot open the outbox: {exc.strerror or exc}") from exc
            journal.outbox = opened
        journal.wants = _wants(conf.sinks)
        journal.carries = _carries(conf.sinks)
        writer = journal.outbox
        self.sinks.apply(conf.sinks, writer.place_new if writer is not None else lambda name: None)
        self.sources.apply(conf.sources)
        self.conf = conf

    # -- the loop's hooks ---------------------------------------------------------

    def start(self) -> None:
        self.sinks.start()
        self.sources.start()
        self.notify.ready()

    def ready(self) -> None:
        """Up again after a HUP (systemd's READY=1)."""
        self.notify.ready()

    def tick(self, now: float, poll: bool) -> None:
        exited = (bool(self.sinks.children) or bool(self.sources.children)) and _any_exited()
        self.sinks.check(now, exited)
        self.sources.check(now, exited)
        self.notify.watchdog(now)
        writer = self.journal.outbox
        if poll and writer is not None:
            try:
                writer.prune(self.sinks.names)
            except OSError as exc:
                log.warning("%s: cannot remove old segments: %s", writer.directory, exc.strerror or exc)

    def deadline(self) -> float | None:
        times = [t for t in (self.sinks.deadline(), self.sources.deadline(), self.notify.due()) if t is not None]
        return min(times) if times else None

    def reloading(self) -> None:
        self.notify.reloading()

    def reloaded(self) -> list[str]:
        """Reread waitd.conf (HUP); its errors, if it is kept as it was."""
        path = conf_path(self.passdir)
        conf, errors = conflib.read(path)
        if errors:
            for error in errors:
                log.error("%s", error)
            log.error("%s: not reloaded (%d error(s)); the previous settings stay in force", path, len(errors))
        else:
            if conf.daemon.metrics != self.conf.daemon.metrics:
                log.warning("%s: metrics = changed; it takes effect when waitd starts again", path)
            if conf.daemon.http != self.conf.daemon.http or conf.http != self.conf.http:
                log.warning("%s: http = or [http] changed; it takes effect when waitd starts again", path)
            try:
                self._take(conf)
            except WaitdError as exc:
                log.error("%s", exc)
                errors = [exc]  # type: ignore[list-item]
        self.sinks.hup()
        self.sources.hup()
        return [str(e) for e in errors]

    def stopping(self) -> None:
        self.notify.stopping()

    def report(self) -> list[SinkReport]:
        """The sinks, for the status document."""
        writer = self.journal.outbox
        return self.sinks.report(writer.seq if writer is not None else 0)

    def status(self, doc: Status) -> None:
        """A status document was built: the metrics' gauges, systemd's STATUS=."""
        if self.metrics is not None:
            self.metrics.status(doc)
        self.notify.status(summary(doc))

    def close(self) -> None:
        self.sinks.stop()  # the journal closes the outbox itself
        self.sources.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.notify.close()


def _any_exited() -> bool:
    """Whether some child of waitd (a handler, a sink's or a source's
    process) has ended and waits to be reaped: one waitid(2) that reaps
    nothing, not a waitpid(2) of each sink and source at each turn (issue
    21).  One that ends later wakes the loop (SIGCHLD) for another turn."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


def summary(doc: Status) -> str:
    """The status document in one line (systemd's STATUS=)."""
    records = doc.records
    active = sum(1 for r in records if not r.problem)
    running = sum(len(r.running) for r in records)
    waiting = sum(r.waiting for r in records)
    failed = sum(r.failed_count for r in records)
    text = f"{doc.mode}: {active}/{len(records)} records active, {running} running, {waiting} waiting"
    if failed:
        text += f", {failed} failed"
    behind = [s for s in doc.sinks if s.down_since is not None]
    if behind:
        text += f"; sink {', '.join(s.name for s in behind)} down"
    away = [s for s in doc.sources if s.down_since is not None]
    if away:
        text += f"; source {', '.join(s.name for s in away)} not connected"
    return text
