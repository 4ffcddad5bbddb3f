# SPDX-License-Identifier: MIT
"""Faults injected for real into a running waitd: a full disk, a vanishing
directory or file, handlers that cannot run, fail, hang or die by a signal,
signal storms, clocks that lie, and file names built to break a shell.

Each test starts the real daemon (`station`), makes the fault happen, and
checks the outcome in the history, the log and the spool.  Back-off lasts
10 s: the tests check that it holds, never wait for it to end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import Station, deliver, fill, quiet_for, small_tmpfs, wait_for

from waitd.journal.history import Status

# -- helpers ------------------------------------------------------------------


def start(station: Station, *args: str, interval: float = 0.2) -> subprocess.Popen[bytes]:
    """Start waitd (see Station.start) and check that it is up."""
    proc = station.start(*args, interval=interval)
    assert proc.poll() is None, station.stderr()
    return proc


def ends_of(station: Station, name: str):
    return [e for e in station.ends() if os.path.basename(e.path) == name]


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs; skipped when not root or when mounting fails."""
    with small_tmpfs(tmp_path / "small") as mnt:
        yield mnt


# -- the disk -------------------------------------------------------------------


def test_full_history_disk_holds_starts_and_resumes(station, tmpfs):
    # PASSDIR on the small tmpfs; the spool and the handler elsewhere.
    spool = station.root / "spool"
    spool.mkdir()
    station.passdir = tmpfs
    station.env["PASSDIR"] = str(tmpfs)
    handler = station.root / "rec"
    handler.write_text(f'#!/bin/sh\nprintf "%s\\0" "$1" >> "{station.root}/ran"\n')
    handler.chmod(0o755)
    (tmpfs / "incoming").write_text(f"x {spool} *.g8 {handler} 0 -1 0\n")

    def ran() -> list[bytes]:
        try:
            return [p for p in (station.root / "ran").read_bytes().split(b"\0") if p]
        except FileNotFoundError:
            return []

    start(station, "--stop-timeout", "1", interval=0.1)
    deliver(station, "first.g8", age_s=5, directory=spool)
    wait_for(lambda: len(station.ends()) == 1, 10, "first file handled")

    filler = fill(tmpfs)
    names = [f"full{i:02d}.g8" for i in range(40)]
    for name in names:
        deliver(station, name, age_s=5, directory=spool)
    wait_for(
        lambda: "cannot record the start" in station.stderr() or "cannot append event" in station.stderr(),
        15,
        "the history error to be logged",
    )

    # Every file the handler got was recorded first (status 0 on disk); let
    # the handlers already under way write their line.
    def started() -> set[bytes]:
        return {os.fsencode(e.path) for e in station.history() if e.status is Status.STARTED}

    wait_for(lambda: set(ran()) == started(), 5, "the handlers under way")
    ran_now = ran()
    assert set(ran_now) <= started()
    # And while the disk stays full, nothing more starts.
    quiet_for(0.8, lambda: len(ran()) == len(ran_now))
    assert len(ran_now) < 1 + len(names)

    filler.unlink()
    wait_for(
        lambda: len({e.path for e in station.ends()}) == 1 + len(names), 15, "every file handled once space returned"
    )
    assert station.stop() == 0
    assert sorted(ran()) == sorted(os.fsencode(spool / n) for n in ["first.g8", *names])
    ends = station.ends()
    assert len(ends) == 1 + len(names), "a file was recorded twice"
    assert all(e.status is Status.KNOWN and e.exit == 0 for e in ends)
    assert "no handler starts for" not in station.stderr(), "a full disk is not the handler's fault"


