# SPDX-License-Identifier: MIT
"""Running as a real daemon: detaching, the pid file, `-s`, status, `--demo`.

Each test runs the real `waitd` command.  A daemon started with `-g` or
`-i` is not a child of the test (that is the point), so the conftest
fixture that catches leftover children cannot see it: the `detached`
fixture stops every daemon of the test's PASSDIR at the end, with TERM
through the pid file and KILL if it does not go.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, wait_for, waitd_cmd, waitds_on

from waitd.daemon import pidfile

GOLDEN = ROOT / "tests" / "golden"


class Detached:
    """Starts `waitd -g`/`-i` on the station's PASSDIR and stops what it started."""

    def __init__(self, station) -> None:
        self.station = station
        self.pids: set[int] = set()

    def start(self, *args: str, interval: float = 0.2) -> int:
        began = time.monotonic()
        r = self.station.run(*args, "--interval", str(interval), timeout=20)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - began < 10, "waitd -g did not return promptly"
        pid = self.pid()
        assert pid is not None, "waitd -g returned 0 without a live pid file"
        self.pids.add(pid)
        return pid

    def pid(self) -> int | None:
        return pidfile.running_pid(str(self.station.passdir))

    def status(self) -> str:
        return self.station.run("-s", "status").stdout

    def stop(self, pid: int) -> None:
        r = self.station.run("-s", "stop")
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"waitd: sent SIGTERM to pid {pid}\nwaitd: pid {pid} stopped\n"
        assert not _alive(pid), "-s stop returned before the daemon exited"

    def cleanup(self) -> None:
        pid = self.pid()
        if pid is not None:
            self.pids.add(pid)
        for pid in self.pids:
            if not _alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda p=pid: not _alive(p), 10, f"waitd pid {pid} to stop")
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                raise


@pytest.fixture
def detached(station):
    d = Detached(station)
    try:
        yield d
    finally:
        d.cleanup()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- starting -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [["-g"], []], ids=["-g", "no-flag"])
def test_start_detaches_and_handles_a_file(station, detached, mode):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    began = time.monotonic()
    r = subprocess.run(
        waitd_cmd("--passdir", str(station.passdir), *mode, "--interval", "0.2"),
        env=station.env,
        capture_output=True,
        text=True,
        timeout=20,
        umask=0o077,
    )
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - began < 10
    pid = detached.pid()
    assert pid is not None
    detached.pids.add(pid)
    assert (station.passdir / "waitd.pid").read_text() == f"{pid}\n"

    proc = psutil.Process(pid)
    assert pid not in {p.pid for p in psutil.Process().children(recursive=True)}, "the daemon is our child"
    assert proc.terminal() is None
    assert os.getsid(pid) != pid, "a session leader could acquire a controlling terminal"
    assert os.getsid(pid) != os.getsid(0)
    assert proc.cwd() == "/"
    assert "Umask:\t0022" in Path(f"/proc/{pid}/status").read_text()
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"

    station.drop("a.g8")
    wait_for(lambda: station.ran() == [os.fsencode(station.incoming / "a.g8")], 5, "the daemon to handle a.g8")
    assert "waitd started" in station.log()
    detached.stop(pid)
    assert not (station.passdir / "waitd.pid").exists()
    assert "waitd stopped" in station.log()


def test_i_starts_hibernating_until_resume(station, detached):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    pid = detached.start("-i")
    assert "waitd: running, pid" in detached.status()
    station.drop("a.g8")
    station.run("-s", "wake")
    # Seen (one file waits) but not handled: the daemon hibernates.
    wait_for(lambda: "waiting: 1 file(s)" in detached.status(), 5, "the daemon to see a.g8")
    assert "hibernating" in detached.status()
    assert station.ran() == []
    assert station.run("-s", "resume").returncode == 0
    wait_for(station.ran, 5, "a.g8 to be handled after -s resume")
    detached.stop(pid)


def test_second_start_exits_3_naming_the_pid(station, detached):
    station.table("")
    pid = detached.start("-g")
    for mode in ("-g", "-f", "-i"):
        r = station.run(mode)
        assert r.returncode == 3, r
        assert r.stderr == (
            f"waitd: {station.passdir}/waitd.pid: another waitd is running on this PASSDIR (pid {pid})\n"
        )
    assert detached.pid() == pid
    detached.stop(pid)


def test_bad_table_exits_2_and_leaves_no_daemon(station):
    station.table("x in *.g8 rec 0 -1")
    r = station.run("-g")
    assert r.returncode == 2
    assert f"{station.passdir}/incoming:1: expected 7 fields, got 6" in r.stderr
    assert "not starting" in r.stderr
    assert not (station.passdir / "waitd.pid").exists()
    assert waitds_on(station.passdir) == []


