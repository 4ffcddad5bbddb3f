# SPDX-License-Identifier: MIT
"""Celery: handlers on `waitd worker`s through Redis (`run=celery`).

Throughput: 1,000 files (200 with --quick), all ready, a handler sleeping
50 ms, `waitd --once` with `run=celery timeout=600 jobs=8` through 2
workers x 4 on this machine, against the local executor with `jobs=8`.
The limit is files x 50 ms / 8; the figure is limit / drain time.

Overhead (the issue's "waitd's overhead per run within 1 ms of a bare
send_task/get"): 300 runs (60) of /bin/true one after the other, one
worker x 1, in turns of 50 (20): a waitd daemon (`jobs=1`, started once,
its first run not counted) is handed a turn's files, then a bare loop of
Celery's `send_task()`/`get()` of the same task with the same arguments
(the environment waitd gives the handler, its own and a run's WAITD_*
variables; `expires=`; waitd's short `kwargsrepr`: a message of the same
size, ~4 KB) makes as many runs, then the bare loop with a durable start (a history
line appended and fdatasync'd before each send: the floor of what waitd
owes and the bare loop does not), and again, every other turn in the
reverse order, all with the same worker and Redis: a drift of the
machine's speed counts for all three.

A whole run takes 16-20 ms here and the worker's and Redis's part of it
varies by about +-2 ms from run to run, more than the 1 ms to be judged:
the figure checked is therefore the client's own part of a run, as Redis
itself saw it (`redis_monitor`: MONITOR, each command stamped by Redis's
clock, in microseconds, whoever sent it): from the worker's publish of a
run's result to the push of the next run's task onto the queue.  For the
bare loop that is `get()` taking the result and `send_task()` sending
the next; for waitd it is the whole of waitd's own path between two
runs: its receiver thread reading the result, the loop woken through its
pipe, the end recorded (history, incoming.log, the log file's footer),
the next start (its durable history line, its log file), the hand-off
to the sender thread and its publish.  The other part, from the push to
the result's publish (the worker's and Redis's), is shown beside it, to
show that waitd does not slow the worker down.  The check is the median
of waitd's client parts less the median of the bare loop's (with a 95%
bootstrap interval of that difference); beside it the same less the bare
loop with a durable start (what is left once the fdatasync a durable
start owes is paid by both).  Only the runs between two of a turn's
marks count: a turn's first push (after no result) and a bare loop's
first send (its connections made) do not.

Also shown, per run, the median and the mean of the whole run: for the
bare loops each send/get; for waitd the time from one start to the next
(its history's status 0 lines, seen by inotify as they are written, as
`at=` has only milliseconds); and the CPU time a run: waitd's (its
threads' own, `/proc/PID/task/TID/schedstat`, in nanoseconds) in its
turns, split by thread (the loop, Celery's sender and receiver), and
beside it what it spends while the bare loops run (its receiver is told
of their results too, as of any client's on that Redis, and its idle
wake-ups); the bare loop's own (its thread's CPU time, the connections
made before it is read).  Before round seven waitd's figure was the
whole, both parts, over its runs alone.  Before 2026-12-06 (round seven) the figure checked was
the difference of the whole runs' medians, which the worker's noise
swamped; before that, the mean of one waitd `--once` drain (first start
to exit) less the mean of the bare loop run half before and half after
it.  Before 2026-12-06 (round seven) the bare loops sent PATH alone as
the environment, without `expires=`: a message of ~1.4 KB against
waitd's ~4.3 KB, which the worker and Redis took ~1.5 ms longer to carry
from the push to the task's STARTED (kombu's parse, its copy into the
unacked hash, the pickle to the pool process, and Redis's formatting of
both for MONITOR), and LANG (the handler's locale) was unset for them:
the worker's part was longer beside waitd by that much.

A redis-server of its own (`--save ''`) on a free loopback port; drain
time is from the first start (the history's `at=`) to the exit of
`waitd --once`.
"""

from __future__ import annotations

import datetime
import itertools
import os
import random
import shutil
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from bench.common import (
    Options,
    Proc,
    Report,
    env,
    make_files,
    once_drain,
    sleeper,
    wait_for,
    waitd_argv,
    workdir,
    write_table,
)
from bench.redis_monitor import Monitor
from waitd.journal.history import Status, parse_line

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
            monitor = Monitor(root, port)
            try:
                _overhead(report, root, broker, opts.n(300), monitor)
            finally:
                monitor.stop()
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


