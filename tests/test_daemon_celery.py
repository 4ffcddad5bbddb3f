# SPDX-License-Identifier: MIT
"""run=celery: handlers on real `waitd worker`s through a real Redis.

One redis-server for the session (per test process), each test on a queue
of its own with its own workers.  What is checked: every file runs once
with its log complete; a worker's pool process or the whole worker killed
mid-run (its pool process, or its whole process group) takes the
handler's process group with it and the run ends status 1 error=lost,
retried once; waitd killed and restarted with runs in flight
adopts them by task id; Redis stopped for a while: starts wait, nothing is
lost.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import jsonschema
import psutil
import pytest
from conftest import ROOT, Station, quiet_for, wait_for, waitd_cmd
from peers.redis import Redis, Worker, available, free_port

from waitd.worker import task as remote

SCHEMA = json.loads((ROOT / "doc" / "status.schema.json").read_text())
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
        def workers(self, n: int, concurrency: int = 2, broker: str = redis.url, passdir: str = "") -> list[Worker]:
            new = [
                Worker(
                    broker, queue, station.root / f"worker{len(made) + i}.log", concurrency, passdir=passdir
                ).launch()
                for i in range(n)
            ]
            made.extend(new)
            return [w.ready() for w in new]

    yield Cluster()
    for worker in made:
        worker.terminate(signal.SIGKILL)  # the test is over: no need for Celery's warm shutdown
    for worker in made:
        worker.wait()


N_MANY = 80  # eight at a time on two workers of four: 10 rounds, each worker running many


def ends_by_path(station: Station) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in station.ends():
        out.setdefault(e.path, []).append(e)
    return out


def test_files_run_on_workers_once_with_their_logs(station, cluster):
    cluster.workers(1, passdir=str(station.passdir))  # its broker and queue from waitd.conf
    station.handler(
        "h", 'echo "out $1"; echo "err $WAITD_ATTEMPT" >&2; pwd; echo \'{"seen": 1}\' > "$WAITD_RESPONSE"; exit 3\n'
    )
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
    # Its response came back with its output, kept beside its log.
    assert (station.passdir / "logfiles" / "incoming.1.A.response").read_text() == '{"seen": 1}\n'

    assert station.stop() == 0


def test_many_files_through_two_workers_each_once(station, cluster):
    cluster.workers(2, concurrency=4)
    station.recorder()
    station.table(f"x {station.incoming} *.g8 {station.passdir}/rec 0 -1 0 run=celery timeout=60 jobs=8")
    names = [f"f{i:03d}.g8" for i in range(N_MANY)]
    for name in names:
        station.drop(name, age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) >= N_MANY, 60, f"{N_MANY} ends")
    ends = ends_by_path(station)
    assert sorted(ends) == sorted(f"{station.incoming}/{n}" for n in names)
    assert all(len(e) == 1 and e[0].exit == 0 and e[0].task for e in ends.values())
    assert sorted(station.ran()) == sorted(os.fsencode(f"{station.incoming}/{n}") for n in names)
    for path in (station.passdir / "logfiles").iterdir():
        lines = path.read_text().splitlines()
        assert lines[0].startswith("waitd: start") and lines[1].startswith("waitd: task=")
        assert lines[-2].startswith("waitd: ran on host=") and lines[-1].startswith("waitd: end record=1 exit=0")
    assert station.stop() == 0


def locking(station: Station) -> None:
    """A handler that holds a lock on its file while it (or any process of
    its group) runs, notes `overlap` if another run of the file holds it,
    writes its pid, and waits for its gate."""
    station.gated(
        "h",
        extra="",
    )
    body = (
        f'exec 9>"{station.root}/lock.$(basename "$1")"\n'
        f'flock -n 9 || echo overlap >> "{station.root}/overlap"\n'
        f'echo $$ >> "{station.root}/pids"\n'
        f'gate="{station.root}/gate.$(basename "$1")"\n'
        'i=0; while [ ! -e "$gate" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n'
    )
    station.handler("h", body)


def pids(station: Station) -> list[int]:
    try:
        return [int(p) for p in (station.root / "pids").read_text().split()]
    except FileNotFoundError:
        return []


def pool_process_of(pid: int) -> psutil.Process:
    """The pool process that runs a handler: its supervisor's parent."""
    supervisor = psutil.Process(pid).parent()
    assert supervisor is not None
    pool = supervisor.parent()
    assert pool is not None
    return pool


