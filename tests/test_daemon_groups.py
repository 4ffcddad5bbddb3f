# SPDX-License-Identifier: MIT
"""Groups of files on the real daemon: segments of one slot handled together."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from conftest import deliver, quiet_for, wait_for

from waitd.journal.history import Status

HRIT = "H-000-{hrit_format:_<6s}-{platform:_<12s}-{channel_name:_<9s}-{segment:_<9s}-{start_time:%Y%m%d%H%M}-__"
POLAR = "{platform}_{start_time:%Y%m%d_%H%M%S}_{segment:2d}.l1b"


def hrit(platform: str, channel: str, segment: str, when: str = "202601011200") -> str:
    """A real HRIT name: H-000-MSG4__-MSG4________-VIS006___-000001___-202601011200-__."""
    return f"H-000-{platform:_<6s}-{platform:_<12s}-{channel:_<9s}-{segment:_<9s}-{when}-__"


def group_handler(station):
    """Notes each run: its group and its arguments' names, one line."""
    runs = station.passdir / "runs"
    station.handler(
        "g",
        f'names=""; for f in "$@"; do names="$names $(basename "$f")"; done\n'
        f'echo "$WAITD_GROUP|$(date +%s.%N)|$names" >> "{runs}"\n',
    )
    return runs


def runs_of(path) -> list[tuple[str, float, list[str]]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        group, at, names = line.split("|")
        out.append((group, float(at), names.split()))
    return out


def test_a_group_runs_once_complete_with_its_members_in_order(station):
    runs = group_handler(station)
    station.table(
        f"x in H-* {station.passdir}/g 0 -1 0 pattern={HRIT} critical=:PRO,:EPI "
        "wanted=VIS006:000001-000002,:PRO,:EPI timeliness=60"
    )
    station.start()
    names = [hrit("MSG4", "", "PRO"), hrit("MSG4", "VIS006", "000002"), hrit("MSG4", "VIS006", "000001")]
    for name in names:
        deliver(station, name, age_s=0)
    station.signal(signal.SIGALRM)
    quiet_for(0.5, lambda: runs_of(runs) == [])
    last = hrit("MSG4", "", "EPI")
    deliver(station, last, age_s=0)
    wait_for(lambda: runs_of(runs), 10, "the group's run once its last member came")
    ((group, _, args),) = runs_of(runs)
    assert args == sorted([*names, last])
    assert group == "x,hrit_format=MSG4,platform=MSG4,start_time=20260101T120000"
    wait_for(lambda: len(station.ends()) == 4, 10, "an end line for each member")
    ends = station.ends()
    assert {e.group for e in ends} == {group} and all(e.exit == 0 for e in ends)
    assert station.stop() == 0


def test_missing_wanted_runs_at_timeliness_missing_critical_never(station):
    runs = group_handler(station)
    station.table(
        f"x in H-* {station.passdir}/g 0 -1 0 pattern={HRIT} critical=:PRO wanted=VIS006:000001-000003 timeliness=2"
    )
    station.start()
    first = time.time()
    deliver(station, hrit("MSG4", "", "PRO"), age_s=0)
    deliver(station, hrit("MSG4", "VIS006", "000001"), age_s=0)
    # Another slot without its critical prologue.
    deliver(station, hrit("MSG4", "VIS006", "000001", "202601011215"), age_s=0)
    wait_for(lambda: runs_of(runs), 10, "the run at timeliness")
    ((group, at, args),) = runs_of(runs)
    assert at - first >= 2 - 0.2, "ran before its timeliness"
    assert args == sorted([hrit("MSG4", "", "PRO"), hrit("MSG4", "VIS006", "000001")])
    wait_for(lambda: "is incomplete" in station.log(), 10, "the incomplete group logged")
    assert "without :PRO" in station.log()
    status = json.loads(station.run("-s", "status", "--json").stdout)
    (incomplete,) = status["records"][0]["incomplete"]
    assert incomplete["group"].endswith("start_time=20260101T121500") and incomplete["missing"] == [":PRO"]
    wait_for(lambda: "incomplete groups:" in station.run("-s", "status").stdout, 10, "the status file to say so")
    quiet_for(0.5, lambda: len(runs_of(runs)) == 1)
    # A member arriving after its group ran: logged as late, not run.
    late = hrit("MSG4", "VIS006", "000002")
    deliver(station, late, age_s=0)
    wait_for(lambda: "arrived after its group" in station.log(), 10, "the late member logged")
    quiet_for(0.5, lambda: len(runs_of(runs)) == 1)
    assert station.stop() == 0


def test_tolerance_slots_and_vary(station):
    runs = group_handler(station)
    (station.root / "b").mkdir()
    (station.root / "c").mkdir()
    station.table(
        f"tol in *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} wanted=:1-2 timeliness=1 tolerance=30",
        f"slot {station.root}/b *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} wanted=:1-2 timeliness=1 slot=10",
        f"vary {station.root}/c *.dat {station.passdir}/g 0 -1 0 "
        "pattern={platform}_{start_time:%Y%m%d_%H%M}_{proc:%H%M%S}_{segment}.dat wanted=:1-2 timeliness=60 vary=proc",
    )
    station.start()
    # 20 s apart: one group; 40 s apart: two.
    for name in ("n19_20260101_120000_01.l1b", "n19_20260101_120020_02.l1b"):
        deliver(station, name, age_s=0)
    for name in ("n18_20260101_130000_01.l1b", "n18_20260101_130040_02.l1b"):
        deliver(station, name, age_s=0)
    # 10-minute slots: 12:01 and 12:09 together, 12:11 apart.
    for name in ("m1_20260101_120100_01.l1b", "m1_20260101_120900_02.l1b", "m1_20260101_121100_01.l1b"):
        deliver(station, name, age_s=0, directory=station.root / "b")
    # A processing time that differs within one group; two platforms: two groups.
    for name in ("a_20260101_1200_120501_1.dat", "a_20260101_1200_120733_2.dat", "b_20260101_1200_120501_1.dat"):
        deliver(station, name, age_s=0, directory=station.root / "c")
    wait_for(lambda: len(runs_of(runs)) == 6, 15, "six group runs")
    groups = sorted(sorted(args) for _, _, args in runs_of(runs))
    assert groups == sorted(
        [
            ["n19_20260101_120000_01.l1b", "n19_20260101_120020_02.l1b"],
            ["n18_20260101_130000_01.l1b"],
            ["n18_20260101_130040_02.l1b"],
            ["m1_20260101_120100_01.l1b", "m1_20260101_120900_02.l1b"],
            ["m1_20260101_121100_01.l1b"],
            ["a_20260101_1200_120501_1.dat", "a_20260101_1200_120733_2.dat"],
        ]
    )
    quiet_for(0.3, lambda: len(runs_of(runs)) == 6)  # b_ (one of two wanted) waits for its timeliness
    assert station.stop() == 0


def test_a_restart_keeps_a_half_complete_groups_timeliness_and_a_killed_group_run_is_status_1(station):
    runs = group_handler(station)
    station.table(f"x in *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} wanted=:1-3 timeliness=3")
    station.start()
    first = time.time()
    deliver(station, "n19_20260101_120000_01.l1b", age_s=0)
    deliver(station, "n19_20260101_120000_02.l1b", age_s=0)
    station.signal(signal.SIGKILL)
    station.proc.wait()
    station.start()
    wait_for(lambda: runs_of(runs), 15, "the group's run at its original timeliness")
    ((_, at, args),) = runs_of(runs)
    assert 3 - 0.2 <= at - first < 3 + 4, "the restart did not keep the group's first arrival"
    assert args == ["n19_20260101_120000_01.l1b", "n19_20260101_120000_02.l1b"]
    assert station.stop() == 0
    # A group run killed with waitd: status 1 for every member, never again.
    for done in station.incoming.iterdir():
        done.unlink()
    station.gated("slow")
    station.table(f"y in *.l1b {station.passdir}/slow 0 -1 0 pattern={POLAR} wanted=:1-2 timeliness=60")
    for name in ("n20_20260101_120000_01.l1b", "n20_20260101_120000_02.l1b"):
        deliver(station, name, age_s=0)
    station.start()
    wait_for(lambda: station.ran(), 10, "the group's run")

    def pid() -> int | None:
        return next((e.pid for e in station.history() if e.pid and e.path.endswith("n20_20260101_120000_01.l1b")), None)

    handler = wait_for(pid, 10, "the pid of the group's run in the history")
    station.signal(signal.SIGKILL)
    station.proc.wait()
    os.killpg(handler, signal.SIGKILL)
    station.start()
    wait_for(
        lambda: (
            {e.path[-26:]: e.status for e in station.ends() if "n20" in e.path}
            == {"n20_20260101_120000_01.l1b": Status.UNKNOWN, "n20_20260101_120000_02.l1b": Status.UNKNOWN}
        ),
        10,
        "status 1 for both members",
    )
    station.signal(signal.SIGALRM)
    quiet_for(0.5, lambda: len(station.ran()) == 1)
    assert station.stop() == 0


def test_a_retry_of_one_member_runs_its_whole_group_once(station):
    """`-s retry` of one member of a failed group once ran that file alone:
    a partial dataset, and twice when two members were retried.  A retry
    takes the group, also across a kill -9 between the retry and its run."""
    runs = station.passdir / "runs"
    code = station.passdir / "code"
    code.write_text("3")
    station.handler(
        "g",
        f'names=""; for f in "$@"; do names="$names $(basename "$f")"; done\n'
        f'echo "$WAITD_GROUP|$(date +%s.%N)|$names" >> "{runs}"\nexit $(cat "{code}")\n',
    )
    station.table(f"x in *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} wanted=:1-3 timeliness=60")
    members = [f"n19_20260101_120000_0{i}.l1b" for i in (1, 2, 3)]
    for name in members:
        deliver(station, name, age_s=0)
    station.start()
    wait_for(lambda: len(station.ends()) == 3, 10, "the group's failed run")
    assert [args for _, _, args in runs_of(runs)] == [members]
    paths = [str(station.incoming / name) for name in members]
    # Two members asked for at once: one run of the three.
    r = station.run("-s", "retry", paths[0], paths[2])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "group x,platform=n19,start_time=20260101T120000 (3 files): to run again now" in r.stdout
    wait_for(lambda: len(runs_of(runs)) == 2, 10, "the group's second run")
    wait_for(lambda: len(station.ends()) == 9, 10, "its ends")  # 3 failed, 3 retries asked, 3 failed
    quiet_for(0.5, lambda: len(runs_of(runs)) == 2)
    assert [args for _, _, args in runs_of(runs)] == [members, members]
    assert {e.runs for e in station.ends()[-3:]} == {2}
    # The retry on disk, waitd killed before it runs (hibernating, it starts
    # nothing): the next waitd runs the group, once, all of it.
    assert station.run("-s", "idle").returncode == 0
    r = station.run("-s", "retry", paths[1])
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: len(station.ends()) == 12, 10, "the retry of every member on disk")
    station.signal(signal.SIGKILL)
    station.proc.wait()
    code.write_text("0")
    station.start()
    wait_for(lambda: len(runs_of(runs)) == 3, 10, "the group's third run")
    wait_for(lambda: sum(1 for e in station.ends() if e.exit == 0) == 3, 10, "its ends, ok")
    quiet_for(0.5, lambda: len(runs_of(runs)) == 3)
    assert [args for _, _, args in runs_of(runs)][-1] == members
    assert station.stop() == 0


