# SPDX-License-Identifier: MIT
"""A full disk under the outbox: no event lost, no sink dying in a loop.

events/ is a small tmpfs of its own, filled to its last byte while runs
are under way.  What is left then is the free tail of the newest
segment's last page: the next appends fit in it whole, then one is cut
short; the sinks' places (a new page each) cannot be saved at all.  So
every path of a full disk is taken: an append cut short (it must be cut
back, not left for the next one to glue onto), the end of a run whose
event cannot be written (its history line waits with it), a removal's
event (kept for later), and a sink that delivered but cannot save its
place (it waits and tries again, logged once; it does not die).
"""

from __future__ import annotations

import json
import os

from conftest import deliver, fill, read_jsonl, small_tmpfs, wait_for

CONF = "[sink log]\ntype = jsonl\npath = events.jsonl\nretry = 0.05\nretry-max = 0.2\n"


def test_a_full_outbox_disk_loses_no_event_and_the_sink_waits_for_space(station):
    with small_tmpfs(station.passdir / "events", "256k") as events:
        (station.passdir / "waitd.conf").write_text(CONF)
        station.gated()
        # keep-after 0: each file handled with exit 0 is removed, an event
        # that mirrors no history line.
        station.table(f"x {station.incoming} *.d {station.passdir}/gated 0 0 0 jobs=2")
        station.start()
        jsonl = station.passdir / "events.jsonl"
        for name in ("a.d", "b.d"):
            deliver(station, name)
        wait_for(lambda: len(station.ran()) == 2 and len(read_jsonl(jsonl)) == 4, 10, "a and b running, told")
        filler = fill(events)
        names = [f"f{i:02d}.d" for i in range(20)]
        for name in names:
            deliver(station, name)
        for name in ("a.d", "b.d"):
            station.open_gate(name)  # their ends come while the disk is full
        for name in names:
            station.open_gate(name)
        wait_for(lambda: "cannot write" in station.log(), 10, "the full outbox to be logged")
        wait_for(lambda: "sink log: cannot save its place" in station.log(), 10, "the sink to say it cannot save")
        filler.unlink()
        everything = {"a.d", "b.d", *names}
        wait_for(lambda: {os.path.basename(e.path) for e in station.ends()} == everything, 30, "every file's end")
        wait_for(lambda: not any(station.incoming.iterdir()), 10, "keep-after to remove every file")

        def caught_up() -> bool:
            (sink,) = json.loads(station.run("-s", "status", "--json").stdout)["sinks"]
            return sink["backlog"] == 0 and sink["pid"] is not None

        wait_for(caught_up, 10, "the sink to catch up")
        wait_for(lambda: len({e["id"] for e in read_jsonl(jsonl)}) == 4 * len(everything), 10, "every event")
        assert station.stop() == 0
    got: dict[tuple[str, str], set[str]] = {}
    for e in read_jsonl(jsonl):
        got.setdefault((e["type"], os.path.basename(e["path"])), set()).add(e["id"])
    owed = {(kind, name) for name in everything for kind in ("ready", "started", "ended", "removed")}
    assert set(got) == owed, f"lost: {sorted(owed - set(got))}"
    assert all(len(ids) == 1 for ids in got.values()), "an event made again with an id of its own"
    assert all(e.exit == 0 for e in station.ends()) and len(station.ends()) == len(everything)
    log = station.log()
    assert "does not parse" not in log, "an append cut short was left in the segment"
    assert "unexpected error" not in log and "its process exited" not in log, "the sink died"
    assert log.count("sink log: cannot save its place") == 1
    assert "sink log: its place saved again" in log
