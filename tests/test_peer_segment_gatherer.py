# SPDX-License-Identifier: MIT
"""What the real segment_gatherer (pytroll-collectors) does with groups of files.

These tests pin the peer's behaviour, not waitd's: waitd's groups are
compared to it later.  Each starts segment_gatherer.py on loopback ports
(tests/peers/segment_gatherer.py), sends it trollstalker's `file` messages
and reads the `dataset` messages it publishes.  Times are measured from our
own sends: a slot's timeout counts from its first file, and an idle
segment_gatherer looks at its timeouts once a second, so a dataset "at
timeliness" comes between timeliness and timeliness plus a second.  A
dataset "at once" is one that came before its slot's timeliness could
have (`before_timeliness`): how soon is the machine's speed, not the peer's
behaviour.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import wait_for
from peers.segment_gatherer import GroupSpec, SegmentGathererPeer, peer_groups

# Meteosat HRIT: channels and segments, a prologue and an epilogue.
HRIT = (
    "H-000-{platform_name:4s}__-{platform_shortname:4s}________-"
    "{channel_name:_<9s}-{segment:_<9s}-{start_time:%Y%m%d%H%M}-__"
)
HRIT_ALL = "VIS006:000001-000003,IR_108:000001-000003,:PRO,:EPI"
T_S = 2.0  # timeliness of most tests
TICK_S = 1.0  # segment_gatherer's idle loop: it looks at timeouts this often
# Where a test looks only at a complete set published at once, its
# timeliness is long: the peer's own reading of three messages may take
# seconds on a loaded machine, and a set complete by then still counts.
LONG_S = 10.0


def hrit(channel: str, segment: str, platform: str = "MSG4", slot: str = "202401011200") -> str:
    return f"H-000-{platform}__-{platform}________-{channel:_<9s}-{segment:_<9s}-{slot}-__"


def hrit_set(platform: str = "MSG4") -> list[str]:
    """One slot's files in arrival order: prologue, 2 channels x 3 segments, epilogue."""
    segments = [hrit(ch, f"{seg:06d}", platform) for ch in ("VIS006", "IR_108") for seg in (1, 2, 3)]
    return [hrit("", "PRO", platform), *segments, hrit("", "EPI", platform)]


def hrit_spec(timeliness_s: float = T_S, is_critical_set: bool | None = None) -> GroupSpec:
    return GroupSpec(
        HRIT,
        critical=":PRO,:EPI",
        wanted=HRIT_ALL,
        all=HRIT_ALL,
        timeliness_s=timeliness_s,
        is_critical_set=is_critical_set,
    )


@pytest.fixture
def start_peer(tmp_path: Path):
    """start_peer(spec) -> a started SegmentGathererPeer, killed after the test."""
    peers: list[SegmentGathererPeer] = []

    def start(spec: GroupSpec) -> SegmentGathererPeer:
        peer = SegmentGathererPeer(tmp_path / f"peer{len(peers)}", spec)
        peers.append(peer)
        peer.start()
        return peer

    yield start
    for peer in peers:
        peer.stop()


def since_send(peer: SegmentGathererPeer, dataset: int, send: int) -> float:
    """Seconds from our `send`-th send to our receipt of the `dataset`-th dataset."""
    return peer.received[dataset].at_mono - peer.sent[send][1]


def before_timeliness(peer: SegmentGathererPeer, dataset: int, first: int = 0, timeliness_s: float = T_S) -> bool:
    """Whether the `dataset`-th dataset came before its slot's timeliness
    could publish it: under `timeliness_s` after our send of the slot's
    first file (`first`), which the peer received after we sent it."""
    return since_send(peer, dataset, first) < timeliness_s


def test_complete_set_is_published_at_once_with_every_member(start_peer) -> None:
    peer = start_peer(hrit_spec(LONG_S))
    files = hrit_set()
    for name in files:
        peer.send(name)

    assert peer.datasets(1, timeout=LONG_S) == [files]
    assert before_timeliness(peer, 0, timeliness_s=LONG_S)
    data = peer.received[0].data
    assert data["dataset"] == [{"uri": f"/in/{name}", "uid": name} for name in files]
    # The slot's fields come from its first file, less channel_name and segment.
    assert {k: v for k, v in data.items() if k != "dataset"} == {
        "platform_name": "MSG4",
        "platform_shortname": "MSG4",
        "start_time": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC),
        "sensor": ["seviri"],
    }
    assert peer.no_more(0.5) == []


