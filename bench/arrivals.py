# SPDX-License-Identifier: MIT
"""Arrivals: latency from a file's rename into the spool to its handler's start.

The generator writes each file under a temporary dot-name (`.fNNNNNN.tmp`,
which no `*.dat` template matches) and renames it to `fNNNNNN.dat`, at a
steady rate, noting `time.time()` right after each rename.  Every watcher
runs the same handler, a bash script whose first act is to read bash's
built-in `$EPOCHREALTIME` (microseconds, no fork of `date`) and append it
with the file name to a log: latency = that time - the rename time.  bash
costs a few milliseconds to start; the cost is the same for every watcher.
For waitd the `at=` of its status 0 (taken just before the spawn) is shown
too.

Watchers, each on a fresh directory, one at a time:

- waitd with inotify (wait age 0, default --interval 10);
- waitd --poll --interval 1 (the polling fallback, to show it);
- `inotifywait -m -e close_write,moved_to DIR | while read ...` in /bin/sh,
  running the handler on each `*.dat` (inotify-tools);
- `watchmedo shell-command --patterns='**/*.dat' --ignore-directories --wait`
  (watchdog 5+ matches the whole path, so `*.dat` alone matches nothing),
  the handler given `${watch_dest_path}` (a rename is a moved event).
  `--wait` runs one handler at a time, as waitd does per record and as
  the shell loop does; `--drop` would lose files.

Before the timed run each watcher must handle a warm-up file, so the
figures do not include its start-up.

A second case (issue 21) keeps KEPT files in the spool, handled already
(waitd's history says so; the others ignore what is there at start), and
runs waitd with --interval 1, so that polls of a big directory fall among
the arrivals, at KEPT_RATE a second: waitd and the inotifywait loop, with
the CPU time their own processes spent (waitd's process; the loop's shell,
its reading subshell and inotifywait, not the handlers) per 1,000 files;
and beside them the durable floor (`bench.floorwatch`: plain Python,
inotify, a line appended and fdatasync'd before each handler's
posix_spawn, one at a time), which shows what a durable start costs
whoever makes it, and what waitd spends beyond it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from bench.common import (
    Options,
    Proc,
    Report,
    make_files,
    percentile,
    start_times,
    wait_for,
    waitd_argv,
    workdir,
    write_table,
)
from waitd.journal.history import Event, Status, Version, format_event

RATE = 200  # files a second
DURATION_S = 10.0
KEPT = 2000  # handled files kept in the spool, in the second case
KEPT_RATE = 100


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    own: Latency | None = None  # waitd: rename to its own at= of status 0
    cpu_s: float | None = None  # the watcher's own processes, over the timed run

    def text(self) -> str:
        return f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms"


def run(opts: Options, report: Report) -> None:
    duration = DURATION_S * opts.scale
    count = int(RATE * duration)
    report.say(f"arrivals: {count} files renamed in at {RATE}/s for {duration:g} s; latency rename -> handler start")
    results: dict[str, Latency | None] = {}
    for name in ("waitd", "waitd --poll", "inotifywait loop", "watchmedo"):
        results[name] = _one(report, name, count)
    mine = results["waitd"]
    if mine is None:
        report.check("arrivals waitd", "failed", "p50 <= 5 ms", None)
        return
    report.check("arrivals waitd p50", f"{mine.p50_ms:.1f} ms", "<= 5 ms", mine.p50_ms <= 5)
    report.check("arrivals waitd p99", f"{mine.p99_ms:.1f} ms", "<= 30 ms", mine.p99_ms <= 30)
    for peer in ("inotifywait loop", "watchmedo"):
        other = results[peer]
        if other is None:
            report.check(f"arrivals waitd vs {peer}", "peer failed", "better p50 and p99", None)
            continue
        better = mine.p50_ms < other.p50_ms and mine.p99_ms < other.p99_ms
        report.check(
            f"arrivals waitd vs {peer} (p50/p99)",
            f"{other.p50_ms:.1f}/{other.p99_ms:.1f} ms",
            "waitd lower in both",
            better,
        )
    _kept(opts, report)


def _kept(opts: Options, report: Report) -> None:
    """The second case: KEPT files kept, --interval 1, KEPT_RATE a second."""
    count = int(KEPT_RATE * DURATION_S * opts.scale)
    report.say(
        f"arrivals with {KEPT} handled files kept, waitd --interval 1: {count} files at {KEPT_RATE}/s; "
        "CPU of the watcher's own processes per 1,000 files"
    )
    mine = _one(report, "waitd --interval 1", count, KEPT_RATE, KEPT)
    shell = _one(report, "inotifywait loop", count, KEPT_RATE, KEPT)
    floor = _one(report, "durable floor", count, KEPT_RATE, KEPT)
    if mine is None or mine.own is None or shell is None:
        report.check("arrivals kept", "failed", "p99 < 2 ms", None)
        return
    if floor is not None and floor.cpu_s:
        report.say(
            f"  the durable start's price (floor less inotifywait loop): p50 {floor.p50_ms - shell.p50_ms:+.1f} ms, "
            f"CPU {floor.cpu_s - (shell.cpu_s or 0):+.2f} s per 1,000; waitd over the floor: "
            f"p50 {mine.p50_ms - floor.p50_ms:+.1f} ms, CPU {(mine.cpu_s or 0) / floor.cpu_s:.1f}x"
        )
    report.check("arrivals kept: waitd p99 rename -> start", f"{mine.own.p99_ms:.1f} ms", "< 2 ms", mine.own.p99_ms < 2)
    report.check(
        "arrivals kept: p50 rename -> handler, waitd / inotifywait loop",
        f"{mine.p50_ms:.1f} / {shell.p50_ms:.1f} ms",
        "no worse",
        mine.p50_ms <= shell.p50_ms,
    )
    if mine.cpu_s is not None and shell.cpu_s:
        ratio = mine.cpu_s / shell.cpu_s
        report.check("arrivals kept: CPU per file, waitd / inotifywait loop", f"{ratio:.1f}x", "< 2x", ratio < 2)


def _one(report: Report, name: str, count: int, rate: float = RATE, kept: int = 0) -> Latency | None:
    with workdir("arrivals") as root:
        spool = root / "in"
        spool.mkdir()
        handled = root / "handled"
        handler = root / "handler"
        handler.write_text(f'#!/bin/bash\nt=$EPOCHREALTIME\nprintf "%s %s\\n" "${{t/,/.}}" "$1" >> "{handled}"\n')
        handler.chmod(0o755)
        if kept:
            _keep(root, spool, kept, str(handler))
        proc = _start(name, root, spool, handler)
        try:
            _warm_up(spool, handled, proc)
            watchers = _watchers(proc)
            cpu0 = _cpu(watchers)
            renamed = generate(spool, count, rate)
            wait_for(lambda: _handled_count(handled) >= count, 30 + count / rate, f"{name} to handle every file")
            cpu = (_cpu(watchers) - cpu0) * 1000 / count
        except TimeoutError as exc:
            report.say(
                f"  {name:<17}: FAILED: {exc}; {_handled_count(handled)} of {count} handled "
                f"(see {root}/{proc.name}.out)"
            )
            return None
        finally:
            proc.stop(group=not name.startswith("waitd"))
        latency = _latency(_handler_times(handled), renamed)
        runs = _handled_count(handled)
        extra = f"; CPU {cpu:.2f} s per 1,000 files" if kept else ""
        own = None
        if name.startswith("waitd"):
            own = _latency(_start_times(root / "pass"), renamed)
            extra += f"  (waitd's own at= of status 0: {own.text()})"
    twice = f", {runs - latency.count} handled twice" if runs > latency.count else ""
    report.say(f"  {name:<17}: {latency.count} handled{twice}, {latency.text()}{extra}")
    return replace(latency, own=own, cpu_s=cpu)


def _keep(root: Path, spool: Path, kept: int, process: str) -> None:
    """`kept` files in the spool, an hour old, and (for waitd) a history
    that says each was handled with exit 0."""
    passdir = root / "pass"
    passdir.mkdir()
    names = make_files(spool, kept, "k", mtime=time.time() - 3600)
    lines = []
    for name in names:
        st = os.stat(spool / name)
        version = Version(st.st_mtime_ns, st.st_size, st.st_ino)
        path = str(spool / name)
        lines.append(
            format_event(
                Event(
                    path,
                    process,
                    int(st.st_mtime),
                    Status.KNOWN,
                    pid=1,
                    exit=0,
                    at=time.time() - 3000,
                    took=0.01,
                    version=version,
                )
            )
        )
    (passdir / "incoming.history").write_text("".join(lines))


def _watchers(proc: Proc) -> list[psutil.Process]:
    """The watcher's own processes: the one started and what it started
    that runs still (a shell's pipeline), handlers excluded (none runs now)."""
    top = psutil.Process(proc.pid)
    return [top, *top.children(recursive=True)]


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _start(name: str, root: Path, spool: Path, handler: Path) -> Proc:
    if name.startswith("waitd"):
        passdir = root / "pass"
        passdir.mkdir(exist_ok=True)
        write_table(passdir, [f"bench {spool} *.dat {handler} 0 -1 0"])
        args = ["--poll", "--interval", "1"] if name == "waitd --poll" else []
        if name == "waitd --interval 1":
            args = ["--interval", "1"]
        return Proc(waitd_argv("-f", "--passdir", str(passdir), *args), root, "waitd")
    if name == "durable floor":
        argv = [sys.executable, "-m", "bench.floorwatch", str(spool), str(handler), str(root / "floor.history")]
        return Proc(argv, root, "floor")
    if name == "inotifywait loop":
        loop = (
            f"inotifywait -m -q -e close_write,moved_to --format '%w%f' '{spool}/' | "
            f'while IFS= read -r p; do case "$p" in *.dat) \'{handler}\' "$p";; esac; done'
        )
        return Proc(["/bin/sh", "-c", loop], root, "inotifywait")
    watchmedo = os.path.join(sysconfig.get_path("scripts"), "watchmedo")
    return Proc(
        [
            watchmedo,
            "shell-command",
            "--patterns=**/*.dat",
            "--ignore-directories",
            "--wait",
            f'--command={handler} "${{watch_dest_path}}"',
            str(spool),
        ],
        root,
        "watchmedo",
    )


def _warm_up(spool: Path, handled: Path, proc: Proc) -> None:
    """Drop warm-up files until the watcher handles one (it may not be watching yet)."""
    deadline = time.monotonic() + 30
    attempt = 0
    while time.monotonic() < deadline:
        if not proc.alive():
            raise TimeoutError(f"{proc.name} exited with status {proc.popen.returncode}")
        attempt += 1
        _drop(spool, f"warmup-{attempt}")
        try:
            wait_for(lambda: _handled_count(handled, warmup=True) > 0, 2.5, "the warm-up file")
            # Let the warm-up runs end before timing starts.
            time.sleep(0.5)
            return
        except TimeoutError:
            continue
    raise TimeoutError(f"{proc.name} handled no warm-up file in 30 s")


def _drop(spool: Path, stem: str) -> float:
    tmp = spool / f".{stem}.tmp"
    with open(tmp, "wb") as f:
        f.write(b"x\n")
    os.rename(tmp, spool / f"{stem}.dat")
    return time.time()


def generate(spool: Path, count: int, rate: float = RATE) -> dict[str, float]:
    """Rename `count` files in at `rate` a second; return name -> rename time."""
    renamed = {}
    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stem = f"f{i:06d}"
        renamed[f"{stem}.dat"] = _drop(spool, stem)
    return renamed


def _handled_count(handled: Path, warmup: bool = False) -> int:
    try:
        data = handled.read_bytes()
    except FileNotFoundError:
        return 0
    if warmup:
        return data.count(b"warmup-")
    return data.count(b"\n") - data.count(b"warmup-")


def _handler_times(handled: Path) -> dict[str, float]:
    """File name -> the handler's first recorded time for it."""
    times: dict[str, float] = {}
    for line in handled.read_text().splitlines():
        stamp, _, path = line.partition(" ")
        times.setdefault(os.path.basename(path), float(stamp))
    return times


def _start_times(passdir: Path) -> dict[str, float]:
    return {os.path.basename(path): at for path, at in start_times(passdir).items()}


def _latency(times: dict[str, float], renamed: dict[str, float]) -> Latency:
    values = sorted((times[name] - at) * 1000 for name, at in renamed.items() if name in times)
    return Latency(
        len(values), percentile(values, 0.5), percentile(values, 0.99), values[-1] if values else float("nan")
    )
