# SPDX-License-Identifier: MIT
"""The task API against the real daemon: -s show, -s list, -s pause and
-s resume, the waiting files of -s status --json, --enqueue --max; files
in groups, in a queue of two instances, adopted runs after kill -9, Celery
runs."""

from __future__ import annotations

import json
import os
import time

import psutil
from conftest import Station, quiet_for, wait_for
from test_daemon_celery import cluster, redis  # noqa: F401 (fixtures: a real Redis, real workers)
from test_daemon_groups import HRIT, hrit


def _json(station, *args: str):
    r = station.run(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _state(station, path: str) -> str | None:
    """The file's state in its first record, None while waitd knows nothing of it."""
    r = station.run("-s", "show", path, "--json")
    return json.loads(r.stdout)["records"][0]["state"] if r.returncode == 0 else None


def _stopped(pid: int) -> bool:
    """The handler's group is paused: its leader stopped, or blocked
    (disk-sleep) on a child it vforked that the STOP caught before its exec."""
    leader = psutil.Process(pid)
    status = leader.status()
    if status == psutil.STATUS_STOPPED:
        return True
    return status == psutil.STATUS_DISK_SLEEP and any(c.status() == psutil.STATUS_STOPPED for c in leader.children())


def _group(pid: int) -> str:
    """The processes of a handler's group and their states (for a failure's message)."""
    states = []
    for p in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if os.getpgid(p.pid) == pid:
                states.append(f"{p.pid} {p.info['status']} {' '.join(p.info['cmdline'] or [])}")
        except (ProcessLookupError, PermissionError):
            pass
    return "; ".join(states)


def test_show_list_pause_and_resume_a_waiting_a_running_and_a_failed_file(station):
    station.gated(extra="sleep 0\n")
    station.handler("bad", 'echo "bad output"\nexit 3\n')
    station.handler("later", "exit 75\n")
    station.handler("skip", 'echo \'{"skip": "no data"}\' > "$WAITD_RESPONSE"\n')
    station.table(
        f"x in *.d {station.passdir}/gated 0 -1 0 timeout=2",
        f"y in *.f {station.passdir}/bad 0 -1 0",
        f"z in *.r {station.passdir}/later 0 -1 0 retries=1 retry=3600",
        f"s in *.s {station.passdir}/skip 0 -1 0",
    )
    station.drop("a.d", age_s=5)
    station.drop("c.f", age_s=5)
    station.drop("r.r", age_s=5)
    station.drop("k.s", age_s=5)
    station.start()
    a, b, c, e, rr, k = (str(station.incoming / n) for n in ("a.d", "b.d", "c.f", "e.d", "r.r", "k.s"))
    wait_for(lambda: station.ran(), 10, "a.d's run")
    # a.d runs: pausing it stops its process group, and its timeout of 2 s with it.
    (x,) = _json(station, "-s", "show", a)["records"]
    assert x["state"] == "running" and x["run"]["pid"] > 1 and x["run"]["log"].endswith("/incoming.1.A")
    pid, since = x["run"]["pid"], x["run"]["since"]
    r = station.run("-s", "pause", a)
    assert r.returncode == 0 and "paused: STOP sent" in r.stdout, r.stdout + r.stderr
    try:
        wait_for(lambda: _stopped(pid), 5, "the handler stopped")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: its group: {_group(pid)}; waitd says {station.log()[-600:]}") from None
    wait_for(lambda: any(e.exit == 3 for e in station.ends()), 10, "c.f's run")
    wait_for(lambda: any(e.exit == 75 for e in station.ends()), 10, "r.r's first attempt")
    (z,) = _json(station, "-s", "show", rr)["records"]
    assert z["state"] == "retrying" and z["retry_at"] > time.time() + 3000
    # k.s's response said skip: skipped, with its response.
    wait_for(lambda: any(e.outcome == "skipped" for e in station.ends()), 10, "k.s skipped")
    (s,) = _json(station, "-s", "show", k)["records"]
    assert s["state"] == "skipped" and s["attempts"][0]["outcome"] == "skipped"
    assert s["attempts"][0]["response"] == {"skip": "no data"}
    # Past its timeout, paused: not timed out.
    quiet_for(max(0.0, since + 2.5 - time.time()), lambda: not any(e.error == "timeout" for e in station.ends()))
    assert _json(station, "-s", "show", a)["records"][0]["state"] == "paused"
    st = _json(station, "-s", "status")
    assert st["records"][0]["running"][0]["state"] == "paused"
    # b.d waits (jobs=1): in the status document's waiting files, then paused: held.
    station.drop("b.d", age_s=5)
    wait_for(lambda: [w["file"] for w in _json(station, "-s", "status")["records"][0]["waiting_files"]] == ["b.d"])
    (w,) = _json(station, "-s", "show", b)["records"]
    assert w["state"] == "waiting" and w["ready_at"] < time.time() and w["attempts"] == []
    # e.d waits too, and is cancelled: it will not run.
    station.drop("e.d", age_s=5)
    wait_for(lambda: _state(station, e) == "waiting", 10, "e.d waiting")
    assert station.run("-s", "cancel", e).returncode == 0
    assert _json(station, "-s", "show", e)["records"][0]["state"] == "cancelled"
    r = station.run("-s", "pause", b)
    assert r.returncode == 0 and "held until resumed" in r.stdout, r.stdout + r.stderr
    held = _json(station, "-s", "list", "--state", "held")
    assert [(f["file"], f["why"]) for f in held] == [(b, "paused (waitd -s pause)")]
    everything = {f["file"]: f["state"] for f in _json(station, "-s", "list")}
    assert everything == {a: "paused", b: "held", c: "failed", e: "cancelled", rr: "retrying", k: "skipped"}
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
    r = station.run("-s", "pause", c)
    assert r.returncode == 1 and "neither waiting nor running: nothing to pause" in r.stderr
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


def test_show_and_pause_a_group_member_and_an_adopted_run_after_kill_9(station):
    station.gated()
    station.handler("g", "exit 0\n")
    station.table(
        f"g in H-* {station.passdir}/g 0 -1 0 pattern={HRIT} critical=:PRO,:EPI timeliness=600",
        f"x in *.d {station.passdir}/gated 0 -1 0",
    )
    pro = str(station.incoming / hrit("MSG4", "", "PRO"))
    station.drop(os.path.basename(pro), age_s=5)
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: station.ran(), 10, "a.d's run")
    # A member of a group gathering: held, and why.
    wait_for(lambda: _json(station, "-s", "list", "--state", "held"), 10, "the member held")
    (member,) = _json(station, "-s", "list", "--state", "held")
    assert member["file"] == pro and "group" in member["why"] and member["until"] > 0
    assert _json(station, "-s", "show", pro)["records"][0]["state"] == "held"
    # Paused, then kill -9: the next waitd adopts the run, paused, and resumes it like its own.
    a = str(station.incoming / "a.d")
    pid = _json(station, "-s", "show", a)["records"][0]["run"]["pid"]
    assert station.run("-s", "pause", a).returncode == 0
    wait_for(lambda: _stopped(pid), 5, "the handler stopped")
    station.proc.kill()
    station.proc.communicate()
    station.start()
    (x,) = _json(station, "-s", "show", a)["records"]
    assert x["state"] == "paused" and x["run"]["adopted"] is True and x["run"]["pid"] == pid
    assert [at["end"] for at in x["attempts"]] == [None] and x["attempts"][0]["log"].endswith("incoming.2.A")
    assert station.run("-s", "resume", a).returncode == 0
    wait_for(lambda: not _stopped(pid), 5, "the adopted handler continued")
    assert _json(station, "-s", "show", a)["records"][0]["state"] == "running"
    station.open_gate("a.d")
    # Not our child: its end is known by its pid gone, its exit not (status 1).
    wait_for(lambda: _state(station, a) == "failed", 10, "a.d's end")
    (x,) = _json(station, "-s", "show", a)["records"]
    assert x["attempts"][0]["end"] is not None and "run" not in x
    assert station.stop() == 0


