# SPDX-License-Identifier: MIT
"""SIGKILL of waitd and of its sink's process at random moments: every event
of the history reaches the sink at least once, and the ids tell the repeats.

Like test_daemon_crash.py, but about the outbox.  Files go through a quick
handler while waitd is killed at random points of the run (a random number
of ends after its start), and, every other time, the jsonl sink's process
first (a random number of lines after its start: often between a delivery
and the save of its place, which is what makes repeats).  waitd is started
again each time; a last start runs to the end and is stopped cleanly.

There are no retries, so each file runs once (a run cut short by a kill
is recorded as ended, status 1, not run again) and the outbox owes three
events a file: `ready`, `started` and `ended` of attempt 1.  Every one must
be in the jsonl file, and dropping the repeated ids must leave exactly
those: one id for each, none that the history does not explain.

A kill of the sink makes repeats of lines already in the outbox; a kill of
waitd between the outbox's write and the history's makes an event again,
which must carry the id of the first.  That window is microseconds wide,
so a test makes it exactly (the history loses lines the outbox has); and
one cuts the torn line a killed jsonl sink leaves.

WAITD_SEED=N repeats a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import time

import psutil
from conftest import deliver, read_jsonl, wait_for

from waitd.journal.history import Status

FILES = 80
ROUNDS = 6
SEED = int(os.environ.get("WAITD_SEED") or time.time_ns() % 1_000_000)
CONF = "[sink log]\ntype = jsonl\npath = events.jsonl\nretry = 0.05\nretry-max = 0.2\n"


def poll_until(condition, timeout: float) -> bool:
    """Poll `condition` every 2 ms (the kill moment is then within a few
    milliseconds of the threshold); False if `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def sink_pids(station) -> list[int]:
    pids = []
    try:
        for child in psutil.Process(station.proc.pid).children():
            with contextlib.suppress(psutil.Error):
                if "waitd.sinks.child" in child.cmdline():
                    pids.append(child.pid)
    except psutil.NoSuchProcess:
        pass
    return pids


def test_kills_of_waitd_and_of_the_sink_lose_no_event_and_repeat_ids(station):
    rng = random.Random(SEED)
    about = f"(WAITD_SEED={SEED})"
    (station.passdir / "waitd.conf").write_text(CONF)
    station.recorder(extra="sleep 0.01\n")  # the runs last through the rounds
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0 jobs=2")
    for i in range(FILES):
        deliver(station, f"f{i:03d}.d")
    jsonl = station.passdir / "events.jsonl"

    def ends() -> int:
        return len(station.ends())

    def delivered() -> int:
        return len(jsonl.read_bytes().splitlines()) if jsonl.exists() else 0

    kills = {"waitd": 0, "sink": 0}
    for round_ in range(ROUNDS):
        station.start()
        if round_ % 2:
            # The sink's process: killed a random number of lines after it
            # delivered its first since this start.
            wait_for(lambda: sink_pids(station), 10, "the sink's process")
            target = min(3 * FILES, delivered() + rng.randint(1, 60))
            poll_until(lambda t=target: delivered() >= t, 5)
            for pid in sink_pids(station):
                os.kill(pid, signal.SIGKILL)
                kills["sink"] += 1
        target = min(FILES, ends() + rng.randint(3, 2 * FILES // ROUNDS))
        poll_until(lambda t=target: ends() >= t, 10)
        station.proc.kill()
        station.proc.communicate()
        kills["waitd"] += 1
    station.start()
    wait_for(lambda: len({e.path for e in station.ends()}) == FILES, 60, f"every file's end {about}")

    def caught_up() -> bool:
        sinks = json.loads(station.run("-s", "status", "--json").stdout)["sinks"]
        return sinks[0]["backlog"] == 0 and sinks[0]["pid"] is not None

    wait_for(caught_up, 30, f"the sink to catch up {about}")
    assert station.stop() == 0

    # No retries: each file ran once, its end (status 2, or 1 when a kill
    # cut its run short) is the last line of its key.
    last = {e.path: e for e in station.history()}
    assert all(e.status is not Status.STARTED and e.runs == 1 for e in last.values()), about
    owed = {(kind, path, 0 if kind == "ready" else 1) for path in last for kind in ("ready", "started", "ended")}
    events = read_jsonl(jsonl)
    assert len(events) == delivered(), f"a line of the jsonl file is torn {about}"
    by_id: dict[str, tuple[str, str, int]] = {}
    for event in events:
        key = (event["type"], event["path"], event.get("attempt", 0) if event["type"] != "ready" else 0)
        assert by_id.setdefault(event["id"], key) == key, f"one id for two events: {event} {about}"
    got = set(by_id.values())
    assert owed - got == set(), f"events lost {about}"
    assert got - owed == set(), f"events the history does not explain {about}"
    assert len(by_id) == len(owed), f"a repeated event with an id of its own {about}"
    assert kills["sink"] >= 1
    print(f"{about} kills {kills}: {len(events)} lines, {len(by_id)} events, {len(events) - len(by_id)} repeats")


def test_a_line_torn_by_a_killed_sink_is_cut_off_and_delivered_again(station):
    # What a sink killed in the middle of its write(2) leaves: a whole line,
    # then part of one (its batch is delivered again from the outbox).
    jsonl = station.passdir / "events.jsonl"
    jsonl.write_text('{"id":"earlier","type":"ready"}\n{"id":"torn","ty')
    (station.passdir / "waitd.conf").write_text(CONF)
    station.recorder()
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
    station.start()
    deliver(station, "a.d")
    wait_for(lambda: len(read_jsonl(jsonl)) == 4, 10, "the run's three events after the earlier line")
    assert station.stop() == 0
    assert [e["id"] for e in read_jsonl(jsonl)][0] == "earlier"
    assert [e["type"] for e in read_jsonl(jsonl)][1:] == ["ready", "started", "ended"]
    assert "a torn last line" in station.log()


def test_a_crash_between_the_outbox_and_the_history_repeats_events_with_their_ids(station):
    # The outbox is written and synced before the history line: waitd
    # killed between the two leaves events the history does not have.  Made
    # here exactly: two runs end, then the history loses a.d's lines (killed
    # after the outbox took a.d's ready and started: a.d runs again) and
    # b.d's end (killed after the outbox took its end: the run is recovered).
    (station.passdir / "waitd.conf").write_text(CONF)
    station.recorder()
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
    station.start()
    a, b = (os.fsdecode(deliver(station, name)) for name in ("a.d", "b.d"))
    wait_for(lambda: len(station.ends()) == 2, 10, "both runs' ends")
    assert station.stop() == 0
    history = station.passdir / "incoming.history"
    kept = [
        line
        for line in history.read_text("ascii").splitlines(keepends=True)
        if not line.startswith(a + " ") and not (line.startswith(b + " ") and line.split()[3] != "0")
    ]
    history.write_text("".join(kept))
    station.start()
    wait_for(lambda: len(station.ends()) == 2, 10, "a.d's second run and b.d's recovered end")
    wait_for(lambda: len(read_jsonl(station.passdir / "events.jsonl")) == 10, 10, "the events made again")
    assert station.stop() == 0
    ids: dict[tuple[str, str], list[str]] = {}
    for e in read_jsonl(station.passdir / "events.jsonl"):
        ids.setdefault((e["type"], e["path"]), []).append(e["id"])
    for kind in ("ready", "started", "ended"):
        assert len(ids[(kind, a)]) == 2 and len(set(ids[(kind, a)])) == 1, (kind, ids[(kind, a)])
    assert len(ids[("ended", b)]) == 2 and len(set(ids[("ended", b)])) == 1
    assert len(ids[("ready", b)]) == len(ids[("started", b)]) == 1
    assert {e.path: e.status for e in station.ends()}[b] == 1  # recovered: its exit is not known


def test_a_start_whose_events_a_power_failure_lost_has_them_made_again(station):
    # A start syncs its events beside its history lines (issue 21): a power
    # failure then may keep the lines and lose the events.  Made here: waitd
    # and a.d's handler killed while it runs, and the outbox cut back to
    # before a.d's events (what the page cache had and the disk did not).
    # The next waitd finds a.d's run open: its ready and started are made
    # again, with their ids, before its end; b.d's, in the outbox, are not.
    # A `format = isis` sink (its broker down: what is checked is the
    # outbox, through the jsonl sink) takes the record, so each `started`
    # carries its file's JSON object: the one made again as well.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    isis = f"[sink isis]\ntype = stomp\nformat = isis\nport = {dead}\nretry = 5\n"
    (station.passdir / "waitd.conf").write_text(CONF + isis)
    station.gated()
    station.table(f"x {station.incoming} *.d {station.passdir}/gated 0 -1 0")
    station.start()
    station.open_gate("b.d")
    b = os.fsdecode(deliver(station, "b.d"))
    wait_for(lambda: len(station.ends()) == 1, 10, "b.d's end")
    a = os.fsdecode(station.drop("a.d", b'{"run_number": 7}', age_s=5))
    jsonl = station.passdir / "events.jsonl"
    wait_for(lambda: any(e["path"] == a for e in read_jsonl(jsonl)), 10, "a.d's events delivered")
    wait_for(lambda: any(e.path == a for e in station.started()), 10, "a.d's handler's pid")
    (pid,) = [e.pid for e in station.started() if e.path == a]
    station.signal(signal.SIGKILL)
    station.proc.wait()
    os.killpg(pid, signal.SIGKILL)
    segment = max((station.passdir / "events").glob("*.jsonl"))
    data = segment.read_bytes()
    lines = data.splitlines(keepends=True)
    about_a = f'"path":{json.dumps(a)}'.encode()
    first_of_a = next(i for i, line in enumerate(lines) if about_a in line)
    segment.write_bytes(b"".join(lines[:first_of_a]))
    station.start()
    wait_for(lambda: any(e["type"] == "ended" and e["path"] == a for e in read_jsonl(jsonl)), 10, "a.d's end")
    assert station.stop() == 0
    ids: dict[tuple[str, str], list[str]] = {}
    for e in read_jsonl(jsonl):
        ids.setdefault((e["type"], e["path"]), []).append(e["id"])
    for kind in ("ready", "started"):
        assert len(ids[(kind, a)]) == 2 and len(set(ids[(kind, a)])) == 1, (kind, ids[(kind, a)])
        assert len(ids[(kind, b)]) == 1
    assert len(ids[("ended", a)]) == 1 and len(ids[("ended", b)]) == 1
    assert "the events of its start made again" in station.log()
    bodies = [e.get("body") for e in read_jsonl(jsonl) if e["type"] == "started" and e["path"] == a]
    assert bodies == [{"run_number": 7}] * 2