def test_no_passdir_exits_2_with_the_hint(station):
    env = {k: v for k, v in station.env.items() if k != "PASSDIR"}
    r = subprocess.run(waitd_cmd("-g"), env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert r.stderr.startswith("waitd: no PASSDIR: give --passdir DIR or set the PASSDIR environment variable")
    assert "waitd --demo" in r.stderr


def test_failure_after_detaching_is_reported_by_the_command(station):
    # Found only by the detached daemon (after the checks made before
    # forking): the readiness pipe carries its error back to the command.
    station.table("")
    (station.passdir / "logfiles").write_text("not a directory\n")
    r = station.run("-g")
    assert r.returncode == 1
    assert r.stderr.startswith(f"waitd: {station.passdir}/logfiles: ")
    assert r.stderr.count("\n") == 1
    assert f"CRITICAL waitd: {station.passdir}/logfiles: " in station.log()
    assert not (station.passdir / "waitd.pid").exists()
    assert waitds_on(station.passdir) == []


# -- the pid file -------------------------------------------------------------


def test_stale_pid_file_of_a_gone_process_is_replaced(station, detached):
    station.table("")
    gone = subprocess.Popen(["true"])
    gone.wait()
    (station.passdir / "waitd.pid").write_text(f"{gone.pid}\n")
    r = station.run("-g", "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    detached.pids.add(detached.pid() or 0)
    warning = (
        f"{station.passdir}/waitd.pid: stale pid file (pid {gone.pid} holds no lock on it: it is gone); replacing it"
    )
    assert r.stderr == f"waitd: warning: {warning}\n"
    assert f"WARNING {warning}" in station.log()
    pid = detached.pid()
    assert pid is not None and pid != gone.pid
    detached.stop(pid)


def test_stale_pid_file_whose_pid_was_reused_is_replaced(station, detached):
    station.table("")
    younger = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = station.passdir / "waitd.pid"
        pidfile.write_text(f"{younger.pid}\n")
        an_hour_ago = time.time() - 3600
        os.utime(pidfile, (an_hour_ago, an_hour_ago))
        r = station.run("-g", "--interval", "0.2")
        assert r.returncode == 0, r.stderr
        assert f"stale pid file (pid {younger.pid} holds no lock on it: it is gone)" in r.stderr
        pid = detached.pid()
        assert pid is not None and pid != younger.pid
        detached.stop(pid)
        assert younger.poll() is None, "waitd signalled the process that reused the pid"
    finally:
        younger.kill()
        younger.wait()


# -- waitd -s -------------------------------------------------------------------


def test_s_commands_signal_the_daemon(station, detached):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    # --poll and a long interval: only a signal makes this daemon look.
    pid = detached.start("-g", "--poll", interval=60)

    assert station.run("-s", "idle").stdout == f"waitd: sent SIGINT to pid {pid}\n"
    wait_for(lambda: "hibernating" in detached.status(), 10, "-s status to show hibernation")
    wait_for(lambda: "INT: hibernating" in station.log(), 5, "the INT in the log")

    station.drop("a.g8")
    assert station.run("-s", "wake").returncode == 0
    wait_for(lambda: "waiting: 1 file(s)" in detached.status(), 5, "wake to list the directory")
    assert station.ran() == []

    assert station.run("-s", "resume").returncode == 0
    wait_for(station.ran, 5, "a.g8 to be handled after -s resume")
    # The turn's log lines are written at its end, after its starts (logfile.py: held).
    wait_for(lambda: "CONT: leaving hibernation" in station.log(), 5, "the CONT in the log")
    wait_for(lambda: "since start: 1 ok, 0 failed" in detached.status(), 10, "the run counted in the status")

    station.drop("b.g8")
    assert station.run("-s", "wake").returncode == 0
    wait_for(lambda: len(station.ran()) == 2, 5, "wake to find b.g8 (the interval is 60 s)")

    other = station.passdir / "other"
    other.mkdir()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0", f"y other *.dat {station.passdir}/rec 0 -1 0")
    assert station.run("-s", "reload").returncode == 0
    wait_for(lambda: "record 2 (y)" in detached.status(), 5, "the reloaded table in the status")
    wait_for(lambda: "HUP: table reloaded: 2 records, 2 active" in station.log(), 5, "the HUP in the log")

    detached.stop(pid)
    assert "TERM: stopping" in station.log()
    assert not (station.passdir / "waitd.pid").exists()


@pytest.mark.parametrize("command", ["reload", "stop", "idle", "resume", "wake", "status"])
def test_s_without_a_daemon_exits_1(station, command):
    station.table("")
    r = station.run("-s", command)
    assert r.returncode == 1
    if command == "status":
        assert r.stdout == "waitd: not running\n"
    else:
        assert r.stderr == (
            f"waitd: no waitd is running on {station.passdir} (no daemon holds {station.passdir}/waitd.pid)\n"
        )


def _filter_status(text: str, passdir: Path) -> str:
    """Replace what changes from run to run, as daemontools' filter_svstat does."""
    text = text.replace(str(passdir), "$PASSDIR")
    text = re.sub(r"pid \d+", "pid PID", text)
    return re.sub(r"\b\d+ (s|min|h|d)\b", r"N \1", text)


def test_status_golden(station, detached):
    p = station.passdir
    station.handler("slow", f'while [ ! -e "{p}/go" ]; do sleep 0.05; done\n')
    station.handler("fail", "echo bad >&2; exit 3\n")
    station.recorder()
    station.table(
        f"x in *.g8 {p}/slow 0 -1 0",
        f"y in *.bad {p}/fail 0 -1 0",
        f"z missing *.dat {p}/rec 0 1 0",
        f"w in *.late {p}/rec 3600 1 0",
        f"g in *.l1b {p}/rec 0 -1 0 pattern={{platform}}_{{start_time:%Y%m%d_%H%M%S}}_{{segment:2d}}.l1b "
        "critical=:1 wanted=:1-3 timeliness=86400",
    )
    for name in ("n19_20260101_120000_01.l1b", "n19_20260101_120000_03.l1b", "junk.l1b"):
        station.drop(name)
    station.drop("a.g8", age_s=2)
    station.drop("b.g8", age_s=1)
    station.drop("r.bad")
    station.drop("c.late")
    pid = detached.start("-g")
    golden = (GOLDEN / "status.txt").read_text()
    active, idle = golden.split("--- after waitd -s idle ---\n")

    def shown() -> str:
        return _filter_status(detached.status(), p)

    try:
        wait_for(lambda: shown() == active, 10, "the status to settle")
    finally:
        assert shown() == active
    station.run("-s", "idle")
    try:
        wait_for(lambda: shown() == idle, 5, "the status to show hibernation at once")
    finally:
        assert shown() == idle
    (p / "go").touch()
    detached.stop(pid)


# -- the demo -----------------------------------------------------------------


def _demo(tmp_path: Path, **kw) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path), WAITD_DEMO_FAST="1")
    env.pop("PASSDIR", None)
    return subprocess.Popen(
        waitd_cmd("--demo"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_demo_runs_to_the_end(tmp_path):
    proc = _demo(tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    (passdir,) = tmp_path.glob("waitd-demo-*")
    assert f"demo: done.  Everything is in {passdir}:" in out
    assert f"tlogview --passdir {passdir} --list" in out
    assert sorted(os.listdir(passdir / "in")) == ["c.g8"]
    history = (passdir / "incoming.history").read_text()
    for name in ("a.g8", "b.g8", "c.g8"):
        assert re.search(rf"/in/{re.escape(name)} \S+ \d+ 2 .*exit=0", history), name
    assert re.search(r"/in/report\.bad \S+ \d+ 2 .*exit=3", history)
    assert "removed" in err and "expired" in err and "waitd stopped" in err
    assert sorted(os.listdir(passdir / "logfiles")) == ["incoming.1.A", "incoming.1.B", "incoming.1.C", "incoming.2.A"]
    assert "gvar_incproc: record 1 (gvar) got" in (passdir / "logfiles" / "incoming.1.A").read_text()
    assert waitds_on(passdir) == []


@pytest.mark.parametrize("to", ["group", "daemon"])
def test_demo_ends_cleanly_on_ctrl_c(tmp_path, to):
    # "group" is Ctrl-C on a terminal (INT to the foreground process group);
    # "daemon" is kill -INT of the demo's own pid.
    proc = _demo(tmp_path, start_new_session=True)
    try:
        wait_for(
            lambda: any("waitd started" in _read(d / "incoming.log") for d in tmp_path.glob("waitd-demo-*")),
            10,
            "the demo's daemon to start",
        )
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "demo: interrupted." in out
    assert "waitd stopped" in err
    (passdir,) = tmp_path.glob("waitd-demo-*")
    assert waitds_on(passdir) == []
    assert not (passdir / "waitd.pid").exists()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
