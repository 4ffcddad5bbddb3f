# SPDX-License-Identifier: MIT
"""Events: what sinks cost a run, as arrivals latency and CPU time.

The arrivals scenario (bench/arrivals.py: files renamed in at a steady
rate, here 50 a second, latency from the rename to the handler's first
act, read from bash's `$EPOCHREALTIME`), run by waitd with different
waitd.conf files, one after the other in the same run:

- no sinks (no outbox: the history alone);
- a `jsonl` sink (every event: ready, started, ended);
- a `posttroll` sink (a `file` message per ready file, on a loopback
  port, no subscriber: ZeroMQ drops them; what is timed is the sink's
  work, not a subscriber's);
- both, the case of the target.

No sinks and both alternate, ROUNDS pairs (one with --quick), the
single sinks between the first pair and the second: the target is the
median of the pairs' differences, so that a drift of the machine's speed
(other work on a shared machine) weighs on both cases of a pair alike.

With sinks, a start's handler waits for its history line's sync alone:
its events are made, written and synced (in a helper thread) after it
started, and that sync is over before waitd writes anything more (issue
21); each sink's process reads and delivers in parallel with the loop.
The floor of the ways a start's syncs were taken before, measured in the
same run (`_sync_floor`, plain Python, the three ways taken in turn,
SYNC_ROUNDS times): a start's line synced alone (no sinks, and the way
now), an event then a line synced one after the other, and both synced
side by side.  For each case, the p50 and p99 latency, waitd's own
CPU time per file and its sinks' (psutil, during the timed files only),
and, after the last file, the time for the sinks to catch up (status
backlog 0); and the pairs' medians of the differences of p50 and of
waitd's CPU a file.  Target (issue 14): the p50 with posttroll and jsonl
within 1 ms of the p50 without sinks; issue 21 asks 0.3 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import arrivals
from bench.common import Options, Proc, Report, env, wait_for, waitd_argv, workdir, write_table

# A quarter of the arrivals scenario's rate: what is measured is what a
# sink adds to one file's way (the outbox's write and fdatasync before the
# history's, the sinks' processes beside), not the rate at which waitd
# falls behind, which on this shared 2-core VM hides everything else.
RATE = 50
DURATION_S = 10.0
SYNC_ROUNDS = 300  # of each way, for the floor
ROUNDS = 3  # pairs of no sinks and both, alternating (one with --quick)
NONE, BOTH = "no sinks", "posttroll+jsonl"


@dataclass(frozen=True, slots=True)
class Result:
    latency: arrivals.Latency
    waitd_cpu_ms: float  # per file
    sinks_cpu_ms: float  # per file
    catch_up_s: float


def run(opts: Options, report: Report) -> None:
    duration = DURATION_S * opts.scale
    count = int(RATE * duration)
    report.say(
        f"events: {count} files renamed in at {RATE}/s for {duration:g} s, rename -> handler start, "
        "with each kind of sink and without"
    )
    pairs: list[tuple[Result | None, Result | None]] = []
    for i in range(1 if opts.quick else ROUNDS):
        pairs.append((_one(report, NONE, count), _one(report, BOTH, count)))
        if i == 0:
            _one(report, "jsonl", count)
            _one(report, "posttroll", count)
    with workdir("events-floor") as root:
        floor = _sync_floor(root, SYNC_ROUNDS)
    report.say(
        "  sync floor a start (p50): the history alone {:.2f} ms; outbox then history {:.2f} ms; "
        "side by side {:.2f} ms".format(*floor)
    )
    whole = [(none, both) for none, both in pairs if none is not None and both is not None]
    if not whole:
        report.check("events: p50 with posttroll+jsonl - without", "failed", "<= 0.3 ms", None)
        return
    extra = statistics.median(b.latency.p50_ms - n.latency.p50_ms for n, b in whole)
    cpu = statistics.median(b.waitd_cpu_ms - n.waitd_cpu_ms for n, b in whole)
    report.say(
        f"  pairs' medians, with both sinks less without: p50 {extra:+.2f} ms, waitd's CPU a file {cpu:+.2f} ms "
        f"({len(whole)} pair(s): " + ", ".join(f"{b.latency.p50_ms - n.latency.p50_ms:+.2f}" for n, b in whole) + ")"
    )
    report.check(
        "events: p50 with posttroll+jsonl - without",
        f"{extra:+.2f} ms",
        "<= 0.3 ms",
        extra <= 0.3,
    )


def _sync_floor(root: Path, rounds: int) -> tuple[float, float, float]:
    """The p50 (ms) of a start's syncs, three ways, in turn: a line to the
    history alone; an event to the outbox then a line to the history, each
    synced before the next; both written, then synced side by side (the
    outbox's in a helper thread)."""
    line = b"/tmp/waitd-bench/in/r0000000.dat /bin/true 1796544886 0 at=1796548488.950 " + b"x" * 60 + b"\n"
    event = b'{"id":"' + b"0" * 32 + b'","type":"started","time":1796548488.95,"path":"/tmp/x"}\n'
    history = os.open(root / "floor.history", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    outbox = os.open(root / "floor.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    times: tuple[list[float], list[float], list[float]] = ([], [], [])
    try:
        with ThreadPoolExecutor(max_workers=1) as beside:
            for _ in range(rounds):
                t0 = time.perf_counter()
                os.write(history, line)
                os.fdatasync(history)
                t1 = time.perf_counter()
                os.write(outbox, event)
                os.fdatasync(outbox)
                os.write(history, line)
                os.fdatasync(history)
                t2 = time.perf_counter()
                os.write(outbox, event)
                os.write(history, line)
                other = beside.submit(os.fdatasync, outbox)
                os.fdatasync(history)
                other.result()
                t3 = time.perf_counter()
                for into, took in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    into.append(took * 1000)
    finally:
        os.close(history)
        os.close(outbox)
    alone, in_turn, side = (statistics.median(t) for t in times)
    return alone, in_turn, side


def _conf(case: str, port: int) -> str:
    text = ""
    if "jsonl" in case:
        text += "[sink log]\ntype = jsonl\npath = events.jsonl\n"
    if "posttroll" in case:
        text += f"[sink pytroll]\ntype = posttroll\naddress = tcp://127.0.0.1:{port}\n"
    return text


def _one(report: Report, case: str, count: int) -> Result | None:
    with workdir("events") as root:
        spool, passdir = root / "in", root / "pass"
        spool.mkdir()
        passdir.mkdir()
        handled = root / "handled"
        handler = root / "handler"
        handler.write_text(f'#!/bin/bash\nt=$EPOCHREALTIME\nprintf "%s %s\\n" "${{t/,/.}}" "$1" >> "{handled}"\n')
        handler.chmod(0o755)
        conf = _conf(case, _free_port())
        if conf:
            (passdir / "waitd.conf").write_text(conf)
        write_table(passdir, [f"bench {spool} *.dat {handler} 0 -1 0"])
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), root, "waitd")
        try:
            arrivals._warm_up(spool, handled, proc)
            wait_for(lambda: _caught_up(passdir), 30, "the sinks to start and pass the warm-up's events")
            cpu0 = _cpu(proc.pid)
            renamed = arrivals.generate(spool, count, RATE)
            wait_for(lambda: arrivals._handled_count(handled) >= count, 30 + count / RATE, "every file handled")
            done = time.monotonic()
            wait_for(lambda: _caught_up(passdir), 60, "the sinks to catch up")
            catch_up_s = time.monotonic() - done
            cpu1 = _cpu(proc.pid)
        except TimeoutError as exc:
            report.say(f"  {case:<16}: FAILED: {exc} (see {root}/waitd.out)")
            return None
        finally:
            proc.stop(group=False)
        latency = arrivals._latency(arrivals._handler_times(handled), renamed)
        delivered = _lines(passdir / "events.jsonl")
    result = Result(
        latency,
        (cpu1[0] - cpu0[0]) * 1000 / count,
        (cpu1[1] - cpu0[1]) * 1000 / count,
        catch_up_s,
    )
    sinks = f", sinks {result.sinks_cpu_ms:.2f} ms, caught up {result.catch_up_s:.2f} s after the last" if conf else ""
    jsonl = f"; {delivered} jsonl lines" if "jsonl" in case else ""
    report.say(
        f"  {case:<16}: {latency.count} handled, {latency.text()}; CPU a file: waitd {result.waitd_cpu_ms:.2f} ms"
        f"{sinks}{jsonl}"
    )
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of waitd itself, and of its sinks' processes."""
    own = psutil.Process(pid)
    times = own.cpu_times()
    sinks = 0.0
    for child in own.children():
        try:
            if "waitd.sinks.child" in child.cmdline():
                t = child.cpu_times()
                sinks += t.user + t.system
        except psutil.Error:
            continue
    return times.user + times.system, sinks


def _caught_up(passdir: Path) -> bool:
    """No sink has a backlog (true at once without sinks)."""
    if not (passdir / "waitd.conf").exists():
        return True
    reply = subprocess.run(
        waitd_argv("--passdir", str(passdir), "-s", "status", "--json"), capture_output=True, text=True, env=env()
    )
    if reply.returncode != 0:
        return False
    sinks = json.loads(reply.stdout).get("sinks") or []
    return all(s["backlog"] == 0 and s["pid"] is not None for s in sinks)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
