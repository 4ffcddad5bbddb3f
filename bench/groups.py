# SPDX-License-Identifier: MIT
"""Groups: how soon a complete group runs, and what many open groups cost.

Complete groups: HRIT-like images of 114 members (11 channels of 8
segments, HRV of 24, prologue and epilogue), critical the prologue and the
epilogue, every member wanted.  Each member is written under a dot-name
and renamed in, at 50 files a second, group after group (20 groups; 4
with --quick); the latency is from the rename of a group's last member to
its handler's start (the `at=` of its status 0 lines), p50 and p99 over
the groups.

Open groups: 10,000 groups of 3 members each (2,000 with --quick) that
never complete (4 wanted, a timeliness of a day), in the spool before
waitd starts.  The figures: waitd's peak RSS once it has filed them all,
its CPU time a poll while idle (--interval 1, over 10 s), and the latency
of one group completed by its fourth member while the others stay open.
"""

from __future__ import annotations

import os
import time

import psutil

from bench.common import (
    LogTail,
    Options,
    Proc,
    Report,
    percentile,
    start_times,
    vm_hwm_mb,
    wait_for,
    waitd_argv,
    workdir,
    write_table,
)

RATE = 50
HRIT = "H-000-{platform:4s}__-{channel_name:_<9s}-{segment:_<9s}-{start_time:%Y%m%d%H%M}-__"
CHANNELS = [
    "VIS006",
    "VIS008",
    "IR_016",
    "IR_039",
    "WV_062",
    "WV_073",
    "IR_087",
    "IR_097",
    "IR_108",
    "IR_120",
    "IR_134",
]
WANTED = ",".join([f"{c}:000001-000008" for c in CHANNELS] + ["HRV:000001-000024", ":PRO", ":EPI"])


def run(opts: Options, report: Report) -> None:
    _complete(opts, report)
    _open(opts, report)


def _members(slot: str) -> list[str]:
    names = [f"H-000-MSG4__-{'':_<9s}-{'PRO':_<9s}-{slot}-__"]
    names += [f"H-000-MSG4__-{c:_<9s}-{s:06d}___-{slot}-__" for c in CHANNELS for s in range(1, 9)]
    names += [f"H-000-MSG4__-{'HRV':_<9s}-{s:06d}___-{slot}-__" for s in range(1, 25)]
    names.append(f"H-000-MSG4__-{'':_<9s}-{'EPI':_<9s}-{slot}-__")
    return names


def _complete(opts: Options, report: Report) -> None:
    count = 4 if opts.quick else 20
    with workdir("groups") as root:
        passdir = root / "pass"
        spool = passdir / "in"
        spool.mkdir(parents=True)
        write_table(
            passdir,
            [f"msg in H-* /bin/true 0 -1 0 pattern={HRIT} critical=:PRO,:EPI wanted={WANTED} timeliness=86400"],
        )
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), root, "waitd")
        last: dict[str, float] = {}
        try:
            wait_for(lambda: LogTail(passdir / "incoming.log").seen("waitd started"), 30, "waitd to start")
            step = 1.0 / RATE
            t_next = time.monotonic()
            for g in range(count):
                slot = f"20260101{g // 4:02d}{g % 4 * 15:02d}"
                for name in _members(slot):
                    tmp = spool / f".{name}.tmp"
                    tmp.write_bytes(b"x")
                    t_next += step
                    delay = t_next - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    os.rename(tmp, spool / name)
                    last[slot] = time.time()
            wait_for(lambda: len(start_times(passdir)) == 114 * count, 60, "every group's run")
        finally:
            proc.stop()
        starts = start_times(passdir)
    latencies = sorted((min(t for p, t in starts.items() if slot in p) - at) * 1000 for slot, at in last.items())
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    report.say(f"  latencies (ms): {' '.join(f'{x:.2f}' for x in latencies)}")
    report.say(
        f"groups: {count} groups of 114 members at {RATE}/s; last member to handler start: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    report.check("groups: last member to start, p50", f"{p50:.1f} ms", "<= 10 ms", p50 <= 10)


def _open(opts: Options, report: Report) -> None:
    n = opts.n(10_000)
    with workdir("groups-open") as root:
        passdir = root / "pass"
        spool = passdir / "in"
        spool.mkdir(parents=True)
        for g in range(n):
            for s in (1, 2, 3):
                (spool / f"p{g:06d}_20260101_1200_{s}.dat").write_bytes(b"x")
        write_table(
            passdir,
            [
                "open in *.dat /bin/true 0 -1 0 pattern={platform}_{start_time:%Y%m%d_%H%M}_{segment}.dat "
                "wanted=:1-4 timeliness=86400"
            ],
        )
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir), "--interval", "1"), root, "waitd")
        try:
            wait_for(lambda: (passdir / "waitd.status").exists(), 120, "the first pass over the open groups")
            rss = vm_hwm_mb(proc.pid) or 0.0
            cpu = psutil.Process(proc.pid)
            before = cpu.cpu_times()
            time.sleep(10)
            after = cpu.cpu_times()
            per_poll_ms = ((after.user + after.system) - (before.user + before.system)) / 10 * 1000
            latencies = []
            for g in range(5):
                name = spool / f"p{g:06d}_20260101_1200_4.dat"
                tmp = spool / f".{name.name}.tmp"
                tmp.write_bytes(b"x")
                at = time.time()
                os.rename(tmp, name)
                wait_for(lambda: str(name.parent / f"p{g:06d}") in " ".join(start_times(passdir)), 30, "the run")  # noqa: B023
                latencies.append((min(t for p, t in start_times(passdir).items() if f"p{g:06d}" in p) - at) * 1000)
        finally:
            proc.stop()
    latencies.sort()
    report.say(
        f"groups: {n} open groups of 3 members: peak RSS {rss:.0f} MB; CPU a poll while idle {per_poll_ms:.1f} ms; "
        f"one group completed among them: start {percentile(latencies, 0.5):.1f} ms after its last member (p50 of 5)"
    )
    report.check(f"groups: {n} open groups, RSS", f"{rss:.0f} MB", "< 150 MB", rss < 150)
