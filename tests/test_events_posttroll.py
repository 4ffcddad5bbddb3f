# SPDX-License-Identifier: MIT
"""The posttroll sink: a real subscriber, and the real segment_gatherer fed
only by waitd's messages (waitd as trollstalker, restart-proof).

ZeroMQ PUB/SUB loses what is sent before a subscriber is connected, so each
test first delivers probe files until one of their messages comes through.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import deliver, quiet_for, wait_for
from peers.activemq import free_port
from peers.segment_gatherer import GroupSpec, SegmentGathererPeer

HRIT = "H-000-{platform_name:4s}__-{channel_name:_<9s}-{segment:_<9s}-{start_time:%Y%m%d%H%M}-__"


def hrit(channel: str, segment: str) -> str:
    return f"H-000-MSG4__-{channel:_<9s}-{segment:_<9s}-202601011200-__"


def sink_conf(port: int) -> str:
    return f"[sink pytroll]\ntype = posttroll\naddress = tcp://127.0.0.1:{port}\nsensor = seviri\n"


class Subscriber:
    """A posttroll subscriber, read in the test's thread: without a
    nameserver, or (`ports`) finding the sink's address through one."""

    def __init__(self, port: int, topic: str, ports: dict[str, int] | None = None) -> None:
        import posttroll
        from posttroll.subscriber import create_subscriber_from_dict_config

        if ports is None:
            self.sub = create_subscriber_from_dict_config(
                {"addresses": [f"tcp://127.0.0.1:{port}"], "nameserver": False, "topics": [topic]}
            )
        else:
            with posttroll.config.set(**ports):
                self.sub = create_subscriber_from_dict_config(
                    {"services": ["waitd"], "nameserver": "localhost", "topics": [topic], "timeout": 2}
                )
        self.messages: list = []
        self._recv = self.sub.recv(timeout=0.05)

    def poll(self, seconds: float) -> list:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = next(self._recv)
            if msg is not None:
                self.messages.append(msg)
        return self.messages

    def close(self) -> None:
        self.sub.close()


def probe_until_heard(station, sub: Subscriber, tag: str) -> None:
    for n in range(300):
        deliver(station, f"probe-{tag}-{n}.dat")
        if any(m.data.get("uid", "").startswith(f"probe-{tag}-") for m in sub.poll(0.1)):
            return
    raise AssertionError("no probe message came through")


def test_one_file_message_per_file_and_none_again_after_a_restart(station):
    port = free_port()
    (station.passdir / "waitd.conf").write_text(sink_conf(port))
    pattern = "{platform_name}_{start_time:%Y%m%d_%H%M%S}_{orbit:05d}.dat"
    station.table(
        f"avhrr {station.incoming} noaa* - 0 -1 0 pattern={pattern} topic=pytroll/avhrr",
        f"probe {station.incoming} probe-* - 0 -1 0 topic=pytroll/avhrr",
    )
    sub = Subscriber(port, "/pytroll/avhrr")
    try:
        station.start()
        probe_until_heard(station, sub, "a")
        names = [f"noaa19_20260101_12{m:02d}00_{31000 + m}.dat" for m in range(5)]
        for name in names:
            deliver(station, name)
        ours = lambda: [m for m in sub.poll(0.05) if not m.data["uid"].startswith("probe-")]  # noqa: E731
        wait_for(lambda: len(ours()) >= 5, 10, "five file messages")
        msgs = ours()
        assert sorted(m.data["uid"] for m in msgs) == names
        first = next(m for m in msgs if m.data["uid"] == names[0])
        assert first.type == "file" and first.subject == "/pytroll/avhrr"
        assert first.data["uri"] == os.path.join(station.incoming, names[0])
        assert first.data["start_time"] == dt.datetime(2026, 1, 1, 12, 0)
        assert first.data["platform_name"] == "noaa19" and first.data["orbit"] == 31000
        assert first.data["sensor"] == ["seviri"]
        assert station.stop() == 0
        station.start()
        probe_until_heard(station, sub, "b")  # the subscriber hears the new waitd
        quiet_for(1.0, lambda: len(ours()) == 5)
        assert station.stop() == 0
    finally:
        sub.close()


