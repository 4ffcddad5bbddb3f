# SPDX-License-Identifier: MIT
"""The classic daemon: oldest first, one at a time, exact names, history."""

from __future__ import annotations

import os

from conftest import wait_for

NAUGHTY = [
    b"with space.g8",
    b"new\nline.g8",
    b"-leading-dash.g8",
    b"\xff\xfe not utf8.g8",
    b"tab\there.g8",
    b"quote'\"$(touch pwned)`touch pwned2`;rm -rf x.g8",
    b"back\\slash.g8",
]


def test_three_old_files_oldest_first_without_overlap(station):
    station.handler(
        "h", f'echo "start $1" >> "{station.passdir}/order"; sleep 0.2; echo "end $1" >> "{station.passdir}/order"\n'
    )
    station.table(f"gvar {station.incoming} *.g8 {station.passdir}/h 1 -1 4")
    for i, age in enumerate((100, 300, 200)):
        station.drop(f"f{i}.g8", age_s=age)
    station.start()
    wait_for(lambda: len(station.ends()) == 3, 15, "three runs")
    lines = (station.passdir / "order").read_text().splitlines()
    names = [os.path.basename(x.split(" ", 1)[1]) for x in lines]
    assert [x.split()[0] for x in lines] == ["start", "end"] * 3, "runs overlapped"
    assert names == ["f1.g8", "f1.g8", "f2.g8", "f2.g8", "f0.g8", "f0.g8"]
    assert all(e.status == 2 and e.exit == 0 for e in station.ends())
    assert station.stop() == 0


def test_strange_names_reach_handler_byte_for_byte(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    paths = [station.drop(name, age_s=10) for name in NAUGHTY]
    station.start()
    wait_for(lambda: len(station.ends()) == len(NAUGHTY), 15, "every file handled")
    assert sorted(station.ran()) == sorted(paths)
    assert sorted(os.fsencode(e.path) for e in station.ends()) == sorted(paths)
    assert not (station.incoming / "pwned").exists() and not (station.passdir / "pwned").exists()
    station.stop()
    # The file is plain ASCII and every line splits into the same fields.
    raw = (station.passdir / "incoming.history").read_bytes()
    assert raw.isascii()
    assert all(len(line.split(b" ")) >= 4 for line in raw.splitlines())


def test_history_survives_restart_nothing_runs_twice(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1)
    station.stop()
    station.drop("b.g8", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 2)
    station.stop()
    assert [os.path.basename(p) for p in station.ran()] == [b"a.g8", b"b.g8"]


def test_redelivered_file_runs_again(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("a.g8", b"one", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1)
    # Same name, same mtime second, different content and inode.
    tmp = station.drop(".a.tmp", b"second", age_s=5)
    os.rename(tmp, station.incoming / "a.g8")
    station.signal(__import__("signal").SIGALRM)
    wait_for(lambda: len(station.ends()) == 2)
    station.stop()
