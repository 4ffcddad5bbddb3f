# SPDX-License-Identifier: MIT
"""keep-after and hours-too-old on the real daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from conftest import deliver, quiet_for, wait_for


def test_keep_after_keeps_newest_handled_files(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 2 0")
    for i in range(5):
        station.drop(f"{i}.g8", age_s=100 - i)
    station.start()
    wait_for(lambda: len(station.ends()) == 5)
    wait_for(lambda: sorted(os.listdir(station.incoming)) == ["3.g8", "4.g8"], 5, "pruning to two")
    # The removals' log lines follow the unlinks, at the end of their turn.
    wait_for(lambda: "removed" in station.log() and "keep-after is 2" in station.log(), 5, "the removals' log lines")
    station.stop()


def test_keep_after_never_removes_failed_files(station):
    station.handler("fail", "exit 3\n")
    station.table(f"x in *.g8 {station.passdir}/fail 0 0 0")
    station.drop("a.g8", age_s=10)
    station.drop("b.g8", age_s=9)
    station.start()
    wait_for(lambda: len(station.ends()) == 2)
    station.signal(__import__("signal").SIGALRM)
    wait_for(lambda: os.path.exists(station.passdir / "waitd.status"), 5)
    assert sorted(os.listdir(station.incoming)) == ["a.g8", "b.g8"]
    assert all(e.status == 2 and e.exit == 3 for e in station.ends())
    station.stop()


def test_expired_files_removed_handled_or_not(station):
    station.handler("never", "exit 0\n")
    # Wait age larger than the expiry: nothing is ever handled, all expires.
    station.table(f"x in *.g8 {station.passdir}/never 100 -1 0.0003")  # about one second
    station.drop("a.g8")
    station.start()
    wait_for(lambda: not (station.incoming / "a.g8").exists(), 8, "expiry")
    wait_for(lambda: " WARNING record 1: removed" in station.log(), 8, "the removal's log line (after the unlink)")
    assert "it was never handled" in station.log()
    assert not station.history()
    station.stop()


def test_two_records_on_one_file_prune_only_when_both_done(station):
    station.recorder("rec1")
    go = station.passdir / "go"
    station.handler("slow", f'while [ ! -e "{go}" ]; do sleep 0.02; done\n')
    station.table(f"a in *.g8 {station.passdir}/rec1 0 0 0", f"b in *.g8 {station.passdir}/slow 0 0 0")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(lambda: station.ran() and len(station.ends()) == 1, 5, "the first record's run")
    station.signal(signal.SIGALRM)  # a pass more, to be sure it would have removed it
    wait_for(lambda: station.passdir.joinpath("waitd.status").exists(), 5)
    assert (station.incoming / "a.g8").exists(), "removed before the second record handled it"
    go.touch()
    wait_for(lambda: len(station.ends()) == 2, 5)
    wait_for(lambda: not (station.incoming / "a.g8").exists(), 5, "removal once both are done")
    station.stop()


def test_non_matching_names_are_never_touched(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 0 0.0001")
    station.drop("keep.txt", age_s=100000)
    station.drop(".hidden.g8", age_s=100000)
    station.drop("a.g8", age_s=100000)
    station.start()
    wait_for(lambda: not (station.incoming / "a.g8").exists(), 5)
    assert sorted(os.listdir(station.incoming)) == [".hidden.g8", "keep.txt"]
    station.stop()


def test_keep_after_waits_for_an_inactive_record_sharing_the_file(station):
    station.recorder()
    late = station.passdir / "late"
    station.table(f"a in *.d {station.passdir}/rec 0 0 0", f"b in *.d {late} 0 0 0")
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1, 10, "record 1's run")
    station.signal(signal.SIGALRM)
    quiet_for(0.6, lambda: (station.incoming / "a.d").exists())
    # Record 2 comes to life: once it has handled the file too, it goes.
    station.recorder("late")
    station.signal(signal.SIGHUP)
    wait_for(lambda: len(station.ends()) == 2, 10, "record 2's run")
    wait_for(lambda: not (station.incoming / "a.d").exists(), 10, "the removal once both handled it")
    assert station.stop() == 0


def test_record_on_passdir_never_touches_waitds_own_files(station):
    ran = station.root / "ran"
    handler = station.root / "h"
    handler.write_text(f'#!/bin/sh\nprintf "%s\\0" "$1" >> "{ran}"\n')
    handler.chmod(0o755)
    station.table(f"x . * {handler} 0 0 0")
    r = station.run("--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSDIR" in r.stderr and "never handled or removed" in r.stderr
    station.start()
    station.drop("a.x", directory=station.passdir)
    wait_for(lambda: ran.exists() and ran.read_bytes().count(b"\0") >= 1, 10, "a.x handled")
    wait_for(lambda: not (station.passdir / "a.x").exists(), 10, "a.x removed by keep-after 0")
    station.signal(signal.SIGALRM)
    quiet_for(0.6, lambda: ran.read_bytes() == os.fsencode(station.passdir / "a.x") + b"\0")
    for name in ("incoming", "incoming.log", "incoming.history", "waitd.pid", "waitd.status", "logfiles"):
        assert (station.passdir / name).exists(), name
    assert station.stop() == 0
    assert (station.passdir / "incoming.history").exists()


def test_a_file_that_cannot_be_removed_is_logged_once_and_shown(station):
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    station.recorder()
    # hours-too-old 0.0003 = about 1 s
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0.0003")
    station.start(interval=0.05)
    deliver(station, "a.d", age_s=0)
    wait_for(lambda: len(station.ends()) == 1, 10, "the run")
    if subprocess.run(["chattr", "+i", str(station.incoming)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        wait_for(lambda: "cannot remove" in station.log(), 10, "the failed removal")
        quiet_for(1.0, lambda: station.log().count("cannot remove") == 1)
        out = station.run("-s", "status").stdout
        assert "cannot remove" in out and "a.d" in out
    finally:
        subprocess.run(["chattr", "-i", str(station.incoming)], capture_output=True)
    wait_for(lambda: not (station.incoming / "a.d").exists(), 10, "the removal once it can be done")
    assert station.stop() == 0


def test_a_file_removed_by_two_records_is_logged_and_counted_once(station):
    station.recorder()
    station.recorder("rec2")
    station.table(f"a in *.d {station.passdir}/rec 0 -1 0.0003", f"b in a* {station.passdir}/rec2 0 -1 0.0003")
    station.start(interval=0.05)
    deliver(station, "a.d", age_s=0)
    wait_for(lambda: len(station.ends()) == 2, 10, "both runs")
    wait_for(lambda: not (station.incoming / "a.d").exists(), 10, "the expiry")
    wait_for(lambda: ": removed " in station.log(), 10, "the removal's log line (after the unlink)")
    station.signal(signal.SIGALRM)
    quiet_for(0.3, lambda: station.log().count(": removed ") == 1)

    def removed() -> int:
        state = json.loads((station.passdir / "waitd.status").read_text())
        return sum(r["counters"]["removed"] for r in state["records"])

    wait_for(lambda: removed() == 1, 10, "the count in the status")
    quiet_for(0.3, lambda: removed() == 1)
    assert station.stop() == 0


def test_log_lines_come_in_the_order_things_happened(station):
    station.recorder()
    station.handler("fail", "exit 3\n")
    station.table(f"x in *.d {station.passdir}/rec 0 0 0", f"y in *.f {station.passdir}/fail 0 -1 0")
    for i in range(6):
        station.drop(f"{i}.f", age_s=60 - i)
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: "no handler starts for" in station.log(), 10, "the back-off")
    wait_for(lambda: ": removed " in station.log(), 10, "a.d removed")
    log = station.log()
    # A run's end comes before the removal it made possible.
    assert log.index("on " + str(station.incoming / "a.d") + ": exit status 0") < log.index(": removed ")
    # The fifth failure comes before the back-off it triggers.
    fails = [i for i in range(len(log)) if log.startswith("exit status 3", i)]
    assert len(fails) >= 5 and fails[4] < log.index("no handler starts for")
    assert station.stop() == 0


def test_keep_after_removes_a_file_once_its_run_ended_not_at_the_next_poll(station):
    # A long interval: keep-after must not wait for the next poll, but act
    # in the turn that writes the run's end.
    station.table(f"x in *.g8 {station.passdir}/rec 0 0 0")
    station.recorder()
    station.start(interval=60)
    station.drop("a.g8", age_s=100)
    wait_for(lambda: station.ends(), 10, "a.g8 handled")
    wait_for(lambda: not (station.incoming / "a.g8").exists(), 5, "a.g8 removed by keep-after 0, at once")
    # The turn's log lines are written when the turn is over, just after the
    # removal: wait for the line (the 60 s interval holds any later poll).
    wait_for(lambda: "keep-after is 0" in station.log(), 5, "the removal's log line")
    station.stop()
