# SPDX-License-Identifier: MIT
"""Jobs: several handlers of one record at once (`jobs=N`).

Sleeping handlers: 1,000 files (200 with --quick), all ready, handler
sleeping 50 ms, `waitd --once` with jobs=1, 4 and 16.  The limit is
files x 50 ms / jobs, what N handlers sleeping back to back would take;
the figure is limit / drain time (1.0: no time lost between runs).  The
handler is a small C program (usleep) when a C compiler is there, so that
its own start costs well under a millisecond; else a shell script.

Busy handlers: 10,000 files (2,000), /bin/true, jobs=2, against the bare
serial loop (subprocess.run) of the same run: what two handlers at once
buy on this 2-core machine; and against the promise floor run two at a
time (`common.promise_floor`, jobs=2), what a loop that makes waitd's
system calls and decides nothing gets from two at once.

Drain time is from the first handler start (the history's `at=`) to the
exit of `waitd --once`.
"""

from __future__ import annotations

import time

from bench.common import (
    Options,
    Report,
    make_files,
    once_drain,
    promise_floor,
    sleeper,
    spawn_loop_subprocess,
    workdir,
    write_table,
)

SLEEP_S = 0.05


def run(opts: Options, report: Report) -> None:
    n = opts.n(1000)
    with workdir("jobs-handler") as tools:
        handler = sleeper(tools, SLEEP_S)
        report.say(f"jobs: handler {handler.name} sleeping {SLEEP_S * 1000:.0f} ms, {n} files")
        for jobs, target in ((1, None), (4, 0.9), (16, 0.8)):
            drain = _drain(report, n, str(handler), jobs)
            if drain is None:
                continue
            limit = n * SLEEP_S / jobs
            report.say(f"  jobs={jobs}: drain {drain:.2f} s, limit {limit:.2f} s: {limit / drain:.2f} of the limit")
            if target is not None:
                report.check(
                    f"jobs={jobs}, {n} x 50 ms: limit / drain",
                    f"{limit / drain:.2f}",
                    f">= {target}",
                    limit / drain >= target,
                )
    m = opts.n(10_000)
    base = spawn_loop_subprocess(m)
    with workdir("jobs-floor") as root:
        (root / "in").mkdir()
        names = make_files(root / "in", m, "f", mtime=time.time() - 3600)
        floor, floor_cpu = promise_floor(root, root / "in", names, jobs=2)
    drain = _drain(report, m, "/bin/true", 2)
    if drain is not None:
        report.say(
            f"jobs: {m} x /bin/true, jobs=2: drain {drain:.2f} s ({m / drain:.0f}/s) | "
            f"bare serial subprocess.run {base:.2f} s ({m / base:.0f}/s) | the promise floor, two at a time "
            f"(common.promise_floor: waitd's system calls a file in a straight line, the starts of the "
            f"runs that ended together under one fdatasync), {floor:.2f} s: bare serial loop / it "
            f"{base / floor:.2f}x, its own CPU {floor_cpu / m * 1000:.2f} ms a file, waitd at {floor / drain:.2f} of it"
        )
        report.check(
            f"jobs=2, {m} x /bin/true: bare serial loop / waitd", f"{base / drain:.2f}x", ">= 1.2x", base / drain >= 1.2
        )


def _drain(report: Report, n: int, handler: str, jobs: int) -> float | None:
    """Drain n ready files with `waitd --once`; the drain time, or None."""
    with workdir("jobs") as root:
        passdir = root / "pass"
        (passdir / "in").mkdir(parents=True)
        make_files(passdir / "in", n, "f", mtime=time.time() - 3600)
        write_table(passdir, [f"bench in *.dat {handler} 60 -1 0 jobs={jobs}"])
        return once_drain(
            root, passdir, n, max(120.0, n * SLEEP_S * 2), lambda problem: report.say(f"jobs={jobs}: {problem}")
        )
