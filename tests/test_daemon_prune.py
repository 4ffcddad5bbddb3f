# SPDX-License-Identifier: MIT
"""keep-after and hours-too-old on the real daemon."""

from __future__ import annotations

import os
import time

from conftest import wait_for


def test_keep_after_keeps_newest_handled_files(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 2 0")
    for i in range(5):
        station.drop(f"{i}.g8", age_s=100 - i)
    station.start()
    wait_for(lambda: len(station.ends()) == 5)
    wait_for(lambda: sorted(os.listdir(station.incoming)) == ["3.g8", "4.g8"], 5, "pruning to two")
    assert "removed" in station.log() and "keep-after is 2" in station.log()
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
    assert "it was never handled" in station.log() and " WARNING record 1: removed" in station.log()
    assert not station.history()
    station.stop()


def test_archival_mtime_is_not_expired_on_arrival(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 4")
    station.drop("old.g8")
    t = time.mktime((2001, 12, 14, 18, 42, 16, 0, 0, -1))
    os.utime(station.incoming / "old.g8", (t, t))  # as rsync -t or cp -p leave it
    station.start()
    wait_for(lambda: station.ends(), 5)
    assert (station.incoming / "old.g8").exists()
    assert station.ends()[0].mtime == int(t)
    station.stop()


def test_two_records_on_one_file_prune_only_when_both_done(station):
    station.recorder("rec1")
    station.handler("slow", "sleep 1.2\n")
    station.table(f"a in *.g8 {station.passdir}/rec1 0 0 0", f"b in *.g8 {station.passdir}/slow 0 0 0")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(lambda: station.ran(), 5)
    assert (station.incoming / "a.g8").exists(), "removed before the second record handled it"
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
