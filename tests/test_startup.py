# SPDX-License-Identifier: MIT
"""A waitd command imports what its path uses (issue 21).

The suite and operators start `waitd -s status` and `waitd --check` many
times; each used to load the whole daemon (the loop, the executors, the
sinks), about a third of a second of CPU.  Each case runs the real
command in a fresh Python and looks at what it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# What no command but the daemon's own run needs.
DAEMON_ONLY = ("waitd.daemon.loop", "waitd.run.launch", "waitd.sinks.supervisor", "waitd.spool.watch")
# Third-party packages that only a configuration that uses them may load.
OPTIONAL = ("celery", "kombu", "prometheus_client", "posttroll", "zmq", "stomp", "trollsift", "psutil")

PROBE = """\
import json, sys
from waitd.cli import main
try:
    code = main.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'waitd', *OPTIONAL})), file=sys.__stderr__)
""".replace("OPTIONAL", repr(OPTIONAL))


def _imported(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_status_and_check_load_no_daemon(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "incoming").write_text(f"t {tmp_path}/in *.dat /bin/true 1 -1 0\n")
    for args in (("--check",), ("-s", "status"), ("--help",)):
        modules = _imported(*args, "--passdir", str(tmp_path))
        assert "waitd.cli.main" in modules, args
        assert _loaded(modules, DAEMON_ONLY + OPTIONAL) == [], args


def test_status_and_help_load_no_table_parser(tmp_path: Path) -> None:
    """`-s status` and `--help` read neither the table nor waitd.conf: they
    import neither parser, nor the options and the activation of records
    (issue 21: the CPU of each command); `--check` of a table without
    claim=yes, not the queues' module."""
    (tmp_path / "in").mkdir()
    (tmp_path / "incoming").write_text(f"t {tmp_path}/in *.dat /bin/true 1 -1 0\n")
    parsers = ("waitd.config.table", "waitd.config.conf", "waitd.config.options", "waitd.spool.activation")
    for args in (("-s", "status"), ("--help",)):
        modules = _imported(*args, "--passdir", str(tmp_path))
        assert "waitd.cli.main" in modules, args
        assert _loaded(modules, parsers) == [], args
    checked = _imported("--check", "--passdir", str(tmp_path))
    assert "waitd.config.table" in checked
    assert "waitd.spool.claims" not in checked  # the queues': for claim=yes records only


def test_pattern_loads_trollsift_only_when_used(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "incoming").write_text(f"t {tmp_path}/in *.dat /bin/true 1 -1 0 pattern={{name}}.dat\n")
    assert "trollsift" in _imported("--check", "--passdir", str(tmp_path))


def test_daemon_loads_no_openssl(tmp_path: Path) -> None:
    """The daemon's own hashes (an event's id, the default instance name)
    come from CPython's _blake2 and _sha1: hashlib would map OpenSSL's
    libcrypto, 3.5 MB of resident memory at every start (issue 21, the
    scale case's peak RSS)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dat").write_bytes(b"x")
    (tmp_path / "incoming").write_text(f"t {tmp_path}/in *.dat /bin/true 0 -1 0\n")
    probe = PROBE.replace("m.split('.')[0] in", "m.split('.')[0].lstrip('_') in {'hashlib'} or m.split('.')[0] in")
    modules = _daemon_imported(tmp_path, probe)
    assert "waitd.daemon.loop" in modules  # the daemon ran
    assert {"hashlib", "_hashlib"} & modules == set()


# What a daemon whose table and waitd.conf use none of them does not import.
UNUSED = (
    "waitd.sinks.kinds",
    "waitd.sinks.jsonl",
    "waitd.sinks.posttroll",
    "waitd.sinks.stomp",
    "waitd.sinks.metrics",
    "waitd.run.executors.celery_app",
    "waitd.run.executors.celery",
    "waitd.config.geodata",
    "waitd.decide.regions",
    "waitd.daemon.http",
    "waitd.formats.events",
)


def _daemon_imported(passdir: Path, probe: str = PROBE) -> set[str]:
    """What a `waitd --once` on `passdir` imported, as `probe` reports it,
    once it has handled the file there.  A foreground waitd leaves by
    os._exit (start.leave): here it returns, so that the probe can say
    what was imported (--once imports start)."""
    probe = probe.replace("from waitd.cli import main\n", "from waitd.cli import main\nimport waitd.daemon.start\n")
    probe = probe.replace("try:\n", "waitd.daemon.start.leave = sys.exit\ntry:\n", 1)
    proc = subprocess.run(
        [sys.executable, "-c", probe, "--once", "--interval", "0.1", "--passdir", str(passdir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert " 2 " in (passdir / "incoming.history").read_text(), proc.stderr  # it handled the file
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_plain_daemon_loads_no_optional_modules(tmp_path: Path) -> None:
    """A daemon imports the sinks' kinds, the metrics, the events they are
    told, Celery's module, the regions' geodata and the HTTP server only
    when its table or waitd.conf uses them (issue 21: the CPU of each
    start); a waitd.conf with a sink loads its kind and the events."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dat").write_bytes(b"x")
    (tmp_path / "incoming").write_text(f"t {tmp_path}/in *.dat /bin/true 0 -1 0\n")
    modules = _daemon_imported(tmp_path)
    assert "waitd.daemon.loop" in modules
    assert _loaded(modules, UNUSED + OPTIONAL) == []
    (tmp_path / "waitd.conf").write_text(f"[sink j]\ntype = jsonl\npath = {tmp_path}/events.jsonl\n")
    (tmp_path / "in" / "b.dat").write_bytes(b"x")
    modules = _daemon_imported(tmp_path)
    assert {"waitd.sinks.kinds", "waitd.sinks.jsonl", "waitd.formats.events"} <= modules


def test_own_hashes_are_hashlibs() -> None:
    """The ids and the instance name are hashlib's digests, as before."""
    import hashlib

    from waitd.formats.events import event_id
    from waitd.spool.queue import default_instance

    assert event_id("a", 1) == hashlib.blake2b(b"a\x001", digest_size=16).hexdigest()
    passdir = "/var/spool/w\udcff"
    digest = hashlib.sha1(passdir.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    assert default_instance(passdir).endswith("-" + digest)


def test_watcher_runs_no_ldconfig() -> None:
    """inotify_simple's first INotify looked the C library up with
    ctypes.util.find_library, which runs `ldconfig -p` in a child process
    at every start of waitd: the watcher gives it the C library already
    loaded, and inotify works as before."""
    probe = (
        "import ctypes.util\n"
        "def refuse(name): raise AssertionError('find_library(%r)' % name)\n"
        "ctypes.util.find_library = refuse\n"
        "import os, tempfile\n"
        "from waitd.spool.watch import Watcher\n"
        "w = Watcher()\n"
        "d = tempfile.mkdtemp()\n"
        "st = os.stat(d)\n"
        "assert w.active and w.watch(d, (st.st_dev, st.st_ino))\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert proc.stdout == "ok\n", proc.stderr
