# SPDX-License-Identifier: MIT
"""Idle: what a daemon costs while nothing is due.

10 records, each on its own directory of 1,000 files that are all younger
than the wait age (3600 s), so no handler runs.  waitd runs in the
foreground with its default --interval (10 s) and inotify.  After it logs
that it started, the benchmark lets its first pass finish (2 s), then
reads the daemon's user+system CPU time (psutil) at the start and the end
of the window; the figure is that time as a percentage of one core.

The window includes the second poll, where waitd lists again each
directory whose mtime was within the timestamp granularity (2 s) of its
first listing (here: the directories written last before the start).
That is a one-time cost, so the share after it is printed too; the target
is checked on the whole window.  The kernel counts CPU time in clock
ticks (10 ms), so a short window (--quick) is coarse.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from bench.common import LogTail, Options, Proc, Report, make_files, wait_for, waitd_argv, workdir, write_table

RECORDS = 10
FILES = 1000
WAIT_S = 3600
SETTLE_S = 2.0
INTERVAL_S = 10.0


def run(opts: Options, report: Report) -> None:
    window = opts.idle_s * opts.scale
    with workdir("idle") as root:
        passdir = root / "pass"
        passdir.mkdir()
        lines = []
        for k in range(1, RECORDS + 1):
            (passdir / f"in{k}").mkdir()
            make_files(passdir / f"in{k}", FILES, f"r{k}-")
            lines.append(f"bench in{k} *.dat /bin/true {WAIT_S} -1 0")
        write_table(passdir, lines)
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), root, "waitd")
        try:
            log = LogTail(passdir / "incoming.log")
            wait_for(lambda: log.seen("waitd started") or not proc.alive(), 60, "waitd to start")
            time.sleep(SETTLE_S)
            daemon = psutil.Process(proc.pid)
            before = daemon.cpu_times()
            t0 = time.monotonic()
            # Just after the second poll (INTERVAL_S after the first pass).
            time.sleep(min(window, INTERVAL_S))
            middle = daemon.cpu_times()
            t_middle = time.monotonic()
            time.sleep(max(0.0, t0 + window - time.monotonic()))
            after = daemon.cpu_times()
            t1 = time.monotonic()
            elapsed = t1 - t0
            alive = proc.alive()
        finally:
            proc.stop(group=False)
    used = _cpu(after) - _cpu(before)
    share = 100 * used / elapsed
    steady = ""
    if t1 - t_middle > 1.0:
        late = _cpu(after) - _cpu(middle)
        steady = f"; after the second poll {late:.3f} s in {t1 - t_middle:.1f} s = {100 * late / (t1 - t_middle):.3f} %"
    report.say(
        f"idle: {RECORDS} records x {FILES} files not yet due, --interval 10: waitd used {used:.3f} CPU s "
        f"in {elapsed:.1f} s = {share:.3f} % of one core{steady}" + ("" if alive else " (DAEMON DIED)")
    )
    report.check("idle CPU, % of one core", f"{share:.3f} %", "<= 0.2 %", share <= 0.2 and alive)


def _cpu(times: Any) -> float:
    """User + system seconds of a psutil cpu_times() result."""
    return float(times.user + times.system)
