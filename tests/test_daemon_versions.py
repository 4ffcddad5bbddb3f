# SPDX-License-Identifier: MIT
"""File versions: a file rewritten in place is a new delivery.

A producer that overwrites a file in place (scp, an FTP overwrite) keeps its
inode but changes its size and mtime.  That new version must be handled,
and neither keep-after nor expiry may remove it on the strength of the old
version's run or arrival.
"""

from __future__ import annotations

import os
import signal

from conftest import wait_for


def rewrite_in_place(path: os.PathLike[str] | str, data: bytes) -> None:
    ino = os.stat(path).st_ino
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)
    assert os.stat(path).st_ino == ino


def test_file_rewritten_during_its_run_is_handled_again_not_removed(station):
    seen = station.passdir / "seen"
    station.handler(
        "h",
        f'cat "$1" >> "{seen}"; echo >> "{seen}"\n'
        f'i=0; while [ ! -e "{station.root}/go" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n',
    )
    station.table(f"x in *.d {station.passdir}/h 0 0 0")
    station.start()
    path = station.incoming / "x.d"
    station.drop("x.d", b"one", age_s=5)
    wait_for(lambda: seen.exists() and seen.read_text() == "one\n", 10, "the first version's run")
    rewrite_in_place(path, b"second version")
    (station.root / "go").touch()
    wait_for(lambda: len(station.ends()) == 2, 10, "the second version's run")
    wait_for(lambda: not path.exists(), 10, "the second version removed by keep-after 0")
    wait_for(lambda: ": removed " in station.log(), 10, "the removal's log line (written after the unlink)")
    assert seen.read_text() == "one\nsecond version\n"
    ends = station.ends()
    assert [e.version.size for e in ends] == [3, 14]
    log = station.log()
    # Removed once, and only after the run of the version it removes.
    assert log.count(": removed ") == 1
    assert log.index(": removed ") > log.rindex("exit status 0")
    assert station.stop() == 0


def test_poll_sees_an_in_place_redelivery_and_does_not_expire_it_early(station):
    station.recorder()
    # hours-too-old 0.001 = 3.6 s, counted from the arrival of each version.
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0.001")
    path = station.incoming / "a.d"
    station.drop("a.d", b"one")
    # The directory's mtime is old: nothing makes waitd list it again.
    old = os.stat(station.incoming).st_mtime - 60
    os.utime(station.incoming, (old, old))
    station.start("--poll", interval=0.1)
    wait_for(lambda: len(station.ends()) == 1, 10, "the first version's run")
    rewrite_in_place(path, b"two!")
    wait_for(lambda: len(station.ends()) == 2, 10, "the in-place redelivery to run")
    assert [e.version.size for e in station.ends()] == [3, 4]
    wait_for(lambda: not path.exists(), 15, "the second version to expire")
    assert "never handled" not in station.log()
    assert station.stop() == 0


def test_a_rewrite_after_the_run_is_not_removed_as_handled(station):
    # keep-after 0 removes a handled file at once; a version written after
    # the run (and not yet seen by waitd: --poll with a long interval) must
    # not go with it.
    station.gated()
    station.table(f"x in *.d {station.passdir}/gated 0 0 0")
    station.start("--poll", interval=30)
    path = station.incoming / "a.d"
    station.drop("a.d", b"one", age_s=5)
    station.signal(signal.SIGALRM)
    wait_for(lambda: station.ran() == [os.fsencode(path)], 10, "the run")
    rewrite_in_place(path, b"two!")
    station.open_gate("a.d")
    wait_for(lambda: len(station.ends()) == 1, 10, "the end of the first run")
    wait_for(lambda: len(station.ends()) == 2, 10, "the new version to run")
    wait_for(lambda: not path.exists(), 10, "the new version removed after its own run")
    assert [e.version.size for e in station.ends()] == [3, 4]
    assert station.stop() == 0


def test_under_a_watch_an_in_place_redelivery_is_seen_by_inotify(station):
    """A poll under an inotify watch no longer stats the files it knows
    (issue 21): the kernel's report of the writer's close finds the new
    version of a handled file, among files that stay handled."""
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    for i in range(50):
        station.drop(f"k{i:02d}.d", b"kept")
    path = station.incoming / "a.d"
    station.drop("a.d", b"one")
    station.start(interval=0.2)
    wait_for(lambda: len(station.ends()) == 51, 10, "the first runs")
    station.drop("b.d", b"new")  # the directory changes: polls list it again
    wait_for(lambda: len(station.ends()) == 52, 10, "the new file's run")
    rewrite_in_place(path, b"two!")
    wait_for(lambda: len(station.ends()) == 53, 10, "the in-place redelivery to run")
    assert [e.version.size for e in station.ends() if e.path.endswith("/a.d")] == [3, 4]
    assert station.stop() == 0