# The worker's main process killed alone: test_an_adopted_run_whose_result_never_comes_is_lost_after_its_timeout
# (and every kill, without Celery, in test_remote.py).
@pytest.mark.parametrize("victim", ["pool process", "worker's group"])
def test_killed_worker_takes_the_handler_along_and_the_run_is_lost_then_retried(station, cluster, victim):
    # A pool process killed: its worker starts another, which takes the
    # retry; a worker's group killed: the other worker takes it.
    workers = cluster.workers(2 if victim == "worker's group" else 1, concurrency=1)
    locking(station)
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery timeout=3 retries=1 retry=1")
    station.drop("a.g8", age_s=5)
    station.start()
    (first,) = wait_for(lambda: pids(station), 15, "the handler to start")
    pool = pool_process_of(first)
    if victim == "worker's group":
        worker = next(w for w in workers if w.proc.pid == pool.ppid())
        worker.kill_group()  # kill -9 -- -PGID: the handler is in a session of its own
    else:
        pool.kill()
    wait_for(lambda: handler_pid_gone(first), 5, "the handler to die with its worker")
    lost = wait_for(lambda: station.ends(), 15, "the run to end")[0]
    assert (lost.status, lost.error, lost.retry_at is not None) == (1, "lost", True)
    second = wait_for(lambda: pids(station)[1:], 15, "the retry to start")[0]
    station.open_gate("a.g8")
    wait_for(lambda: len(station.ends()) == 2, 15, "the retry to end")
    assert [(e.status, e.exit, e.attempt) for e in station.ends()][1] == (2, 0, 2)
    assert second != first and not (station.root / "overlap").exists()
    assert "lost" in station.log()
    assert station.stop() == 0


def test_restart_adopts_the_runs_in_flight_by_task_id(station, cluster, redis):
    workers = cluster.workers(2, concurrency=4)
    station.gated()
    station.table(f"x {station.incoming} *.g8 {station.passdir}/gated 0 -1 0 run=celery timeout=60 jobs=20")
    names = [f"f{i:02d}.g8" for i in range(20)]
    for name in names:
        station.drop(name, age_s=5)
    station.start()
    wait_for(lambda: len(station.ran()) == 8, 15, "8 handlers to run (the workers' 2 x 4)")
    tasks = {e.path: e.task for e in station.history() if e.status == 0}
    assert len(tasks) == 20 and all(tasks.values())

    def sent() -> int:
        """The tasks the broker has: taken by a worker, or in the queue."""
        taken = sum(w.text().count("] received") for w in workers)
        return taken + int(redis.command("LLEN", cluster_queue(station)).strip().lstrip(b":"))

    # A task is sent after its start is synced: kill waitd once all 20 are out
    # (one killed between the two is lost at its timeout, a case of its own).
    wait_for(lambda: sent() == 20, 15, "the 20 tasks in the broker")
    station.signal(signal.SIGKILL)
    station.proc.wait()
    for path in station.ran()[:4]:
        station.open_gate(os.path.basename(os.fsdecode(path)))  # ends while waitd is down: its result waits in Redis
    wait_for(lambda: len(station.ran()) == 12, 15, "4 more handlers to start")
    station.start()
    for name in names:
        station.open_gate(name)
    wait_for(lambda: len(station.ends()) == 20, 30, "20 ends")
    assert all((e.status, e.exit, e.task) == (2, 0, tasks[e.path]) for e in station.ends())
    assert len([e for e in station.history() if e.status == 0]) == 20  # none rerun
    assert sorted(station.ran()) == sorted(os.fsencode(f"{station.incoming}/{n}") for n in names)
    assert station.log().count("of a previous waitd in flight; awaiting its result") == 20
    for path in (station.passdir / "logfiles").iterdir():
        lines = path.read_text().splitlines()
        assert lines[1].startswith("waitd: task=") and lines[-1].startswith("waitd: end record=1 exit=0")
    assert station.stop() == 0


