# SPDX-License-Identifier: MIT
"""A STOMP source's broker gone for a minute (issue 22): nothing lost, no
local work held back.

A persistent ActiveMQ (tests/peers/activemq.py) and waitd with a
`[source]` of type stomp (retry-max = 5) on a queue whose record runs
`/bin/true`, and a record on a plain directory.  BEFORE messages are sent
and run; the broker is stopped for OUTAGE_S (60 s; --quick: 12 s), while
files are renamed into the plain directory at LOCAL_RATE a second (their
latency, rename to handler start, from the history); the broker starts
again, and AFTER more messages are sent.  Reported: messages lost or run
twice (both must be 0), the time from the broker's return to the
source's connection (at most retry-max, plus the connection), and the
local files' latency during the outage.  The tests prove the same with an
outage of a few seconds (tests/test_sources.py); this is the minute.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.arrivals import percentile
from bench.common import ROOT, Options, Proc, Report, start_times, wait_for, waitd_argv, workdir, write_table

BEFORE = 100
AFTER = 100
OUTAGE_S = 60.0
LOCAL_RATE = 10


def run(opts: Options, report: Report) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from peers.activemq import ActiveMQ, available

    if not available():
        report.say("outage: ActiveMQ is not installed (make deps); skipped")
        report.check("outage: messages lost or run twice", "n/a", "0", None)
        return
    outage = OUTAGE_S * opts.scale
    report.say(f"outage: {BEFORE} messages, the broker stopped for {outage:g} s, then {AFTER} more")
    import stomp

    with workdir("outage") as root:
        broker = ActiveMQ(root / "broker", persistent=True)
        broker.start()
        passdir, q, spool = root / "pass", root / "q", root / "in"
        for d in (passdir, q, spool):
            d.mkdir()
        (passdir / "waitd.conf").write_text(
            f"[source isis]\ntype = stomp\nport = {broker.port}\ndestinations = /queue/work\nqueue = {q}\n"
            "name = m{seq:05d}.json\nretry-max = 5\nheartbeat = 2\n"
        )
        write_table(
            passdir,
            [f"isis {q}/incoming *.json /bin/true 0 -1 0 claim=yes jobs=4", f"local {spool} *.dat /bin/true 0 -1 0"],
        )
        proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), root, "waitd")
        state = passdir / "sources" / "isis.state"

        def connected() -> bool:
            try:
                return bool(json.loads(state.read_text()).get("connected"))
            except (OSError, ValueError):
                return False

        def queued() -> list[str]:
            return [p for p in start_times(passdir) if p.endswith(".json")]

        try:
            wait_for(connected, 30, "the source to connect")
            _send(stomp, broker.port, range(BEFORE))
            wait_for(lambda: len(queued()) >= BEFORE, 60, "the first messages run")
            broker.stop()
            renamed = _local(spool, outage)
            broker.start()
            back = time.monotonic()
            wait_for(connected, 120, "the source to connect again")
            reconnect_s = time.monotonic() - back
            _send(stomp, broker.port, range(BEFORE, BEFORE + AFTER))
            wait_for(lambda: len(queued()) >= BEFORE + AFTER, 60, "every message run")
        except TimeoutError as exc:
            report.say(f"  FAILED: {exc} (see {root})")
            report.check("outage: messages lost or run twice", "failed", "0", None)
            return
        finally:
            proc.stop()
            broker.stop()
        names = [Path(p).name for p in queued()]
        twice = len(names) - len(set(names))
        lost = BEFORE + AFTER - len(set(names))
        starts = start_times(passdir)
        latency = sorted((starts[p] - t) * 1000 for p, t in renamed.items() if p in starts)
    report.say(
        f"  {len(set(names))} of {BEFORE + AFTER} messages run, {twice} twice; connected again "
        f"{reconnect_s:.1f} s after the broker; {len(latency)} local files during the outage: "
        f"p50 {percentile(latency, 0.5):.1f} ms, p99 {percentile(latency, 0.99):.1f} ms"
    )
    report.check("outage: messages lost or run twice", f"{lost} / {twice}", "0 / 0", lost == 0 and twice == 0)
    report.check(
        "outage: local files run during it", f"{len(latency)} of {len(renamed)}", "all", len(latency) == len(renamed)
    )


def _send(stomp: object, port: int, seqs: range) -> None:
    conn = stomp.Connection([("127.0.0.1", port)])  # type: ignore[attr-defined]
    conn.connect(wait=True)
    try:
        for i in seqs:
            conn.send("/queue/work", json.dumps({"seq": i}), headers={"persistent": "true"})
    finally:
        conn.disconnect()


def _local(spool: Path, seconds: float) -> dict[str, float]:
    """Files renamed into the plain directory at LOCAL_RATE for `seconds`."""
    renamed: dict[str, float] = {}
    tmp = spool.parent / "staging"
    tmp.mkdir(exist_ok=True)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        src, dst = tmp / f"l{i:05d}.dat", spool / f"l{i:05d}.dat"
        src.write_bytes(b"x")
        os.rename(src, dst)
        renamed[str(dst)] = time.time()
        i += 1
        time.sleep(1 / LOCAL_RATE)
    return renamed
