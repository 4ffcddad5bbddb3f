# SPDX-License-Identifier: MIT
"""Prometheus metrics over HTTP (`--metrics [HOST:]PORT`, prometheus-client).

    waitd_runs_total{record,telem,outcome}      runs ended: ok, failed, retrying, skipped
    waitd_run_duration_seconds{record,telem}    histogram of their durations
    waitd_published_total{record,telem}         files and groups published (process -)
    waitd_removals_total{record,telem,reason}   files removed: expired, keep-after, handled
    waitd_files_waiting{record,telem}           files waiting to run (they will)
    waitd_files_held{record,telem}              files that will not run by themselves
    waitd_files_retrying{record,telem}          files waiting for a retry
    waitd_oldest_waiting_seconds{record,telem}  age of the oldest waiting file (not held)
    waitd_running_handlers{record,telem}        handlers running
    waitd_outbox_backlog_events{sink}           events not yet passed by the sink
    waitd_sink_up{sink}                         0 while the sink cannot deliver
    waitd_history_fsync_seconds                 histogram of the history's fdatasync

The counters and histograms are fed by the journal's events (`observe`)
and the history's syncs (`synced`); the gauges by the status document,
each time waitd builds it (`status`), taken by a collector at scrape time
(the oldest waiting age is counted to the moment of the scrape).  The
HTTP server is prometheus-client's, in a thread of its own that only
reads what the loop hands over whole; with `--http` and no `--metrics`
there is no such server, and --http's /metrics serves the same registry
(`exposition`).  prometheus-client is imported only
when metrics are asked for: `MetricsUnavailable` says it is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from waitd.config import table
from waitd.config.errors import WaitdError
from waitd.formats import events
from waitd.formats.status import Status

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
FSYNC_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1)


class MetricsUnavailable(WaitdError):
    pass


class Metrics:
    def __init__(self, host: str, port: int | None) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise MetricsUnavailable(
                "--metrics needs the Python package prometheus-client (pip install prometheus-client)"
            ) from exc
        self.registry = prom.CollectorRegistry(auto_describe=True)
        labels = ["record", "telem"]
        self.runs = prom.Counter(
            "waitd_runs", "Handler runs ended, by outcome", [*labels, "outcome"], registry=self.registry
        )
        self.durations = prom.Histogram(
            "waitd_run_duration_seconds",
            "Durations of handler runs",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.published = prom.Counter("waitd_published", "Files and groups published", labels, registry=self.registry)
        self.removals = prom.Counter(
            "waitd_removals", "Files removed, by reason", [*labels, "reason"], registry=self.registry
        )
        self.fsyncs = prom.Histogram(
            "waitd_history_fsync_seconds",
            "Time of the history's fdatasync",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self._snapshot: dict[str, Any] = {}
        self.registry.register(_Gauges(self))
        self.server: Any = None
        if port is None:
            return  # its registry only: --http serves it
        try:
            self.server, self.thread = prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise WaitdError(f"--metrics {host}:{port}: cannot listen: {exc.strerror or exc}") from exc

    def exposition(self) -> bytes:
        """The metrics as Prometheus's text format (for --http's /metrics)."""
        import prometheus_client as prom

        return bytes(prom.generate_latest(self.registry))

    def observe(self, event: events.Event) -> None:
        """Count an event of the journal."""
        labels = (str(event.about.record), str(event.about.telem))
        if isinstance(event, events.Ended):
            self.runs.labels(*labels, event.outcome).inc()
            if event.took is not None:
                self.durations.labels(*labels).observe(event.took)
        elif isinstance(event, events.Ready) and table.command_of(event.about.process) == table.PUBLISH:
            self.published.labels(*labels).inc()
        elif isinstance(event, events.Removed | events.Expired):
            self.removals.labels(*labels, _reason(event.type, event.reason)).inc()

    def synced(self, seconds: float) -> None:
        self.fsyncs.observe(seconds)

    def status(self, doc: Status) -> None:
        """Take the gauges from a status document (replaced whole: the
        server's thread reads it)."""
        records = [
            (
                str(rec.number),
                rec.telem,
                rec.waiting,
                rec.held_count,
                len(rec.retrying),
                rec.oldest_mtime,
                len(rec.running),
            )
            for rec in doc.records
        ]
        sinks = [(s.name, s.backlog, s.down_since is None) for s in doc.sinks]
        self._snapshot = {"records": records, "sinks": sinks}

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Gauges:
    """The gauges, made at scrape time from the last snapshot."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        snap = self.metrics._snapshot
        now = time.time()
        names = ("record", "telem")
        waiting = GaugeMetricFamily("waitd_files_waiting", "Files waiting to run", labels=names)
        held = GaugeMetricFamily("waitd_files_held", "Files that will not run by themselves", labels=names)
        retrying = GaugeMetricFamily("waitd_files_retrying", "Files waiting for a retry", labels=names)
        oldest = GaugeMetricFamily("waitd_oldest_waiting_seconds", "Age of the oldest waiting file", labels=names)
        running = GaugeMetricFamily("waitd_running_handlers", "Handlers running", labels=names)
        for number, telem, n_wait, n_held, n_retry, oldest_mtime, n_run in snap.get("records", []):
            waiting.add_metric([number, telem], n_wait)
            held.add_metric([number, telem], n_held)
            retrying.add_metric([number, telem], n_retry)
            oldest.add_metric([number, telem], max(0.0, now - oldest_mtime) if oldest_mtime is not None else 0.0)
            running.add_metric([number, telem], n_run)
        backlog = GaugeMetricFamily(
            "waitd_outbox_backlog_events", "Events the sink has not passed yet", labels=["sink"]
        )
        up = GaugeMetricFamily("waitd_sink_up", "1 while the sink delivers, 0 while it cannot", labels=["sink"])
        for name, behind, is_up in snap.get("sinks", []):
            backlog.add_metric([name], behind)
            up.add_metric([name], 1 if is_up else 0)
        yield from (waiting, held, retrying, oldest, running, backlog, up)


def _reason(kind: str, why: str) -> str:
    """A removal's reason label: expired, keep-after, or handled (a queue's
    file removed after its successful run)."""
    if kind == "expired":
        return "expired"
    return "keep-after" if "keep-after" in why else "handled"
