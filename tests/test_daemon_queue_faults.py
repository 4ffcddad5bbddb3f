# SPDX-License-Identifier: MIT
"""Queues under hostile trials: a name delivered again while its first
file runs, kill -9 of waitd mid-run, a second instance, a FIFO given to
--enqueue, an operator's files in errors/, a retry waiting in pending."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import Station, quiet_for, wait_for, waitd_cmd
from test_daemon_queues import cleanup, left, make_queue, ran, recorder  # noqa: F401 (cleanup: autouse)


def put(root: Path, name: str, data: bytes) -> None:
    """Deliver a file into the queue as a producer does: tmp/, then rename."""
    tmp = root / "tmp" / f".{name}.part"
    tmp.write_bytes(data)
    os.rename(tmp, root / "incoming" / name)


def reader(station: Station, out: Path) -> None:
    """A handler that reads its file, waits for gate.CONTENT (at most 60 s),
    reads it again, and writes both readings: what it ran on."""
    station.handler(
        "h",
        f'c=$(cat "$1")\ngate="{station.root}/gate.$c"\n'
        'i=0; while [ ! -e "$gate" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n'
        f'printf "%s %s\\n" "$c" "$(cat "$1" 2>/dev/null)" >> "{out}"\n',
    )


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def open_gates(station: Station, *names: str) -> None:
    for name in names:
        (station.root / f"gate.{name}").touch()


# -- 1: a claim never replaces a file under way ---------------------------------


def test_a_name_delivered_again_waits_while_its_first_file_runs(tmp_path):
    """jobs=2: x runs; x comes again: the second x is not renamed over the
    first (whose handler would read the second's data, and whose disposal
    would remove the second's file); it waits in incoming, then runs."""
    root = make_queue(tmp_path / "Q", 0)
    out = tmp_path / "out"
    s = Station(tmp_path / "s")
    reader(s, out)
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes jobs=2")
    s.start("--instance", "me")
    put(root, "x", b"one")
    wait_for(lambda: len(s.started()) == 1, 10, "the first x to run")
    put(root, "x", b"two")
    pending = root / "pending" / "me" / "x"
    quiet_for(0.6, lambda: left(root)["incoming"] == ["x"] and pending.read_bytes() == b"one")
    open_gates(s, "one", "two")
    wait_for(lambda: len(lines(out)) == 2 and left(root)["pending"] == [], 15, "both runs")
    assert lines(out) == ["one one", "two two"]
    assert left(root) == {"incoming": [], "errors": [], "pending": []}
    assert "gone from pending" not in s.log()
    assert s.stop() == 0


def test_after_kill_9_a_name_delivered_again_waits_for_the_adopted_run(tmp_path):
    """The same across a restart: the adopted run's file in pending is not
    replaced; it ends (outcome unknown: to errors/, with its own data), and
    the second x runs after it."""
    root = make_queue(tmp_path / "Q", 0)
    out = tmp_path / "out"
    s = Station(tmp_path / "s")
    reader(s, out)
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes jobs=2")
    s.start("--instance", "me")
    put(root, "x", b"one")
    wait_for(lambda: len(s.started()) == 1, 10, "the first x to run")
    s.proc.kill()
    s.proc.wait()
    put(root, "x", b"two")
    s.start("--instance", "me")
    wait_for(lambda: "still runs; waiting for it" in s.log(), 10, "the run adopted")
    pending = root / "pending" / "me" / "x"
    quiet_for(0.6, lambda: left(root)["incoming"] == ["x"] and pending.read_bytes() == b"one")
    open_gates(s, "one", "two")
    wait_for(lambda: len(lines(out)) == 2 and left(root)["pending"] == [], 15, "both runs")
    assert lines(out) == ["one one", "two two"]
    assert left(root) == {"incoming": [], "errors": ["x"], "pending": []}
    assert (root / "errors" / "x").read_bytes() == b"one"
    assert s.stop() == 0


# -- 2: an adopted run is its record's run ----------------------------------------


def test_a_run_adopted_after_kill_9_is_its_records_run(tmp_path):
    """jobs=1 holds with the adopted run (b waits for it), its timeout= is
    enforced from its recorded start, its end is logged as record 1's, and
    its file leaves pending at once."""
    root = make_queue(tmp_path / "Q", 0)
    s = Station(tmp_path / "s")
    s.gated("h")
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes timeout=3")
    s.start("--instance", "me")
    put(root, "a", b"a")
    wait_for(lambda: len(s.started()) == 1, 10, "a to run")
    s.proc.kill()
    s.proc.wait()
    put(root, "b", b"b")
    s.start("--instance", "me")
    wait_for(lambda: left(root)["errors"] == ["a"], 15, "the adopted run killed at its timeout, a in errors/")
    wait_for(lambda: len(s.ran()) == 2, 10, "b to run")
    s.open_gate("b")
    wait_for(lambda: left(root) == {"incoming": [], "errors": ["a"], "pending": []}, 10, "b handled")
    pa, pb = f"{root}/pending/me/a", f"{root}/pending/me/b"
    history = s.history()
    end_a = next(e for e in history if e.path == pa and e.status != 0)
    start_b = next(e for e in history if e.path == pb and e.status == 0)
    assert end_a.at is not None and start_b.at is not None
    assert end_a.at <= start_b.at, "b started beside the adopted run (jobs=1)"
    assert end_a.error == "timeout"
    assert f"record 1: {s.passdir}/h on {pa}: ended after a restart of waitd" in s.log()
    assert "record 0" not in s.log()
    assert s.stop() == 0


# -- 17: an interrupted run keeps its attempt count -------------------------------


@pytest.mark.parametrize("how", ["dead", "adopted", "stopped"])
def test_an_interrupted_run_is_retried_with_its_attempt_count(tmp_path, how):
    """retries=2: attempt 1 is interrupted (waitd and its handler killed;
    waitd killed and the handler adopted; waitd stopped with TERM).  The
    file waits in pending for its retry, which is attempt 2, not 1 again."""
    root = make_queue(tmp_path / "Q", 0)
    tries = tmp_path / "tries"
    gate = tmp_path / "gate"
    s = Station(tmp_path / "s")
    s.handler(
        "h",
        f'echo "$WAITD_ATTEMPT" >> "{tries}"\n'
        f'[ "$WAITD_ATTEMPT" = 1 ] && while [ ! -e "{gate}" ]; do sleep 0.01; done\nexit 0\n',
    )
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes retries=2 retry=0.2")
    s.start("--instance", "me", "--stop-timeout", "0.2")
    put(root, "x", b"x")
    wait_for(lambda: lines(tries) == ["1"] and s.started(), 10, "attempt 1")
    pid = s.started()[0].pid
    if how == "stopped":
        assert s.stop() == 0
    else:
        s.proc.kill()
        s.proc.wait()
        if how == "dead":
            os.killpg(pid, signal.SIGKILL)
    assert left(root)["pending"] == ["me/x"]
    s.start("--instance", "me", "--stop-timeout", "0.2")
    if how == "adopted":
        wait_for(lambda: "still runs; waiting for it" in s.log(), 10, "the run adopted")
        gate.touch()
    wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 15, "the retry done")
    assert lines(tries) == ["1", "2"]
    assert "back in the queue" not in s.log()
    assert s.stop() == 0