def test_a_stop_leaves_celery_runs_to_the_next_waitd(station, cluster):
    cluster.workers(1, concurrency=2)
    station.gated()
    station.table(f"x {station.incoming} *.g8 {station.passdir}/gated 0 -1 0 run=celery timeout=60")
    station.drop("a.g8", age_s=5)
    station.start("--stop-timeout", "30")
    wait_for(lambda: station.ran(), 15, "the handler to start")
    assert station.stop() == 0  # at once: no wait for the remote run, no revoke
    assert station.ends() == [] and "still runs after" not in station.log()
    station.start()
    station.open_gate("a.g8")
    (end,) = wait_for(lambda: station.ends(), 15, "the adopted run's end")
    assert (end.status, end.exit) == (2, 0) and len(station.ran()) == 1
    assert station.stop() == 0


def test_a_group_run_in_flight_is_adopted_as_one_run(station, cluster):
    cluster.workers(1, concurrency=1)
    station.gated()
    pattern = "{platform}_{start_time:%Y%m%d_%H%M%S}_{segment:2d}.l1b"
    station.table(
        f"x {station.incoming} *.l1b {station.passdir}/gated 0 -1 0 pattern={pattern} wanted=:1-2 run=celery timeout=60"
    )
    for name in ("n20_20260101_120000_01.l1b", "n20_20260101_120000_02.l1b"):
        station.drop(name, age_s=5)
    station.start()
    wait_for(lambda: station.ran(), 15, "the group's run")
    station.signal(signal.SIGKILL)
    station.proc.wait()
    station.start()
    station.open_gate("n20_20260101_120000_01.l1b")
    ends = wait_for(lambda: len(station.ends()) == 2 and station.ends(), 15, "both members' ends")
    assert [(e.status, e.exit) for e in ends] == [(2, 0), (2, 0)] and len({e.task for e in ends}) == 1
    assert station.log().count("of a previous waitd in flight") == 1 and len(station.ran()) == 1
    assert station.stop() == 0


def test_an_adopted_run_whose_result_never_comes_is_lost_after_its_timeout(station, cluster):
    (worker,) = cluster.workers(1, concurrency=1)
    locking(station)
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery timeout=3")
    station.drop("a.g8", age_s=5)
    station.start()
    (handler,) = wait_for(lambda: pids(station), 15, "the handler to start")
    station.signal(signal.SIGKILL)
    station.proc.wait()
    worker.kill()  # while waitd is down: no result will ever come
    wait_for(lambda: handler_pid_gone(handler), 5, "the handler to die with its worker")
    station.start()
    (end,) = wait_for(lambda: station.ends(), 15, "the adopted run to end")
    (start,) = [e for e in station.history() if e.status == 0]
    assert (end.status, end.error, end.task, end.retry_at) == (1, "lost", start.task, None)
    assert end.at >= start.at + 3  # its timeout counts from the start in the history
    log = (station.passdir / "logfiles" / "incoming.1.A").read_text().splitlines()
    assert log[-2].startswith("waitd: lost: no result") and log[-1].startswith("waitd: end record=1 error=lost")
    assert station.stop() == 0


def broker_state(station: Station, reachable: bool) -> dict | None:
    """The broker in `-s status --json`, when it is (un)reachable as asked."""
    state = json.loads(station.run("-s", "status", "--json").stdout).get("celery")
    return state if state is not None and state["reachable"] is reachable else None


def own_broker(station: Station, tmp_path: Path) -> Redis:
    """A Redis of the test's own, started, as waitd.conf's broker (the
    test's queue kept): one the test may stop or hang."""
    own = Redis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    own.start()
    (station.passdir / "waitd.conf").write_text(f"[celery]\nbroker = {own.url}\nqueue = {cluster_queue(station)}\n")
    return own


REDIS_DOWN_S = 3.0  # waitd tries the broker again after 0.2, 0.4, 0.8 and 1.6 s: four times at least


