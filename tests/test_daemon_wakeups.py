# SPDX-License-Identifier: MIT
"""Wake-ups: inotify makes waitd prompt; polling still works without it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from conftest import wait_for


def test_inotify_wakes_at_once_despite_long_interval(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start(interval=60)
    tmp = station.drop(".a.tmp", b"data")
    os.rename(tmp, station.incoming / "a.g8")
    t0 = time.monotonic()
    wait_for(lambda: station.ran(), 5, "a run started by the inotify event")
    assert time.monotonic() - t0 < 5
    assert station.ran() == [os.fsencode(station.incoming / "a.g8")]  # not the dot file
    station.stop()


@pytest.mark.parametrize("news", [False, True], ids=["quiet", "news-of-no-record-s-file"])
def test_wakes_exactly_when_wait_age_is_reached(station, news):
    # With `news` (issue 21, round six): a wake-up for inotify news that
    # touch no record's file makes no turn and keeps the deadline the last
    # turn took; a file still reaches its wait age then, neither before
    # nor much after.
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 1.5 -1 0")
    station.start(interval=60)
    station.drop("a.g8")
    made = os.stat(station.incoming / "a.g8").st_mtime
    deadline = time.monotonic() + 6
    while news and not station.ends() and time.monotonic() < deadline:
        station.drop(".b.tmp", b"x")  # CREATE, CLOSE_WRITE: no template's
        os.unlink(station.incoming / ".b.tmp")
        time.sleep(0.02)  # a stream of news, not a wait for the result
    wait_for(lambda: station.ends(), max(1, deadline - time.monotonic()), "the run after the wait age")
    started = [e for e in station.history() if e.status == 0][0].at
    assert started - made >= 1.5, "handled before its wait age"
    assert started - made < 3.0, "not woken at the wait age"
    station.stop()


def test_polling_alone_finds_files(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start("--poll", interval=0.3)
    station.drop("a.g8")
    wait_for(lambda: station.ends(), 5, "the poll to find the file")
    assert "inotify" not in station.log() or "unavailable" not in station.log()
    station.stop()


# In a user namespace of its own, where no inotify instance is allowed
# (the limit is per namespace since Linux 5.11): the real inotify_init fails.
NO_INOTIFY = (
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"',
    "sh",
)


def _namespaces_work() -> bool:
    try:
        return subprocess.run([*NO_INOTIFY, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_files_are_handled_when_inotify_is_unavailable(station):
    if not _namespaces_work():
        pytest.skip("no user namespaces here to take inotify away")
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start(interval=0.3, prefix=NO_INOTIFY)
    station.drop("a.g8")
    wait_for(lambda: station.ends(), 5, "the poll to find the file")
    assert "inotify unavailable (Too many open files); polling every interval only" in station.log()
    assert [(e.status, e.exit) for e in station.ends()] == [(2, 0)]
    assert len(station.ran()) == 1
    station.stop()


def test_file_still_written_is_not_handled_until_still(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 1 -1 0")
    station.start(interval=0.2)
    path = station.incoming / "slow.g8"
    with open(path, "wb") as f:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            f.write(b"x" * 100)
            f.flush()
            os.utime(path)  # the writer keeps the mtime moving
            assert not station.ran(), "handled while still being written"
            time.sleep(0.1)
    wait_for(lambda: station.ends(), 5)
    assert station.ends()[0].version.size == os.stat(path).st_size
    station.stop()


def test_file_open_for_writing_waits_for_its_close(station):
    """With inotify, wait age 0 does not mean 'before the writer is done'."""
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.start(interval=0.1)
    path = station.incoming / "a.g8"
    with open(path, "wb") as f:
        f.write(b"part one")
        f.flush()
        station.signal(__import__("signal").SIGALRM)  # a full listing sees it too
        wait_for(lambda: "waitd.status" in os.listdir(station.passdir), 5)
        for _ in range(5):  # several passes while the writer holds it open
            station.signal(__import__("signal").SIGALRM)
        assert not station.ran(), "handled while its writer still had it open"
        f.write(b" and two")
    wait_for(lambda: station.ends(), 5, "the run once the writer closed it")
    station.stop()
    assert [e.version.size for e in station.ends()] == [len(b"part one and two")]