def test_a_retry_whose_handler_cannot_be_executed_stays_in_pending_with_its_attempt(tmp_path):
    """Attempt 1 exits 75; the handler then cannot be executed (its mode
    taken away): the retry is not started, and the file is not put back
    into incoming, where it would start over at attempt 1.  Once it can
    be executed again, attempt 2 runs."""
    root = make_queue(tmp_path / "Q", 0)
    tries = tmp_path / "tries"
    s = Station(tmp_path / "s")
    h = s.handler("h", f'echo "$WAITD_ATTEMPT" >> "{tries}"\n[ "$WAITD_ATTEMPT" != 1 ] || exit 75\n')
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes retries=1 retry=1")
    s.start("--instance", "me")
    put(root, "x", b"x")
    wait_for(lambda: len(s.ends()) == 1, 10, "attempt 1's end")
    h.chmod(0o644)
    wait_for(lambda: "could not start" in s.log() or "cannot execute" in s.log(), 10, "the retry not executed")
    quiet_for(0.5, lambda: left(root) == {"incoming": [], "errors": [], "pending": ["me/x"]})
    h.chmod(0o755)
    s.signal(signal.SIGHUP)  # a HUP ends the back-off
    wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 10, "the retry done")
    assert lines(tries) == ["1", "2"]
    assert "back in the queue" not in s.log()
    assert s.stop() == 0


# -- 5: a cancelled queue file is a final failure ---------------------------------


