# SPDX-License-Identifier: MIT
"""Backlog: how fast `waitd --once` drains files that are all ready.

Files are created with an mtime an hour old (wait age 60 s), handler
/bin/true, keep-after -1, hours-too-old 0.  Just before each waitd run the
same process times a bare loop that runs /bin/true as many times, with
subprocess.run (the baseline) and with os.posix_spawn + waitpid.

waitd's times come from its history: start-up is from the moment the
benchmark starts `waitd --once` to the first handler start (so it includes
Python's start, the table, the history and listing the spool); drain is
from there to the exit of `waitd --once` (so it includes the last reap and
the final prune).  Start times survive a compaction of the history in the
middle of the drain (see `common.start_times`).  The ratio is baseline
time / drain time: 1.0 means waitd starts handlers as fast as a bare loop.

Issue 21 adds, in the same run: the durable floor (`common.durable_floor`:
per file an append, an fdatasync, a posix_spawn and a wait, nothing else)
and the drain as a share of it; and waitd's own CPU per file (its process
alone, read while it runs, less the CPU of a `--once` on an empty spool),
beside the durable floor's and the promise floor's (`common.promise_floor`:
every system call waitd makes for a file, in a straight line of plain
Python, on the first record's files, as many at once as there are
records, the starts of the runs that ended together under one
fdatasync): what waitd spends beyond the promise floor is the cost of
deciding, not of doing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.common import (
    Options,
    Proc,
    Report,
    durable_floor,
    history_events,
    make_files,
    promise_floor,
    spawn_loop_posix,
    spawn_loop_subprocess,
    start_times,
    startup_cpu,
    wait_counting_cpu,
    waitd_argv,
    workdir,
    write_table,
)
from waitd.journal.history import Status

WAIT_S = 60
AGE_S = 3600


def run(opts: Options, report: Report) -> None:
    n = opts.n(10_000)
    one = _case(report, f"{n} files, 1 record", [n])
    two = _case(report, f"{2 * n} files, 1 record", [2 * n])
    four = _case(report, f"{n} files, 4 records", [n // 4] * 4)
    if one:
        report.check(f"backlog {n}, 1 record: bare-loop time / waitd", f"{one[0]:.2f}x", ">= 0.8x", one[0] >= 0.8)
    if one and two:
        scale = two[1] / one[1]
        report.say(
            f"  backlog {2 * n}/{n}: drain time ratio {scale:.2f} (start-up to last end: {two[2] / one[2]:.2f}; "
            f"the bare loop's own ratio in this run: {two[3] / one[3]:.2f})"
        )
        report.check(f"backlog {2 * n}/{n} drain time", f"{scale:.2f}", "<= 2.1", scale <= 2.1)
    if four:
        report.check(f"backlog {n}, 4 records: bare-loop time / waitd", f"{four[0]:.2f}x", ">= 1.4x", four[0] >= 1.4)


def _case(report: Report, label: str, counts: list[int]) -> tuple[float, float, float, float] | None:
    """Run one backlog; return (ratio, drain s, start-to-last-end s, bare loop s)."""
    total = sum(counts)
    with workdir("backlog") as root:
        passdir = root / "pass"
        passdir.mkdir()
        mtime = time.time() - AGE_S
        lines = []
        for k, count in enumerate(counts, start=1):
            directory = passdir / f"in{k}"
            directory.mkdir()
            make_files(directory, count, f"r{k}-", mtime=mtime)
            lines.append(f"bench in{k} *.dat /bin/true {WAIT_S} -1 0")
        write_table(passdir, lines)

        base_sub = spawn_loop_subprocess(total)
        base_posix = spawn_loop_posix(total)
        floor, floor_cpu = durable_floor(total, root)
        first_dir = sorted(os.listdir(passdir / "in1"))
        # As many at once as waitd runs: one a record.
        promise, promise_cpu = promise_floor(root, passdir / "in1", first_dir, jobs=len(counts))
        start_cpu = startup_cpu(root)

        t0 = time.time()
        proc = Proc(waitd_argv("--once", "--passdir", str(passdir)), root, "waitd")
        try:
            code, cpu = wait_counting_cpu(proc, timeout=max(120.0, 0.05 * total))
            t_exit = time.time()
        finally:
            proc.stop(group=False)
        starts, ends, last_end = _outcomes(passdir)
        if code != 0 or not starts or ends != total:
            report.say(
                f"backlog {label}: FAILED: exit {code}, {len(starts)} starts, {ends} ends of {total} "
                f"(see {root}/waitd.out)"
            )
            return None
    first = min(starts)
    startup = first - t0
    drain = t_exit - first
    ratio = base_sub / drain
    report.say(
        f"backlog {label}: waitd start-up {startup:.2f} s, drain {drain:.2f} s ({total / drain:.0f}/s), "
        f"start to last end {last_end - t0:.2f} s | bare subprocess.run {base_sub:.2f} s ({total / base_sub:.0f}/s), "
        f"posix_spawn {base_posix:.2f} s ({total / base_posix:.0f}/s) | ratio {ratio:.2f}x "
        f"(vs posix_spawn {base_posix / drain:.2f}x) | durable floor {floor:.2f} s: waitd at {floor / drain:.2f} of it "
        f"| waitd's own CPU {(cpu - start_cpu) / total * 1000:.2f} ms a file (start-up {start_cpu:.2f} s) "
        f"| the durable floor's own CPU {floor_cpu / total * 1000:.2f} ms a file; the promise floor (waitd's system "
        f"calls for a file in a straight line, {len(first_dir)} files, {len(counts)} at a time): {promise:.2f} s, "
        f"waitd at {promise / len(first_dir) / (drain / total):.2f} of it, "
        f"bare loop / it {base_sub / total / (promise / len(first_dir)):.2f}x, "
        f"its own CPU {promise_cpu / len(first_dir) * 1000:.2f} ms a file"
    )
    return ratio, drain, last_end - t0, base_sub


def _outcomes(passdir: Path) -> tuple[list[float], int, float]:
    """Handler start times, how many status 2, the last end's at=."""
    ends, last_end = 0, 0.0
    for event in history_events(passdir):
        if event.status is Status.KNOWN:
            ends += 1
            if event.at is not None:
                last_end = max(last_end, event.at)
    return list(start_times(passdir).values()), ends, last_end
