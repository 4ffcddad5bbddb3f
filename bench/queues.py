# SPDX-License-Identifier: MIT
"""Queues: several waitd draining one queue (`claim=yes`), and the claim's cost.

Throughput: 3,000 files (600 with --quick) in one queue, drained by one,
two and three instances, each with jobs=2 and a handler that sleeps 20 ms.
The instances start on an empty queue; once each has said it started, the
files (written beforehand in the queue's tmp/) are renamed into incoming
all at once.  The drain is from the first handler start to the last end,
both from the instances' own histories; the figure is the throughput of
N instances against one (the target: 2.6x with three), and against the
limit, files x 20 ms / (2 x N).

The claim's cost: the claim is one rename (incoming/NAME to
pending/INSTANCE/NAME), and on success the file is removed from pending
as it would be from the spool.  Two figures: waitd's own `claim` function
on 10,000 files (2,000) against a bare `os.rename` loop between the same
directories, in this process; and `waitd --once` with jobs=1 and
`/bin/true` on 2,000 files (400) of a queue with claim=yes against the
same files in a plain spool directory: the difference a file is what
claiming costs the daemon as a whole.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.common import (
    LogTail,
    Options,
    Proc,
    Report,
    history_events,
    make_files,
    sleeper,
    start_times,
    wait_for,
    waitd_argv,
    workdir,
    write_table,
)
from waitd.journal.history import Status
from waitd.spool import queue as q

SLEEP_S = 0.02
JOBS = 2


def run(opts: Options, report: Report) -> None:
    n = opts.n(3000)
    with workdir("queues-handler") as tools:
        handler = sleeper(tools, SLEEP_S)
        report.say(f"queues: {n} files, jobs={JOBS}, handler {handler.name} sleeping {SLEEP_S * 1000:.0f} ms")
        rates: dict[int, float] = {}
        for count in (1, 2, 3):
            drain = _instances(report, count, n, str(handler))
            if drain is None:
                continue
            rates[count] = n / drain
            limit = n * SLEEP_S / (JOBS * count)
            report.say(
                f"  {count} instance(s): drain {drain:.2f} s ({n / drain:.0f} files/s), "
                f"limit {limit:.2f} s: {limit / drain:.2f} of the limit"
            )
        if 1 in rates:
            for count in (2, 3):
                if count in rates:
                    report.say(f"  {count} instances / one: {rates[count] / rates[1]:.2f}x")
        if 1 in rates and 3 in rates:
            ratio = rates[3] / rates[1]
            report.check(f"queue, 3 instances x jobs=2, {n} x 20 ms: / one", f"{ratio:.2f}x", ">= 2.6x", ratio >= 2.6)
    _claim_cost(opts, report)


def _instances(report: Report, count: int, n: int, handler: str) -> float | None:
    """Drain n files with `count` instances; the drain time, or None."""
    with workdir("queues") as root:
        queue = q.Queue(str(root / "Q"))
        os.mkdir(queue.root)
        queue.make()
        names = make_files(Path(queue.tmp), n, "f")
        procs = []
        try:
            for i in range(count):
                passdir = root / f"i{i}"
                passdir.mkdir()
                write_table(passdir, [f"q {queue.incoming} * {handler} 0 -1 0 claim=yes jobs={JOBS}"])
                procs.append(
                    Proc(
                        waitd_argv("-f", "--passdir", str(passdir), "--interval", "1", "--instance", f"i{i}"),
                        root,
                        f"waitd{i}",
                    )
                )
            for i, proc in enumerate(procs):
                tail = LogTail(root / f"i{i}" / "incoming.log")
                wait_for(lambda: tail.seen(f"waitd started: pid {proc.pid},"), 30, f"instance {i} to start")  # noqa: B023
            for name in names:
                os.rename(os.path.join(queue.tmp, name), os.path.join(queue.incoming, name))
            wait_for(
                lambda: queue.count() == 0 and not any(queue.pending_counts().values()),
                max(120.0, n * SLEEP_S * 2),
                "an empty queue",
            )
        except TimeoutError as exc:
            report.say(f"queue, {count} instance(s): FAILED: {exc} (see {root}/waitd*.out)")
            return None
        finally:
            for proc in procs:
                proc.stop(group=False)
        starts: list[float] = []
        ends: list[float] = []
        for i in range(count):
            passdir = root / f"i{i}"
            starts += start_times(passdir).values()
            ends += [e.at for e in history_events(passdir) if e.status is not Status.STARTED and e.at is not None]
        if len(ends) != n:
            report.say(f"queue, {count} instance(s): FAILED: {len(ends)} ends of {n} (see {root})")
            return None
    return max(ends) - min(starts)


def _claim_cost(opts: Options, report: Report) -> None:
    m = opts.n(10_000)
    t_bare, t_claim = [], []
    for _ in range(2):  # each twice, in turn; the better of each counts
        t_bare.append(_renames(m))
        t_claim.append(_claims(m))
    bare, claim = min(t_bare), min(t_claim)
    report.say(
        f"queue: claim of {m} files {claim * 1e6 / m:.1f} us a file | "
        f"bare os.rename loop {bare * 1e6 / m:.1f} us a file: {claim / bare:.2f}x"
    )
    k = opts.n(2000)
    spool = _drain_once(report, k, claim=False)
    queued = _drain_once(report, k, claim=True)
    if spool is not None and queued is not None:
        report.say(
            f"queue: --once, jobs=1, {k} x /bin/true: claim=yes {queued:.2f} s, plain spool {spool:.2f} s: "
            f"the claim costs the daemon {(queued - spool) * 1000 / k:+.3f} ms a file"
        )


def _renames(m: int) -> float:
    """Seconds to rename m files from one directory into another."""
    with workdir("queues-rename") as root:
        source, target = str(root / "from"), str(root / "to")
        os.mkdir(source)
        os.mkdir(target)
        names = make_files(Path(source), m, "c")
        os.sync()
        t0 = time.perf_counter()
        for name in names:
            os.rename(os.path.join(source, name), os.path.join(target, name))
        return time.perf_counter() - t0


def _claims(m: int) -> float:
    """Seconds for waitd's claim of m files (their inodes known, as the
    daemon knows them from its listing)."""
    with workdir("queues-claim") as root:
        queue = q.Queue(str(root / "Q"))
        os.mkdir(queue.root)
        queue.make("i0")
        names = make_files(Path(queue.incoming), m, "c")
        inos = [os.stat(os.path.join(queue.incoming, name)).st_ino for name in names]
        os.sync()
        t0 = time.perf_counter()
        for name, ino in zip(names, inos, strict=True):
            if q.claim(queue, name, "i0", ino) is None:
                raise RuntimeError(f"{name}: not claimed")
        return time.perf_counter() - t0


def _drain_once(report: Report, n: int, claim: bool) -> float | None:
    """`waitd --once` over n ready files, claimed from a queue or not."""
    with workdir("queues-once") as root:
        passdir = root / "pass"
        passdir.mkdir()
        if claim:
            queue = q.Queue(str(root / "Q"))
            os.mkdir(queue.root)
            queue.make()
            directory, option = queue.incoming, " claim=yes"
        else:
            directory, option = str(root / "spool"), ""
            os.mkdir(directory)
        make_files(Path(directory), n, "f", mtime=time.time() - 3600)
        write_table(passdir, [f"q {directory} * /bin/true 0 -1 0{option}"])
        proc = Proc(waitd_argv("--once", "--passdir", str(passdir)), root, "waitd")
        try:
            code = proc.wait(timeout=max(120.0, n * 0.01))
            t_exit = time.time()
        finally:
            proc.stop(group=False)
        starts = start_times(passdir)
        if code != 0 or len(starts) != n:
            what = "claim=yes" if claim else "plain spool"
            report.say(f"queue, --once {what}: FAILED: exit {code}, {len(starts)} starts of {n} (see {root}/waitd.out)")
            return None
    return t_exit - min(starts.values())