def test_logfiles_directory_unwritable(station):
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    start(station)
    logfiles = station.passdir / "logfiles"
    if subprocess.run(["chattr", "+i", str(logfiles)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        deliver(station, "a.g8", age_s=5)
        wait_for(lambda: "cannot open log file" in station.log(), 10, "the log file error")
        assert "no handler starts for 10 s" in station.log()
        quiet_for(0.5, lambda: station.ran() == [] and station.history() == [])
        assert (station.incoming / "a.g8").exists()
    finally:
        subprocess.run(["chattr", "-i", str(logfiles)], capture_output=True)
    station.signal(signal.SIGHUP)  # a HUP ends the back-off
    wait_for(lambda: len(station.ends()) == 1, 10, "the file handled after the HUP")
    assert station.stop() == 0
    assert station.ran() == [bytes(station.incoming / "a.g8")]


# -- the spool ----------------------------------------------------------------------


def test_incoming_directory_removed_and_recreated(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("before.g8", age_s=5)
    start(station, interval=0.1)
    wait_for(lambda: len(station.ends()) == 1, 10, "first file")
    for p in station.incoming.iterdir():
        p.unlink()
    station.incoming.rmdir()
    wait_for(lambda: "directory is gone" in station.log(), 10, "the loss to be logged")
    station.incoming.mkdir()
    deliver(station, "after.g8", age_s=5)
    wait_for(lambda: len(station.ends()) == 2, 10, "a file dropped in the new directory")
    assert station.stop() == 0
    assert [os.path.basename(p) for p in station.ran()] == [b"before.g8", b"after.g8"]


def test_file_vanishing_before_its_run(station):
    # The run of the oldest file removes the next oldest one; a long
    # interval so that no poll lists the directory in between.
    station.handler(
        "h",
        f'printf "%s\\0" "$1" >> "{station.passdir}/ran"\n'
        f'case "$1" in */a.g8) rm -f "{station.incoming}/b.g8";; esac\n',
    )
    station.table(f"x in *.g8 {station.passdir}/h 0 -1 0")
    for name, age in (("a.g8", 30), ("b.g8", 20), ("c.g8", 10)):
        station.drop(name, age_s=age)
    start(station, interval=30)
    wait_for(lambda: len(station.ends()) == 2, 10, "a and c handled")
    assert station.stop() == 0
    assert [os.path.basename(p) for p in station.ran()] == [b"a.g8", b"c.g8"]
    assert not [e for e in station.history() if e.path.endswith("/b.g8")]
    assert "unexpected error" not in station.log()


# -- handlers that cannot run ---------------------------------------------------


HOWS = ("gone", "not-executable", "bad-interpreter")


def test_handler_that_cannot_be_executed(station):
    """Three records, each with its handler broken its own way: each record
    holds on its own (its own back-off), and one daemon shows all three."""
    dirs = {how: station.incoming / how for how in HOWS}
    handlers = {how: station.recorder(f"h-{how}") for how in HOWS}
    for d in dirs.values():
        d.mkdir()
    station.table(*(f"{how} {dirs[how]} *.g8 {handlers[how]} 0 -1 0" for how in HOWS))
    start(station, interval=0.1)
    # Break the handlers after the table was read, then deliver five files each.
    handlers["gone"].unlink()
    handlers["not-executable"].chmod(0o644)
    handlers["bad-interpreter"].write_text("#!/nonexistent/interpreter\nexit 0\n")
    for how in HOWS:
        for i in range(5):
            deliver(station, f"f{i}.g8", age_s=10 - i, directory=dirs[how])
    wait_for(lambda: len(station.ends()) == len(HOWS), 10, "the failed starts to be recorded")
    backoff = "record {}: could not start a handler; no handler starts for 10 s"
    numbers = range(1, len(HOWS) + 1)
    wait_for(lambda: all(backoff.format(n) in station.log() for n in numbers), 5, "each record's back-off")
    lines = station.log().splitlines()
    for number, how in zip(numbers, HOWS, strict=True):
        assert [line for line in lines if f"record {number}: {dirs[how]}/f0.g8: cannot execute " in line], lines
    ends = {os.path.basename(os.path.dirname(e.path)): e for e in station.ends()}
    assert sorted(ends) == sorted(HOWS)
    for how, end in ends.items():
        assert end.status is Status.UNKNOWN and end.error, end
        assert end.path == f"{dirs[how]}/f0.g8"
    # One attempt each, then each record holds: no sweep through the spool.
    # (Count files, not lines: the compaction after the first pass may have
    # left only the end line of each f0.)
    quiet_for(1.0, lambda: {e.path for e in station.history()} == {f"{d}/f0.g8" for d in dirs.values()})
    assert len(station.ends()) == len(HOWS)
    for d in dirs.values():
        assert sorted(p.name for p in d.iterdir()) == [f"f{i}.g8" for i in range(5)]
    assert station.ran() == []
    assert station.stop() == 0


def test_fast_failing_handler_backs_off_after_five(station):
    h = station.handler("h", f'printf "%s\\0" "$1" >> "{station.passdir}/ran"\nexit 3\n')
    station.table(f"x in *.g8 {h} 0 -1 0")
    for i in range(8):
        station.drop(f"f{i}.g8", age_s=20 - i)
    start(station, interval=0.1)
    wait_for(lambda: "no handler starts for 10 s" in station.log(), 10, "the back-off")
    # The fifth end is written just after the back-off is decided.
    wait_for(lambda: len(station.ends()) >= 5, 5, "the fifth end")
    assert len(station.ends()) == 5
    quiet_for(1.0, lambda: len(station.ran()) == 5 and len(station.ends()) == 5)
    assert all(e.status is Status.KNOWN and e.exit == 3 for e in station.ends())
    assert station.log().count("no handler starts for") == 1
    assert station.stop() == 0
    assert len(list(station.incoming.iterdir())) == 8, "failed files are never removed by keep-after"


# -- handlers that hang, fork, or die ------------------------------------------------


def _pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_hung_handler_killed_with_its_group_on_stop(station):
    """Two records, one hung handler each, ended by one stop."""
    pids = {kind: station.passdir / f"pids-{kind}" for kind in ("ignores-term", "grandchildren")}
    # The handler and what it starts ignore TERM: KILL must follow.
    ignores = f"trap '' TERM\necho $$ >> {pids['ignores-term']}\nsleep 60 & echo $! >> {pids['ignores-term']}\nwait\n"
    # The handler dies of TERM, but leaves grandchildren that ignore it
    # and hold its log file open.
    grand = pids["grandchildren"]
    leaves = (
        f"echo $$ >> {grand}\n"
        f"(trap '' TERM; exec sleep 60) & echo $! >> {grand}\n"
        f"(trap '' TERM; exec sleep 60) & echo $! >> {grand}\n"
        "sleep 60\n"
    )
    dirs = {kind: station.incoming / kind for kind in pids}
    for d in dirs.values():
        d.mkdir()
    h1, h2 = station.handler("h1", ignores), station.handler("h2", leaves)
    station.table(f"x {dirs['ignores-term']} *.g8 {h1} 0 -1 0", f"y {dirs['grandchildren']} *.g8 {h2} 0 -1 0")
    for d in dirs.values():
        station.drop("a.g8", age_s=5, directory=d)
    start(station, "--stop-timeout", "0.5")
    wait_for(lambda: len(_pids(pids["ignores-term"])) >= 2, 10, "the first handler's processes")
    wait_for(lambda: len(_pids(pids["grandchildren"])) >= 3, 10, "the second handler's processes")
    t0 = time.monotonic()
    assert station.stop(timeout=15) == 0
    assert time.monotonic() - t0 < 8
    ends = {os.path.basename(os.path.dirname(e.path)): e for e in station.ends()}
    assert sorted(ends) == sorted(pids) and len(station.ends()) == 2
    for end in ends.values():
        assert end.status is Status.UNKNOWN and end.signal in ("SIGKILL", "SIGTERM"), end
    assert ends["ignores-term"].signal == "SIGKILL"
    wait_for(lambda: all(_gone(p) for f in pids.values() for p in _pids(f)), 5, "every process of the groups gone")


def test_handler_killed_by_a_signal(station):
    h = station.handler("h", 'ulimit -c 0\ncase "$1" in\n*/segv.g8) kill -SEGV $$;;\n*) kill -9 $$;;\nesac\n')
    station.table(f"x in *.g8 {h} 0 -1 0")
    station.drop("segv.g8", age_s=10)
    station.drop("kill.g8", age_s=5)
    start(station)
    wait_for(lambda: len(station.ends()) == 2, 10, "both runs ended")
    assert station.stop() == 0
    signals = {os.path.basename(e.path): (e.status, e.signal) for e in station.ends()}
    assert signals == {"segv.g8": (Status.UNKNOWN, "SIGSEGV"), "kill.g8": (Status.UNKNOWN, "SIGKILL")}
    assert "killed by signal SIGKILL" in station.log()
    assert sorted(p.name for p in station.incoming.iterdir()) == ["kill.g8", "segv.g8"]


# -- signal storms ---------------------------------------------------------------------


def test_signal_storm_loses_nothing(station):
    h = station.recorder("h", extra="sleep 0.03\n")
    station.table(f"x in *.g8 {h} 0 -1 0")
    n = 20
    for i in range(n):
        station.drop(f"f{i:02d}.g8", age_s=30 - i)
    start(station, interval=0.2)
    pid = station.proc.pid
    stop = threading.Event()
    sent = [0]

    def storm() -> None:
        sigs = (signal.SIGHUP, signal.SIGALRM, signal.SIGCHLD)
        deadline = time.monotonic() + 1.0
        while not stop.is_set() and (time.monotonic() < deadline or len(station.ends()) < n):
            try:
                os.kill(pid, sigs[sent[0] % 3])
            except ProcessLookupError:
                return
            sent[0] += 1
            time.sleep(0.002)
            if time.monotonic() > deadline + 20:
                return

    thread = threading.Thread(target=storm)
    thread.start()
    try:
        wait_for(lambda: len(station.ends()) >= n, 30, "every file handled under the storm")
    finally:
        stop.set()
        thread.join()
    assert station.proc.poll() is None, "waitd died under the storm"
    assert station.stop() == 0
    assert sent[0] > 200
    ends = station.ends()
    assert len(ends) == n and len({e.path for e in ends}) == n, "a file ran twice or an exit was lost"
    assert all(e.status is Status.KNOWN and e.exit == 0 for e in ends)
    assert sorted(station.ran()) == sorted(os.fsencode(station.incoming / f"f{i:02d}.g8") for i in range(n))
    assert "unexpected error" not in station.log()


# -- the clock ---------------------------------------------------------------------------


def test_mtime_in_the_future_counts_from_first_seen(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 1 -1 0")
    path = station.drop("future.g8")
    t = time.time() + 3600
    os.utime(path, (t, t))
    before = time.time()
    start(station, interval=0.1)
    ready = time.time()  # it was first seen between the two (a slow start on a busy machine)
    wait_for(lambda: station.ends(), 10, "the future file handled")
    at = station.ends()[0].at
    assert at - before >= 0.9, at - before  # its wait age, from when it was first seen
    assert at - ready < 4, at - ready  # not from its mtime, an hour ahead
    assert station.log().count("mtime is in the future") == 1
    assert station.stop() == 0


def test_archival_mtime_is_not_expired_on_arrival(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 4")
    path = station.drop("old.g8")
    t = time.mktime((2001, 9, 1, 12, 0, 0, 0, 0, -1))
    os.utime(path, (t, t))
    start(station)
    wait_for(lambda: station.ends(), 10, "the archival file handled")
    assert station.stop() == 0
    (end,) = station.ends()
    assert end.status is Status.KNOWN and end.exit == 0 and end.mtime == int(t)
    assert (station.incoming / "old.g8").exists()
    assert "removed" not in station.log()


# -- bad input: names ---------------------------------------------------------------------

NAUGHTY = [
    b"with space",
    b" leading and trailing ",
    b"new\nline",
    b"tab\tand\rcarriage",
    b"'single' \"double\"",
    b"$(touch pwned)",
    b"`touch pwned`",
    b"a;touch pwned;b",
    b"a|touch pwned",
    b"a&&touch pwned",
    b"-rf",
    b"-",
    b"--",
    b"-n",
    b"*",
    b"?",
    b"[a]",
    b"back\\slash",
    b"%s%n%x",
    b"\xff\xfe not utf-8 \x80",
    b"\x1b[31mescape",
    "éé unicode ✓".encode(),
    b"x" * 255,
    b"a.",
    b"a..b",
    b"~user",
    b"$HOME",
    b"#comment",
]
DOTTED = [b"...", b"..x", b".hidden file", b".-rf"]


def test_naughty_names_are_one_exact_argument(station):
    h = station.handler("h", f'printf "%s\\0" "$#" "$@" >> "{station.passdir}/argv"\n')
    dotted = station.root / "dotted"
    dotted.mkdir()
    station.table(f"plain {station.incoming} * {h} 0 -1 0", f"dots {dotted} .* {h} 0 -1 0")
    plain = [station.drop(n, age_s=5) for n in NAUGHTY]
    # Names with a leading dot never match `*`.
    hidden = [station.drop(n, age_s=5) for n in DOTTED]
    dots = [station.drop(n, age_s=5, directory=dotted) for n in DOTTED]
    start(station)
    want = len(plain) + len(dots)
    wait_for(lambda: len(station.ends()) >= want, 20, "every file handled")
    assert station.stop() == 0
    fields = (station.passdir / "argv").read_bytes().split(b"\0")[:-1]
    argvs = [fields[i + 1] for i in range(0, len(fields), 2)]
    assert [fields[i] for i in range(0, len(fields), 2)] == [b"1"] * want, "a name became several arguments"
    assert sorted(argvs) == sorted(plain + dots)
    assert not set(hidden) & set(argvs)
    assert sorted(os.fsencode(e.path) for e in station.ends()) == sorted(plain + dots)
    assert all(e.status is Status.KNOWN and e.exit == 0 for e in station.ends())
    for d in (station.incoming, station.passdir, dotted, Path("/")):
        assert not (d / "pwned").exists()
