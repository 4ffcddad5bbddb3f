# SPDX-License-Identifier: MIT
"""--once: drain what is ready, prune, exit."""

from __future__ import annotations

import json
import os


def test_once_handles_ready_files_and_exits(station):
    station.recorder()
    # A wait age of a minute: young.g8 stays young through both passes,
    # however long a loaded machine takes to start them.
    station.table(f"x in *.g8 {station.passdir}/rec 60 1 0")
    for i in range(3):
        station.drop(f"{i}.g8", age_s=120 - i)
    station.drop("young.g8")  # not ready: younger than the wait age
    r = station.run("--once")
    assert r.returncode == 0, r.stderr
    assert [os.path.basename(p) for p in station.ran()] == [b"0.g8", b"1.g8", b"2.g8"]
    assert sorted(os.listdir(station.incoming)) == ["2.g8", "young.g8"]
    r = station.run("--once")
    assert r.returncode == 0 and len(station.ran()) == 3, "ran a file twice"


def test_once_exits_1_when_a_handler_cannot_start(station):
    h = station.passdir / "h"
    h.write_text("#!/nonexistent/interpreter\n")
    h.chmod(0o755)
    station.table(f"x in *.g8 {h} 0 -1 0")
    station.drop("a.g8", age_s=5)
    station.drop("b.g8", age_s=4)
    r = station.run("--once")
    assert r.returncode == 1
    events = station.history()
    # (compacted after the first pass to the latest line of each file)
    assert [(os.path.basename(e.path), e.status) for e in events] == [("a.g8", 1)], (
        "went on after a handler could not start"
    )
    assert events[-1].error == "No such file or directory"
    assert (station.incoming / "a.g8").exists()


def test_once_exits_1_with_an_inactive_record(station):
    station.table("x nowhere *.g8 /bin/true 0 -1 0")
    r = station.run("--once")
    assert r.returncode == 1 and "inactive" in r.stderr


def test_once_leaves_with_everything_written(station):
    """--once leaves by os._exit once `serve` returns (no teardown of the
    interpreter, issue 21): its last log line is on stderr and in
    incoming.log, the run's end in the history, the status file there,
    the pid file and the control socket gone."""
    station.table("x in *.g8 /bin/true 0 -1 0")
    station.drop("a.g8", age_s=5)
    r = station.run("--once")
    assert r.returncode == 0, r.stderr
    assert r.stderr.endswith("waitd stopped\n") and station.log().endswith("waitd stopped\n")
    assert [(e.status, e.exit) for e in station.ends()] == [(2, 0)]
    assert json.loads((station.passdir / "waitd.status").read_text())["records"]
    assert not (station.passdir / "waitd.pid").exists() and not (station.passdir / "waitd.sock").exists()
