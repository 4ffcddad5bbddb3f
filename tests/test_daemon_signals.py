# SPDX-License-Identifier: MIT
"""Every row of DESIGN.md's signal table, on the real daemon.

TERM past --stop-timeout (KILL to the handler's process group) is
test_daemon_faults.py::test_hung_handler_killed_with_its_group_on_stop.
"""

from __future__ import annotations

import os
import signal

from conftest import wait_for


def test_hup_rereads_table_and_reopens_log(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start(interval=60)
    other = station.passdir / "other"
    other.mkdir()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0", f"y other *.dat {station.passdir}/rec 0 -1 0")
    os.rename(station.passdir / "incoming.log", station.passdir / "incoming.log.1")
    station.signal(signal.SIGHUP)
    wait_for(lambda: "table reloaded: 2 records, 2 active" in station.log(), 5, "the reload in a new log")
    station.drop("a.dat", directory=other)
    wait_for(lambda: station.ran() == [os.fsencode(other / "a.dat")], 5, "the new record to work")
    assert "table reloaded" not in (station.passdir / "incoming.log.1").read_text()
    station.stop()


def test_hup_with_bad_table_keeps_old_one(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start(interval=60)
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1", "# fine", "y in *.z rec zero -3 1")
    station.signal(signal.SIGHUP)
    wait_for(lambda: "previous table stays in force" in station.log(), 5)
    log = station.log()
    assert f"{station.passdir}/incoming:1: expected 7 fields, got 6" in log
    assert f"{station.passdir}/incoming:3: wait-until-age 'zero' is not a plain decimal number such as 30 or 0.5" in log
    assert f"{station.passdir}/incoming:3: keep-after '-3' is not a whole number such as 5, or -1" in log
    station.drop("a.g8")
    wait_for(lambda: station.ran(), 5, "the old table still working")
    station.stop()


def test_hup_lets_running_handler_finish(station):
    station.handler("slow", f'sleep 1; echo done > "{station.passdir}/done"\n')
    station.table(f"x in *.g8 {station.passdir}/slow 0 -1 0")
    station.drop("a.g8")
    station.start()
    wait_for(lambda: [e for e in station.history() if e.status == 0], 5)
    station.signal(signal.SIGHUP)
    wait_for(lambda: station.ends(), 5)
    assert station.ends()[0].exit == 0 and (station.passdir / "done").exists()
    station.stop()


def test_term_waits_for_running_handler_then_exits_0(station):
    station.handler("slow", "sleep 1\n")
    station.table(f"x in *.g8 {station.passdir}/slow 0 -1 0")
    station.drop("a.g8")
    station.drop("b.g8", age_s=-0.5)
    station.start()
    wait_for(lambda: [e for e in station.history() if e.status == 0], 5)
    assert station.stop() == 0
    ends = station.ends()
    assert len(ends) == 1 and ends[0].exit == 0, "TERM did not wait for the handler"
    assert {e.path for e in station.history() if e.status == 0} == {str(station.incoming / "a.g8")}, (
        "a handler started after TERM"
    )
    assert not (station.passdir / "waitd.pid").exists()


def test_int_hibernates_and_cont_resumes(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 0 0.0001")
    station.start()
    station.signal(signal.SIGINT)
    wait_for(lambda: "hibernating" in station.log(), 5)
    station.drop("a.g8")
    station.drop("b.g8", age_s=3600)  # expired, but nothing is removed in hibernation
    station.signal(signal.SIGALRM)
    wait_for(lambda: station.log().count("waitd: INT") == 1 and "a.g8" not in station.log(), 2)
    # A few full passes happen while hibernating; nothing may run or vanish.
    station.signal(signal.SIGALRM)
    wait_for(lambda: os.path.exists(station.passdir / "waitd.status"), 5)
    assert not station.ran() and (station.incoming / "b.g8").exists()
    station.signal(signal.SIGCONT)
    wait_for(lambda: station.ran(), 5, "a run after CONT")
    wait_for(lambda: not (station.incoming / "b.g8").exists(), 5, "expiry after CONT")
    station.stop()


def test_idle_start_with_i_flag(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("a.g8", age_s=5)
    station.start("-i")
    assert "hibernating" in station.log()
    station.signal(signal.SIGCONT)
    wait_for(lambda: station.ran(), 5, "a run after CONT")
    station.stop()


def test_alrm_scans_now(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start("--poll", interval=60)
    station.drop("a.g8")
    for _ in range(10):  # ten ALRMs coalesce into scans; none is harmful
        station.signal(signal.SIGALRM)
    wait_for(lambda: station.ran(), 5, "a scan on ALRM")
    station.stop()
    assert len(station.ends()) == 1


def test_chld_reaps_at_once(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    for i in range(5):
        station.drop(f"{i}.g8", age_s=10 - i)
    # A long interval: only SIGCHLD can make the next run follow the last.
    station.start(interval=60)
    wait_for(lambda: len(station.ends()) == 5, 5, "five runs back to back")
    station.stop()
