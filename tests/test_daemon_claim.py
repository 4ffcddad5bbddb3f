# SPDX-License-Identifier: MIT
"""One daemon per PASSDIR, and the moments around its start and stop.

The pid file is claimed with a lock the kernel drops when its holder dies,
so an empty or half-written pid file of a live daemon is never taken for a
stale one; signals are caught before the pid file names the daemon; and
`-s stop` returns once the daemon is gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time

from conftest import quiet_for, wait_for, waitd_cmd


def test_an_empty_pid_file_of_a_live_claim_is_not_stale(station):
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.recorder()
    pidfile = station.passdir / "waitd.pid"
    # What a starting daemon holds between creating its pid file and
    # writing its pid into it.
    fd = os.open(pidfile, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = station.run("-f", timeout=20)
        assert r.returncode == 3, r.stderr
        assert "another waitd" in r.stderr
        # (Not pidfile.read_bytes(): closing any descriptor of the file
        # would drop this process's POSIX lock.)
        assert os.pread(fd, 64, 0) == b""
        r = station.run("-s", "status", process=True)  # another process: this one holds the lock
        assert r.returncode == 0, r.stdout + r.stderr
        assert "starting" in r.stdout
    finally:
        os.close(fd)


def test_simultaneous_starts_leave_exactly_one_daemon(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    for _ in range(3):  # three races, each a fresh pair
        procs = [
            subprocess.Popen(
                waitd_cmd("-f", "--passdir", str(station.passdir), "--interval", "0.2"),
                env=station.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        try:
            wait_for(lambda: any(p.poll() is not None for p in procs), 20, "one of two starts to give up")  # noqa: B023
            loser = next(p for p in procs if p.poll() is not None)
            winner = next(p for p in procs if p is not loser)
            assert loser.returncode == 3, loser.stderr.read().decode()
            assert b"another waitd" in loser.stderr.read()
            quiet_for(0.3, lambda: winner.poll() is None)  # noqa: B023
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                p.communicate(timeout=20)
                p.stderr.close()
        assert winner.returncode == 0
    assert not (station.passdir / "waitd.pid").exists()


def test_hup_as_soon_as_the_pid_file_appears_is_acted_on(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    # A long history makes the start slow, so the pid file stands for a
    # while before the loop runs (100,000 lines: 0.7 s of CPU here, over
    # ten times the longest poll of wait_for below).
    with open(station.passdir / "incoming.history", "w") as f:
        f.writelines(f"/gone/f{i} /bin/true 1000 2 exit=0\n" for i in range(100_000))
    pidfile = station.passdir / "waitd.pid"
    with open(station.root / "stderr", "ab") as err:
        station.proc = subprocess.Popen(
            waitd_cmd("-f", "--passdir", str(station.passdir), "--interval", "0.2"),
            env=station.env,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )

    def pid() -> int | None:
        try:
            text = pidfile.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    os.kill(wait_for(pid, 20, "the pid file"), signal.SIGHUP)
    wait_for(lambda: "table reloaded" in station.log() or station.proc.poll() is not None, 30, "the reload")
    assert station.proc.poll() is None, f"waitd died: {station.proc.returncode}"
    assert station.stop() == 0


def test_s_stop_waits_for_the_daemon_to_exit(station):
    station.gated()
    station.table(f"x in *.d {station.passdir}/gated 0 -1 0")
    station.start()
    station.drop("a.d", age_s=5)
    wait_for(lambda: station.ran(), 10, "the run")
    stopper = subprocess.Popen(
        waitd_cmd("--passdir", str(station.passdir), "-s", "stop"),
        env=station.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    quiet_for(0.5, lambda: stopper.poll() is None)
    station.open_gate("a.d")
    out, err = stopper.communicate(timeout=20)
    assert stopper.returncode == 0, out + err
    assert station.proc.poll() is not None, "-s stop returned before the daemon exited"
    assert "stopped" in out
    assert station.stop() == 0
    assert len(station.ends()) == 1


def test_s_stop_no_wait_returns_at_once(station):
    station.gated()
    station.table(f"x in *.d {station.passdir}/gated 0 -1 0")
    station.start()
    station.drop("a.d", age_s=5)
    wait_for(lambda: station.ran(), 10, "the run")
    r = station.run("-s", "stop", "--no-wait", timeout=10)
    assert r.returncode == 0, r.stderr
    assert station.proc.poll() is None
    station.open_gate("a.d")
    assert station.stop() == 0


def test_s_reload_with_an_invalid_table_prints_the_errors_and_exits_2(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    station.table("x in *.d rec 0 -1")
    r = station.run("-s", "reload")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "incoming:1: expected 7 fields, got 6" in r.stderr
    assert "not reloaded" in r.stderr
    assert station.proc.poll() is None
    # The daemon goes on with the table it has.
    station.drop("a.d", age_s=5)
    wait_for(lambda: len(station.ends()) == 1, 10, "a file handled with the old table")
    assert station.stop() == 0


def test_s_reload_says_when_the_daemon_took_the_table(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0", f"y in *.e {station.passdir}/rec 0 -1 0")
    r = station.run("-s", "reload")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 record(s), 2 active" in r.stdout
    assert station.log().count("table reloaded") == 1
    assert station.stop() == 0


def test_missing_passdir_says_how_to_make_it(station, tmp_path):
    missing = tmp_path / "no" / "such"
    r = subprocess.run(
        waitd_cmd("-f", "--passdir", str(missing)), env=station.env, capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 2
    assert f"mkdir -p {missing}" in r.stderr


def test_g_with_every_record_inactive_says_so_before_detaching(station):
    station.table("x nowhere *.d rec 0 -1 0")
    r = station.run("-g", "--interval", "0.2")
    try:
        assert r.returncode == 0, r.stderr
        assert "every record is inactive" in r.stderr
        assert "nowhere" in r.stderr
    finally:
        stopped = station.run("-s", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "waitd stopped" in station.log()


def test_ctrl_c_in_the_foreground_hibernates_and_says_how_to_stop(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    station.signal(signal.SIGINT)
    wait_for(lambda: "hibernating" in station.log(), 10, "hibernation")
    assert "waitd -s stop" in station.log()
    assert station.stop() == 0


def test_what_the_status_file_tells_is_in_the_log_already(station):
    """The status file is written after the turn's log lines: a reader who
    sees a reload in it finds the reload's line in incoming.log (`waitd -s
    reload` reads the log so; it once read it a moment too early)."""
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    proc = station.start()
    status = station.passdir / "waitd.status"

    def reloads() -> int:
        try:
            return int(json.loads(status.read_text())["table"]["reloads"])
        except (OSError, ValueError, KeyError):
            return -1

    for n in range(1, 26):
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while reloads() < n:  # read as soon as it changes: no sleep between looks
            assert time.monotonic() < deadline, f"reload {n} not in the status"
        assert station.log().count("table reloaded") >= n, n
    assert station.stop() == 0
