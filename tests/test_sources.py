# SPDX-License-Identifier: MIT
"""Sources: work that arrives as messages (waitd.conf's [source NAME]),
against a real ActiveMQ and a real posttroll publisher.

Each message becomes one file in a waitd queue before it is acknowledged,
and a record with claim=yes fields=json runs it, serialised by its RB
number (key={rb_number}); a message that is not JSON, too big, or lacks a
field of name= goes to Q/errors with the reason, once; a cancel message
cancels a waiting file, kills a running one, and is remembered for a file
that has not come yet.  The long scenario (kill -9 of waitd and of the
source's process at random moments, a broker restart, a broker down at
the start) is one test, with a broker of its own that is persistent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import quiet_for, wait_for
from peers.activemq import ActiveMQ, free_port, require

NAME = "{instrument}{run_number:05d}_v{run_version}.json"


def isis_message(run: int, rb: int, version: int = 0, instrument: str = "WISH") -> dict:
    """A DataReady-style message, ISIS's fields."""
    return {
        "instrument": instrument,
        "run_number": run,
        "rb_number": rb,
        "run_version": version,
        "data": f"/archive/NDX{instrument}/Instrument/data/cycle_26_4/{instrument}{run:08d}.nxs",
        "reduction_script": f"/isis/NDX{instrument}/user/scripts/autoreduction/reduce.py",
        "reduction_arguments": {"standard_vars": {"sum_runs": False}},
        "facility": "ISIS",
        "started_by": 0,
    }


class Producer:
    """A stomp.py producer: persistent messages, each confirmed by a receipt."""

    def __init__(self, port: int) -> None:
        import stomp

        self.port = port
        self.conn = stomp.Connection([("127.0.0.1", port)], reconnect_attempts_max=1)
        self.listener = stomp.listener.WaitingListener("r")
        self.conn.connect(wait=True)
        self.n = 0

    def send(self, destination: str, body: dict | bytes | str, confirm: bool = False) -> None:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        self.n += 1
        self.conn.send(destination, data, headers={"persistent": "true"})

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:
            pass


def source_conf(port: int, queue: Path, dest: str, cancel: str | None = None, extra: str = "") -> str:
    text = (
        f"[source isis]\ntype = stomp\nport = {port}\ndestinations = {dest}\nqueue = {queue}\n"
        f"name = {NAME}\nmax-size = 4096\nretry = 0.1\nretry-max = 0.5\nheartbeat = 2\n"
    )
    if cancel:
        text += f"cancel = {cancel}\n"
    return text + extra


def recording_handler(station, log: Path, extra: str = "") -> Path:
    """A handler that notes its start and end (rb, file), around `extra`."""
    return station.handler(
        "reduce",
        f'echo "S $WAITD_F_rb_number $(basename "$1")" >> "{log}"\n{extra}\n'
        f'echo "E $WAITD_F_rb_number $(basename "$1")" >> "{log}"\n',
    )


def lines(log: Path) -> list[list[str]]:
    try:
        return [line.split(" ", 2) for line in log.read_text().splitlines() if line.endswith(".json")]
    except FileNotFoundError:
        return []


def assert_no_rb_overlap(rows: list[list[str]]) -> None:
    """Never two runs of one RB at once: each RB's lines alternate S, E."""
    running: dict[str, str] = {}
    for mark, rb, name in rows:
        if mark == "S":
            assert rb not in running, f"RB {rb}: {name} started while {running.get(rb)} ran"
            running[rb] = name
        else:
            running.pop(rb, None)


