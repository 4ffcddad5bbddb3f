# SPDX-License-Identifier: MIT
"""The stomp sink against a real ActiveMQ: started, complete, error, retry_in;
and a broker outage in the middle of a run of 80 files.

The session's broker is not persistent.  The outage test starts a broker
of its own that is (KahaDB in its temporary directory): a broker that
forgets what it acknowledged would lose messages across its own restart,
whatever waitd does.
"""

from __future__ import annotations

import json
import os
import threading
import time

from conftest import deliver, wait_for
from peers.activemq import ActiveMQ, free_port, require

QUEUES = ("/queue/ReductionStarted", "/queue/ReductionComplete", "/queue/ReductionError")


def stomp_conf(port: int, name: str = "isis") -> str:
    return (
        f"[sink {name}]\ntype = stomp\nhost = 127.0.0.1\nport = {port}\n"
        f"started = {QUEUES[0]}\ncomplete = {QUEUES[1]}\nerror = {QUEUES[2]}\n"
        "retry = 0.1\nretry-max = 0.5\n"
    )


def test_started_complete_error_and_retry_in(station, activemq):
    queues = tuple(q + str(os.getpid()) + "x" for q in QUEUES)  # this test's own queues
    conf = stomp_conf(activemq.port)
    for old, new in zip(QUEUES, queues, strict=True):
        conf = conf.replace(old, new)
    (station.passdir / "waitd.conf").write_text(conf)
    station.handler("h", 'case "$(basename "$1")" in again*) exit 75;; bad*) exit 2;; esac\n')
    station.table(f"x {station.incoming} *.nxs {station.passdir}/h 0 -1 0 retries=1 retry=1")
    consumer = activemq.consumer(*queues)
    try:
        station.start()
        for name in ("good.nxs", "bad.nxs", "again.nxs"):
            deliver(station, name)
        # 3 started, good complete, bad error, again error (retry_in), again
        # started (attempt 2), again error (final).
        messages = consumer.wait(8)
        by = {}
        for queue, body in messages:
            by.setdefault((os.path.basename(body["file"]), queue.removesuffix(str(os.getpid()) + "x")), []).append(body)
        assert len(by[("good.nxs", QUEUES[1])]) == 1 and by[("good.nxs", QUEUES[1])][0]["exit"] == 0
        assert by[("bad.nxs", QUEUES[2])][0]["exit"] == 2 and "retry_in" not in by[("bad.nxs", QUEUES[2])][0]
        first, final = by[("again.nxs", QUEUES[2])]
        assert first["outcome"] == "retrying" and 0 < first["retry_in"] <= 1 and first["attempt"] == 1
        assert final["outcome"] == "failed" and final["attempt"] == 2 and "retry_in" not in final
        assert [b["attempt"] for b in by[("again.nxs", QUEUES[0])]] == [1, 2]
        assert all(b["record"] == 1 and b["telem"] == "x" for _, b in messages)
        assert len({b["id"] for _, b in messages}) == 8
        assert station.stop() == 0
    finally:
        consumer.close()


def test_a_broker_absent_when_the_sink_starts_shows_it_down_before_any_event(station, activemq):
    queues = tuple(q + str(os.getpid()) + "y" for q in QUEUES)  # this test's own queues

    def conf(port: int) -> str:
        text = stomp_conf(port)
        for old, new in zip(QUEUES, queues, strict=True):
            text = text.replace(old, new)
        return text

    (station.passdir / "waitd.conf").write_text(conf(free_port()))  # nothing listens there
    station.recorder()
    station.table(f"x {station.incoming} *.nxs {station.passdir}/rec 0 -1 0")
    station.start()

    def sink() -> dict:
        return json.loads(station.run("-s", "status", "--json").stdout)["sinks"][0]

    down = wait_for(lambda: (s := sink())["down_since"] is not None and s, 15, "the sink down with no event yet")
    assert down["error"] and down["backlog"] == 0 and not station.history()
    assert station.log().count("sink isis: cannot deliver") == 1
    # Pointed at a broker that is there (a reload), it connects and delivers.
    (station.passdir / "waitd.conf").write_text(conf(activemq.port))
    consumer = activemq.consumer(*queues)
    try:
        station.run("-s", "reload")
        wait_for(lambda: sink()["down_since"] is None, 15, "the sink up")
        deliver(station, "a.nxs")
        # In the sink's order (the broker may hand two queues' messages to
        # one consumer in either order, and did under load).
        sent = sorted(consumer.wait(2), key=lambda message: message[1]["seq"])
        assert [q for q, _ in sent] == [queues[0], queues[1]]
        assert station.stop() == 0
    finally:
        consumer.close()
    log = station.log()
    assert "sink isis: delivering again after" in log  # the down state outlived the restart of its process
    assert "killed by signal SIGHUP" not in log, "the reload's HUP killed the sink's new process"


OUTAGE_S = 3.0  # the broker's own restart adds a second or more
OUTAGE_RUNS = 80  # 0.1 s each: runs before, during and after the outage


def test_broker_down_during_runs_loses_nothing_and_delays_no_start(station, tmp_path):
    require()
    broker = ActiveMQ(tmp_path / "amq", persistent=True)
    broker.start()
    consumer = None
    try:
        (station.passdir / "waitd.conf").write_text(stomp_conf(broker.port))
        station.handler("h", "sleep 0.1\n")
        station.table(f"x {station.incoming} *.nxs {station.passdir}/h 0 -1 0")
        consumer = broker.consumer(QUEUES[0], QUEUES[1])
        station.start()
        for i in range(OUTAGE_RUNS):
            deliver(station, f"run{i:03d}.nxs")
        wait_for(lambda: len(consumer.messages) >= 10, 20, "the first messages")
        outage = threading.Event()
        down: list[float] = []  # time.time() when the broker was stopped, and when it is started again

        def stop_and_restart() -> None:
            broker.stop()
            down.append(time.time())
            outage.set()
            time.sleep(OUTAGE_S)
            down.append(time.time())
            broker.start()

        thread = threading.Thread(target=stop_and_restart)
        thread.start()
        outage.wait(15)
        wait_for(lambda: "sink isis: cannot deliver" in station.log(), 15, "the sink to notice")
        thread.join()
        consumer.connect()  # its connection died with the broker
        wait_for(lambda: len(station.ends()) == OUTAGE_RUNS, 60, f"the {OUTAGE_RUNS} runs")
        ids = lambda: {body["id"] for _, body in consumer.messages}  # noqa: E731
        wait_for(lambda: len(ids()) == 2 * OUTAGE_RUNS, 60, "a started and a complete message for each run")
        starts = sorted(e.at for e in station.started())
        during = [at for at in starts if down[0] < at < down[1]]
        assert len(during) >= 5, f"{len(during)} runs started while the broker was down: the outage proves nothing"
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert max(gaps) < 1.0, f"a start waited {max(gaps):.2f} s: the loop waited on the sink"
        assert starts[-1] - starts[0] < 60
        print(f"\nstomp outage: {len(during)} of {OUTAGE_RUNS} runs started while the broker was down")
        # The broker has the messages before the sink has its receipts and says so.
        wait_for(lambda: "sink isis: delivering again after" in station.log(), 10, "the sink's recovery in the log")
        assert station.stop() == 0
    finally:
        if consumer is not None:
            consumer.close()
        broker.stop()