def test_segment_gatherer_fed_only_by_waitd_publishes_its_dataset(station, tmp_path):
    port = free_port()
    (station.passdir / "waitd.conf").write_text(sink_conf(port))
    station.table(f"hrit {station.incoming} * - 0 -1 0 topic=/waitd-peer/file")
    spec = GroupSpec(
        HRIT,
        critical=":PRO,:EPI",
        wanted="VIS006:000001-000003,:PRO,:EPI",
        all="VIS006:000001-000003,:PRO,:EPI",
        timeliness_s=30,
    )
    station.start()
    peer = SegmentGathererPeer(
        tmp_path / "peer", spec, listen=f"tcp://127.0.0.1:{port}", probe=lambda uid: deliver(station, uid)
    )
    with peer:
        names = [hrit("", "PRO"), *(hrit("VIS006", f"00000{i}") for i in (1, 2, 3)), hrit("", "EPI")]
        for name in names:
            deliver(station, name)
        (members,) = peer.datasets(1, 20)
        assert sorted(members) == sorted(names)
        dataset = peer.received[-1].data
        assert dataset["platform_name"] == "MSG4" and dataset["sensor"] == ["seviri"]
        assert {d["uri"] for d in dataset["dataset"]} == {os.path.join(station.incoming, n) for n in names}
    assert station.stop() == 0


@pytest.fixture
def nameserver(tmp_path):
    """A real posttroll nameserver (no multicast, localhost only) on ports of
    its own: their settings as posttroll's config takes them, and as the
    environment (POSTTROLL_...) that tells them to waitd's sink."""
    ports = {"nameserver_port": free_port(), "broadcast_port": free_port(), "address_publish_port": free_port()}
    env = {f"POSTTROLL_{key.upper()}": str(value) for key, value in ports.items()}
    with open(tmp_path / "nameserver.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from posttroll.ns import main; main()", "--no-multicast", "-L"],
            env=dict(os.environ, **env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        wait_for(lambda: accepts(ports["nameserver_port"]) or proc.poll() is not None, 10, "the nameserver")
        assert proc.poll() is None, (tmp_path / "nameserver.log").read_text()
        yield ports, env
    finally:
        proc.kill()
        proc.wait()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_the_sink_binds_and_announces_itself_when_it_starts_not_at_the_first_event(station, nameserver):
    from posttroll.ns import get_pub_address

    ports, env = nameserver
    station.env.update(env)
    port = free_port()
    taken = socket.create_server(("127.0.0.1", port))  # the address is in use when the sink starts
    conf = sink_conf(port) + "nameservers = localhost\nretry = 0.05\nretry-max = 0.2\n"
    (station.passdir / "waitd.conf").write_text(conf)
    station.table(f"avhrr {station.incoming} noaa* - 0 -1 0 topic=pytroll/avhrr")
    station.start()

    def sink() -> dict:
        return json.loads(station.run("-s", "status", "--json").stdout)["sinks"][0]

    down = wait_for(lambda: (s := sink())["down_since"] is not None and s, 10, "-s status to say the sink is down")
    assert "Address already in use" in down["error"]
    text = lambda: station.run("-s", "status").stdout  # noqa: E731  (the status file: rewritten once a second)
    wait_for(lambda: "sink pytroll (posttroll): down since" in text(), 10, "the text report")
    taken.close()
    wait_for(lambda: sink()["down_since"] is None, 10, "the sink up once its address is free")
    # Bound and announced with no event written yet: a subscriber can find it.
    assert not (station.passdir / "incoming.history").exists() or not station.history()
    assert accepts(port)
    import posttroll

    with posttroll.config.set(**ports):
        found = wait_for(lambda: get_pub_address("waitd", timeout=0.5, nameserver="localhost"), 10, "the address")
    assert [a["URI"] for a in found] == [f"tcp://127.0.0.1:{port}"]
    sub = Subscriber(port, "/pytroll/avhrr", ports)  # through the nameserver
    try:
        for n in range(300):
            deliver(station, f"noaa19_{n:03d}.dat")
            if sub.poll(0.1):
                break
        assert sub.messages and sub.messages[0].data["uri"].startswith(str(station.incoming))
    finally:
        sub.close()
    assert station.log().count("sink pytroll: cannot deliver") == 1
    assert station.stop() == 0
