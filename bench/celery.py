# SPDX-License-Identifier: MIT
"""Celery: handlers on `waitd worker`s through Redis (`run=celery`).

Throughput: 1,000 files (200 with --quick), all ready, a handler sleeping
50 ms, `waitd --once` with `run=celery timeout=600 jobs=8` through 2
workers x 4 on this machine, against the local executor with `jobs=8`.
The limit is files x 50 ms / 8; the figure is limit / drain time.

Overhead: 300 files (60) one after the other (`jobs=1`, one worker x 1,
handler /bin/true) against a bare loop of Celery's `send_task()`/`get()`
of the same task with the same arguments, half of its runs before
waitd's and half after (a drift of the machine's speed then counts for
both): the difference per run is what waitd adds (its history with a
sync before each start, the log file, the result read back through the
executor's threads).  Its floor, in the same run: the bare loop with a
history line appended and fdatasync'd before each send (a durable start,
which waitd owes and the bare loop does not).  And waitd's own CPU time a
run (psutil, from its first start to its exit), which the load of a
shared machine moves much less than the wall clock.

A redis-server of its own (`--save ''`) on a free loopback port; drain
time is from the first start (the history's `at=`) to the exit of
`waitd --once`.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import psutil

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
    cpu: list[float] = []
    try:
        bare = _bare_loop(broker, "oh", m // 2, str(root))
        durable = _bare_loop(broker, "oh", m // 2, str(root), durable=True)
        drain = _drain(root / "serial", m, "/bin/true 60 -1 0 jobs=1 run=celery timeout=600", (broker, "oh"), cpu)
        durable += _bare_loop(broker, "oh", m - m // 2, str(root), durable=True)
        bare += _bare_loop(broker, "oh", m - m // 2, str(root))
    finally:
        worker.stop()
    if drain is None:
        return
    per_waitd, per_bare, per_durable = drain / m * 1000, bare / m * 1000, durable / m * 1000
    own = (cpu[0] if cpu else float("nan")) / m * 1000
    report.say(
        f"  serial, {m} x /bin/true, 1 worker x 1: waitd {per_waitd:.2f} ms a run (its own CPU {own:.2f} ms), "
        f"bare send_task()/get() {per_bare:.2f} ms a run, "
        f"with a durable start (append + fdatasync) {per_durable:.2f} ms a run"
    )
    report.check(
        "run=celery: waitd's cost a run over bare Celery",
        f"{per_waitd - per_bare:.2f} ms",
        "<= 1 ms",
        per_waitd - per_bare <= 1,
    )
    report.say(f"  waitd's cost a run over bare Celery with a durable start: {per_waitd - per_durable:.2f} ms")


def _bare_loop(broker: str, queue: str, m: int, cwd: str, durable: bool = False) -> float:
    """Seconds for m send_task()/get() of waitd's task, one after the other;
    `durable`: each after a history-sized line appended and fdatasync'd."""
    from waitd.run.executors import celery_app

    app = celery_app.make(broker, queue)
    kwargs = {"program": "/bin/true", "argv": ["true", "x"], "env": {"PATH": "/usr/bin:/bin"}, "cwd": cwd}
    app.send_task(celery_app.TASK, kwargs=kwargs, queue=queue).get(timeout=30)  # connections made
    line = b"/tmp/waitd-bench/in/f0000000.dat /bin/true 1796544886 0 at=1796548488.950 " + b"x" * 60 + b"\n"
    fd = os.open(os.path.join(cwd, "bare.history"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t0 = time.perf_counter()
    for _ in range(m):
        if durable:
            os.write(fd, line)
            os.fdatasync(fd)
        deadline = time.time() + 600
        app.send_task(celery_app.TASK, kwargs={**kwargs, "deadline": deadline}, queue=queue).get(timeout=30)
    took = time.perf_counter() - t0
    os.close(fd)
    app.close()
    return took


def _worker(root: Path, broker: str, queue: str, name: str, concurrency: int) -> Proc:
    argv = waitd_argv("worker", "--broker", broker, "--queue", queue, "--concurrency", str(concurrency))
    proc = Proc(argv, root, name)
    out = root / f"{name}.out"
    wait_for(lambda: " ready." in out.read_text(errors="replace"), 30, f"worker {name}")
    return proc


def _drain(
    root: Path, n: int, rest: str, celery: tuple[str, str] | None, cpu: list[float] | None = None
) -> float | None:
    """Drain n ready files with `waitd --once`; the drain time, or None.
    `cpu`: waitd's own CPU seconds from its first start to its exit is
    appended to it (read every 10 ms by `_watch_cpu`)."""
    passdir = root / "pass"
    (passdir / "in").mkdir(parents=True)
    make_files(passdir / "in", n, "f", mtime=time.time() - 3600)
    write_table(passdir, [f"bench in *.dat {rest}"])
    if celery is not None:
        (passdir / "waitd.conf").write_text(f"[celery]\nbroker = {celery[0]}\nqueue = {celery[1]}\n")
    watching = None
    if cpu is not None:
        watching = threading.Thread(target=_watch_cpu, args=(root, passdir, cpu), daemon=True)
        watching.start()
    took = once_drain(root, passdir, n, max(120.0, n * SLEEP_S * 2), lambda problem: print(f"celery: {problem}"))
    if watching is not None:
        watching.join(5)
    return took


def _watch_cpu(root: Path, passdir: Path, cpu: list[float]) -> None:
    """waitd's CPU seconds (user + system) from its first start (the history
    has a line) to its exit, as last read."""
    history = passdir / "incoming.history"
    proc = None
    deadline = time.monotonic() + 60
    while proc is None and time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline"]):
            if str(passdir) in (p.info["cmdline"] or []) and "--once" in p.info["cmdline"]:
                proc = p
                break
        time.sleep(0.01)
    first = last = 0.0
    try:
        while proc is not None:
            t = proc.cpu_times()
            last = t.user + t.system
            if not first and history.exists() and history.stat().st_size > 0:
                first = last
            time.sleep(0.01)
    except psutil.Error:
        pass
    cpu.append(last - first)


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
