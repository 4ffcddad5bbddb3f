# SPDX-License-Identifier: MIT
"""`remote.run`'s supervisor, in a process tree built as a Celery worker's
is, without Celery or a broker: a main process in a process group of its
own (as a shell with job control, or systemd, starts a worker), a pool
process under it that runs `remote.run`, the supervisor it forks, and the
handler in its own session, with a child of its own.

Whatever is killed with SIGKILL (the worker's whole process group, its
main process alone, the pool process, the supervisor itself), the
handler's whole process group dies within seconds.  The real Celery
worker is killed in test_daemon_celery.py; these cases cost no broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
from conftest import ROOT, wait_for

# The pool process: `remote.run` of a handler, its result into a file.
POOL = """
import json, os, sys
from waitd.worker import task as remote
out, body = sys.argv[1], sys.argv[2]
result = remote.run("/bin/sh", ["sh", "-c", body], dict(os.environ), os.path.dirname(out))
with open(out + ".tmp", "w") as f:
    json.dump(result, f)
os.rename(out + ".tmp", out)
"""
# The worker's main process: starts the pool process and waits.
MAIN = "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', sys.argv[1], *sys.argv[2:]]))"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("victim", ["worker's group", "main process", "pool process", "supervisor"])
def test_whatever_kills_the_worker_the_handler_group_dies_with_it(tmp_path, victim):
    pids = tmp_path / "pids"
    result = tmp_path / "result.json"
    # The handler and a child of its own, both in the handler's group.
    body = f'echo $$ >> "{pids}"; sleep 60 & echo $! >> "{pids}"; wait'
    main = subprocess.Popen(
        [sys.executable, "-c", MAIN, POOL, str(result), body],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        handler, child = wait_for(
            lambda: pids.exists() and len(pids.read_text().split()) == 2 and pids.read_text().split(),
            10,
            "the handler and its child",
        )
        handler, child = int(handler), int(child)
        supervisor = psutil.Process(handler).parent()
        assert supervisor is not None
        pool = supervisor.parent()
        assert pool is not None and pool.ppid() == main.pid
        assert os.getpgid(handler) == handler and os.getpgid(child) == handler
        if victim == "worker's group":
            os.killpg(main.pid, signal.SIGKILL)  # kill -9 -- -PGID
        elif victim == "main process":
            main.kill()
        elif victim == "pool process":
            pool.kill()
        else:
            supervisor.kill()
        wait_for(lambda: gone(handler) and gone(child), 5, "the handler's group to die")
        if victim in ("main process", "supervisor"):
            # The pool process lives on and tells the run lost.
            wait_for(result.exists, 5, "the pool process's result")
            assert "lost" in json.loads(result.read_text())
    finally:
        groups = [main.pid] + [int(pid) for pid in pids.read_text().split()[:1]] if pids.exists() else [main.pid]
        for group in groups:  # what a failure left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        main.wait()