def test_a_cancelled_queue_file_goes_to_errors_and_no_other_instance_runs_it(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    log = tmp_path / "ran"
    a, b = Station(tmp_path / "a"), Station(tmp_path / "b")
    for st in (a, b):
        recorder(st, log)
    a.table(f"q {root}/incoming * {a.passdir}/rec 3600 -1 0 claim=yes")  # a holds its files back
    b.table(f"q {root}/incoming * {b.passdir}/rec 0 -1 0 claim=yes")
    a.start("--instance", "a")
    b.start("-i", "--instance", "b")  # hibernating: it claims nothing until CONT
    put(root, "x", b"x")
    wait_for(lambda: a.run("-s", "status", "--json").stdout.count('"waiting": 1'), 10, "x waiting in a")
    r = a.run("-s", "cancel", str(root / "incoming" / "x"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cancelled" in r.stdout and "errors/x" in r.stdout
    assert left(root) == {"incoming": [], "errors": ["x"], "pending": []}
    cancel = [e for e in a.ends() if e.error == "cancelled"]
    assert len(cancel) == 1 and cancel[0].path == f"{root}/incoming/x"
    b.signal(signal.SIGCONT)
    put(root, "y", b"y")
    wait_for(lambda: ran(log) == {"y": 1}, 10, "b to run y, and not x")
    assert left(root)["errors"] == ["x"]
    assert a.stop() == 0 and b.stop() == 0


def test_a_cancel_that_cannot_move_the_file_to_errors_leaves_it_waiting(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    root = make_queue(tmp_path / "Q", 0)
    s = Station(tmp_path / "s")
    recorder(s, tmp_path / "ran")
    s.table(f"q {root}/incoming * {s.passdir}/rec 3600 -1 0 claim=yes")
    s.start("--instance", "me")
    put(root, "x", b"x")
    wait_for(lambda: '"waiting": 1' in s.run("-s", "status", "--json").stdout, 10, "x waiting")
    if subprocess.run(["chattr", "+i", str(root / "errors")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        r = s.run("-s", "cancel", str(root / "incoming" / "x"))
    finally:
        subprocess.run(["chattr", "-i", str(root / "errors")], capture_output=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot move it to" in r.stderr and "Operation not permitted" in r.stderr
    assert left(root) == {"incoming": ["x"], "errors": [], "pending": []}
    assert not [e for e in s.ends() if e.error == "cancelled"]
    r = s.run("-s", "cancel", str(root / "incoming" / "x"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert left(root) == {"incoming": [], "errors": ["x"], "pending": []}
    assert s.stop() == 0


# -- 12: a retry waiting in pending is within reach -------------------------------


def test_a_retry_waiting_in_pending_is_listed_retried_and_cancelled_by_either_path(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    tries = tmp_path / "tries"
    s = Station(tmp_path / "s")
    s.handler("h", f'echo "$(basename "$1") $WAITD_ATTEMPT" >> "{tries}"\n[ "$WAITD_ATTEMPT" != 1 ] || exit 75\n')
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes retries=1 retry=3600")
    s.start("--instance", "me")
    names = ["ri", "rp", "ci", "cp"]  # retry or cancel, by its incoming or its pending path
    for name in names:
        put(root, name, name.encode())
    wait_for(lambda: len(s.ends()) == 4, 10, "four first attempts")
    assert left(root)["pending"] == [f"me/{n}" for n in sorted(names)]

    def retrying() -> list[str]:
        doc = json.loads(s.run("-s", "status", "--json").stdout)
        return sorted(item["file"] for item in doc["records"][0]["retrying"])

    wait_for(lambda: retrying() == sorted(names), 10, "the four under retrying")
    pending = root / "pending" / "me"
    for other in (root / "pending" / "other" / "ri", pending, root / "incoming" / "nothing"):
        r = s.run("-s", "retry", str(other))  # another instance's file, a directory, no file
        assert r.returncode == 1 and "to run again" not in r.stdout, r.stdout + r.stderr
    r = s.run("-s", "retry", str(root / "incoming" / "ri"), str(pending / "rp"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("to run again now") == 2
    r = s.run("-s", "cancel", str(root / "incoming" / "ci"), str(pending / "cp"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("cancelled") == 2
    wait_for(lambda: left(root)["pending"] == [], 10, "pending emptied")
    assert left(root) == {"incoming": [], "errors": ["ci", "cp"], "pending": []}
    assert sorted(lines(tries)) == ["ci 1", "cp 1", "ri 1", "ri 2", "rp 1", "rp 2"]
    cancelled = sorted(e.path for e in s.ends() if e.error == "cancelled")
    assert cancelled == [str(pending / "ci"), str(pending / "cp")]
    wait_for(lambda: retrying() == [], 10, "nothing retrying")
    assert s.stop() == 0


# -- 9: --enqueue never blocks on a FIFO -------------------------------------------


def test_enqueue_refuses_a_fifo_and_goes_on_with_the_rest(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    good = tmp_path / "good"
    good.write_bytes(b"data")
    r = subprocess.run(
        waitd_cmd("--enqueue", str(root), str(fifo), "/dev/null", str(good)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{fifo}: not enqueued: not a regular file (a FIFO)" in r.stderr
    assert "/dev/null: not enqueued: not a regular file (a character device)" in r.stderr
    assert f"{good}: enqueued as {root}/incoming/good" in r.stdout
    assert os.listdir(root / "incoming") == ["good"] and os.listdir(root / "tmp") == []


# -- 17: a name taken in a queue keeps matching the template ----------------------


def test_enqueue_of_a_name_taken_numbers_it_before_its_suffix_and_a_record_handles_both(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    src = tmp_path / "x.dat"
    src.write_bytes(b"x")
    for _ in range(3):
        r = subprocess.run(waitd_cmd("--enqueue", str(root), str(src)), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(root / "incoming")) == ["x.1.dat", "x.2.dat", "x.dat"]
    log = tmp_path / "ran"
    s = Station(tmp_path / "s")
    recorder(s, log, extra="exit 3")  # each a final failure: into errors/, numbered the same way
    s.table(f"q {root}/incoming *.dat {s.passdir}/rec 0 -1 0 claim=yes")
    s.start("--instance", "me")
    wait_for(lambda: len(left(root)["errors"]) == 3, 10, "the three in errors/")
    assert set(ran(log)) == {"x.dat", "x.1.dat", "x.2.dat"}
    assert left(root) == {"incoming": [], "errors": ["x.1.dat", "x.2.dat", "x.dat"], "pending": []}
    assert s.stop() == 0


# -- 11: expiry in errors/ removes the queue's files only --------------------------


def test_expiry_in_errors_leaves_the_operators_files_alone(tmp_path):
    """Only names the template matches (itself, or numbered: a.1.dat) are
    the queue's in errors/; a dot file never."""
    root = make_queue(tmp_path / "Q", 0)
    for name in (".keep", "README", "notes.txt"):
        (root / "errors" / name).write_text("mine\n")
    s = Station(tmp_path / "s")
    s.handler("h", "exit 3\n")
    table = f"q {root}/incoming *.dat {s.passdir}/h 0 -1 {{hours}} claim=yes"
    s.table(table.format(hours=1))
    s.start("--instance", "me", "--interval", "0.1")
    put(root, "a.dat", b"1")
    wait_for(lambda: "a.dat" in left(root)["errors"], 10, "a.dat in errors/")
    put(root, "a.dat", b"2")
    wait_for(lambda: "a.1.dat" in left(root)["errors"], 10, "the second a.dat in errors/ as a.1.dat")
    s.table(table.format(hours=0.0003))  # a second
    assert s.run("-s", "reload").returncode == 0
    wait_for(lambda: left(root)["errors"] == [".keep", "README", "notes.txt"], 15, "both expired")
    assert sorted(os.listdir(root / "errors")) == [".keep", "README", "notes.txt"]
    assert s.stop() == 0


# -- 13: --check and -g see a queue as the daemon will -----------------------------


def test_check_and_g_see_a_fresh_queue_as_active_and_a_missing_next_queue_as_not(tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()  # its subdirectories are made at start
    s = Station(tmp_path / "s")
    s.handler("h", "exit 0\n")
    s.table(f"q {fresh}/incoming * {s.passdir}/h 0 -1 0 claim=yes")
    r = s.run("--check")
    assert r.returncode == 0 and "would be inactive" not in r.stderr, r.stderr
    assert not (fresh / "incoming").exists(), "--check made a directory"
    r = s.run("-g", "--interval", "0.2", "--instance", "me")
    try:
        assert r.returncode == 0, r.stderr
        assert "inactive" not in r.stderr, r.stderr
        wait_for(lambda: (fresh / "pending" / "me").is_dir(), 10, "the queue made")
    finally:
        assert s.run("-s", "stop").returncode == 0
    missing = tmp_path / "nowhere"
    s.table(f"q {fresh}/incoming * {s.passdir}/h 0 -1 0 claim=yes next={missing}")
    r = s.run("--check")
    assert r.returncode == 0, r.stderr
    warning = f"warning: record 1 would be inactive: queue {missing}: cannot make its subdirectories"
    assert f"{s.passdir}/incoming:1: {warning}" in r.stderr, r.stderr
    r = s.run("-g", "--interval", "0.2", "--instance", "me")
    try:
        assert r.returncode == 0, r.stderr
        assert f"record 1 is inactive: queue {missing}: cannot make its subdirectories" in r.stderr
        assert "every record is inactive" in r.stderr
    finally:
        assert s.run("-s", "stop").returncode == 0