def test_show_and_pause_a_queue_file_claimed_by_one_of_two_instances(tmp_path):
    root = tmp_path / "Q"
    for sub in ("incoming", "pending", "tmp", "errors"):
        (root / sub).mkdir(parents=True)
    stations = []
    try:
        for i in range(2):
            s = Station(tmp_path / f"i{i}")
            s.gated()
            s.table(f"q {root}/incoming * {s.passdir}/gated 0 -1 0 claim=yes")
            s.start("--instance", f"i{i}")
            stations.append(s)
        (root / "tmp" / "f1").write_text("x")
        os.rename(root / "tmp" / "f1", root / "incoming" / "f1")
        wait_for(lambda: any(s.ran() for s in stations), 10, "a claim and its run")
        (mine,) = [s for s in stations if s.ran()]
        (other,) = [s for s in stations if s is not mine]
        named = str(root / "incoming" / "f1")  # as the producer knows it
        (q,) = _json(mine, "-s", "show", named)["records"]
        assert q["state"] == "running" and q["file"].startswith(str(root / "pending" / "i"))
        assert _json(mine, "-s", "list") == [{"record": 1, "file": q["file"], "state": "running"}]
        r = other.run("-s", "show", named)
        assert r.returncode == 1 and "waitd knows nothing of this file" in r.stderr
        r = mine.run("-s", "pause", named)
        assert r.returncode == 0 and "paused: STOP sent" in r.stdout, r.stdout + r.stderr
        assert _json(mine, "-s", "show", named)["records"][0]["state"] == "paused"
        mine.open_gate("f1")
        assert mine.run("-s", "resume", named).returncode == 0
        wait_for(lambda: _state(mine, q["file"]) == "handled", 10, "f1 handled")
    finally:
        for s in stations:
            if s.proc is not None and s.proc.poll() is None:
                s.stop()