def test_a_cancel_of_one_waiting_member_cancels_its_group(station):
    """Cancelling one member of a group still gathering once left the other
    members to be taken for late members of a group that ran (logged so,
    never run, wrongly).  A cancel takes the group, as a retry does."""
    runs = group_handler(station)
    station.table(f"x in *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} wanted=:1-3 timeliness=60")
    station.start()
    for name in ("n19_20260101_120000_01.l1b", "n19_20260101_120000_02.l1b"):
        deliver(station, name, age_s=0)
    gid = "x,platform=n19,start_time=20260101T120000"
    wait_for(
        lambda: (
            [
                g["member_count"]
                for g in json.loads(station.run("-s", "status", "--json").stdout)["records"][0]["open_groups"]
            ]
            == [2]
        ),
        10,
        "the group open with its two members",
    )
    r = station.run("-s", "cancel", str(station.incoming / "n19_20260101_120000_02.l1b"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"cancelled: group {gid} (2 files) will not run" in r.stdout, r.stdout + r.stderr
    ends = station.ends()
    assert len(ends) == 2 and all(e.status is Status.KNOWN and e.error == "cancelled" for e in ends)
    deliver(station, "n19_20260101_120000_03.l1b", age_s=0)
    wait_for(lambda: "arrived after its group" in station.log(), 10, "the member after the cancel: late")
    assert station.log().count("arrived after its group") == 1
    station.signal(signal.SIGALRM)
    quiet_for(0.5, lambda: runs_of(runs) == [])
    assert station.stop() == 0


def test_waiting_counts_only_files_that_will_run_the_others_are_held_with_why(station):
    """ "waiting" and waitd_oldest_waiting_seconds once counted files that
    will never run (a name the pattern does not parse, the members of an
    incomplete group, a late member) until their expiry, so an alert on them
    fired wrongly.  Now they are held, each with why, and the groups still
    gathering are shown with their members and deadline, also after a
    kill -9 (the deadline comes from the spool)."""
    from peers.activemq import free_port
    from test_events_metrics import Scrape

    runs = group_handler(station)
    (station.root / "p").mkdir()
    (station.root / "q").mkdir()
    station.table(
        f"x in *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} critical=:1 wanted=:1-3 timeliness=1",
        f"y {station.root}/p *.d {station.passdir}/g 3600 -1 0 pattern={{platform}}_{{n:d}}.d",
        f"z {station.root}/q *.l1b {station.passdir}/g 0 -1 0 pattern={POLAR} critical=:1 wanted=:1-3 timeliness=60",
    )
    port = free_port()
    station.start("--metrics", f"127.0.0.1:{port}")
    old = 3000
    deliver(station, "n19_20260101_120000_02.l1b", age_s=old)  # its group lacks its critical :1
    deliver(station, "n18_20260101_120000_01.l1b", age_s=old)  # complete at its timeliness: runs
    wait_for(lambda: runs_of(runs), 10, "n18's group run at its timeliness")
    deliver(station, "n18_20260101_120000_02.l1b", age_s=old)  # late
    deliver(station, "junk.l1b", age_s=old)  # does not parse
    deliver(station, "n20_20260101_120000_01.l1b", age_s=old, directory=station.root / "q")  # gathering
    deliver(station, "a_1.d", age_s=old, directory=station.root / "p")  # waits for its age: will run
    deliver(station, "b_x.d", age_s=old, directory=station.root / "p")  # does not parse

    def status() -> dict:
        return json.loads(station.run("-s", "status", "--json").stdout)

    def held(rec: dict) -> dict[str, str]:
        return {h["file"]: h["why"] for h in rec["held"]}

    x = wait_for(lambda: (x := status()["records"][0])["held_count"] == 3 and x, 10, "x's files held")
    assert x["waiting"] == 0 and x["oldest_mtime"] is None and x["open_groups"] == []
    assert held(x) == {
        "junk.l1b": f"does not parse with pattern={POLAR}",
        "n18_20260101_120000_02.l1b": "late: arrived after its group x,platform=n18,start_time=20260101T120000 ran",
        "n19_20260101_120000_02.l1b": "its group is incomplete, without :1",
    }
    z = wait_for(lambda: (z := status()["records"][2])["open_groups"] and z, 10, "z's open group")
    assert z["waiting"] == 0 and held(z) == {"n20_20260101_120000_01.l1b": "its group gathers its members"}
    (gathering,) = z["open_groups"]
    n20 = "z,platform=n20,start_time=20260101T120000"
    assert gathering["group"] == n20 and gathering["members"] == [":1"] and gathering["missing"] == [":2", ":3"]
    assert gathering["files"] == ["n20_20260101_120000_01.l1b"] and gathering["member_count"] == 1
    assert time.time() + 50 < gathering["deadline"] <= time.time() + 60
    assert z["held"][0]["until"] == gathering["deadline"]
    y = status()["records"][1]
    assert y["waiting"] == 1 and held(y) == {"b_x.d": "does not parse with pattern={platform}_{n:d}.d"}
    text = wait_for(
        lambda: (
            "  held: 3 file(s): junk.l1b (does not parse with pattern=" in (t := station.run("-s", "status").stdout)
            and t
        ),
        5,
        "the text status (its file is rewritten at most once a second)",
    )
    assert f"  open group {n20}: members: :1; missing: :2, :3; deadline in " in text
    # The metrics: the one file that will run is waiting; the others held.
    m = wait_for(lambda: (s := Scrape(port)).get("waitd_files_held", record="1", telem="x") == 3 and s, 10, "gauges")
    assert m.get("waitd_files_waiting", record="1", telem="x") == 0
    assert m.get("waitd_oldest_waiting_seconds", record="1", telem="x") == 0
    assert m.get("waitd_files_held", record="2", telem="y") == 1
    assert m.get("waitd_files_waiting", record="2", telem="y") == 1
    assert old - 60 < m.get("waitd_oldest_waiting_seconds", record="2", telem="y") < old + 60
    # kill -9: the next waitd shows the same deadline for the gathering group.
    station.signal(signal.SIGKILL)
    station.proc.wait()
    station.start()
    again = wait_for(lambda: status()["records"][2]["open_groups"], 10, "the open group after the restart")
    assert again[0]["deadline"] == pytest.approx(gathering["deadline"], abs=0.01)
    for name in ("n20_20260101_120000_02.l1b", "n20_20260101_120000_03.l1b"):
        deliver(station, name, age_s=old, directory=station.root / "q")
    wait_for(lambda: len(runs_of(runs)) == 2, 10, "n20's group once complete")
    z = wait_for(lambda: (z := status()["records"][2])["open_groups"] == [] and z, 10, "no group gathering")
    assert z["open_groups_count"] == 0 and z["held_count"] == 0 and z["waiting"] == 0
    assert station.stop() == 0


def test_a_second_file_for_a_member_is_logged_once_while_it_is_written(station):
    """A duplicate segment written in place (appended to, closed, again) was
    logged at each change the writer made: a listing forgot it was told."""
    station.recorder()
    station.table(f"x in *.l1b {station.passdir}/rec 5 -1 0 pattern={POLAR} wanted=:1-3 timeliness=60")
    station.start()
    deliver(station, "n19_20260101_120000_01.l1b", age_s=0)
    second = station.incoming / "n19_20260101_120010_01.l1b"

    def told() -> int:
        return station.log().count("a second file for member :1")

    for part in "abc":
        with open(second, "a") as f:
            f.write(part)
        wait_for(told, 10, "the second file logged")
        station.signal(signal.SIGALRM)  # and a listing
        quiet_for(0.5, lambda: told() == 1)
    assert station.stop() == 0
