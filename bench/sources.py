# SPDX-License-Identifier: MIT
"""Sources: messages from a STOMP producer to handler starts (issue 22).

One real ActiveMQ (Debian `activemq`, not persistent, as the tests start
it: tests/peers/activemq.py) carries DataReady-like messages (`seq`, the
send time, an RB number) from a stomp.py producer to:

- waitd: a `[source]` of type stomp putting each message into a queue
  (write, fsync, ledger, rename, fsync of the directory, then the ack),
  and a record `claim=yes fields=json jobs=8` running `/bin/true` on it;
  a handler's start is its status 0 `at=` in the history;
- the source alone (no record): the rate and latency into the spool,
  what the source costs on its own (a file's rename into incoming is its
  ctime);
- a bare stomp.py consumer, the baseline: `ack = client-individual`, and
  for each message a `/bin/true` spawned (not waited for: reaped later)
  and the message acknowledged; its start is the time of the spawn.

Two phases for each, in the same run: a burst of COUNT messages sent as
fast as the producer can (the rate is COUNT over the time from the
first send to the last start), then RATE messages a second for
DURATION_S (the latency from the send to the start, p50 and p99; the
send time travels in the body).  Target: waitd's rate at least 0.8x the
bare consumer's.  waitd's rate is that of its handler starts from a
queue (bench/backlog.py, bench/queues.py: the history's fsync and the
spawn of each run); the source's own is the "source only" case.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.arrivals import percentile
from bench.common import ROOT, Options, Proc, Report, start_times, wait_for, waitd_argv, workdir, write_table

COUNT = 1000
CASES = ("bare stomp.py", "waitd", "source only")
RATE = 20
DURATION_S = 5.0
BARE = r"""
import json, subprocess, sys, time
import stomp

port, dest, out = sys.argv[1:]
log = open(out, "a", buffering=1)
children = []


class Listener:
    def on_message(self, frame):
        t = time.time()
        children.append(subprocess.Popen(["/bin/true"]))
        log.write(f"{t} {json.loads(frame.body)['seq']}\n")
        conn.ack(frame.headers["message-id"], frame.headers["subscription"])
        children[:] = [c for c in children if c.poll() is None]


conn = stomp.Connection([("127.0.0.1", int(port))], heartbeats=(10000, 10000))
conn.set_listener("bare", Listener())
conn.connect(wait=True)
conn.subscribe(dest, id="1", ack="client-individual", headers={"activemq.prefetchSize": "100"})
print("subscribed", flush=True)
while True:
    time.sleep(1)