def test_a_celery_run_is_shown_with_its_task_and_cannot_be_paused(station, cluster):  # noqa: F811
    cluster.workers(1, passdir=str(station.passdir))
    station.gated()
    station.table(f"x {station.incoming} *.g8 {station.passdir}/gated 0 -1 0 run=celery timeout=30")
    station.start()
    station.drop("a.g8", age_s=5)
    wait_for(lambda: station.ran(), 15, "the run on the worker")
    a = str(station.incoming / "a.g8")
    (x,) = _json(station, "-s", "show", a)["records"]
    assert x["state"] == "running" and x["run"]["task"] and x["run"]["pid"] is None
    r = station.run("-s", "pause", a)
    assert r.returncode == 1 and "runs on a Celery worker: waitd cannot stop it" in r.stderr, r.stdout + r.stderr
    station.open_gate("a.g8")
    wait_for(lambda: station.ends(), 15, "the end of the run")
    (attempt,) = _json(station, "-s", "show", a)["records"][0]["attempts"]
    assert attempt["task"] == x["run"]["task"] and attempt["exit"] == 0 and attempt["log"].endswith("incoming.1.A")
    assert station.stop() == 0


def test_a_queue_file_waiting_in_pending_for_its_retry_is_paused_and_resumed(tmp_path):
    root = tmp_path / "Q"
    for sub in ("incoming", "pending", "tmp", "errors"):
        (root / sub).mkdir(parents=True)
    s = Station(tmp_path / "s")
    s.handler("h", f'echo "$WAITD_ATTEMPT" >> "{tmp_path}/tries"\n[ "$WAITD_ATTEMPT" = 1 ] && exit 75\nexit 0\n')
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes retries=1 retry=2")
    s.start("--instance", "me")
    try:
        (root / "tmp" / "f1").write_text("x")
        os.rename(root / "tmp" / "f1", root / "incoming" / "f1")
        pending = str(root / "pending" / "me" / "f1")
        wait_for(lambda: any(e.exit == 75 for e in s.ends()), 10, "the first attempt")
        r = s.run("-s", "pause", pending)
        assert r.returncode == 0 and "held until resumed" in r.stdout, r.stdout + r.stderr
        quiet_for(2.5, lambda: (tmp_path / "tries").read_text().split() == ["1"])  # its retry was due after 2 s
        assert s.run("-s", "resume", pending).returncode == 0
        wait_for(lambda: (tmp_path / "tries").read_text().split() == ["1", "2"], 10, "the retry, once resumed")
    finally:
        s.stop()
