# SPDX-License-Identifier: MIT
"""Events and publish-only records, through the real daemon and a jsonl sink.

A `jsonl` sink is the plainest consumer of the outbox: every event, one
line.  These tests read it as a consumer would, and the history beside it.
"""

from __future__ import annotations

import json
import os
import signal
import time

from conftest import deliver, quiet_for, read_jsonl, wait_for

from waitd.daemon import control

# A sink's process runs at nice 10 under SCHED_BATCH: on a loaded machine it
# is the last to get the processors, so its deliveries are waited for long
# (a deadline, not a pause: a quick machine passes at once).
SINK_S = 30
CONF = "[sink log]\ntype = jsonl\npath = events.jsonl\nretry = 0.05\nretry-max = 0.2\n"


def events_of(station, kind: str | None = None) -> list[dict]:
    found = read_jsonl(station.passdir / "events.jsonl")
    return [e for e in found if kind is None or e["type"] == kind]


def test_publish_only_record_publishes_each_file_once_across_restarts(station):
    (station.passdir / "waitd.conf").write_text(CONF)
    station.table(f"sat {station.incoming} *.dat - 0 2 0 pattern={{platform}}_{{start_time:%Y%m%d%H%M}}.dat topic=/s/x")
    names = [f"noaa19_2026010112{m:02d}.dat" for m in range(5)]
    station.start()
    for name in names:
        deliver(station, name)
    ready = wait_for(lambda: len(events_of(station, "ready")) >= 5 and events_of(station, "ready"), SINK_S, "5 events")
    assert sorted(os.path.basename(e["path"]) for e in ready) == names
    assert len({e["id"] for e in ready}) == 5
    first = next(e for e in ready if e["path"].endswith(names[0]))
    assert first["fields"] == {"platform": "noaa19", "start_time": "2026-01-01T12:00:00"}
    assert first["topic"] == "/s/x" and first["record"] == 1 and first["process"] == "-"
    # keep-after 2 counts published files as done with: the three oldest go
    # (and a compaction may then drop their lines from the history).
    wait_for(lambda: len(os.listdir(station.incoming)) == 2, SINK_S, "keep-after to remove three")
    assert station.log().count("record 1: published ") == 5
    published = {e.path: e for e in station.history() if e.published == 1}
    assert all(e.status == 2 for e in published.values()) and len(published) >= 2
    assert {os.path.basename(p) for p in published} >= set(names[3:])
    assert station.stop() == 0
    station.start()
    deliver(station, "noaa19_202601011300.dat")
    wait_for(lambda: len(events_of(station, "ready")) >= 6, SINK_S, "the sixth file's event")
    quiet_for(0.5, lambda: len(events_of(station, "ready")) == 6)
    assert station.stop() == 0
    assert not (station.passdir / "logfiles" / "incoming.1.A").exists()


