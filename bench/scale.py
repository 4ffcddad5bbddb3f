# SPDX-License-Identifier: MIT
"""Scale: start-up with 100,000 ready files and a history of 1,000,000 lines.

One record, one directory.  It holds 100,000 ready files (`new-*.dat`,
mtime an hour old, wait age 60 s, handler /bin/true) that the history does
not know, and 10,000 files (`old-*.dat`) handled long ago.  The history is
written directly (with `waitd.history.format_event`) as 1,000,000 lines:
100,000 `old-*` paths, each delivered and handled 5 times (a status 0 and a
status 2 line per run, the runs interleaved in time order as a long-lived
spool would leave them).  The last version of the 10,000 that exist matches
the file on disk, so they are known as handled; the other 90,000 were
removed long ago, so the compaction at start drops them.

Figures: from the moment the benchmark starts `waitd -f` to the `at=` of
the first status 0 in the history, the median of three starts on the same
set-up (the history restored and everything synced before each); the split at waitd's "waitd started" log
line (before it: Python, history load, recovery, compaction; after it:
listing and stat of the spool); and the daemon's peak RSS (VmHWM from
/proc, read while it runs, one second after the first start).

The floor (issue 21), measured on the same set-up in the same run: a plain
Python script (`FLOOR`) that does the least waitd must do: it reads the
history into a dict ((path, process) -> its last line), lists and lstat's
every matching file of the spool with os.scandir, skips a file whose
version its line has, appends a start line to the history and fdatasync's
it, and spawns /bin/true on the oldest file left; its time from the start
of its process to the spawn, and its peak RSS, median of three.  (Until
2026-12-06 it keyed by path alone, lstat'ed only the files it did not
know and wrote no start line: less than waitd must do.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.common import (
    LogTail,
    Options,
    Proc,
    Report,
    make_files,
    start_times,
    vm_hwm_mb,
    wait_for,
    waitd_argv,
    workdir,
    write_table,
)
from waitd.journal.history import Event, Status, Version, format_event

READY = 100_000
HISTORY_LINES = 1_000_000
RUNS_PER_PATH = 5
EXISTING_SHARE = 0.1
WAIT_S = 60
ATTEMPTS = 3  # starts on the same set-up; the median is the figure (this VM's timing varies)

# The plain-Python floor: argv[1] the history, argv[2] the spool; prints the
# epoch second of its spawn and its peak RSS in kB.  It does the least that
# waitd must do: the latest line of each (path, process), as the history
# keys them; an lstat of every matching file, known or not (a known name may
# be a new delivery: its version is compared with the line's); the start
# line appended and fdatasync'd before the spawn (the start is durable).
FLOOR = """\
import os, resource, sys, time
known = {}
with open(sys.argv[1], encoding="ascii") as f:
    for line in f:
        path, process, rest = line.split(" ", 2)
        known[path, process] = rest
oldest = None
with os.scandir(sys.argv[2]) as it:
    for e in it:
        if e.name.endswith(".dat"):
            st = e.stat(follow_symlinks=False)
            line = known.get((e.path, "/bin/true"))
            if line is not None and f" mtime_ns={st.st_mtime_ns} size={st.st_size} ino={st.st_ino}" in line:
                continue
            if oldest is None or (st.st_mtime_ns, e.name) < oldest[:2]:
                oldest = (st.st_mtime_ns, e.name, e.path)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, f"{oldest[2]} /bin/true {oldest[0] // 10**9} 0 at={time.time():.3f}\\n".encode("ascii"))