"""


def run(opts: Options, report: Report) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from peers.activemq import ActiveMQ, available

    if not available():
        report.say("sources: ActiveMQ is not installed (make deps); skipped")
        report.check("sources: waitd / bare stomp.py rate", "n/a", ">= 0.8x", None)
        return
    count = opts.n(COUNT)
    report.say(
        f"sources: {count} messages sent at once, then {RATE}/s for {DURATION_S * opts.scale:g} s, "
        "STOMP producer -> /bin/true started; waitd ([source] stomp, claim=yes jobs=8) and a bare stomp.py consumer"
    )
    with workdir("sources") as root:
        broker = ActiveMQ(root / "broker")
        broker.start()
        try:
            results = {name: _one(report, name, root, broker.port, count, opts) for name in CASES}
        finally:
            broker.stop()
    bare, mine = results["bare stomp.py"], results["waitd"]
    if bare is None or mine is None:
        report.check("sources: waitd / bare stomp.py rate", "failed", ">= 0.8x", None)
        return
    ratio = mine[0] / bare[0]
    report.check("sources: waitd / bare stomp.py rate", f"{ratio:.2f}x", ">= 0.8x", ratio >= 0.8)
    alone = results["source only"]
    if alone is not None:
        ratio = alone[0] / bare[0]
        report.check("sources: into the spool / bare stomp.py", f"{ratio:.2f}x", "(reported)", True)
    report.check("sources: waitd latency p50", f"{mine[1]:.1f} ms", "(reported)", True)
    report.check("sources: waitd latency p99", f"{mine[2]:.1f} ms", "(reported)", True)


def _one(
    report: Report, name: str, root: Path, port: int, count: int, opts: Options
) -> tuple[float, float, float] | None:
    """(messages a second, latency p50 ms, p99 ms) of one consumer."""
    import stomp

    dest = f"/queue/bench.{name.split()[0]}"
    work = root / name.replace(" ", "-")
    work.mkdir()
    starts = _bare(work, port, dest) if name.startswith("bare") else _waitd(work, port, dest, name == "waitd")
    proc, started = starts
    conn = stomp.Connection([("127.0.0.1", port)])
    conn.connect(wait=True)
    try:
        sent: dict[int, float] = {}
        for i in range(count):
            sent[i] = time.time()
            conn.send(dest, json.dumps({"seq": i, "sent": sent[i], "rb_number": i % 8}))
        wait_for(lambda: len(started()) >= count, 60 + count / 20, f"{name}: {count} starts")
        burst = started()
        rate = count / (max(burst.values()) - sent[0])
        n = int(RATE * DURATION_S * opts.scale)
        for i in range(count, count + n):
            sent[i] = time.time()
            conn.send(dest, json.dumps({"seq": i, "sent": sent[i], "rb_number": i % 8}))
            time.sleep(max(0.0, sent[i] + 1 / RATE - time.time()))
        wait_for(lambda: len(started()) >= count + n, 60, f"{name}: {n} more starts")
        times = started()
        latency = sorted((times[i] - sent[i]) * 1000 for i in range(count, count + n))
    except TimeoutError as exc:
        report.say(f"  {name:<14}: FAILED: {exc} (see {work})")
        return None
    finally:
        conn.disconnect()
        proc.stop()
    p50, p99 = percentile(latency, 0.5), percentile(latency, 0.99)
    report.say(f"  {name:<14}: {rate:7.0f} messages/s (burst of {count}); latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return rate, p50, p99


def _bare(work: Path, port: int, dest: str):  # type: ignore[no-untyped-def]
    out = work / "starts"
    proc = Proc([sys.executable, "-c", BARE, str(port), dest, str(out)], work, "bare")
    wait_for(lambda: b"subscribed" in (work / "bare.out").read_bytes(), 30, "the bare consumer to subscribe")

    def started() -> dict[int, float]:
        try:
            text = out.read_text()
        except FileNotFoundError:
            return {}
        return {int(s): float(t) for t, s in (line.split() for line in text.splitlines() if line.count(" ") == 1)}

    return proc, started


def _waitd(work: Path, port: int, dest: str, run: bool):  # type: ignore[no-untyped-def]
    passdir, q = work / "pass", work / "q"
    passdir.mkdir()
    q.mkdir()
    (passdir / "waitd.conf").write_text(
        f"[source bench]\ntype = stomp\nport = {port}\ndestinations = {dest}\nqueue = {q}\n"
        "name = m{seq:07d}.json\nretry = 0.1\n"
    )
    write_table(passdir, [f"bench {q}/incoming *.json /bin/true 0 -1 0 claim=yes fields=json jobs=8"] if run else [])
    proc = Proc(waitd_argv("-f", "--passdir", str(passdir)), work, "waitd")
    state = passdir / "sources" / "bench.state"
    wait_for(lambda: state.exists() and json.loads(state.read_text()).get("connected"), 30, "the source to connect")

    def started() -> dict[int, float]:
        return {int(Path(p).name[1:8]): t for p, t in start_times(passdir).items()}

    def spooled() -> dict[int, float]:
        """Without a record: when each file was renamed into incoming (its ctime)."""
        with os.scandir(q / "incoming") as it:
            return {int(e.name[1:8]): e.stat().st_ctime for e in it}

    return proc, started if run else spooled
