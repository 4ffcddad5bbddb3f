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

import json
import os
from pathlib import Path

import psutil
from conftest import wait_for

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
        return [line.split() for line in log.read_text().splitlines() if line.endswith(".json")]
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


def source_pids(passdir: Path) -> list[int]:
    state = passdir / "sources" / "isis.state"
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "waitd.sources.child" in cmd and str(passdir) in cmd:
            out.append(p.pid)
    assert state or True
    return out


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