os.fdatasync(fd)
at = time.time()
os.waitpid(os.posix_spawn("/bin/true", ["/bin/true", oldest[2]], {}), 0)
print(at, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run(opts: Options, report: Report) -> None:
    ready = opts.n(READY)
    lines = opts.n(HISTORY_LINES)
    paths = lines // (2 * RUNS_PER_PATH)
    existing = int(paths * EXISTING_SHARE)
    with workdir("scale") as root:
        passdir = root / "pass"
        spool = passdir / "in"
        spool.mkdir(parents=True)
        t_setup = time.monotonic()
        now = time.time()
        make_files(spool, ready, "new-", mtime=now - 3600)
        make_files(spool, existing, "old-", mtime=now - 7200)
        written = _write_history(passdir / "incoming.history", spool, paths, existing, now)
        write_table(passdir, [f"bench in *.dat /bin/true {WAIT_S} -1 0"])
        report.say(
            f"scale: {ready} ready files + {existing} handled ones, history of {written} lines about "
            f"{paths} paths ({existing} exist); set up in {time.monotonic() - t_setup:.1f} s"
        )

        pristine = root / "history.pristine"
        shutil.copyfile(passdir / "incoming.history", pristine)
        floors = sorted(_floor(passdir / "incoming.history", pristine, spool) for _ in range(ATTEMPTS))
        attempts = [_attempt(passdir, root, pristine) for _ in range(ATTEMPTS)]
    done = sorted(a for a in attempts if a is not None)
    if len(done) < ATTEMPTS:
        report.say(f"scale: FAILED: no handler started in {ATTEMPTS - len(done)} of {ATTEMPTS} starts")
        report.check("scale start-up to first handler", "failed", "<= 3 s", None)
        return
    startup, split, _ = done[len(done) // 2]  # the median start
    rss_mb = max(a[2] for a in done)
    report.say(
        f"scale: first handler {startup:.2f} s after start{split} (median of {ATTEMPTS} starts; "
        f"all: {', '.join(f'{a[0]:.2f}' for a in done)} s); peak RSS {rss_mb:.0f} MB (the highest)"
    )
    floor_s, floor_mb = floors[len(floors) // 2][0], max(f[1] for f in floors)
    report.say(
        f"scale: the plain-Python floor: its spawn {floor_s:.2f} s after its start (all: "
        f"{', '.join(f'{f[0]:.2f}' for f in floors)} s), peak RSS {floor_mb:.0f} MB; "
        f"waitd / floor: {startup / floor_s:.2f}x, RSS {rss_mb / floor_mb:.2f}x"
    )
    report.check(
        f"scale {ready // 1000}k files + {written // 1000}k lines: start", f"{startup:.2f} s", "<= 3 s", startup <= 3
    )
    report.check(
        f"scale {ready // 1000}k files + {written // 1000}k lines: RSS", f"{rss_mb:.0f} MB", "<= 100 MB", rss_mb <= 100
    )
    ratio = startup / floor_s
    report.check("scale: first handler, waitd / plain-Python floor", f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2)
    ratio = rss_mb / floor_mb
    report.check("scale: peak RSS, waitd / plain-Python floor", f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2)


def _floor(history: Path, pristine: Path, spool: Path) -> tuple[float, float]:
    """The plain-Python floor once, on the history as it was: (start to spawn s, peak RSS MB)."""
    shutil.copyfile(pristine, history)
    os.sync()
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", FLOOR, str(history), str(spool)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]) - t0, int(out[1]) / 1024


def _attempt(passdir: Path, root: Path, pristine: Path) -> tuple[float, str, float] | None:
    """Start waitd on the set-up as it was; return (start-up s, split, peak RSS MB)."""
    shutil.copyfile(pristine, passdir / "incoming.history")
    for name in ("incoming.log", "waitd.status"):
        (passdir / name).unlink(missing_ok=True)
    shutil.rmtree(passdir / "logfiles", ignore_errors=True)
    os.sync()
    t0 = time.time()
    proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), root, "waitd")
    try:
        log = LogTail(passdir / "incoming.log")
        wait_for(lambda: log.seen(": started /bin/true") or not proc.alive(), 120, "the first handler run")
        time.sleep(1.0)
        rss_mb = vm_hwm_mb(proc.pid)
    finally:
        proc.stop(group=False)
    first = min((at for path, at in start_times(passdir).items() if "/new-" in path), default=None)
    started = _log_time(passdir / "incoming.log", "waitd started")
    if first is None or rss_mb is None:
        return None
    split = f" (to 'waitd started' {started - t0:.2f} s, then {first - started:.2f} s)" if started else ""
    return first - t0, split, rss_mb


def _write_history(path: Path, spool: Path, paths: int, existing: int, now: float) -> int:
    """Write RUNS_PER_PATH runs of each old-* path, in time order; return the line count."""
    real = {}
    for i in range(existing):
        st = os.stat(spool / f"old-{i:07d}.dat")
        real[i] = Version(st.st_mtime_ns, st.st_size, st.st_ino)
    count = 0
    process = "/bin/true"
    with open(path, "w", encoding="ascii") as f:
        for run in range(RUNS_PER_PATH):
            base = now - 86400 * (RUNS_PER_PATH - run + 1)
            for i in range(paths):
                at = base + i * 0.5
                file = str(spool / f"old-{i:07d}.dat")
                last = run == RUNS_PER_PATH - 1
                version = real[i] if last and i in real else Version(int(at - 60) * 10**9, 2, 10**7 + i)
                mtime = version.mtime_ns // 10**9
                pid = 10_000 + (count % 30_000)
                f.write(format_event(Event(file, process, mtime, Status.STARTED, pid=pid, at=at, version=version)))
                f.write(
                    format_event(
                        Event(
                            file,
                            process,
                            mtime,
                            Status.KNOWN,
                            pid=pid,
                            exit=0,
                            at=at + 0.004,
                            took=0.004,
                            version=version,
                        )
                    )
                )
                count += 2
    return count


def _log_time(path: Path, text: str) -> float | None:
    """The time stamp of the first log line that holds `text`."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if text in line:
                    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except OSError:
        return None
    return None
