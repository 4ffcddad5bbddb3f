# SPDX-License-Identifier: MIT
"""Groups, purely: the member notation, filing names into groups, verdicts, a group with its history (look)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waitd.decide import groups
from waitd.decide.facts import FOREVER_NS
from waitd.decide.groups import Group, Index, Look, Looked, Spec, Verdict, late, look, members, verdict
from waitd.formats.history_line import Event, Status

S = 1_000_000_000


def spec(critical="", wanted="", accepted=None, timeliness=10.0, tolerance=30.0, slot=None, vary=()) -> Spec:
    c = members(critical) if critical else frozenset()
    w = members(wanted) if wanted else frozenset()
    return Spec(c, w, accepted or (c | w), timeliness, tolerance, slot, tuple(vary))


def test_members_notation_is_segment_gatherers():
    assert members(":PRO,:EPI") == {("", "PRO"), ("", "EPI")}
    assert members("VIS006:000001-000003") == {("VIS006", "000001"), ("VIS006", "000002"), ("VIS006", "000003")}
    assert members("HRV:8-10") == {("HRV", "8"), ("HRV", "9"), ("HRV", "10")}
    assert members("IR:007") == {("IR", "007")}
    assert members(":") == {("", "")}


@pytest.mark.parametrize("bad", ["PRO", "VIS:3-1", "VIS:a-b", "VIS:1-", ":0-200000"])
def test_members_refuses(bad):
    with pytest.raises(ValueError):
        members(bad)


@given(st.integers(0, 500), st.integers(0, 50), st.integers(1, 6))
def test_ranges_keep_the_padding_of_their_first(lo, n, width):
    first = f"{lo:0{width}d}"
    got = members(f"C:{first}-{lo + n}")
    assert len(got) == n + 1
    padded = len(first) > 1 and first[0] == "0"
    assert all((len(s) == width if padded else s == str(int(s))) for _, s in got)


def fields(platform: str, seg, when: datetime.datetime, channel: str = "", **more) -> dict:
    return {"platform": platform, "channel_name": channel, "segment": seg, "start_time": when, **more}


T0 = datetime.datetime(2026, 1, 1, 12, 0)


def test_index_groups_by_fields_and_time_tolerance():
    idx = Index(spec(wanted=":1-3"), "x")
    a, _ = idx.add("a", fields("n19", 1, T0), 100)  # type: ignore[misc]
    b, _ = idx.add("b", fields("n19", 2, T0 + datetime.timedelta(seconds=20)), 105)  # type: ignore[misc]
    c, _ = idx.add("c", fields("n19", 3, T0 + datetime.timedelta(seconds=40)), 110)  # type: ignore[misc]
    d, _ = idx.add("d", fields("n18", 1, T0), 111)  # type: ignore[misc]
    assert a is b and c is not a and d is not a
    assert a.gid == "x,platform=n19,start_time=20260101T120000"
    assert a.first_arrival_ns == 100 and a.files == {("", "1"): "a", ("", "2"): "b"}
    assert idx.add("e", fields("n19", 7, T0), 120) == (
        "not a member of the groups of this record (its channel and segment are in no list)"
    )
    assert "a second file for member :1" in str(idx.add("f", fields("n19", 1, T0), 130))
    idx.remove("a")
    idx.remove("b")
    assert a.gid not in idx.groups


def test_index_slots_and_vary():
    idx = Index(spec(wanted=":1-2", slot=10, vary=("proc",)), "x")
    g1, _ = idx.add("a", fields("m1", 1, T0 + datetime.timedelta(minutes=1), proc=1), 1)  # type: ignore[misc]
    g2, _ = idx.add("b", fields("m1", 2, T0 + datetime.timedelta(minutes=9), proc=2), 2)  # type: ignore[misc]
    g3, _ = idx.add("c", fields("m1", 1, T0 + datetime.timedelta(minutes=11), proc=1), 3)  # type: ignore[misc]
    assert g1 is g2 and g3 is not g1
    assert g1.time == T0 and g3.time == T0 + datetime.timedelta(minutes=10)


def group(first_ns: int) -> Group:
    return Group("g", (), None, first_ns)


def test_verdicts():
    sp = spec(critical=":PRO", wanted=":1-2")
    pro, one, two = ("", "PRO"), ("", "1"), ("", "2")
    g = group(0)
    assert verdict(sp, g, {pro, one, two}, {pro, one, two}, 1 * S) == (Verdict.READY, None)
    assert verdict(sp, g, {pro, one}, {pro, one}, 1 * S) == (Verdict.WAITING, 10 * S)
    assert verdict(sp, g, {pro, one}, {pro, one}, 10 * S) == (Verdict.READY, None)
    assert verdict(sp, g, {one, two}, {one, two}, 10 * S) == (Verdict.INCOMPLETE, None)
    # Its critical member is there at timeliness, but not old enough yet.
    assert verdict(sp, g, {pro, one}, {one}, 10 * S) == (Verdict.WAITING, None)
    # Nothing critical: at timeliness, whatever is in runs.
    assert verdict(spec(wanted=":1-2"), g, {one}, {one}, 10 * S) == (Verdict.READY, None)
    assert groups.member_of({"segment": 7}) == ("", "7")
    assert groups.expected_member(spec(wanted=":007"), ("", "7")) == ("", "007")


# -- look: a group with its history ------------------------------------------------

PRO, ONE, TWO = ("", "PRO"), ("", "1"), ("", "2")


def ev(status: Status | None = None, **kw) -> Event:
    return Event("/in/x", "h", 0, Status.KNOWN if status is None else status, **kw)


def test_look_runs_a_ready_group_and_waits_for_a_young_member():
    sp, g = spec(critical=":PRO", wanted=":1-2"), group(0)
    present = {PRO, ONE, TWO}
    none = dict.fromkeys(present)
    assert look(sp, g, present, none, dict.fromkeys(present, 0), False, S) == Looked(Look.RUN, frozenset(present))
    young = {PRO: 0, ONE: 0, TWO: 30 * S}
    assert look(sp, g, present, none, young, False, S) == Looked(Look.WAIT, again_ns=10 * S)
    assert look(sp, g, present, none, {**young, TWO: 3 * S}, False, S) == Looked(Look.WAIT, again_ns=3 * S)
    # At its timeliness, what is ready runs when its critical members are.
    assert look(sp, g, present, none, young, False, 10 * S) == Looked(Look.RUN, frozenset({PRO, ONE}))


def test_look_leaves_a_running_group_and_never_waits_for_ever():
    sp, g = spec(critical=":PRO", wanted=":1-2"), group(0)
    assert look(sp, g, {PRO}, {PRO: None}, {PRO: 0}, True, S).look is Look.RUNNING
    never = look(sp, g, {PRO, ONE}, {PRO: None, ONE: None}, {PRO: FOREVER_NS, ONE: 0}, False, S)
    assert never == Looked(Look.WAIT, again_ns=10 * S), "a member held for ever is no deadline"


def test_look_says_incomplete_with_the_missing_critical_members():
    sp, g = spec(critical=":PRO", wanted=":1-2"), group(0)
    looked = look(sp, g, {ONE, TWO}, {ONE: None, TWO: None}, {ONE: 0, TWO: 0}, False, 10 * S)
    assert looked == Looked(Look.INCOMPLETE, frozenset({PRO}))


def test_look_after_a_run_late_members_and_a_retry_of_all_that_ran():
    sp, g = spec(critical=":PRO", wanted=":1-2"), group(0)
    present = {PRO, ONE, TWO}
    ran = {PRO: ev(), ONE: ev(), TWO: None}
    assert look(sp, g, present, ran, dict.fromkeys(present, 0), False, S) == Looked(Look.LATE, frozenset({TWO}))
    assert late(present, ran) == {TWO} and late(present, dict.fromkeys(present)) is None
    retry = {PRO: ev(Status.UNKNOWN, retry_at=5.0), ONE: ev(), TWO: None}
    assert look(sp, g, present, retry, dict.fromkeys(present, 0), False, S) == Looked(Look.WAIT, again_ns=5 * S)
    assert look(sp, g, present, retry, dict.fromkeys(present, 0), False, 5 * S) == Looked(
        Look.RUN, frozenset({PRO, ONE})
    ), "the whole group that ran runs again, whichever member carries the retry"
