# SPDX-License-Identifier: MIT
"""Celery: handlers on `waitd worker`s through Redis (`run=celery`).

Throughput: 1,000 files (200 with --quick), all ready, a handler sleeping
50 ms, `waitd --once` with `run=celery timeout=600 jobs=8` through 2
workers x 4 on this machine, against the local executor with `jobs=8`.
The limit is files x 50 ms / 8; the figure is limit / drain time.

Overhead: 300 files (60) one after the other (`jobs=1`, one worker x 1,
handler /bin/true) against a bare loop of Celery's `send_task()`/`get()`
of the same task with the same arguments: the difference per run is what
waitd adds (its history with a sync before each start, the log file, the
result read back through the executor's threads).

A redis-server of its own (`--save ''`) on a free loopback port; drain
time is from the first start (the history's `at=`) to the exit of
`waitd --once`.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from bench.common import (
    Options,
    Proc,
    Report,
    make_files,
    once_drain,
    sleeper,
    wait_for,
    waitd_argv,
    workdir,
    write_table,
)

SLEEP_S = 0.05
JOBS = 8


def run(opts: Options, report: Report) -> None:
    if shutil.which("redis-server") is None:
        report.say("celery: skipped: redis-server is not installed (make deps)")
        return
    n = opts.n(1000)
    with workdir("celery") as root:
        port = _free_port()
        redis = Proc(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            root,
            "redis",
            cwd=str(root),
        )
        broker = f"redis://127.0.0.1:{port}/0"
        try:
            wait_for(lambda: _ping(port), 10, "redis-server")
            handler = sleeper(root, SLEEP_S)
            report.say(f"celery: handler {handler.name} sleeping {SLEEP_S * 1000:.0f} ms, {n} files, jobs={JOBS}")
            _throughput(report, root, broker, n, str(handler))
            _overhead(report, root, broker, opts.n(300))
        finally:
            redis.stop()


def _throughput(report: Report, root: Path, broker: str, n: int, handler: str) -> None:
    limit = n * SLEEP_S / JOBS
    local = _drain(root / "local", n, f"{handler} 60 -1 0 jobs={JOBS}", None)
    workers = [_worker(root, broker, "tp", f"w{i}", 4) for i in range(2)]
    try:
        remote = _drain(root / "remote", n, f"{handler} 60 -1 0 jobs={JOBS} run=celery timeout=600", (broker, "tp"))
    finally:
        for w in workers:
            w.stop()
    for name, drain in (("local executor", local), ("celery, 2 workers x 4", remote)):
        if drain is not None:
            report.say(f"  {name}: drain {drain:.2f} s, limit {limit:.2f} s: {limit / drain:.2f} of the limit")
    if local is not None and remote is not None:
        report.say(f"  celery / local drain time: {remote / local:.2f} (the same two cores run the workers)")


def _overhead(report: Report, root: Path, broker: str, m: int) -> None:
    worker = _worker(root, broker, "oh", "w-oh", 1)
    try:
        bare = _bare_loop(broker, "oh", m, str(root))
        drain = _drain(root / "serial", m, "/bin/true 60 -1 0 jobs=1 run=celery timeout=600", (broker, "oh"))
    finally:
        worker.stop()
    if drain is None:
        return
    per_waitd, per_bare = drain / m * 1000, bare / m * 1000
    report.say(
        f"  serial, {m} x /bin/true, 1 worker x 1: waitd {per_waitd:.2f} ms a run, "
        f"bare send_task()/get() {per_bare:.2f} ms a run"
    )
    report.check(
        "run=celery: waitd's cost a run over bare Celery",
        f"{per_waitd - per_bare:.2f} ms",
        "< 5 ms",
        per_waitd - per_bare < 5,
    )


def _bare_loop(broker: str, queue: str, m: int, cwd: str) -> float:
    """Seconds for m send_task()/get() of waitd's task, one after the other."""
    from waitd.run.executors import celery_app

    app = celery_app.make(broker, queue)
    kwargs = {"program": "/bin/true", "argv": ["true", "x"], "env": {"PATH": "/usr/bin:/bin"}, "cwd": cwd}
    app.send_task(celery_app.TASK, kwargs=kwargs, queue=queue).get(timeout=30)  # connections made
    t0 = time.perf_counter()
    for _ in range(m):
        deadline = time.time() + 600
        app.send_task(celery_app.TASK, kwargs={**kwargs, "deadline": deadline}, queue=queue).get(timeout=30)
    took = time.perf_counter() - t0
    app.close()
    return took


def _worker(root: Path, broker: str, queue: str, name: str, concurrency: int) -> Proc:
    argv = waitd_argv("worker", "--broker", broker, "--queue", queue, "--concurrency", str(concurrency))
    proc = Proc(argv, root, name)
    out = root / f"{name}.out"
    wait_for(lambda: " ready." in out.read_text(errors="replace"), 30, f"worker {name}")
    return proc


def _drain(root: Path, n: int, rest: str, celery: tuple[str, str] | None) -> float | None:
    """Drain n ready files with `waitd --once`; the drain time, or None."""
    passdir = root / "pass"
    (passdir / "in").mkdir(parents=True)
    make_files(passdir / "in", n, "f", mtime=time.time() - 3600)
    write_table(passdir, [f"bench in *.dat {rest}"])
    if celery is not None:
        (passdir / "waitd.conf").write_text(f"[celery]\nbroker = {celery[0]}\nqueue = {celery[1]}\n")
    return once_drain(root, passdir, n, max(120.0, n * SLEEP_S * 2), lambda problem: print(f"celery: {problem}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
