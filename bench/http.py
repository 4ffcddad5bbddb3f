# SPDX-License-Identifier: MIT
"""The task API and the status page (issue 23): how fast they answer, and
what a browser polling the page costs the arrivals.

Answers: one waitd with 100 records of 100 files each (10,000 files
waiting: a wait age of an hour), `--http`.  Timed from this process, each
asked REPEAT times: `-s show` of one file and `-s list` (the control
socket's requests, as `waitd -s` sends them, without a Python start),
`/status.json`, `/page.json` and `/` over HTTP.  The HTTP figures read the
last status document the loop handed over: the loop's own cost is the
status build it does anyway.

Arrivals: as `arrivals` (files renamed in at ARRIVALS_RATE a second,
latency to the handler's first act), in the same run, PAIRS times each,
alternating: waitd without --http, and waitd with --http and a poller (a
process of its own) fetching what the page fetches, every second: /,
/status.json and /page.json.  The medians of the p99s are compared.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from bench.arrivals import Latency, _handler_times, _latency, _warm_up, generate
from bench.common import Options, Proc, Report, percentile, wait_for, waitd_argv, workdir, write_table
from waitd.daemon import sock

RECORDS = 100
FILES_EACH = 100
REPEAT = 20
DURATION_S = 10.0
ARRIVALS_RATE = 50  # files a second: as the events scenario, below what a loaded machine saturates at
PAIRS = 3
PORT = 18923

POLLER = """
import sys, time, urllib.request
url = sys.argv[1]
while True:
    t = time.monotonic()
    for path in ("/", "/status.json", "/page.json"):
        try:
            urllib.request.urlopen(url + path, timeout=5).read()
        except OSError:
            pass
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
"""


def run(opts: Options, report: Report) -> None:
    _answers(report)
    _arrivals(opts, report)


def _timed(ask: object, n: int = REPEAT) -> tuple[float, float]:
    """p50 and max, in ms, of n calls."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        ask()  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return percentile(times, 0.5), times[-1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return bytes(reply.read())


def _answers(report: Report) -> None:
    report.say(f"http: {RECORDS} records x {FILES_EACH} waiting files; each answer asked {REPEAT} times")
    with workdir("http") as root:
        passdir = root / "pass"
        passdir.mkdir()
        lines = []
        for r in range(RECORDS):
            spool = root / f"in{r:03d}"
            spool.mkdir()
            for i in range(FILES_EACH):
                (spool / f"f{i:04d}.dat").write_bytes(b"x")
            lines.append(f"r{r} {spool} *.dat /bin/true 3600 -1 0")
        write_table(passdir, lines)
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir), "--http", f"127.0.0.1:{PORT}"), root, "waitd")
        url = f"http://127.0.0.1:{PORT}"
        try:
            wait_for(lambda: _waiting(url) == RECORDS * FILES_EACH, 60, "every file waiting")
            one = str(root / "in050" / "f0050.dat")
            asks = {
                "-s show PATH": lambda: sock.ask(str(passdir), {"cmd": "show", "path": one}),
                "-s list": lambda: sock.ask(str(passdir), {"cmd": "list", "state": None, "record": None}),
                "GET /status.json": lambda: _get(url + "/status.json"),
                "GET /page.json": lambda: _get(url + "/page.json"),
                "GET / (the page)": lambda: _get(url + "/"),
                "GET /files/PATH": lambda: _get(url + "/files" + one),
            }
            for what, ask in asks.items():
                p50, most = _timed(ask)
                # The max is an answer that came while the loop built its status (every file looked at).
                report.check(f"http {what}", f"p50 {p50:.1f} / max {most:.1f} ms", "p50 < 50 ms", p50 < 50)
        finally:
            proc.stop()


def _waiting(url: str) -> int:
    try:
        doc = json.loads(_get(url + "/status.json"))
    except OSError:
        return -1
    return sum(r["waiting"] for r in doc["records"])


def _arrivals(opts: Options, report: Report) -> None:
    count = int(ARRIVALS_RATE * DURATION_S * opts.scale)
    report.say(
        f"http: arrivals, {count} files at {ARRIVALS_RATE}/s, without --http and with it and a poller every second, "
        f"alternating, {PAIRS} of each"
    )
    p99: dict[str, list[float]] = {"no --http": [], "--http, polled": []}
    for _ in range(PAIRS):
        for name in p99:
            latency = _one(name, count)
            report.say(f"  {name:<15}: {latency.count} handled, {latency.text()}")
            p99[name].append(latency.p99_ms)
    none, polled = (sorted(v)[len(v) // 2] for v in p99.values())
    moved = polled - none
    report.check("http arrivals p99 (median), polled - none", f"{moved:+.2f} ms", "< 0.5 ms", moved < 0.5)


def _one(name: str, count: int) -> Latency:
    with workdir("http-arrivals") as root:
        spool, passdir, handled = root / "in", root / "pass", root / "handled"
        spool.mkdir()
        passdir.mkdir()
        handler = root / "handler"
        handler.write_text(f'#!/bin/bash\nt=$EPOCHREALTIME\nprintf "%s %s\\n" "${{t/,/.}}" "$1" >> "{handled}"\n')
        handler.chmod(0o755)
        write_table(passdir, [f"bench {spool} *.dat {handler} 0 -1 0"])
        extra = ["--http", f"127.0.0.1:{PORT}"] if name != "no --http" else []
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir), *extra), root, "waitd")
        poller = None
        try:
            _warm_up(spool, handled, proc)
            if extra:
                poller = Proc([sys.executable, "-c", POLLER, f"http://127.0.0.1:{PORT}"], root, "poller")
                time.sleep(1.5)
            renamed = generate(spool, count, ARRIVALS_RATE)
            wait_for(lambda: _count(handled) >= count, 30 + count / ARRIVALS_RATE, "every file handled")
        finally:
            if poller is not None:
                poller.stop()
            proc.stop()
        return _latency(_handler_times(handled), renamed)


def _count(handled: Path) -> int:
    try:
        data = handled.read_bytes()
    except FileNotFoundError:
        return 0
    return data.count(b"\n") - data.count(b"warmup-")
