# SPDX-License-Identifier: MIT
"""A hostile spool and a hostile PASSDIR against the real waitd.

Removal never follows a symlink nor leaves the record's directory; what is
not a regular file is never handled nor removed; a handler inherits no
descriptor of waitd's; waitd's own files are never wider than 0644 and are
never opened through a link planted in PASSDIR; a table or handler that
anyone may write is warned about or refused.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Station, wait_for, waitd_cmd

from waitd.journal.history import Status

TOO_OLD_H = "0.0005"  # about 2 s: a file dropped once waitd runs is handled well before


def start(
    station: Station, *args: str, interval: float = 0.1, umask: int | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start waitd (see Station.start) and check that it is up."""
    proc = station.start(*args, interval=interval, umask=umask, prefix=prefix)
    assert proc.poll() is None, station.stderr()
    return proc


def victim(station: Station, name: str = "victim") -> Path:
    outside = station.root / "outside"
    outside.mkdir(exist_ok=True)
    path = outside / name
    path.write_text("precious\n")
    t = 1_000_000_000
    os.utime(path, (t, t))
    return path


def untouched(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.read_text() == "precious\n"


# -- symlinks in the spool -----------------------------------------------------------


def test_expiry_removes_the_link_never_its_target(station):
    target = victim(station)
    station.recorder()
    # A long wait age: the link is never handled, only expired.
    station.table(f"x in *.g8 {station.passdir}/rec 3600 -1 {TOO_OLD_H}")
    os.utime(target)  # a fresh target: the link is never due, only expired
    station.incoming.chmod(0o755)
    os.symlink(target, station.incoming / "x.g8")
    start(station)
    wait_for(lambda: "removed" in station.log(), 10, "the link to expire")
    assert not os.path.lexists(station.incoming / "x.g8")
    assert untouched(target)
    assert station.ran() == []
    assert station.stop() == 0


def test_keep_after_removes_the_link_never_its_target(station):
    target = victim(station)
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 0 0")
    station.incoming.chmod(0o755)
    os.symlink(target, station.incoming / "x.g8")
    start(station)
    wait_for(lambda: not os.path.lexists(station.incoming / "x.g8"), 10, "keep-after to remove the link")
    assert station.ran() == [bytes(station.incoming / "x.g8")]
    assert untouched(target)
    assert station.stop() == 0


def test_link_in_a_shared_spool_is_ignored(station):
    target = victim(station)
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 0 {TOO_OLD_H}")
    station.incoming.chmod(0o777)
    os.symlink(target, station.incoming / "x.g8")
    start(station)
    # Dropped once waitd runs: its spool time starts now, and a slow start
    # under load cannot expire it before it is handled.
    station.drop("real.g8", age_s=5)
    wait_for(lambda: station.ends(), 10, "the regular file handled")
    wait_for(lambda: "writable by group or others" in station.log(), 5, "the link to be logged")
    # Past hours-too-old: the real file expires, the link is still not touched.
    wait_for(lambda: not (station.incoming / "real.g8").exists(), 10, "the regular file to expire")
    assert os.path.islink(station.incoming / "x.g8")
    assert untouched(target)
    assert station.ran() == [bytes(station.incoming / "real.g8")]
    assert station.log().count("writable by group or others") == 1
    assert station.stop() == 0


def test_things_that_are_not_regular_files(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 0 {TOO_OLD_H}")
    (station.incoming / "dir.g8").mkdir()
    os.mkfifo(station.incoming / "fifo.g8")
    target = victim(station)
    os.symlink(station.root / "outside", station.incoming / "linkdir.g8")
    os.symlink(station.root / "nowhere", station.incoming / "dangling.g8")
    has_dev = True
    try:
        os.mknod(station.incoming / "null.g8", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        has_dev = False
    start(station)
    station.drop("real.g8", age_s=5)  # after the start, as above
    wait_for(lambda: station.ends(), 10, "the regular file handled")
    wait_for(lambda: not (station.incoming / "real.g8").exists(), 10, "the regular file removed")
    # Many polls past hours-too-old, the strange entries are all still there.
    assert (station.incoming / "dir.g8").is_dir()
    assert stat.S_ISFIFO(os.lstat(station.incoming / "fifo.g8").st_mode)
    assert os.path.islink(station.incoming / "linkdir.g8") and os.path.islink(station.incoming / "dangling.g8")
    if has_dev:
        assert stat.S_ISCHR(os.lstat(station.incoming / "null.g8").st_mode)
    assert untouched(target)
    assert station.ran() == [bytes(station.incoming / "real.g8")]
    assert {os.path.basename(e.path) for e in station.history()} == {"real.g8"}
    assert len(station.ends()) == 1
    log = station.log()
    assert "dir.g8: not a regular file" in log and "fifo.g8: not a regular file" in log
    assert station.stop() == 0


# -- the handler's process -------------------------------------------------------------------


def test_handler_inherits_no_descriptor_of_waitd(station):
    # The listing goes to the handler's stdout: its log file.
    h = station.handler("h", "ls -l /proc/$$/fd/\n")
    station.table(f"x in *.g8 {h} 0 -1 0", f"y {station.passdir}/in2 *.g8 {h} 3600 -1 0")
    (station.passdir / "in2").mkdir()
    station.drop("a.g8", age_s=5)
    start(station)
    wait_for(lambda: station.ends(), 10, "the handler's run")
    assert station.stop() == 0
    out = station.passdir / "logfiles" / "incoming.1.A"
    fds = {}
    for line in out.read_text().splitlines():
        if "->" in line:
            left, target = line.split(" -> ", 1)
            fds[int(left.split()[-1])] = target
    log_file = str(station.passdir / "logfiles" / "incoming.1.A")
    assert fds[0] == "/dev/null" and fds[1] == log_file and fds[2] == log_file
    for fd, target in fds.items():
        if fd > 2:
            # Only the shell's own: its script, or copies of 0-2.
            assert target in (str(h), "/dev/null", log_file), (fd, target)


def test_handler_inherits_no_descriptor_waitd_was_given(station, tmp_path):
    # A descriptor waitd's own parent left open (as a shell's 9>file does)
    # is not passed on to handlers either.
    h = station.handler("h", "ls -l /proc/$$/fd/\n")
    station.table(f"x in *.g8 {h} 0 -1 0")
    station.drop("a.g8", age_s=5)
    leaked = tmp_path / "parent-file"
    fd = os.open(leaked, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        station.start(pass_fds=(fd,))
    finally:
        os.close(fd)
    wait_for(lambda: station.ends(), 10, "the handler's run")
    assert station.stop() == 0
    listing = (station.passdir / "logfiles" / "incoming.1.A").read_text()
    assert "/dev/null" in listing  # the listing is there
    assert str(leaked) not in listing


# waitd started with SIGQUIT and SIGTSTP ignored (as nohup or python-daemon's
# signal map leave some), then exec'd.
IGNORING = (
    sys.executable,
    "-c",
    "import os, signal, sys\n"
    "for s in (signal.SIGQUIT, signal.SIGTSTP): signal.signal(s, signal.SIG_IGN)\n"
    "os.execv(sys.argv[1], sys.argv[1:])",
)


def test_handler_starts_with_default_signals_and_an_empty_mask(station):
    # Python ignores SIGPIPE and SIGXFSZ; a handler must not inherit that
    # (a `producer | head` in it would otherwise see EPIPE errors); nor the
    # signals waitd itself was started with ignored.
    h = station.handler("h", "grep -E '^Sig(Ign|Blk):' /proc/self/status\n")
    station.table(f"x in *.g8 {h} 0 -1 0")
    station.drop("a.g8", age_s=5)
    start(station, prefix=IGNORING)
    wait_for(lambda: station.ends(), 10, "the handler's run")
    assert station.stop() == 0
    out = (station.passdir / "logfiles" / "incoming.1.A").read_text()
    masks = dict(line.split(":\t") for line in out.splitlines() if line.startswith("Sig"))
    assert int(masks["SigBlk"], 16) == 0, out
    # Signals 1-31 (glibc's posix_spawn leaves its internal 32 and 33 ignored).
    assert int(masks["SigIgn"], 16) & 0x7FFFFFFF == 0, out


# -- waitd's own files ----------------------------------------------------------------------


def test_own_files_are_0644_or_tighter_under_umask_000(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("a.g8", age_s=5)
    start(station, umask=0)
    wait_for(lambda: station.ends(), 10, "the file handled")
    pid_mode = os.stat(station.passdir / "waitd.pid").st_mode
    station.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "HUP" in station.log(), 5, "the reload")
    assert station.stop() == 0
    modes = {"waitd.pid": pid_mode}
    for p in [station.passdir / n for n in ("incoming.log", "incoming.history", "waitd.status")] + list(
        (station.passdir / "logfiles").iterdir()
    ):
        modes[p.name] = os.stat(p).st_mode
    modes["logfiles/"] = os.stat(station.passdir / "logfiles").st_mode
    for name, mode in modes.items():
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{name} is {stat.filemode(mode)}"


@pytest.mark.parametrize("name", ["incoming.history", "incoming.log", "logfiles"])
def test_planted_symlink_in_passdir_is_refused(station, name):
    target = victim(station)
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    if name == "logfiles":
        target = station.root / "outside"
        (target / "incoming.1.A").write_text("precious\n")
        target = target / "incoming.1.A"
    os.symlink(target.parent if name == "logfiles" else target, station.passdir / name)
    station.drop("a.g8", age_s=5)
    done = subprocess.run(
        waitd_cmd("-f", "--passdir", str(station.passdir), "--interval", "0.1"),
        env=station.env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 1, done
    assert "symbolic link" in done.stderr and name in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert untouched(target)
    assert os.path.islink(station.passdir / name)
    assert "precious" not in done.stderr
    if name != "incoming.log":
        assert "precious" not in station.log()
    assert station.ran() == []


def test_planted_symlink_as_log_file_of_a_run(station):
    target = victim(station)
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    (station.passdir / "logfiles").mkdir()
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        os.symlink(target, station.passdir / "logfiles" / f"incoming.1.{letter}")
    station.drop("a.g8", age_s=5)
    start(station)
    # Either the run is refused, or the link is replaced by a log file of
    # waitd's own; never is the target written.
    wait_for(lambda: "cannot open log file" in station.log() or station.ends(), 10, "the refusal or the run")
    assert station.stop() == 0
    assert untouched(target)
    if station.ends():
        (log_file,) = [p for p in (station.passdir / "logfiles").iterdir() if not p.is_symlink()]
        assert "waitd: start record=1" in log_file.read_text()
    else:
        assert station.ran() == []


def test_planted_pid_file_link_is_not_followed(station):
    target = victim(station)
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    os.symlink(target, station.passdir / "waitd.pid")
    start(station)
    assert station.stop() == 0
    assert untouched(target)


# -- world-writable table and handler --------------------------------------------------------


def test_world_writable_table_is_warned_about(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    (station.passdir / "incoming").chmod(0o666)
    station.drop("a.g8", age_s=5)
    start(station)
    wait_for(lambda: station.ends(), 10, "the file handled all the same")
    assert f"{station.passdir}/incoming: writable by others" in station.log()
    station.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: station.log().count("writable by others") == 2, 5, "the warning again at HUP")
    assert station.stop() == 0


def test_world_writable_waitd_conf_is_warned_about(station):
    """waitd.conf says where events are written and sent: one that anyone
    may change is warned about like the table, at start and at each HUP."""
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    conf = station.passdir / "waitd.conf"
    conf.write_text("[sink log]\ntype = jsonl\npath = events.jsonl\n")
    conf.chmod(0o666)
    start(station)
    line = f"{conf}: writable by others (mode 0666); anyone can change where waitd writes and sends its events"
    wait_for(lambda: line in station.log(), 10, "the warning")
    station.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: station.log().count(line) == 2, 5, "the warning again at HUP")
    assert "incoming: writable by others" not in station.log()
    assert station.stop() == 0


def test_world_writable_handler_is_refused(station):
    h = station.recorder()
    h.chmod(0o777)
    station.table(f"x in *.g8 {h} 0 -1 0")
    station.drop("a.g8", age_s=5)
    start(station)
    wait_for(lambda: "inactive" in station.log(), 5, "the record made inactive")
    assert f"{h}: writable by others" in station.log()
    h.chmod(0o755)
    station.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: station.ends(), 10, "the file handled after the fix and a HUP")
    assert station.stop() == 0
    assert station.ran() == [bytes(station.incoming / "a.g8")]
    (end,) = station.ends()
    assert end.status is Status.KNOWN


def test_link_planted_after_the_spool_became_shared_is_ignored(station: Station):
    station.recorder()
    secret = station.root / "secret"
    secret.write_text("s3cret\n")
    station.incoming.chmod(0o755)
    station.table(f"x in *.txt {station.passdir}/rec 0 -1 0")
    station.start()
    station.incoming.chmod(0o1777)
    os.symlink(secret, station.incoming / "x.txt")
    station.drop("y.txt", age_s=5)
    wait_for(lambda: len(station.ends()) >= 1, 10, "y.txt handled")
    station.signal(signal.SIGALRM)
    wait_for(lambda: "writable by group or others" in station.log(), 10, "the link to be reported")
    assert station.ran() == [os.fsencode(station.incoming / "y.txt")]
    assert station.stop() == 0
    assert secret.read_text() == "s3cret\n"
