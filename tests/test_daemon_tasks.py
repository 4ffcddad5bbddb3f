# SPDX-License-Identifier: MIT
"""The task API against the real daemon: -s show, -s list, -s pause and
-s resume, the waiting files of -s status --json, --enqueue --max."""

from __future__ import annotations

import json
import os

import psutil
from conftest import quiet_for, wait_for


def _json(station, *args: str):
    r = station.run(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _stopped(pid: int) -> bool:
    return psutil.Process(pid).status() == psutil.STATUS_STOPPED


def test_show_list_pause_and_resume_a_waiting_a_running_and_a_failed_file(station):
    station.gated(extra="sleep 0\n")
    station.handler("bad", 'echo "bad output"\nexit 3\n')
    station.table(
        f"x in *.d {station.passdir}/gated 0 -1 0 timeout=1",
        f"y in *.f {station.passdir}/bad 0 -1 0",
    )
    station.drop("a.d", age_s=5)
    station.drop("c.f", age_s=5)
    station.start()
    a, b, c = (str(station.incoming / n) for n in ("a.d", "b.d", "c.f"))
    wait_for(lambda: station.ran(), 10, "a.d's run")
    wait_for(lambda: any(e.exit == 3 for e in station.ends()), 10, "c.f's run")
    # a.d runs: pausing it stops its process group, and its timeout of 1 s with it.
    story = _json(station, "-s", "show", a)
    (x,) = story["records"]
    assert x["state"] == "running" and x["run"]["pid"] > 1 and x["run"]["log"].endswith("/incoming.1.A")
    pid = x["run"]["pid"]
    r = station.run("-s", "pause", a)
    assert r.returncode == 0 and "paused: STOP sent" in r.stdout, r.stdout + r.stderr
    wait_for(lambda: _stopped(pid), 5, "the handler stopped")
    quiet_for(1.5, lambda: not any(e.error == "timeout" for e in station.ends()))
    assert _json(station, "-s", "show", a)["records"][0]["state"] == "paused"
    st = _json(station, "-s", "status")
    assert st["records"][0]["running"][0]["state"] == "paused"
    # b.d waits (jobs=1): in the status document's waiting files, then paused: held.
    station.drop("b.d", age_s=5)
    wait_for(lambda: [w["file"] for w in _json(station, "-s", "status")["records"][0]["waiting_files"]] == ["b.d"])
    r = station.run("-s", "pause", b)
    assert r.returncode == 0 and "held until resumed" in r.stdout, r.stdout + r.stderr
    held = _json(station, "-s", "list", "--state", "held")
    assert [(f["file"], f["why"]) for f in held] == [(b, "paused (waitd -s pause)")]
    everything = {f["file"]: f["state"] for f in _json(station, "-s", "list")}
    assert everything == {a: "paused", b: "held", c: "failed"}
    assert _json(station, "-s", "list", "--record", "2") == [{"record": 2, "file": c, "state": "failed"}]
    # a.d resumed: its clock goes on from where it stopped; b.d then runs once resumed.
    r = station.run("-s", "resume", a)
    assert r.returncode == 0 and "resumed: CONT sent" in r.stdout, r.stdout + r.stderr
    wait_for(lambda: any(e.error == "timeout" for e in station.ends()), 10, "a.d's timeout, once resumed")
    quiet_for(0.3, lambda: len(station.ran()) == 1)  # b.d is held
    assert station.run("-s", "resume", b).returncode == 0
    wait_for(lambda: len(station.ran()) == 2, 10, "b.d's run once resumed")
    # c.f failed: its attempt, its log and its response (issue 22's file, if any).
    (y,) = _json(station, "-s", "show", c)["records"]
    assert y["state"] == "failed"
    (attempt,) = y["attempts"]
    assert attempt["exit"] == 3 and attempt["log"].endswith("/incoming.2.A") and attempt["response"] is None
    assert "bad output" in open(attempt["log"]).read()
    with open(attempt["log"] + ".response", "w") as f:
        json.dump({"reason": "bad input"}, f)
    assert _json(station, "-s", "show", c)["records"][0]["attempts"][0]["response"] == {"reason": "bad input"}
    text = station.run("-s", "show", c).stdout
    assert "record 2 (y)" in text and "failed" in text and "exit 3" in text and '"bad input"' in text
    # Paths waitd does not know, and verbs with nothing to do.
    r = station.run("-s", "show", str(station.root / "elsewhere"))
    assert r.returncode == 1 and "no record of the table takes this file" in r.stderr
    r = station.run("-s", "show", str(station.incoming / "never.d"))
    assert r.returncode == 1 and "waitd knows nothing of this file" in r.stderr
    r = station.run("-s", "resume", c)
    assert r.returncode == 1 and "not paused" in r.stderr
    r = station.run("-s", "list", "--record", "9")
    assert r.returncode == 1 and "no record 9" in r.stderr
    assert station.stop() == 0


def test_enqueue_refuses_a_full_queue_with_75(tmp_path):
    from conftest import waitd_here

    q = tmp_path / "q"
    q.mkdir()
    files = []
    for n in range(3):
        f = tmp_path / f"f{n}"
        f.write_text(str(n))
        files.append(str(f))
    env = dict(os.environ)
    r = waitd_here(["--enqueue", str(q), "--max", "2", *files], env)
    assert r.returncode == 75, r.stdout + r.stderr
    assert "queue full (2 files, --max 2); not enqueued: " + files[2] in r.stderr
    assert sorted(os.listdir(q / "incoming")) == ["f0", "f1"]
    r = waitd_here(["--enqueue", str(q), "--max", "5", files[2]], env)
    assert r.returncode == 0 and sorted(os.listdir(q / "incoming")) == ["f0", "f1", "f2"]