def test_redis_down_starts_wait_and_nothing_is_lost(station, cluster, tmp_path):
    own = own_broker(station, tmp_path)  # the session's Redis stays up
    try:
        queue = cluster_queue(station)
        cluster.workers(1, concurrency=2, broker=own.url)
        station.recorder(
            "h", extra=f'case "$1" in *slow*) while [ ! -e "{station.root}/gate" ]; do sleep 0.01; done;; esac\n'
        )
        station.table(
            f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery timeout=60 jobs=2",
            f"y {station.incoming} *.loc {station.passdir}/h 0 -1 0",
        )

        def celery_starts() -> int:
            return len([e for e in station.history() if e.status == 0 and e.path.endswith(".g8")])

        for i in range(5):
            station.drop(f"a{i}.g8", age_s=5)
        station.drop("slow.g8", age_s=5)
        station.start()
        wait_for(lambda: len(station.ends()) == 5 and len(station.ran()) == 6, 15, "5 ends and the slow one running")
        own.stop()
        for i in range(10):
            station.drop(f"b{i}.g8", age_s=5)
        wait_for(lambda: "unreachable" in station.log(), 10, "waitd to see the broker gone")
        starts = celery_starts()
        (station.root / "gate").touch()  # the slow one ends while Redis is down
        station.drop("l.loc", age_s=5)  # the loop is not held up: a local record runs on
        wait_for(lambda: any(e.path.endswith("l.loc") for e in station.ends()), 5, "the local run")
        down = wait_for(lambda: broker_state(station, reachable=False), 5, "-s status to say the broker is down")
        assert down["down_since"] is not None and down["error"] and down["broker"] == own.url
        line = f"celery broker {own.url} (queue {queue}): unreachable since"
        wait_for(lambda: line in station.run("-s", "status").stdout, 5, "the text status (rewritten once a second)")
        quiet_for(REDIS_DOWN_S, lambda: celery_starts() == starts)
        own.start()
        wait_for(lambda: len(station.ends()) == 17, 30, "all 17 ends")
        up = wait_for(lambda: broker_state(station, reachable=True), 5, "-s status to say the broker is back")
        assert up["down_since"] is None and up["in_flight"] == 0
    finally:
        station.stop()
        own.kill()
    assert all((e.status, e.exit) == (2, 0) for e in station.ends())
    assert len({e.path for e in station.ends()}) == 17 and len(station.ran()) == 17
    assert station.log().count("unreachable") == 1
    assert station.log().count("reachable again; runs of run=celery records resume") == 1


def test_a_task_sent_after_redis_lost_everything_waits_in_its_queue(station, cluster, tmp_path):
    """Redis killed and started again empty (no persistence: the queue's
    binding and every key gone) while no worker is up: the sender's next
    send fails on its dead connection, connects again and sends, and the
    message waits in the queue for the next worker, not lost elsewhere."""
    own = own_broker(station, tmp_path)
    try:
        queue = cluster_queue(station)
        station.table(f"x {station.incoming} *.g8 /bin/true 0 -1 0 run=celery timeout=60 jobs=2")
        station.start()
        station.drop("a.g8")
        wait_for(lambda: b"a.g8" in own.command("LRANGE", queue, "0", "-1"), 15, "the first task's message")
        own.kill()
        own.start()
        assert own.command("DBSIZE").startswith(b":0")
        station.drop("b.g8")
        wait_for(lambda: b"b.g8" in own.command("LRANGE", queue, "0", "-1"), 15, "the task sent after the restart")
        assert own.command("LLEN", queue).startswith(b":1\r\n")
        assert station.stop() == 0  # a run in flight is left to the next waitd
    finally:
        station.stop()
        own.kill()


def test_a_hung_broker_holds_up_nothing_else(station, cluster, tmp_path):
    own = own_broker(station, tmp_path)  # to be stopped (SIGSTOP): it accepts and never answers
    try:
        cluster.workers(1, concurrency=1, broker=own.url)
        station.recorder()
        station.table(
            f"x {station.incoming} *.g8 {station.passdir}/rec 0 -1 0 run=celery timeout=60",
            f"y {station.incoming} *.loc {station.passdir}/rec 0 -1 0",
        )
        station.start()
        station.drop("a.g8", age_s=5)
        wait_for(lambda: station.ends(), 15, "a first run on the worker")
        assert own.proc is not None
        own.proc.send_signal(signal.SIGSTOP)
        station.drop("b.g8", age_s=5)
        wait_for(lambda: "unreachable" in station.log(), 10, "waitd to see the broker hang")
        station.drop("l.loc", age_s=5)
        wait_for(lambda: any(e.path.endswith("l.loc") for e in station.ends()), 3, "the local run, at once")
        own.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: len(station.ends()) == 3, 30, "b.g8's run once the broker answers again")
    finally:
        station.stop()
        own.kill()
    assert all((e.status, e.exit) == (2, 0) for e in station.ends())


