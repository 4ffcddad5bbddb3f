# SPDX-License-Identifier: MIT
"""The posttroll sink: a real subscriber, and the real segment_gatherer fed
only by waitd's messages (waitd as trollstalker, restart-proof).

ZeroMQ PUB/SUB loses what is sent before a subscriber is connected, so each
test first delivers probe files until one of their messages comes through.
"""

from __future__ import annotations

import datetime as dt
import os
import time

from conftest import deliver, quiet_for, wait_for
from peers.activemq import free_port
from peers.segment_gatherer import GroupSpec, SegmentGathererPeer

HRIT = "H-000-{platform_name:4s}__-{channel_name:_<9s}-{segment:_<9s}-{start_time:%Y%m%d%H%M}-__"


def hrit(channel: str, segment: str) -> str:
    return f"H-000-MSG4__-{channel:_<9s}-{segment:_<9s}-202601011200-__"


def sink_conf(port: int) -> str:
    return f"[sink pytroll]\ntype = posttroll\naddress = tcp://127.0.0.1:{port}\nsensor = seviri\n"


class Subscriber:
    """A posttroll subscriber without a nameserver, read in the test's thread."""

    def __init__(self, port: int, topic: str) -> None:
        from posttroll.subscriber import create_subscriber_from_dict_config

        self.sub = create_subscriber_from_dict_config(
            {"addresses": [f"tcp://127.0.0.1:{port}"], "nameserver": False, "topics": [topic]}
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