def test_each_message_runs_once_serialised_by_rb_and_bad_ones_go_to_errors(station, activemq, tmp_path):
    dest = f"/queue/ReductionPending.{os.getpid()}.a"
    q = tmp_path / "q"
    q.mkdir()
    log = tmp_path / "runs"
    (station.passdir / "waitd.conf").write_text(source_conf(activemq.port, q, dest))
    recording_handler(station, log, "sleep 0.05")
    station.table(
        f"isis {q}/incoming *.json {station.passdir}/reduce 0 -1 0 claim=yes fields=json key={{rb_number}} jobs=4"
    )
    check = station.run("--check", "-v")
    assert check.returncode == 0, check.stderr
    assert f"[source isis] ({station.passdir}/waitd.conf:1): type=stomp queue={q}" in check.stdout
    assert "0 sink(s), 1 source(s), valid" in check.stdout
    producer = Producer(activemq.port)
    try:
        station.start()
        expected = set()
        for i in range(24):
            producer.send(dest, isis_message(100 + i, rb=1000 + i % 3))
            expected.add(f"WISH{100 + i:05d}_v0.json")
        producer.send(dest, isis_message(100, rb=1000))  # the same again: taken already
        producer.send(dest, b"not json {")
        big = json.dumps({**isis_message(1, 1), "pad": "x" * 5000})
        producer.send(dest, big)
        producer.send(dest, {"instrument": "WISH", "rb_number": 7})  # no run_number
        wait_for(lambda: len([r for r in lines(log) if r[0] == "E"]) >= 24, 30, "24 runs")
        wait_for(lambda: len(os.listdir(q / "errors")) >= 3, 10, "3 messages in errors/")
        rows = lines(log)
        started = sorted(name for mark, _, name in rows if mark == "S")
        assert started == sorted(expected)
        assert_no_rb_overlap(rows)
        assert {rb for _, rb, _ in rows} == {"1000", "1001", "1002"}
        errors = [json.loads((q / "errors" / n).read_text()) for n in sorted(os.listdir(q / "errors"))]
        whys = sorted(e["error"] for e in errors)
        assert whys[0].startswith(f"lacks a field name = {NAME} needs (instrument, run_number, run_version)"), whys
        assert whys[1].startswith("not JSON: ") and whys[2] == f"too big: {len(big)} bytes (max-size = 4096)", whys
        assert errors[1]["body"] == "not json {" or any(e["body"] == "not json {" for e in errors)
        text = station.log()
        assert text.count("not JSON") == 1 and text.count("too big") == 1
        want = f"source isis (stomp) -> {q}: connected (pid "
        wait_for(lambda: want in station.run("-s", "status").stdout, 10, "-s status to show the source")
        wait_for(
            lambda: "24 taken, 1 repeated, 3 to errors, 0 cancels" in station.run("-s", "status").stdout,
            10,
            "-s status to count the messages",
        )
        assert station.stop() == 0
    finally:
        producer.close()


def test_cancel_a_waiting_a_running_and_a_not_yet_arrived_file(station, activemq, tmp_path):
    dest = f"/queue/ReductionPending.{os.getpid()}.c"
    cancel = f"/queue/ReductionCancel.{os.getpid()}.c"
    q = tmp_path / "q"
    q.mkdir()
    (station.passdir / "waitd.conf").write_text(source_conf(activemq.port, q, dest, cancel))
    station.gated()
    station.table(
        f"isis {q}/incoming *.json {station.passdir}/gated 0 -1 0 claim=yes fields=json key={{rb_number}} jobs=4"
    )
    producer = Producer(activemq.port)
    try:
        station.start()
        running, waiting, later = (isis_message(n, rb=5) for n in (1, 2, 3))
        producer.send(cancel, later)  # before it comes: remembered
        producer.send(dest, running)
        wait_for(lambda: len(station.ran()) == 1, 10, "the first run")
        producer.send(dest, waiting)  # waits: its RB runs
        wait_for(lambda: (q / "incoming" / "WISH00002_v0.json").exists(), 10, "the second file")
        producer.send(cancel, waiting)
        wait_for(lambda: (q / "errors" / "WISH00002_v0.json").exists(), 10, "the waiting file cancelled")
        producer.send(cancel, running)
        wait_for(
            lambda: any(e.error == "cancelled" and e.path.endswith("WISH00001_v0.json") for e in station.ends()), 10
        )
        producer.send(dest, later)
        wait_for(lambda: (q / "errors" / "WISH00003_v0.json").exists(), 10, "the file cancelled before it came")
        assert [os.path.basename(p) for p in station.ran()] == [b"WISH00001_v0.json"]
        cancelled = {os.path.basename(e.path) for e in station.ends() if e.error == "cancelled"}
        assert cancelled == {"WISH00001_v0.json", "WISH00002_v0.json"}  # killed; cancelled waiting
        said = (
            "source isis: WISH00003_v0.json: cancelled, as a message asked",
            "cancelled before it came",
            "WISH00002_v0.json: cancelled, as asked (source isis: a cancel message): moved to",
        )
        # The source's process logs a cancel once its file is in errors/: wait for the lines.
        wait_for(lambda: all(line in station.log() for line in said), 10, "the cancels logged")
        assert station.stop() == 0
    finally:
        producer.close()