def test_timeout_and_cancel_revoke_the_run_and_kill_its_group(station, cluster):
    cluster.workers(1, concurrency=2)
    locking(station)
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=celery timeout=4 jobs=2")
    station.drop("a.g8", age_s=5)
    station.drop("b.g8", age_s=5)
    station.start()
    first, second = wait_for(lambda: pids(station)[1:] and pids(station), 15, "both handlers to start")
    path = f"{station.incoming}/a.g8"
    status = json.loads(station.run("-s", "status", "--json").stdout)
    jsonschema.validate(status, SCHEMA)
    (record,) = status["records"]
    assert record["options"]["run"] == "celery"
    tasks = {e.task for e in station.history() if e.status == 0}
    assert {r["task"] for r in record["running"]} == tasks and {r["pid"] for r in record["running"]} == {None}
    result = station.run("-s", "cancel", path)
    assert result.returncode == 0 and "celery task" in result.stdout, result.stdout + result.stderr
    ends = wait_for(lambda: len(station.ends()) == 2 and station.ends(), 15, "both ends")
    by_path = {e.path: e for e in ends}
    assert (by_path[path].status, by_path[path].error, by_path[path].retry_at) == (1, "cancelled", None)
    other = next(e for p, e in by_path.items() if p != path)
    assert (other.status, other.error, other.signal) == (1, "timeout", "SIGTERM")
    wait_for(lambda: handler_pid_gone(first) and handler_pid_gone(second), 5, "both handlers to die")
    assert "revoking its celery task (terminate)" in station.log()
    assert station.stop() == 0


def cluster_queue(station: Station) -> str:
    text = (station.passdir / "waitd.conf").read_text()
    return text.split("queue = ")[1].split()[0]


def test_a_task_message_shows_no_environment_and_no_result_channel_is_subscribed(station, cluster, redis):
    """What the sender publishes (issue 21): Celery shows the task's
    arguments without the handler's environment (which may hold secrets,
    and whose `saferepr` cost more than the rest of the send), and no
    subscription to the task's result channel is made (waitd's receiver
    reads the results; Celery's own consumer would subscribe for nothing);
    the queue is declared by the sender (when it connects, and with each
    send, as Celery does: kombu skips it while the connection that
    declared it lives).  No worker: the message waits in the queue, read
    there."""
    station.table(f"x {station.incoming} *.g8 /bin/true 0 -1 0 run=celery timeout=30")
    assert redis.command("CONFIG", "RESETSTAT").startswith(b"+OK")  # this server is this test's alone now
    station.start()
    station.drop("a.g8")
    queue = cluster_queue(station)
    wait_for(lambda: b"waitd.run" in redis.command("LRANGE", queue, "0", "-1"), 15, "the task's message")
    (start,) = [e for e in station.history() if e.status == 0]
    raw = redis.command("LRANGE", queue, "0", "-1")
    message = json.loads(raw[raw.index(b"{") : raw.rindex(b"}") + 1])
    headers = message["headers"]
    assert headers["id"] == start.task and "'env'" not in headers["kwargsrepr"]
    assert "'program': '/bin/true'" in headers["kwargsrepr"] and "a.g8" in headers["kwargsrepr"]
    assert b"PATH" in base64.b64decode(message["body"])  # the handler still gets its environment
    stats = redis.command("INFO", "commandstats")
    assert b"cmdstat_lpush:" in stats and b"cmdstat_subscribe:" not in stats, stats
    # The queue is declared by the sender: no worker here declared it.
    assert queue.encode() in redis.command("SMEMBERS", f"_kombu.binding.{queue}"), redis.command("KEYS", "*")
    assert station.stop() == 0