def test_runs_give_ready_started_ended_with_outcome_and_retry(station):
    (station.passdir / "waitd.conf").write_text(CONF)
    station.handler("h", 'case "$(basename "$1")" in tmp*) exit 75;; bad*) exit 3;; esac\n')
    station.table(f"x {station.incoming} *.d {station.passdir}/h 0 -1 0 retries=1 retry=30")
    station.start()
    for name in ("ok.d", "tmp.d", "bad.d"):
        deliver(station, name)
    wait_for(lambda: len(events_of(station, "ended")) >= 3, SINK_S, "three ends")
    by = {(os.path.basename(e["path"]), e["type"]): e for e in events_of(station)}
    assert by[("ok.d", "ended")]["outcome"] == "ok" and by[("ok.d", "ended")]["exit"] == 0
    assert by[("bad.d", "ended")]["outcome"] == "failed" and by[("bad.d", "ended")]["exit"] == 3
    retry = by[("tmp.d", "ended")]
    assert retry["outcome"] == "retrying" and retry["exit"] == 75 and retry["retry_at"] > time.time() + 20
    for name in ("ok.d", "tmp.d", "bad.d"):
        assert by[(name, "started")]["attempt"] == 1 and (name, "ready") in by
    seqs = [e["seq"] for e in events_of(station)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert station.stop() == 0


def test_a_sink_that_cannot_deliver_backs_off_logged_once_and_catches_up(station):
    (station.passdir / "waitd.conf").write_text(CONF)
    blocker = station.passdir / "events.jsonl"
    blocker.mkdir()  # the sink cannot open its file: it is down
    station.recorder()
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
    station.start()
    for i in range(4):
        deliver(station, f"f{i}.d")
    wait_for(lambda: len(station.ran()) == 4, SINK_S, "the handlers, not held by the sink")
    wait_for(lambda: "sink log: cannot deliver" in station.log(), SINK_S, "the sink's warning")

    def sink() -> dict:
        state = json.loads(station.run("-s", "status", "--json").stdout)
        return state["sinks"][0]

    wait_for(lambda: sink()["backlog"] == 12 and sink()["down_since"] is not None, SINK_S, "the backlog in the status")
    # The text report is the status file, rewritten at most once a second.
    text = lambda: station.run("-s", "status").stdout  # noqa: E731
    wait_for(lambda: "sink log (jsonl): down since" in text() and "events behind" in text(), SINK_S, "the text report")
    quiet_for(0.5, lambda: station.log().count("sink log: cannot deliver") == 1)  # several back-offs: one warning
    blocker.rmdir()
    wait_for(lambda: len(events_of(station)) == 12, SINK_S, "every event once the sink works")
    wait_for(lambda: sink()["backlog"] == 0 and sink()["down_since"] is None, SINK_S, "the status to catch up")
    assert "sink log: delivering again" in station.log()
    assert station.stop() == 0


def test_a_killed_sink_process_is_started_again_and_loses_nothing(station):
    (station.passdir / "waitd.conf").write_text(CONF)
    station.recorder()
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
    station.start()
    deliver(station, "a.d")
    wait_for(lambda: len(events_of(station, "ended")) == 1, SINK_S, "the first run's events")
    pid = json.loads(station.run("-s", "status", "--json").stdout)["sinks"][0]["pid"]
    # Below waitd and its handlers: nice 10, and never preempting them when woken.
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH
    assert os.getpriority(os.PRIO_PROCESS, pid) == 10
    os.kill(pid, signal.SIGKILL)
    deliver(station, "b.d")
    # At least once: killed before it saved its place (a loaded machine, a
    # sink that runs last), the next process delivers the first run's
    # events again; the ids tell the repeats, and no seq is missing.
    ended = lambda: {e["id"]: os.path.basename(e["path"]) for e in events_of(station, "ended")}  # noqa: E731
    wait_for(lambda: sorted(ended().values()) == ["a.d", "b.d"], SINK_S, "the second run's events")
    seqs = {e["seq"] for e in events_of(station)}
    assert seqs == set(range(1, max(seqs) + 1))
    assert "sink log: its process was killed by signal SIGKILL; starting it again now" in station.log()
    assert json.loads(station.run("-s", "status", "--json").stdout)["sinks"][0]["restarts"] == 1
    assert station.stop() == 0


def test_conf_errors_refuse_the_start_and_a_bad_reload_keeps_the_sinks(station):
    conf = station.passdir / "waitd.conf"
    conf.write_text("[daemon]\njobs = 0\n[sink x]\ntype = carrier-pigeon\n")
    station.recorder()
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
    check = station.run("--check")
    assert check.returncode == 2
    assert f"{conf}:2: [daemon]: jobs = 0: expected a whole number from 1 to 1000" in check.stderr
    assert f"{conf}:4: [sink x]: type = carrier-pigeon: unknown (known: jsonl, posttroll, stomp)" in check.stderr
    started = station.run("-f")
    assert started.returncode == 2 and "not starting" in started.stderr
    conf.write_text(CONF)
    assert station.run("--check").returncode == 0
    station.start()
    conf.write_text(CONF + "bogus = 1\n")
    reload = station.run("-s", "reload")
    # (Waited for: -s reload does not wait when the daemon has not written
    # its first status yet, a moment after its "waitd started".)
    wait_for(
        lambda: "unknown key 'bogus'" in station.log() and "the previous settings stay in force" in station.log(),
        10,
        "the daemon to refuse the bad waitd.conf",
    )
    assert reload.returncode != 0 or "bogus" in reload.stdout + reload.stderr
    deliver(station, "a.d")
    wait_for(lambda: len(events_of(station, "ended")) == 1, SINK_S, "the old sink still at work")
    # A new sink starts at the end of the outbox; a removed one's place goes.
    # (The sink removed once it has saved its place: one removed within
    # 0.05 s of a delivery saves it again on its way out, after waitd forgot
    # it, as the supervisor does not wait for the process it TERMs; a waitd
    # race of its own, which a subprocess's start used to hide here.)
    wait_for(
        lambda: json.loads(station.run("-s", "status", "--json").stdout)["sinks"][0]["backlog"] == 0,
        SINK_S,
        "the old sink's place saved",
    )
    conf.write_text(CONF.replace("[sink log]", "[sink other]").replace("events.jsonl", "other.jsonl"))
    station.run("-s", "reload")
    wait_for(lambda: not (station.passdir / "events" / "log.offset").exists(), SINK_S, "the old sink's place to go")
    deliver(station, "b.d")
    wait_for(lambda: len(read_jsonl(station.passdir / "other.jsonl")) == 3, SINK_S, "the new sink's events")
    assert [os.path.basename(e["path"]) for e in read_jsonl(station.passdir / "other.jsonl")] == ["b.d"] * 3
    assert station.stop() == 0


def test_segments_passed_by_every_sink_are_deleted(station):
    (station.passdir / "waitd.conf").write_text(CONF)
    station.recorder()
    station.table(f"x {station.incoming} *.d {station.passdir}/rec 0 -1 0")
    for _ in range(3):  # each start of waitd begins a segment
        station.start()
        deliver(station, f"f{time.monotonic_ns()}.d")
        wait_for(lambda: len(events_of(station, "ended")) == len(station.ran()) > 0, SINK_S, "the events")
        assert station.stop() == 0
    station.start()
    segments = lambda: sorted(n for n in os.listdir(station.passdir / "events") if n.endswith(".jsonl"))  # noqa: E731
    wait_for(lambda: len(segments()) == 1, SINK_S, "the old segments to go")
    wait_for(lambda: (s := control.read_status(str(station.passdir))) and s.sinks[0].backlog == 0, SINK_S, "no backlog")
    assert station.stop() == 0
