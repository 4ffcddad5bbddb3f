# SPDX-License-Identifier: MIT
"""--metrics: Prometheus metrics scraped over HTTP from the real daemon.

One waitd with four records (runs with every outcome, files held by their
wait age, a keep-after removal, an expiry) and a jsonl sink that cannot
write its file at first: each metric the issue names is scraped over HTTP
and its value checked against what the history and the outbox say.
"""

from __future__ import annotations

import glob
import os
import urllib.request

from conftest import deliver, wait_for
from peers.activemq import free_port
from prometheus_client.parser import text_string_to_metric_families

CONF = "[sink log]\ntype = jsonl\npath = events.jsonl\nretry = 0.05\nretry-max = 0.2\n"


class Scrape:
    """One scrape: each sample's value by name and labels."""

    def __init__(self, port: int) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        self.samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_scraped_over_http_say_what_waitd_did(station):
    (station.passdir / "waitd.conf").write_text(CONF)
    blocker = station.passdir / "events.jsonl"
    blocker.mkdir()  # the sink is down: its backlog grows
    station.handler("h", 'case "$(basename "$1")" in slow*) sleep 0.06;; tmp*) exit 75;; bad*) exit 3;; esac\nexit 0\n')
    dirs = {name: station.passdir / name for name in ("runs", "held", "kept", "old")}
    for d in dirs.values():
        d.mkdir()
    h = station.passdir / "h"
    station.table(
        f"runs {dirs['runs']} * {h} 0 -1 0 retries=1 retry=600",
        f"held {dirs['held']} * {h} 3600 -1 0",
        f"kept {dirs['kept']} * {h} 0 0 0",
        f"old {dirs['old']} * {h} 3600 -1 0.0002",
    )
    port = free_port()
    station.start("--metrics", f"127.0.0.1:{port}")
    for name in ("ok.d", "slow.d", "bad.d", "tmp.d"):
        deliver(station, name, directory=dirs["runs"])
    deliver(station, "a", age_s=50, directory=dirs["held"])
    deliver(station, "b", age_s=5, directory=dirs["held"])
    deliver(station, "k", directory=dirs["kept"])
    deliver(station, "e", directory=dirs["old"])
    wait_for(lambda: not os.listdir(dirs["kept"]) and not os.listdir(dirs["old"]), 10, "the removals")
    wait_for(lambda: len([e for e in station.ends() if "/runs/" in e.path]) == 4, 10, "the four runs")

    def outbox() -> int:
        return sum(len(open(p).readlines()) for p in glob.glob(str(station.passdir / "events" / "*.jsonl")))

    # The gauges follow the status document (rebuilt at most once a second),
    # and the sink is down once its process has tried to open its file: the
    # backlog may be whole before that try, under load.
    m = wait_for(
        lambda: (
            (s := Scrape(port)).get("waitd_outbox_backlog_events", sink="log") == outbox()
            and s.get("waitd_sink_up", sink="log") == 0
            and s
        ),
        10,
        "the backlog of the sink, down",
    )
    runs = {"record": "1", "telem": "runs"}
    for outcome, count in (("ok", 2), ("failed", 1), ("retrying", 1)):
        assert m.get("waitd_runs_total", **runs, outcome=outcome) == count, outcome
    assert m.get("waitd_files_retrying", **runs) == 1
    assert m.get("waitd_files_waiting", **runs) == 0
    assert m.get("waitd_run_duration_seconds_count", **runs) == 4
    assert m.get("waitd_run_duration_seconds_bucket", **runs, le="+Inf") == 4
    assert m.get("waitd_run_duration_seconds_bucket", **runs, le="0.05") <= 3  # slow.d took 0.06 s or more
    assert m.get("waitd_run_duration_seconds_sum", **runs) >= 0.06
    held = {"record": "2", "telem": "held"}
    assert m.get("waitd_files_waiting", **held) == 2
    assert 50 <= m.get("waitd_oldest_waiting_seconds", **held) < 600
    assert m.get("waitd_runs_total", **held, outcome="ok") is None
    assert m.get("waitd_removals_total", record="3", telem="kept", reason="keep-after") == 1
    assert m.get("waitd_removals_total", record="4", telem="old", reason="expired") == 1
    assert m.get("waitd_sink_up", sink="log") == 0
    assert outbox() == 4 * 3 + 4 + 1  # ready, started, ended of each run; kept's and its removal; old's expiry
    assert m.get("waitd_history_fsync_seconds_count") >= 1  # starts of one pass share one
    assert 0 < m.get("waitd_history_fsync_seconds_sum") < 5
    blocker.rmdir()
    wait_for(
        lambda: (
            (s := Scrape(port)).get("waitd_outbox_backlog_events", sink="log") == 0
            and s.get("waitd_sink_up", sink="log") == 1
        ),
        10,
        "the sink to catch up",
    )
    assert station.stop() == 0


def test_a_metrics_port_in_use_refuses_the_start(station):
    import socket

    station.recorder()
    station.table(f"x {station.incoming} * {station.passdir}/rec 0 -1 0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = station.run("-f", "--metrics", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert f"--metrics 127.0.0.1:{port}: cannot listen: Address already in use" in result.stderr