def test_the_sender_publishes_with_its_bound_queue_what_celery_sends_with_the_queue_name(redis):
    """The sender passes the queue of `[celery]` bound to its producer's
    channel once (issue 21: kombu no longer binds a copy of it at each
    send): the message, and where it goes, are those of Celery's own
    send_task() with the queue's name, and the queue is declared."""
    import redis as redis_py

    from waitd.config.conf import CeleryConf
    from waitd.run.executors import celery as executor

    queue = f"q{uuid.uuid4().hex[:8]}"
    app, producer, bound = executor._connect(CeleryConf(redis.url, queue))
    sender = executor.Remote(CeleryConf(redis.url, queue), lambda: None)
    kwargs = {"program": "/bin/true", "argv": ["true", "x"], "env": {"PATH": "/bin"}, "cwd": "/", "deadline": 2e9}
    sender._publish(app, producer, bound, "send", "t-1", (kwargs, 2e9))
    app.send_task(
        executor.celery_app.TASK,
        kwargs=kwargs,
        task_id="t-1",
        queue=queue,  # Celery's own way: the name
        expires=datetime.datetime.fromtimestamp(2e9, datetime.UTC),
        argsrepr="()",
        kwargsrepr=executor._shown(kwargs),
        producer=producer,
    )
    client = redis_py.Redis.from_url(redis.url)
    try:
        ours, celerys = (json.loads(m) for m in client.lrange(queue, 0, -1))
        assert ours["properties"].pop("delivery_tag") != celerys["properties"].pop("delivery_tag")
        # The expiration is in milliseconds from the send (Celery makes it of expires=).
        assert abs(int(ours["properties"].pop("expiration")) - int(celerys["properties"].pop("expiration"))) < 1000
        assert ours == celerys
        assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}
        assert client.smembers(f"_kombu.binding.{queue}") == {f"{queue}\x06\x16\x06\x16{queue}".encode()}
    finally:
        client.close()
        producer.release()
        app.close()


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
    conf = (station.passdir / "waitd.conf").read_text()
    (station.passdir / "waitd.conf").write_text(conf.replace("redis://", "redis://:secret@"))
    result = station.run("--check", "-v")
    assert "[celery] broker=redis://:***@127.0.0.1:" in result.stdout and "secret" not in result.stdout
    (station.passdir / "waitd.conf").unlink()
    result = station.run("--check")
    assert result.returncode == 2
    assert f"{station.passdir}/incoming:1: run=celery needs a broker: " in result.stderr
    worker = subprocess.run(
        waitd_cmd("worker", "--passdir", str(station.passdir)), env=station.env, capture_output=True, text=True
    )
    assert (worker.returncode, worker.stderr) == (
        2,
        f"waitd worker: no broker: give --broker URL and {station.passdir}/waitd.conf has no [celery] broker\n",
    )
    station.table(f"x {station.incoming} *.g8 {station.passdir}/h 0 -1 0 run=elsewhere timeout=5")
    assert "run=elsewhere: expected local or celery" in station.run("--check").stderr
    bad = subprocess.run(waitd_cmd("worker", "--broker", "notaurl"), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "argument --broker: 'notaurl': expected a URL such as" in bad.stderr, bad.stderr


def test_remote_run_output_is_capped_and_says_so(tmp_path: Path):
    result = remote.run("/bin/sh", ["sh", "-c", "head -c 5000 /dev/zero; exit 4"], {}, str(tmp_path), cap=100)
    assert (result["exit"], result["size"], len(base64.b64decode(result["output"]))) == (4, 5000, 100)
    result = remote.run(
        "/bin/sh",
        ["sh", "-c", 'printf "{}" > "$WAITD_RESPONSE"; head -c 70000 /dev/zero >> "$WAITD_RESPONSE"'],
        {},
        str(tmp_path),
    )
    assert len(base64.b64decode(result["response"])) == 65537  # one more than waitd takes: it says too big
    result = remote.run("/nonexistent", ["x"], {}, str(tmp_path))
    assert "response" not in result
    assert result["exit"] == 127 and b"cannot execute /nonexistent" in base64.b64decode(result["output"])
    result = remote.run("/bin/sh", ["sh", "-c", "kill -USR1 $$"], {}, str(tmp_path))
    assert result["signal"] == "SIGUSR1"


def handler_pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_once_with_the_broker_unreachable_leaves_its_files_and_exits_1(station):
    """--once (cron) does not hang on a broker that is down: the local
    record's file is handled, the run=celery record's left, exit 1."""
    (station.passdir / "waitd.conf").write_text(f"[celery]\nbroker = redis://127.0.0.1:{free_port()}/0\n")
    station.recorder()
    station.table(
        f"x {station.incoming} *.g8 {station.passdir}/rec 0 -1 0 run=celery timeout=30",
        f"y {station.incoming} *.loc {station.passdir}/rec 0 -1 0",
    )
    station.drop("a.g8", age_s=5)
    station.drop("b.loc", age_s=5)
    r = station.run("--once", timeout=60)
    assert r.returncode == 1, r.stderr
    assert [os.path.basename(p) for p in station.ran()] == [b"b.loc"]
    assert not [e for e in station.history() if e.path.endswith("a.g8")], "a run=celery file was started"
    assert "unreachable" in station.log()
    assert "--once: 1 file(s) ready at start not started; left for the next run" in station.log()
    assert (station.incoming / "a.g8").exists()