def _overhead(report: Report, root: Path, broker: str, m: int, monitor: Monitor) -> None:
    """waitd, the bare loop and the bare loop with a durable start, in
    turns of `batch` runs each, all with the same worker and Redis."""
    worker = _worker(root, broker, "oh", "w-oh", 1)
    batches = max(3, m // 50)
    batch = max(2, m // batches)
    turns: list[tuple[list[float], list[float], list[float]]] = []  # waitd, bare, durable
    own: dict[str, float] = {}  # waitd's threads' CPU seconds in its turns
    aside = 0.0  # waitd's CPU seconds while the bare loops run
    bare_cpu = [0.0]  # the bare loop's own CPU seconds
    daemon: Serial | None = None
    try:
        daemon = Serial(root, broker, "oh")
        daemon.batch(1)  # Celery imported, the broker connected: not counted

        def measured(k: int) -> list[float]:
            nonlocal aside
            before = daemon.threads_cpu()
            if k == 0:
                runs = daemon.batch(batch, lambda: monitor.mark(WHO[0]))
            else:
                runs = _bare_loop(broker, "oh", batch, str(root), lambda: monitor.mark(WHO[k]), k == 2, bare_cpu)
            spent = {t: cpu - before.get(t, 0.0) for t, cpu in daemon.threads_cpu().items()}
            if k == 0:
                for t, cpu in spent.items():
                    own[t] = own.get(t, 0.0) + cpu
            else:
                aside += sum(spent.values())
            return runs

        for i in range(batches):
            # Every other turn in the other order: none is always first after another.
            order = (0, 1, 2) if i % 2 == 0 else (2, 1, 0)
            runs = {}
            for k in order:
                runs[k] = measured(k)
                monitor.mark("between")  # what follows (a bare loop's first send) is no one's
            turns.append((runs[0], runs[1], runs[2]))
        monitor.mark("over")
    except (TimeoutError, OSError) as exc:
        out = (
            (root / "waitd-serial.out").read_text(errors="replace")[-2000:]
            if (root / "waitd-serial.out").exists()
            else ""
        )
        report.say(f"  serial: FAILED: {exc}; waitd said:\n{out}")
        return
    finally:
        if daemon is not None:
            daemon.stop()
        worker.stop()
    w, b, d = (_stats([r for turn in turns for r in turn[k]]) for k in range(3))
    report.say(
        f"  serial, {batches} turns of {batch} x /bin/true (waitd, bare, bare with a durable start), 1 worker x 1; "
        "per run, median / mean in ms:"
    )
    count = batches * batch
    split = ", ".join(f"{t} {cpu * 1000 / count:.2f}" for t, cpu in sorted(own.items(), key=lambda kv: -kv[1]))
    report.say(
        f"    the whole run: waitd {w[0]:.2f} / {w[1]:.2f} (its own CPU {sum(own.values()) * 1000 / count:.2f} ms "
        f"a run: {split}; beside it, while the bare loops run, {aside * 1000 / (2 * count):.2f} ms a bare run)"
    )
    report.say(
        f"      bare send_task()/get() {b[0]:.2f} / {b[1]:.2f} (its own CPU {bare_cpu[0] * 1000 / count:.2f} ms a run)"
    )
    report.say(f"      bare with a durable start (append + fdatasync) {d[0]:.2f} / {d[1]:.2f}")
    report.say(
        f"      waitd less bare: median {w[0] - b[0]:+.2f}, mean {w[1] - b[1]:+.2f}; "
        f"less bare with a durable start: median {w[0] - d[0]:+.2f}, mean {w[1] - d[1]:+.2f} "
        "(the worker's and Redis's time varies by +-2 ms a run)"
    )
    _split(report, monitor.parts("oh"))


WHO = ("waitd", "bare", "durable")


def _split(report: Report, stretches: list[tuple[str, list[float], list[float]]]) -> None:
    """The runs as Redis saw them: the client's part and the worker's."""
    client = {who: [x for label, c, _ in stretches if label == who for x in c] for who in WHO}
    worker = {who: [x for label, _, k in stretches if label == who for x in k] for who in WHO}
    if not all(client.values()) or not all(worker.values()):
        counts = {who: len(c) for who, c in client.items()}
        report.say(f"  serial, as Redis saw it: FAILED: no runs in its record ({counts})")
        return
    report.say(
        "    as Redis saw them (MONITOR, its clock), median / mean in ms: the client's part of a run "
        "(a result's publish to the next task's push) + the worker's (the push to its result's publish):"
    )
    for who, what in zip(WHO, ("waitd", "bare", "bare with a durable start"), strict=True):
        c, k = _stats(client[who]), _stats(worker[who])
        report.say(f"      {what}: {c[0]:.2f} / {c[1]:.2f} + {k[0]:.2f} / {k[1]:.2f} ({len(client[who])} runs)")
    own = _median_ms(client["waitd"]) - _median_ms(client["bare"])
    low, high = _bootstrap(client["waitd"], client["bare"])
    durable = _median_ms(client["waitd"]) - _median_ms(client["durable"])
    slower = _median_ms(worker["waitd"]) - _median_ms(worker["bare"])
    report.say(
        f"    waitd's own part a run (its client's part less bare's, medians): {own:+.2f} ms "
        f"(95% bootstrap interval {low:+.2f} to {high:+.2f}); less bare with a durable start {durable:+.2f} "
        f"(the durable start alone, a floor: {own - durable:+.2f}); "
        f"the worker's part beside waitd less beside bare {slower:+.2f}"
    )
    turns = {who: [c for label, c, _ in stretches if label == who and c] for who in WHO}
    paired = [_median_ms(w) - _median_ms(b) for w, b in zip(turns["waitd"], turns["bare"], strict=False)]
    report.say(
        f"    the same a turn (waitd's median less bare's in the same turn: a drift of the machine's speed "
        f"between turns left out): {', '.join(f'{p:+.2f}' for p in paired)}; median {statistics.median(paired):+.2f}"
    )
    report.check("run=celery: waitd's own part a run over bare (median)", f"{own:.2f} ms", "<= 1 ms", own <= 1)


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _bootstrap(a: list[float], b: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% interval of median(a) - median(b), in ms: both resampled."""
    rng = random.Random(21)
    diffs = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b))) for _ in range(rounds)
    )
    return diffs[int(rounds * 0.025)] * 1000, diffs[int(rounds * 0.975) - 1] * 1000


def _stats(runs: list[float]) -> tuple[float, float]:
    """Median and mean of per-run seconds, in ms."""
    if not runs:
        return float("nan"), float("nan")
    return statistics.median(runs) * 1000, statistics.fmean(runs) * 1000


class Serial:
    """A waitd daemon (foreground) with one `run=celery jobs=1` record;
    `batch` hands it n ready files (renamed in, as a delivery is) and
    gives the time from each start to the next (its history's status 0
    lines as they are written, seen by inotify: `at=` has only
    milliseconds), so n - 1 whole cycles of a run: the end taken from
    the receiver, the end's line, the next start's line and fdatasync,
    the send."""

    def __init__(self, root: Path, broker: str, queue: str) -> None:
        import inotify_simple

        self.passdir = root / "serial"
        (self.passdir / "in").mkdir(parents=True)
        (self.passdir / "stage").mkdir()
        (self.passdir / "waitd.conf").write_text(f"[celery]\nbroker = {broker}\nqueue = {queue}\n")
        write_table(self.passdir, ["bench in *.dat /bin/true 60 -1 0 jobs=1 run=celery timeout=600"])
        self.inotify = inotify_simple.INotify()  # the directory's: waitd makes the history, and may replace it
        self.inotify.add_watch(self.passdir, inotify_simple.flags.MODIFY | inotify_simple.flags.MOVED_TO)
        self.history: BinaryIO | None = None
        self.buffer = b""
        self.made = 0
        self.proc = Proc(waitd_argv("-f", "--interval", "5", "--passdir", str(self.passdir)), root, "waitd-serial")
        wait_for(lambda: (self.passdir / "waitd.status").exists() or not self.proc.alive(), 30, "waitd")

    def batch(self, n: int, mark: Callable[[], None] = lambda: None) -> list[float]:
        names = make_files(self.passdir / "stage", n, f"b{self.made:04d}-", mtime=time.time() - 3600)
        self.made += 1
        mark()
        for name in names:
            os.rename(self.passdir / "stage" / name, self.passdir / "in" / name)
        starts: list[float] = []
        started: set[str] = set()
        ends = 0
        deadline = time.monotonic() + 60 + n
        while ends < n:
            if not self.proc.alive() or time.monotonic() > deadline:
                raise TimeoutError(f"waitd ran {ends} of {n} files")
            if not self.inotify.read(timeout=1000):
                continue
            now = time.perf_counter()
            self.buffer += self._read()
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                event = parse_line(line.decode("ascii", "replace"))
                if event.status is not Status.STARTED:
                    ends += 1
                elif event.path not in started:
                    started.add(event.path)  # not its pid line, if it has one
                    starts.append(now)
        return [b - a for a, b in itertools.pairwise(starts)]

    def _read(self) -> bytes:
        """What the history has that was not read yet."""
        path = self.passdir / "incoming.history"
        if self.history is not None and os.fstat(self.history.fileno()).st_ino != _inode(path):
            self.history.close()
            self.history, self.buffer = None, b""  # compacted: its lines were read before
        if self.history is None:
            try:
                self.history = open(path, "rb")
            except FileNotFoundError:
                return b""
            if self.buffer == b"" and self.made > 1:
                self.history.seek(0, os.SEEK_END)
        return self.history.read()

    def threads_cpu(self) -> dict[str, float]:
        """The CPU seconds of each of waitd's threads so far: `loop`, and
        Celery's `sender` and `receiver` (Python 3.11 does not name its
        threads for the system: they are told apart by their ids, as the
        executor starts the sender first); a thread that ended is left out."""
        task = f"/proc/{self.proc.pid}/task"
        spent: dict[int, float] = {}
        for tid in os.listdir(task):
            try:
                with open(f"{task}/{tid}/schedstat") as f:
                    spent[int(tid)] = int(f.read().split()[0]) / 1e9
            except (FileNotFoundError, ProcessLookupError):
                continue
        others = sorted(t for t in spent if t != self.proc.pid)
        names = ["sender", "receiver"] if len(others) == 2 else [f"thread {t}" for t in others]
        named = dict(zip(names, (spent[t] for t in others), strict=True))
        return {"loop": spent.get(self.proc.pid, 0.0), **named}

    def stop(self) -> None:
        self.proc.stop()
        self.inotify.close()
        if self.history is not None:
            self.history.close()


def _bare_loop(
    broker: str,
    queue: str,
    m: int,
    cwd: str,
    mark: Callable[[], None],
    durable: bool = False,
    cpu: list[float] | None = None,
) -> list[float]:
    """The seconds of each of m send_task()/get() of waitd's task, one
    after the other; `durable`: each after a history-sized line appended
    and fdatasync'd.  `mark` is called once the connections are made,
    before the first of them.  Unless `durable`, the thread's CPU seconds
    in the m runs are added to `cpu[0]`."""
    from waitd.run.executors import celery_app

    app = celery_app.make(broker, queue)
    kwargs = {"program": "/bin/true", "argv": ["true", "x"], "env": _handler_env(cwd), "cwd": cwd}
    shown = {"argsrepr": "()", "kwargsrepr": repr({k: kwargs[k] for k in ("program", "argv", "cwd")})}

    def send(deadline: float | None = None) -> Any:
        if deadline is None:
            return app.send_task(celery_app.TASK, kwargs=kwargs, queue=queue, **shown)
        expires = datetime.datetime.fromtimestamp(deadline, datetime.UTC)
        full = {**kwargs, "deadline": deadline}
        return app.send_task(celery_app.TASK, kwargs=full, queue=queue, expires=expires, **shown)

    send().get(timeout=30)  # connections made
    line = b"/tmp/waitd-bench/in/f0000000.dat /bin/true 1796544886 0 at=1796548488.950 " + b"x" * 60 + b"\n"
    fd = os.open(os.path.join(cwd, "bare.history"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    runs = []
    mark()
    cpu0 = time.thread_time()
    for _ in range(m):
        t0 = time.perf_counter()
        if durable:
            os.write(fd, line)
            os.fdatasync(fd)
        send(time.time() + 600).get(timeout=30)
        runs.append(time.perf_counter() - t0)
    if cpu is not None and not durable:
        cpu[0] += time.thread_time() - cpu0
    os.close(fd)
    app.close()
    return runs


def _handler_env(cwd: str) -> dict[str, str]:
    """The environment waitd gives the handler of `Serial`'s runs: its
    own (the bench's, `bench.common.env`) and a run's WAITD_* variables,
    for the bare loops to send the same: the handler's environment is
    most of a task's message (here ~1.8 of its ~4.3 KB), and a bigger
    message costs the worker and Redis more (and LANG, if set, costs the
    handler its locale)."""
    passdir = os.path.join(cwd, "serial")
    log = os.path.join(passdir, "log", "incoming.1.b0000-0000000.dat.a")
    return {
        **env(),
        "WAITD_RECORD": "1",
        "WAITD_TELEM": "bench",
        "WAITD_FILE": os.path.join(passdir, "in", "b0000-0000000.dat"),
        "WAITD_PASSDIR": passdir,
        "WAITD_LOG": log,
        "WAITD_RESPONSE": log + ".response",
        "WAITD_ATTEMPT": "1",
    }


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


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return -1


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