@pytest.mark.parametrize("is_critical_set", [True, False])
def test_wanted_file_missing_publishes_what_is_there_at_timeliness_never_extended(start_peer, is_critical_set) -> None:
    peer = start_peer(hrit_spec(timeliness_s=3, is_critical_set=is_critical_set))
    files = hrit_set()
    missing = hrit("IR_108", "000002")
    arrived = [name for name in files if name != missing]
    peer.send(arrived[0])
    assert peer.no_more(2.5) == []  # a timeout counted from the later files would come at 5.5 s
    for name in arrived[1:]:
        peer.send(name)

    assert peer.datasets(1, timeout=3 + TICK_S + 1) == [arrived]
    assert 3 <= since_send(peer, 0, 0) < 3 + TICK_S + 0.5
    assert since_send(peer, 0, 1) < 3


def test_critical_file_missing_publishes_nothing(start_peer) -> None:
    peer = start_peer(hrit_spec())
    for name in hrit_set()[:-1]:  # no epilogue
        peer.send(name)

    assert peer.no_more(T_S + TICK_S + 0.5) == []
    assert "data discarded" in peer.log()


def test_critical_files_are_merely_wanted_unless_is_critical_set(start_peer) -> None:
    """The YAML default is_critical_set: false makes critical_files wanted files."""
    peer = start_peer(hrit_spec(is_critical_set=False))
    arrived = hrit_set()[:-1]  # no epilogue
    for name in arrived:
        peer.send(name)

    assert peer.datasets(1, timeout=T_S + TICK_S + 1) == [arrived]
    assert T_S <= since_send(peer, 0, 0)


FCI = "FCI-{platform_name:4s}-{segment:4s}-{start_time:%Y%m%d%H%M%S}.nc"
CHUNKS = [f"FCI-MTI1-000{n}-20240101120{t}.nc" for n, t in ((1, "010"), (2, "240"), (3, "510"), (4, "740"))]
NEXT_CHUNK = "FCI-MTI1-0001-20240101121010.nc"


def test_group_by_minutes_gathers_the_files_of_one_10_minute_slot(start_peer) -> None:
    """Chunks whose start times differ by minutes: each floored to 12:00."""
    peer = start_peer(GroupSpec(FCI, wanted=":0001-0004", all=":0001-0004", timeliness_s=T_S, group_by_minutes=10))
    for name in [*CHUNKS[:2], NEXT_CHUNK, *CHUNKS[2:]]:
        peer.send(name)

    assert peer.datasets(1, timeout=T_S) == [CHUNKS]
    assert before_timeliness(peer, 0)
    assert peer.received[0].data["start_time"] == dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)
    # The 12:10 chunk has a slot of its own, published alone at timeliness.
    assert peer.datasets(1, timeout=T_S + TICK_S + 1) == [[NEXT_CHUNK]]
    assert T_S <= since_send(peer, 1, 2)
    assert peer.received[1].data["start_time"] == dt.datetime(2024, 1, 1, 12, 10, tzinfo=dt.UTC)


def test_without_group_by_minutes_files_minutes_apart_are_slots_of_their_own(tmp_path) -> None:
    """time_tolerance (30 s by default) is all that joins different start times."""
    spec = GroupSpec(FCI, wanted=":0001-0004", all=":0001-0004", timeliness_s=T_S)
    assert peer_groups(tmp_path, spec, [(name, 0) for name in CHUNKS]) == [[name] for name in CHUNKS]


def test_group_by_minutes_does_not_gather_granules_without_a_segment_field(tmp_path) -> None:
    """Each granule is the whole wanted set of a slot: one dataset each, at once."""
    pattern = "AVHR_xxx_1B_M01_{start_time:%Y%m%d%H%M%S}Z_{end_time:%Y%m%d%H%M%S}Z_N_O_{processing_time:%Y%m%d%H%M%S}Z"
    granules = [
        "AVHR_xxx_1B_M01_20240101120000Z_20240101120300Z_N_O_20240101121000Z",
        "AVHR_xxx_1B_M01_20240101120300Z_20240101120600Z_N_O_20240101121300Z",
    ]
    spec = GroupSpec(pattern, timeliness_s=T_S, group_by_minutes=10, variable_tags=["end_time", "processing_time"])
    assert peer_groups(tmp_path, spec, [(name, 0) for name in granules]) == [[name] for name in granules]


