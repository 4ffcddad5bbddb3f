# SPDX-License-Identifier: MIT
"""make install and make uninstall, for real, into temporary prefixes.

One install serves the whole run (`installed`): made with DESTDIR as
packagers do, then moved to its PREFIX; make uninstall runs on a copy of
it.  It is made in the background from the start of the run (`begin`,
called by conftest once the tests are collected), while the other tests
run: most of its minute is pip waiting on PyPI.  The installed programs run from outside the tree, with a clean
environment and as an unprivileged user; `man` finds the installed pages;
the systemd unit of conf/ verifies clean against what was installed; the
logrotate example of conf/ rotates incoming.log under a running installed
waitd.  A prefix lies in a directory open to other users (pytest's
tmp_path is not), so that `nobody` can run what is in it.
"""

from __future__ import annotations

import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_dir, wait_for

from waitd import __version__

ROOT = Path(__file__).resolve().parent.parent
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
PAGES = {
    "waitd": "man8/waitd.8",
    "incoming": "man5/incoming.5",
    "waitd.conf": "man5/waitd.conf.5",
    "tlogview": "man1/tlogview.1",
}
SBIN_PATH = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")


def tool(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def make(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["make", "-s", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"make {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def open_tmpdir() -> Path:
    """A new directory under /tmp that other users may enter."""
    path = Path(tempfile.mkdtemp(prefix="waitd-install-", dir="/tmp"))
    path.chmod(0o755)
    return path


def nobody() -> tuple[int, int]:
    user = pwd.getpwnam("nobody")
    return user.pw_uid, user.pw_gid


def files_under(top: Path) -> list[Path]:
    """Everything under `top` that is not a directory (links included)."""
    return [
        Path(d, name)
        for d, dirs, names in os.walk(top)
        for name in names + [x for x in dirs if Path(d, x).is_symlink()]
    ]


@dataclass(frozen=True)
class Installed:
    """The run's one install, and what its DESTDIR staging held before the move."""

    prefix: Path
    bin_files: list[str]
    pages_differing: list[str]  # man pages not the same as man/'s
    naming_stage: list[str]  # files that name the staging directory
    final_existed: bool  # PREFIX existed before the move
    stage_left: list[str]  # files left in the staging directory after the move


def install(base: Path) -> dict[str, Any]:
    """`make install` with DESTDIR, moved to its PREFIX; what `Installed` says."""
    stage, final = base / "stage", base / "usr"
    make("install", f"DESTDIR={stage}", f"PREFIX={final}")
    staged = Path(f"{stage}{final}")
    seen = {
        "prefix": str(final),
        "bin_files": sorted(p.relative_to(staged).as_posix() for p in files_under(staged / "bin")),
        "pages_differing": [
            page
            for page in PAGES.values()
            if (staged / "share/man" / page).read_bytes() != (ROOT / "man" / Path(page).name).read_bytes()
        ],
        "naming_stage": [
            str(p) for p in files_under(staged) if not p.is_symlink() and str(stage).encode() in p.read_bytes()
        ],
        "final_existed": final.exists(),
    }
    staged.rename(final)
    return dict(seen, stage_left=[str(p) for p in files_under(stage)])


INSTALL_S = 600.0  # how long the install may take before its tests fail (make's own timeout)
# The launcher forks the install into a session of its own and exits: the
# install is then no child of the test process (the tests look for those).
LAUNCH = """import os, sys
if os.fork() == 0:
    os.setsid()
    with open(os.path.join(sys.argv[3], "install.pid"), "w") as pid:
        pid.write(str(os.getpid()))
    sys.path[:0] = sys.argv[1:3]
    import test_install
    test_install.main(test_install.Path(sys.argv[3]))
"""


def begin(shared: Path) -> None:
    """Start the run's one install in the background (`main`), once for
    the run: the first test process to call this starts it, under a lock;
    the others find it started.  `pytest_sessionfinish` ends it if the
    run ends first."""
    with open(shared / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = shared / "install.started"
        if started.exists():
            return
        started.touch()
        with open(shared / "install.out", "wb") as out:
            subprocess.run(
                [sys.executable, "-c", LAUNCH, str(ROOT), str(ROOT / "tests"), str(shared)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=True,
            )


def main(shared: Path) -> None:
    """The background install (`LAUNCH` runs it): `install.json` is what
    `Installed` says, or the error; `install.pid` names its process group."""
    try:
        made: dict[str, Any] = install(shared / "install")
    except BaseException as exc:  # a failed make, a timeout, a bug here: each test that needs it says so
        made = {"error": f"make install: {exc!r}" if not isinstance(exc, AssertionError) else str(exc)}
    tmp = shared / "install.json.tmp"
    tmp.write_text(json.dumps(made))
    tmp.rename(shared / "install.json")


@pytest.fixture(scope="session")
def installed() -> Installed:
    """The run's one install (a virtual environment that pip fills: the
    longest set-up of the suite), made as packagers do (DESTDIR, then moved
    to its PREFIX) and shared by every test process of the run, in
    `conftest.shared_dir()` (open to other users; removed at the end of
    the run).  Started by `begin` when the run's tests were collected (and
    here, if not); its tests run last (conftest), so that they seldom wait
    for it.  A failed install is recorded too, and fails each test that
    needs it, without a new try."""
    shared = shared_dir()
    begin(shared)
    record, pid = shared / "install.json", shared / "install.pid"

    def over() -> bool:
        if record.exists():
            return True
        try:
            os.kill(int(pid.read_text()), 0)
        except (FileNotFoundError, ValueError):  # not yet started
            return False
        except ProcessLookupError:  # gone: with its record, or without
            if not record.exists():
                pytest.fail(f"make install ended with no record: {(shared / 'install.out').read_text()}")
            return True
        return False

    wait_for(over, INSTALL_S, "make install")
    done = json.loads(record.read_text())
    if "error" in done:
        pytest.fail(done["error"])
    return Installed(**dict(done, prefix=Path(done["prefix"])))


@pytest.fixture
def prefix(installed: Installed) -> Path:
    return installed.prefix


def passdir_for_nobody(base: Path, table: str) -> Path:
    """A PASSDIR with the given table and an `in` spool, owned by nobody."""
    passdir = base / "pass"
    (passdir / "in").mkdir(parents=True)
    (passdir / "incoming").write_text(table)
    uid, gid = nobody()
    for path in (passdir, passdir / "in", passdir / "incoming"):
        os.chown(path, uid, gid)
    return passdir


def test_programs_run_from_anywhere_with_a_clean_environment(prefix, tmp_path):
    version = subprocess.run(
        [prefix / "bin/waitd", "--version"], cwd=tmp_path, env=CLEAN_ENV, capture_output=True, text=True, timeout=60
    )
    assert (version.returncode, version.stdout, version.stderr) == (0, f"waitd {__version__}\n", "")
    usage = subprocess.run(
        [prefix / "bin/tlogview", "--help"], cwd=tmp_path, env=CLEAN_ENV, capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 0 and usage.stdout.startswith("usage: tlogview"), usage.stderr
    # Isolated: a PYTHONPATH with another waitd package in it changes nothing.
    (tmp_path / "waitd").mkdir()
    (tmp_path / "waitd/__init__.py").write_text("raise SystemExit('the waitd of PYTHONPATH')\n")
    shadowed = subprocess.run(
        [prefix / "bin/waitd", "--version"],
        cwd=tmp_path,
        env=dict(CLEAN_ENV, PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (shadowed.returncode, shadowed.stdout) == (0, f"waitd {__version__}\n"), shadowed.stderr
    where = subprocess.run(
        [prefix / "lib/waitd/bin/python", "-c", "import waitd; print(waitd.__file__)"],
        cwd="/",
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(f"{prefix}/lib/waitd/lib/"), where.stdout + where.stderr


@needs_root
def test_installed_waitd_drains_a_spool_as_an_unprivileged_user(prefix):
    base = open_tmpdir()
    try:
        passdir = passdir_for_nobody(base, "data in *.dat ./handler 0 -1 0\n")
        handler = passdir / "handler"
        handler.write_text('#!/bin/sh\nprintf "%s\\n" "$1" >> "$WAITD_PASSDIR/done"\n')
        handler.chmod(0o755)
        (passdir / "in/a.dat").write_text("a")
        uid, gid = nobody()
        os.chown(handler, uid, gid)
        drain = subprocess.run(
            [prefix / "bin/waitd", "--once", "--passdir", passdir],
            cwd="/",
            env=CLEAN_ENV,
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert drain.returncode == 0, drain.stderr
        assert (passdir / "done").read_text() == f"{passdir}/in/a.dat\n"
        assert (passdir / "done").stat().st_uid == uid
        history = (passdir / "incoming.history").read_text()
        assert re.search(r" 2 .*exit=0", history), history
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(tool("man") is None, reason="man (man-db) is not installed")
def test_man_finds_the_installed_pages(prefix):
    for name, page in PAGES.items():
        found = subprocess.run(
            ["man", "-M", prefix / "share/man", "-w", name], capture_output=True, text=True, timeout=30
        )
        assert (found.returncode, found.stdout) == (0, f"{prefix}/share/man/{page}\n"), found.stderr


def verify(unit: Path, manpath: Path) -> str:
    """What `systemd-analyze verify` says of `unit`; it exits 0 after many warnings."""
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", unit],
        env={"PATH": SBIN_PATH, "MANPATH": str(manpath)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@pytest.mark.skipif(tool("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies_clean_against_the_install(prefix, tmp_path):
    """The unit of conf/, its /usr/local/bin/waitd made the installed one and
    its User= (xtuser, missing here) the user running the tests, verifies with
    no word: its commands exist and `man` finds its Documentation= pages."""
    text = (ROOT / "conf/waitd.service").read_text()
    assert len(re.findall(r"^Exec\w+=/usr/local/bin/waitd ", text, re.M)) == 2 and "\nUser=xtuser\n" in text
    assert "\nType=notify\n" in text and "\nNotifyAccess=" not in text  # main: only waitd may notify
    user = pwd.getpwuid(os.geteuid()).pw_name
    unit = tmp_path / "waitd.service"
    unit.write_text(text.replace("/usr/local/bin/", f"{prefix}/bin/").replace("\nUser=xtuser\n", f"\nUser={user}\n"))
    assert verify(unit, prefix / "share/man") == "exit 0\n"
    # What the check catches: a misspelt key is only a warning (exit 0 still).
    unit.write_text(unit.read_text().replace("Restart=on-abnormal", "Restrat=on-abnormal"))
    said = verify(unit, prefix / "share/man")
    assert said.startswith("exit 0\n") and "Unknown key 'Restrat'" in said


@pytest.mark.skipif(tool("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_worker_unit_verifies_clean_against_the_install(prefix, tmp_path):
    """conf/waitd-worker.service (waitd worker, run=celery), made to name the
    installed waitd and the user running the tests, verifies with no word."""
    text = (ROOT / "conf/waitd-worker.service").read_text()
    assert len(re.findall(r"^ExecStart=/usr/local/bin/waitd worker ", text, re.M)) == 1
    user = pwd.getpwuid(os.geteuid()).pw_name
    unit = tmp_path / "waitd-worker.service"
    unit.write_text(text.replace("/usr/local/bin/", f"{prefix}/bin/").replace("\nUser=xtuser\n", f"\nUser={user}\n"))
    assert verify(unit, prefix / "share/man") == "exit 0\n"


@needs_root
@pytest.mark.skipif(tool("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_example_rotates_under_a_running_waitd(prefix):
    """conf/waitd.logrotate, with the test's PASSDIR, nobody for xtuser and the
    installed waitd: the log is renamed and the running waitd opens a new one."""
    base = open_tmpdir()
    uid, gid = nobody()
    try:
        passdir = passdir_for_nobody(base, "data in *.dat /bin/true 0 -1 0\n")
        group = grp.getgrgid(gid).gr_name
        conf = (ROOT / "conf/waitd.logrotate").read_text()
        assert "su xtuser xtuser" in conf and "runuser -u xtuser" in conf
        conf = conf.replace("/var/spool/waitd", str(passdir)).replace("/usr/local/bin/", f"{prefix}/bin/")
        (base / "waitd.logrotate").write_text(
            conf.replace("su xtuser xtuser", f"su nobody {group}").replace("xtuser", "nobody")
        )
        log = passdir / "incoming.log"
        with open(base / "stderr", "wb") as err:
            daemon = subprocess.Popen(
                [prefix / "bin/waitd", "-f", "--passdir", passdir],
                cwd="/",
                env=CLEAN_ENV,
                user=uid,
                group=gid,
                extra_groups=[],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        try:
            wait_for(lambda: log.exists() and "waitd started" in log.read_text(), 20, "waitd to start")
            rotate = subprocess.run(
                [tool("logrotate"), "-f", "-s", base / "state", base / "waitd.logrotate"],
                env={"PATH": SBIN_PATH},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (rotate.returncode, rotate.stdout + rotate.stderr) == (0, "")
            assert "waitd started" in (passdir / "incoming.log.1").read_text()
            wait_for(lambda: log.exists() and "HUP" in log.read_text(), 20, "waitd to open a new incoming.log")
            assert "waitd started" not in log.read_text() and log.stat().st_uid == uid
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0, (base / "stderr").read_text()
    finally:
        shutil.rmtree(base)


def test_destdir_install_works_once_moved(installed):
    assert not installed.final_existed
    assert installed.bin_files == ["bin/tlogview", "bin/waitd"]
    assert installed.pages_differing == []
    assert installed.naming_stage == [], "files that name the staging directory"
    assert installed.stage_left == []
    version = subprocess.run(
        [installed.prefix / "bin/waitd", "--version"],
        cwd=installed.prefix.parent,
        env=CLEAN_ENV,
        capture_output=True,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr


def test_uninstall_leaves_empty_directories(prefix):
    """On a copy of the run's install (hard links), which other tests go on using."""
    base = open_tmpdir()
    try:
        copy = base / "usr"
        shutil.copytree(prefix, copy, symlinks=True, copy_function=os.link)
        make("uninstall", f"PREFIX={copy}")
        assert files_under(copy) == []
        assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == [
            "bin",
            "lib",
            "share",
            "share/man",
            "share/man/man1",
            "share/man/man5",
            "share/man/man8",
        ]
    finally:
        shutil.rmtree(base)


def test_install_and_uninstall_leave_a_foreign_lib_directory_alone(tmp_path):
    """$(PREFIX)/lib/waitd that is not a virtual environment is not removed."""
    keep = tmp_path / "lib/waitd/keep"
    keep.parent.mkdir(parents=True)
    keep.write_text("mine")
    for target in ("install", "uninstall"):
        result = subprocess.run(
            ["make", "-s", "-C", str(ROOT), target, f"PREFIX={tmp_path}"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0 and "is not a virtual environment made by make install" in result.stderr
        assert keep.read_text() == "mine"
