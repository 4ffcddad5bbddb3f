# SPDX-License-Identifier: MIT
"""waitd's groups side by side with the real segment_gatherer.

The same arrivals go to both: each file is delivered into waitd's spool
and, at the same moment, announced to segment_gatherer as trollstalker
would.  Both must make the same groups with the same members.  Where they
must differ (a file of another platform at the same time; a member sent
again after its group was published), the test of that case says how, as
incoming(5) does.
"""

from __future__ import annotations

import pytest
from conftest import deliver
from peers.segment_gatherer import GroupSpec, SegmentGathererPeer

HRIT = "H-000-{platform_name:4s}__-{channel_name:_<9s}-{segment:_<9s}-{start_time:%Y%m%d%H%M}-__"
POLAR = "{platform_name}_{start_time:%Y%m%d_%H%M%S}_{segment}_{proc}.dat"
TIMELINESS = 1


def hrit(channel: str, segment: str, platform: str = "MSG4", when: str = "202601011200") -> str:
    return f"H-000-{platform:_<4s}__-{channel:_<9s}-{segment:_<9s}-{when}-__"


def waitd_record(station, spec: GroupSpec) -> str:
    options = [f"pattern={spec.pattern}", f"timeliness={spec.timeliness_s:g}"]
    for name in ("critical", "wanted", "all"):
        if getattr(spec, name):
            options.append(f"{name}={getattr(spec, name)}")
    if spec.tolerance_s is not None:
        options.append(f"tolerance={spec.tolerance_s:g}")
    if spec.group_by_minutes is not None:
        options.append(f"slot={spec.group_by_minutes}")
    if spec.variable_tags:
        options.append(f"vary={','.join(spec.variable_tags)}")
    return f"x in * {station.passdir}/g 0 -1 0 " + " ".join(options)


def both(station, tmp_path, spec: GroupSpec, arrivals: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """The groups waitd makes and the datasets segment_gatherer publishes."""
    runs = station.passdir / "runs"
    station.handler(
        "g", f'names=""; for f in "$@"; do names="$names $(basename "$f")"; done\necho "$names" >> "{runs}"\n'
    )
    station.table(waitd_record(station, spec))
    station.start()
    with SegmentGathererPeer(tmp_path / "peer", spec) as peer:
        for name in arrivals:
            deliver(station, name, age_s=0)
            peer.send(name, directory=str(station.incoming))
        # Past the timeliness of both, with the margin segment_gatherer's
        # once-a-second look at its slots needs: waitd has run its groups
        # at their timeliness by then, to the millisecond.
        peer_sets = peer.no_more(spec.timeliness_s + 2.5)
    try:
        mine = [line.split() for line in runs.read_text().splitlines()]
    except FileNotFoundError:
        mine = []
    assert station.stop() == 0
    return sorted(sorted(g) for g in mine), sorted(sorted(g) for g in peer_sets)


MSG = {
    "pattern": HRIT,
    "critical": ":PRO,:EPI",
    "wanted": "VIS006:000001-000003,:PRO,:EPI",
    "all": "VIS006:000001-000003,:PRO,:EPI",
    "timeliness_s": TIMELINESS,
}
COMPLETE = [
    hrit("", "PRO"),
    hrit("VIS006", "000001"),
    hrit("VIS006", "000002"),
    hrit("VIS006", "000003"),
    hrit("", "EPI"),
]


@pytest.mark.parametrize(
    "spec, arrivals, expected",
    [
        pytest.param(GroupSpec(**MSG), COMPLETE, [sorted(COMPLETE)], id="complete"),
        pytest.param(
            GroupSpec(**MSG),
            [n for n in COMPLETE if "000002" not in n],
            [sorted(n for n in COMPLETE if "000002" not in n)],
            id="missing-wanted",
        ),
        pytest.param(GroupSpec(**MSG), [n for n in COMPLETE if "EPI" not in n], [], id="missing-critical"),
        pytest.param(
            GroupSpec(POLAR, wanted=":1-3", all=":1-3", timeliness_s=TIMELINESS, group_by_minutes=10),
            [
                "noaa19_20260101_120100_1_p1.dat",
                "noaa19_20260101_120500_2_p1.dat",
                "noaa19_20260101_120900_3_p1.dat",
                "noaa19_20260101_121100_1_p1.dat",
            ],
            [
                [
                    "noaa19_20260101_120100_1_p1.dat",
                    "noaa19_20260101_120500_2_p1.dat",
                    "noaa19_20260101_120900_3_p1.dat",
                ],
                ["noaa19_20260101_121100_1_p1.dat"],
            ],
            id="slot-group_by_minutes",
        ),
        pytest.param(
            GroupSpec(POLAR, wanted=":1-2", all=":1-2", timeliness_s=TIMELINESS, variable_tags=["proc"]),
            ["noaa19_20260101_120000_1_p1.dat", "noaa19_20260101_120000_2_p7.dat"],
            [["noaa19_20260101_120000_1_p1.dat", "noaa19_20260101_120000_2_p7.dat"]],
            id="vary-variable_tags",
        ),
    ],
)
def test_same_groups_as_segment_gatherer(station, tmp_path, spec, arrivals, expected):
    mine, peer = both(station, tmp_path, spec, arrivals)
    assert peer == expected, "segment_gatherer itself did not do what incoming(5) says it does"
    assert mine == peer


def test_another_platform_at_the_same_time_is_a_group_of_its_own_not_dropped(station, tmp_path):
    # segment_gatherer keys a slot by time alone: the first file's platform
    # takes it and the other platform's files are dropped.  waitd keys a
    # group by every field: two groups.
    spec = GroupSpec(**{**MSG, "critical": ":PRO", "wanted": ":PRO,VIS006:000001", "all": ":PRO,VIS006:000001"})
    msg4 = [hrit("", "PRO"), hrit("VIS006", "000001")]
    msg3 = [hrit("", "PRO", "MSG3"), hrit("VIS006", "000001", "MSG3")]
    # Interleaved, so that the other platform's files come while the slot is open.
    mine, peer = both(station, tmp_path, spec, [msg4[0], msg3[0], msg4[1], msg3[1]])
    assert peer == [sorted(msg4)]
    assert mine == sorted([sorted(msg4), sorted(msg3)])