# VIIRS SDR granules from CSPP: one file per band, each with its own processing time.
VIIRS = (
    "{segment}_{platform_short_name}_d{start_time:%Y%m%d_t%H%M%S}{start_decimal:1d}_"
    "e{end_time:%H%M%S}{end_decimal:1d}_b{orbit_number:05d}_c{proctime:s}_cspp_dev.h5"
)


def viirs(band: str, proctime: str) -> str:
    return f"{band}_npp_d20240101_t1200000_e1201250_b12345_c{proctime}_cspp_dev.h5"


def viirs_spec(variable_tags: list[str], timeliness_s: float = T_S) -> GroupSpec:
    bands = ":GMTCO,:SVM01,:SVM02"
    return GroupSpec(
        VIIRS, critical=":GMTCO", wanted=bands, all=bands, timeliness_s=timeliness_s, variable_tags=variable_tags
    )


def test_variable_tags_let_members_differ_in_that_field(start_peer) -> None:
    peer = start_peer(viirs_spec(["proctime"], LONG_S))
    files = [viirs("GMTCO", "20240101121500123456"), viirs("SVM01", "20240101121501999999"), viirs("SVM02", "x")]
    for name in files:
        peer.send(name)

    assert peer.datasets(1, timeout=LONG_S) == [files]
    assert before_timeliness(peer, 0, timeliness_s=LONG_S)


def test_without_variable_tags_members_must_match_the_first_file(start_peer) -> None:
    """The others' masks differ: dropped; the critical file alone at timeliness."""
    peer = start_peer(viirs_spec([]))
    files = [viirs("GMTCO", "a1"), viirs("SVM01", "a2"), viirs("SVM02", "a3")]
    for name in files:
        peer.send(name)

    assert peer.datasets(1, timeout=T_S + TICK_S + 1) == [files[:1]]
    assert T_S <= since_send(peer, 0, 0)


def test_a_field_that_reads_as_an_iso_time_matches_nothing_unless_variable(tmp_path) -> None:
    """posttroll decodes the proctime string into a datetime: the slot's
    masks read "c s" there, so even its first file is dropped."""
    files = [viirs(band, "20240101121500123456") for band in ("GMTCO", "SVM01", "SVM02")]
    assert peer_groups(tmp_path, viirs_spec([]), [(name, 0) for name in files]) == []


@pytest.mark.parametrize("is_critical_set, second", [(False, True), (True, False)])
def test_a_member_resent_after_publication_opens_a_new_slot(start_peer, is_critical_set, second) -> None:
    peer = start_peer(hrit_spec(is_critical_set=is_critical_set))
    files = hrit_set()
    peer.send(files[0])
    peer.send(files[0])  # in the open slot: already received, counted once
    for name in files[1:]:
        peer.send(name)
    assert peer.datasets(1, timeout=T_S) == [files]

    peer.send(files[1])  # after publication: a new slot, partial
    expected = [[files[1]]] if second else []
    assert peer.no_more(T_S + TICK_S + 0.5) == expected
    if second:
        assert T_S <= since_send(peer, 1, -1)


def test_another_platform_within_the_slot_is_dropped(start_peer) -> None:
    peer = start_peer(hrit_spec())
    files = hrit_set()
    for name in [*files[:3], hrit("VIS006", "000001", "MSG3"), *files[3:]]:
        peer.send(name)

    assert peer.datasets(1, timeout=T_S) == [files]
    assert peer.no_more(T_S + TICK_S + 0.5) == []


@pytest.mark.parametrize("is_critical_set, expected", [(True, []), (False, [[hrit("VIS006", "000001", "MSG3")]])])
def test_another_platform_first_takes_the_slot_and_the_set_is_dropped(tmp_path, is_critical_set, expected) -> None:
    """Slots are found by time alone, and take the first file's platform."""
    other = hrit("VIS006", "000001", "MSG3")
    arrivals = [(name, 0) for name in [other, *hrit_set()]]
    assert peer_groups(tmp_path, hrit_spec(is_critical_set=is_critical_set), arrivals) == expected


def test_groupspec_refuses_a_segment_list_without_its_channel() -> None:
    with pytest.raises(ValueError, match="'2' is not CHANNEL:SEGMENTS"):
        GroupSpec(HRIT, wanted="VIS006:1,2")


def test_a_file_message_without_sensor_kills_it(start_peer) -> None:
    peer = start_peer(hrit_spec())
    peer.send(hrit_set()[0], sensor=None)

    wait_for(lambda: peer.proc.poll() is not None, 10, "segment_gatherer to die")
    assert peer.proc.returncode == 1
    assert "KeyError: 'sensor'" in peer.log()
