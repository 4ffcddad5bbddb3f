# SPDX-License-Identifier: MIT
"""HUP keeps what the daemon knows.

A record is the same work when its directory, template and process are the
same, whatever its number: its running handler, its counters and its last
run survive a reload.  A directory replaced under waitd is watched again,
and a removed logfiles/ is made again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal

from conftest import deliver, quiet_for, wait_for


def reload(station, count: int) -> None:
    station.signal(signal.SIGHUP)
    wait_for(lambda: station.log().count("table reloaded") >= count, 10, f"reload {count}")


def test_record_renumbered_by_a_reload_keeps_its_running_handler(station):
    station.gated()
    (station.root / "other").mkdir()
    x = f"x in *.d {station.passdir}/gated 0 0 0"
    y = f"y {station.root}/other *.e {station.passdir}/gated 0 -1 0"
    station.table(x)
    station.drop("a.d", age_s=20)
    station.drop("b.d", age_s=10)
    station.start()
    a, b = os.fsencode(station.incoming / "a.d"), os.fsencode(station.incoming / "b.d")
    wait_for(lambda: station.ran() == [a], 10, "a.d's run")
    station.table(y, x)  # x becomes record 2
    reload(station, 1)
    quiet_for(0.5, lambda: station.ran() == [a])
    station.open_gate("a.d")
    wait_for(lambda: not (station.incoming / "a.d").exists(), 10, "a.d removed by keep-after 0")
    wait_for(lambda: station.ran() == [a, b], 10, "b.d's run, after a.d's")
    # Out of the table and back while b.d runs: still one handler.
    station.drop("c.d", age_s=5)
    station.table(y)
    reload(station, 2)
    station.table(y, x)
    reload(station, 3)
    quiet_for(0.5, lambda: station.ran() == [a, b])
    station.open_gate("b.d")
    wait_for(lambda: not (station.incoming / "b.d").exists(), 10, "b.d removed by keep-after 0")
    station.open_gate("c.d")
    wait_for(lambda: len(station.ends()) == 3, 10, "c.d's run")
    assert station.stop() == 0
    # The runs never overlapped: each started after the one before ended.
    order = []
    for line in station.log().splitlines():
        if ": started " in line:
            order.append(("start", line.split(" on ")[1].split(" (pid")[0][-3:]))
        elif ": exit status" in line:
            order.append(("end", line.split(": exit status")[0][-3:]))
    assert order == [(what, name) for name in ("a.d", "b.d", "c.d") for what in ("start", "end")]


def test_reload_keeps_counts_and_last_run(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    for name in ("a.d", "b.d"):
        deliver(station, name)
    wait_for(lambda: len(station.ends()) == 2, 10, "two runs")
    reload(station, 1)
    deliver(station, "c.d")
    wait_for(lambda: len(station.ends()) == 3, 10, "the third run")

    def status() -> dict:
        try:
            return json.loads((station.passdir / "waitd.status").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    wait_for(lambda: status().get("records", [{}])[0].get("counters", {}).get("ok") == 3, 10, "3 ok in the status")
    out = station.run("-s", "status").stdout
    assert "since start: 3 ok, 0 failed" in out
    assert "last run: " + str(station.incoming / "c.d") in out
    assert station.stop() == 0


def test_directory_replaced_is_watched_again(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    # A long interval: only inotify can find files in time.
    station.start(interval=60)
    deliver(station, "a.d")
    wait_for(lambda: len(station.ends()) == 1, 10, "a file in the first directory")
    os.rename(station.incoming, station.passdir / "in.old")
    station.incoming.mkdir()
    # Seen at once if the new directory was there when inotify reported the
    # move, else at the next listing: an operator's wake-up here.
    station.signal(signal.SIGALRM)
    wait_for(lambda: "replaced by another directory" in station.log() or " is back" in station.log(), 10)
    deliver(station, "b.d")
    wait_for(lambda: len(station.ends()) == 2, 10, "a file in the new directory, found by inotify")
    # A file still open for writing in the new directory waits for its close.
    with open(station.incoming / "c.d", "wb") as f:
        f.write(b"half")
        f.flush()
        deliver(station, "d.d")  # handled: waitd has seen c.d's creation by then
        wait_for(lambda: len(station.ends()) == 3, 10, "d.d")
        quiet_for(0.3, lambda: len(station.ends()) == 3)
        f.write(b" and the rest")
    wait_for(lambda: len(station.ends()) == 4, 10, "c.d after its close")
    assert station.ends()[-1].version.size == len(b"half and the rest")
    # And still after a reload.
    reload(station, 1)
    deliver(station, "e.d")
    wait_for(lambda: len(station.ends()) == 5, 10, "a file after the reload")
    assert station.stop() == 0


def test_removed_logfiles_directory_is_made_again(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    deliver(station, "a.d")
    wait_for(lambda: len(station.ends()) == 1, 10, "the first run")
    shutil.rmtree(station.passdir / "logfiles")
    deliver(station, "b.d")
    wait_for(lambda: len(station.ends()) == 2, 10, "the second run")
    assert all(e.status == 2 and e.exit == 0 for e in station.ends())
    assert "logfiles" in station.log() and "made it again" in station.log()
    assert (station.passdir / "logfiles" / "incoming.1.B").exists()
    assert station.stop() == 0


def test_a_reload_that_changes_a_records_process_warns_how_many_files_run_again(station):
    """The history is kept by process: a reload that changes a record's
    process-name makes every file the old one handled (and keep-after kept)
    new to the new one, handled again.  That once happened without a word."""
    station.recorder()
    station.recorder("rec2")
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    for name in ("a.d", "b.d"):
        station.drop(name, age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 2, 10, "both handled")
    station.table(f"x in *.d {station.passdir}/rec2 0 -1 0")
    reload(station, 1)
    assert (
        f"record 1: process-name changed from {station.passdir}/rec to {station.passdir}/rec2: "
        "2 file(s) handled by the old one will be handled again by the new one" in station.log()
    )
    wait_for(lambda: len(station.ends()) == 4, 10, "both handled again, as warned")
    # The same process again, or another record: no warning.
    reload(station, 2)
    assert station.log().count("process-name changed") == 1
    assert station.stop() == 0