def source_process(station) -> psutil.Process | None:
    """The source's process, a child of the waitd running on the station
    (None while there is none alive: one just killed is a zombie until
    waitd reaps it, or gone)."""
    try:
        children = psutil.Process(station.proc.pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if "waitd.sources.child" in child.cmdline():
                return child
        except psutil.NoSuchProcess:  # ZombieProcess is one: it died since the listing
            continue
    return None


KILLED = 300  # messages: the kills meet each step of taking one many times


def test_every_message_runs_at_most_once_across_kills_and_a_broker_restart_and_none_is_lost(station, tmp_path):
    """The broker is down when waitd starts (local work runs meanwhile);
    then KILLED messages of six RBs, while the source's process and waitd
    are killed with SIGKILL at random moments and the broker restarts.
    Every message is run at most once (never two runs of one RB at once),
    and none is lost: each ran, or is in Q/errors (a run whose waitd was
    killed under it: its outcome is unknown)."""
    require()
    rng = random.Random(os.environ.get("WAITD_SEED") or time.time_ns())
    broker = ActiveMQ(tmp_path / "broker", persistent=True)  # a restart keeps what it took
    dest = "/queue/ReductionPending"
    q = tmp_path / "q"
    q.mkdir()
    log = tmp_path / "runs"
    (station.passdir / "waitd.conf").write_text(source_conf(broker.port, q, dest))
    recording_handler(station, log, "sleep 0.01")
    station.recorder()
    station.table(
        f"isis {q}/incoming *.json {station.passdir}/reduce 0 -1 0 claim=yes fields=json key={{rb_number}} jobs=6",
        f"local {station.incoming} *.dat {station.passdir}/rec 0 -1 0",
    )
    producer = None
    kills = 0
    try:
        station.start()
        station.drop("a.dat")
        wait_for(lambda: len(station.ran()) == 1, 10, "local work while the broker is down")
        wait_for(lambda: "not connected since" in station.run("-s", "status").stdout, 10, "the source down")
        broker.start()
        producer = Producer(broker.port)
        sent = 0
        for phase in range(3):
            for _ in range(KILLED // 3):
                producer.send(dest, isis_message(sent, rb=2000 + sent % 6))
                sent += 1
            for _ in range(3):
                time.sleep(rng.uniform(0.05, 0.3))
                if rng.random() < 0.5 and (child := source_process(station)) is not None:
                    with contextlib.suppress(psutil.NoSuchProcess):  # it died on its own since
                        child.kill()
                else:
                    station.proc.kill()
                    station.proc.wait()
                    station.start()
                kills += 1
            if phase == 1:
                producer.close()
                broker.restart()
                producer = Producer(broker.port)
        station.drop("b.dat")
        wait_for(lambda: len(station.ran()) == 2, 10, "local work after it all")
        names = {f"WISH{n:05d}_v0.json" for n in range(KILLED)}

        def accounted() -> set[str]:
            started = {name for mark, _, name in lines(log) if mark == "S"}
            return names - started - set(os.listdir(q / "errors"))

        wait_for(lambda: not accounted() and not os.listdir(q / "incoming"), 60, "every message run or in errors")
        pending = [d for d in (q / "pending").iterdir() if d.is_dir()]
        wait_for(lambda: not any(os.listdir(d) for d in pending), 30, "an empty pending")
        assert station.stop() == 0
    finally:
        if producer is not None:
            producer.close()
        broker.stop()
    rows = lines(log)
    starts = [name for mark, _, name in rows if mark == "S"]
    assert len(starts) == len(set(starts)), "a message ran twice"
    assert_no_rb_overlap(rows)
    assert not set(os.listdir(q / "errors")) - names
    errors = len(os.listdir(q / "errors"))
    print(f"\nsource crash test: {KILLED} messages, {kills} kills, ran {len(starts)}, in errors {errors}")


def test_posttroll_file_and_dataset_messages_run_once_each(station, tmp_path):
    """A real posttroll publisher: a `file` message is one file, a `dataset`
    one per member; a uid seen again is not run again (posttroll has no
    acknowledgement: the ledger is what knows it).  ZeroMQ loses what is
    published before the subscriber is connected: probes go first."""
    from posttroll.message import Message
    from posttroll.publisher import Publisher

    port = free_port()
    q = tmp_path / "q"
    q.mkdir()
    (station.passdir / "waitd.conf").write_text(
        f"[source pt]\ntype = posttroll\ntopics = /segment/SEVIRI\naddresses = tcp://127.0.0.1:{port}\n"
        f"queue = {q}\nretry = 0.1\n"
    )
    env_log = tmp_path / "env"
    station.recorder(
        "rec", f'echo "$(basename "$1") $WAITD_F_platform_name $WAITD_F_uri $WAITD_F_start_time" >> "{env_log}"'
    )
    station.table(f"pt {q}/incoming * {station.passdir}/rec 0 -1 0 claim=yes fields=json")
    publisher = Publisher(f"tcp://127.0.0.1:{port}", name="stalker").start()

    def publish(kind: str, data: dict) -> None:
        publisher.send(str(Message("/segment/SEVIRI", kind, data)))

    try:
        station.start()
        for n in range(300):
            publish("file", {"uid": f"probe-{n}", "uri": f"/in/probe-{n}", "platform_name": "probe"})
            if station.ran():
                break
            time.sleep(0.05)
        base = {"platform_name": "Meteosat-11", "start_time": dt.datetime(2026, 12, 6, 12, 0), "sensor": ["seviri"]}
        publish("file", {**base, "uid": "a.dat", "uri": "/in/a.dat"})
        members = [{"uid": f"{m}.dat", "uri": f"/in/{m}.dat"} for m in ("b", "c")]
        publish("dataset", {**base, "dataset": members})
        publish("file", {**base, "uid": "a.dat", "uri": "/in/a.dat"})  # again: not run again
        publish("file", {**base, "uid": "d.dat", "uri": "/in/d.dat"})

        def ours() -> list[bytes]:
            return [os.path.basename(p) for p in station.ran() if not os.path.basename(p).startswith(b"probe-")]

        wait_for(lambda: len(ours()) >= 4, 10, "four runs")
        assert sorted(ours()) == [b"a.dat", b"b.dat", b"c.dat", b"d.dat"]
        rows = dict(line.split(" ", 1) for line in env_log.read_text().splitlines())
        assert rows["a.dat"] == "Meteosat-11 /in/a.dat 2026-12-06T12:00:00"
        assert rows["c.dat"] == "Meteosat-11 /in/c.dat 2026-12-06T12:00:00"  # a member: the dataset's fields too
        # A reload without the source stops its process.
        child = source_process(station)
        assert child is not None
        (station.passdir / "waitd.conf").write_text("")
        assert station.run("-s", "reload").returncode == 0
        wait_for(lambda: "source pt: no longer in waitd.conf; stopped" in station.log(), 10, "the source stopped")
        wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 10, "its process gone")
        assert station.stop() == 0
    finally:
        publisher.stop()


def test_posttroll_publishers_found_through_a_nameserver(station, tmp_path):
    """`nameservers =` and `services =`: the source asks a real nameserver
    where the publishers of the service are."""
    import posttroll
    from posttroll.message import Message
    from posttroll.ns import get_pub_address
    from posttroll.publisher import create_publisher_from_dict_config

    ports = {"nameserver_port": free_port(), "broadcast_port": free_port(), "address_publish_port": free_port()}
    env = {f"POSTTROLL_{key.upper()}": str(value) for key, value in ports.items()}
    ns = subprocess.Popen(
        [sys.executable, "-c", "from posttroll.ns import main; main()", "--no-multicast", "-L"],
        env=dict(os.environ, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    q = tmp_path / "q"
    q.mkdir()
    station.env.update(env)
    (station.passdir / "waitd.conf").write_text(
        f"[source pt]\ntype = posttroll\ntopics = /segment/SEVIRI\nnameservers = localhost\nservices = stalker\n"
        f"queue = {q}\nretry = 0.1\n"
    )
    station.recorder()
    station.table(f"pt {q}/incoming * {station.passdir}/rec 0 -1 0 claim=yes")
    publisher = None
    try:
        with posttroll.config.set(**ports):
            wait_for(lambda: _accepts(ports["nameserver_port"]), 10, "the nameserver")
            settings = {"name": "stalker", "port": free_port(), "nameservers": ["localhost"]}
            publisher = create_publisher_from_dict_config(settings)
            publisher.start()
            wait_for(lambda: get_pub_address("stalker", timeout=0.5, nameserver="localhost"), 10, "the announce")
            station.start()
            for n in range(300):
                publisher.send(str(Message("/segment/SEVIRI", "file", {"uid": f"p{n}.dat", "uri": f"/in/p{n}.dat"})))
                if station.ran():
                    break
                time.sleep(0.05)
        assert station.ran(), "no message came through the nameserver's address"
        assert station.stop() == 0
    finally:
        if publisher is not None:
            publisher.stop()
        ns.kill()
        ns.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_a_queue_files_retry_keeps_its_key(station, tmp_path):
    """A claimed file waiting in pending for its retry is still of its RB:
    its retry does not start while another run of that RB runs (it used
    to lose its key, and its fields, once claimed)."""
    q = tmp_path / "q"
    for d in ("incoming", "tmp", "errors"):
        (q / d).mkdir(parents=True)
    log = tmp_path / "runs"
    recording_handler(
        station,
        log,
        f'code=0\ncase "$(basename "$1")" in\n'
        f'  a.json) [ -e "{tmp_path}/again" ] || {{ touch "{tmp_path}/again"; code=75; }};;\n'
        f'  b.json) while [ ! -e "{tmp_path}/gate" ]; do sleep 0.01; done;;\nesac',
    )
    reduce = station.passdir / "reduce"
    reduce.write_text(reduce.read_text() + "exit $code\n")
    station.table(
        f"isis {q}/incoming *.json {station.passdir}/reduce 0 -1 0 claim=yes fields=json key={{rb_number}} "
        "retries=1 retry=0.5 jobs=2"
    )
    station.start()
    station.drop("a.json", b'{"rb_number": 9}', directory=q / "incoming")
    wait_for(lambda: (tmp_path / "again").exists(), 10, "a's first run")
    station.drop("b.json", b'{"rb_number": 9}', directory=q / "incoming")
    wait_for(lambda: ["S", "9", "b.json"] in lines(log), 10, "b's run")
    quiet_for(1.5, lambda: [r for r in lines(log) if r[2] == "a.json" and r[0] == "S"] == [["S", "9", "a.json"]])
    (tmp_path / "gate").touch()
    wait_for(lambda: len([r for r in lines(log) if r[2] == "a.json" and r[0] == "E"]) == 2, 10, "a's retry")
    rows = lines(log)
    assert_no_rb_overlap(rows)
    assert [r[2] for r in rows if r[0] == "S"] == ["a.json", "b.json", "a.json"]
    assert station.stop() == 0


def test_isis_end_to_end_a_dataready_message_in_the_replies_out(station, activemq, tmp_path):
    """The two halves of issue 22 together: a DataReady message taken by
    the source, run one RB at a time, and ISIS's replies (a `format = isis`
    sink) carrying the original message's fields."""
    tag = f"{os.getpid()}e"
    q = tmp_path / "q"
    q.mkdir()
    replies = {kind: f"/queue/Reduction{kind}{tag}" for kind in ("Started", "Complete")}
    (station.passdir / "waitd.conf").write_text(
        source_conf(activemq.port, q, f"/queue/ReductionPending{tag}")
        + f"[sink replies]\ntype = stomp\nformat = isis\nport = {activemq.port}\n"
        f"started = {replies['Started']}\ncomplete = {replies['Complete']}\nretry = 0.1\n"
    )
    station.handler("reduce", 'printf \'{"output_dirs": ["/out"]}\' > "$WAITD_RESPONSE"\n')
    station.table(
        f"isis {q}/incoming *.json {station.passdir}/reduce 0 -1 0 claim=yes fields=json key={{rb_number}} jobs=2"
    )
    consumer = activemq.consumer(*replies.values())
    producer = Producer(activemq.port)
    try:
        station.start()
        sent = [isis_message(n, rb=77) for n in (11, 12)]
        for body in sent:
            producer.send(f"/queue/ReductionPending{tag}", body)
        got = consumer.wait(4, 20)
        for _, body in got:
            original = next(m for m in sent if m["run_number"] == body["run_number"])
            assert {k: body[k] for k in original} == original  # nested reduction_arguments too
        complete = [body for destination, body in got if destination == replies["Complete"]]
        assert sorted(b["run_number"] for b in complete) == [11, 12]
        assert all(b["output_dirs"] == ["/out"] for b in complete)
        assert station.stop() == 0
    finally:
        producer.close()
        consumer.close()
