# SPDX-License-Identifier: MIT
"""Record options on the real daemon: jobs, --jobs, timeout, retries, keys,
companions, patterns."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
from conftest import deliver, quiet_for, wait_for

from waitd.journal.history import Status


def concurrency(station) -> list[str]:
    """The handler starts and ends, in order, from the "events" file."""
    try:
        return (station.passdir / "events").read_text().splitlines()
    except FileNotFoundError:
        return []


def most_at_once(events: list[str]) -> int:
    now = most = 0
    for line in events:
        now += 1 if line.startswith("start ") else -1
        most = max(most, now)
    return most


def gated_logger(station, name: str = "h", exit_code: int = 0):
    """A handler that notes its start and end and waits for its gate."""
    ev = station.passdir / "events"
    return station.handler(
        name,
        f'echo "start $(basename "$1")" >> "{ev}"\n'
        f'gate="{station.root}/gate.$(basename "$1")"\n'
        'i=0; while [ ! -e "$gate" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n'
        f'echo "end $(basename "$1")" >> "{ev}"\n'
        f"exit {exit_code}\n",
    )


def running(station) -> set[str]:
    events = concurrency(station)
    started = {e.split()[1] for e in events if e.startswith("start ")}
    return started - {e.split()[1] for e in events if e.startswith("end ")}


def test_jobs_3_runs_three_at_once_never_four_oldest_first(station):
    gated_logger(station)
    station.table(f"x in *.d {station.passdir}/h 0 -1 0 jobs=3")
    names = [f"f{i}.d" for i in range(6)]
    for i, name in enumerate(names):
        station.drop(name, age_s=100 - i)
    station.start()
    wait_for(lambda: running(station) == {"f0.d", "f1.d", "f2.d"}, 10, "the three oldest to run")
    quiet_for(0.5, lambda: len(running(station)) == 3)
    station.open_gate("f1.d")
    wait_for(lambda: running(station) == {"f0.d", "f2.d", "f3.d"}, 10, "the next oldest to take its place")
    for name in names:
        station.open_gate(name)
    wait_for(lambda: len(station.ends()) == 6, 10, "every run")
    assert most_at_once(concurrency(station)) == 3
    assert station.stop() == 0


def test_jobs_option_caps_records_together(station):
    gated_logger(station)
    (station.root / "two").mkdir()
    station.table(
        f"x in *.d {station.passdir}/h 0 -1 0 jobs=3",
        f"y {station.root}/two *.e {station.passdir}/h 0 -1 0 jobs=3",
    )
    for i in range(3):
        station.drop(f"a{i}.d", age_s=50 - i)
        station.drop(f"b{i}.e", age_s=50 - i, directory=station.root / "two")
    station.start("--jobs", "2")
    # Records take turns: one start each.
    wait_for(lambda: running(station) == {"a0.d", "b0.e"}, 10, "one start of each record")
    quiet_for(0.5, lambda: len(running(station)) == 2)
    for i in range(3):
        station.open_gate(f"a{i}.d")
        station.open_gate(f"b{i}.e")
    wait_for(lambda: len(station.ends()) == 6, 10, "every run")
    assert most_at_once(concurrency(station)) == 2
    assert station.stop() == 0


def test_timeout_kills_a_handler_that_ignores_term_with_its_group(station):
    station.handler(
        "stubborn",
        f"trap '' TERM\n(trap '' TERM; sleep 60) &\necho $! > \"{station.root}/child\"\nsleep 60\n",
    )
    station.table(f"x in *.d {station.passdir}/stubborn 0 -1 0 timeout=1")
    station.drop("a.d", age_s=5)
    began = time.monotonic()
    station.start()
    wait_for(lambda: (station.root / "child").exists() and station.ends(), 20, "the timeout and the KILL")
    took = time.monotonic() - began
    (end,) = station.ends()
    assert end.status is Status.UNKNOWN and end.error == "timeout" and end.signal == "SIGKILL", end
    assert 1 + 4 < took < 15, took  # TERM at 1 s, KILL 5 s later
    child = int((station.root / "child").read_text())
    wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE, 5)
    log = station.log()
    assert "after its timeout of 1 s: TERM" in log and "(timeout)" in log
    assert station.stop() == 0


def test_exit_75_is_retried_with_growing_delays_and_a_restart_keeps_the_schedule(station):
    station.handler("temp", f'echo "$(date +%s.%N) $WAITD_ATTEMPT" >> "{station.passdir}/tries"\nexit 75\n')
    station.table(f"x in *.d {station.passdir}/temp 0 -1 0 retries=2 retry=1")
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1, 10, "the first attempt")
    first = station.ends()[0]
    assert first.status is Status.KNOWN and first.exit == 75 and first.retry_at is not None
    # A restart between attempts keeps the schedule (retry_at in the history).
    assert station.stop() == 0
    station.start()
    # The start's compaction may drop the first end when the first retry is
    # due by then (a slow restart): the retries' ends are those after it.
    retries = lambda: [e for e in station.ends() if e.runs > 1]  # noqa: E731
    wait_for(lambda: len(retries()) == 2, 20, "the two retries")
    quiet_for(1.5, lambda: len(retries()) == 2)
    assert station.stop() == 0
    ends = [first, *retries()]
    assert [(e.exit, e.runs) for e in ends] == [(75, 1), (75, 2), (75, 3)]
    assert ends[1].retry_at is not None and ends[2].retry_at is None  # the last one is final
    tries = [line.split() for line in (station.passdir / "tries").read_text().splitlines()]
    assert [attempt for _, attempt in tries] == ["1", "2", "3"]
    at = [float(t) for t, _ in tries]
    assert at[1] >= first.retry_at - 0.01, "the retry ran before its time"
    gap1, gap2 = at[1] - at[0], at[2] - at[1]
    assert 0.95 <= gap1 and 1.95 <= gap2, (gap1, gap2)


def test_exit_3_is_final_at_once(station):
    station.handler("bad", "exit 3\n")
    station.table(f"x in *.d {station.passdir}/bad 0 -1 0 retries=2 retry=1")
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1, 10, "the run")
    quiet_for(1.5, lambda: len(station.ends()) == 1)
    (end,) = station.ends()
    assert end.exit == 3 and end.retry_at is None
    wait_for(lambda: "kept after a failed run: a.d" in station.run("-s", "status").stdout, 5, "the status")
    assert station.stop() == 0


def test_keys_never_overlap_but_different_keys_do(station):
    gated_logger(station)
    (station.root / "two").mkdir()
    station.table(
        f"x in *.x {station.passdir}/h 0 -1 0 key={{stem}}",
        f"y {station.root}/two *.y {station.passdir}/h 0 -1 0 key={{stem}} jobs=2",
    )
    station.drop("a.x", age_s=30)
    station.drop("a.y", age_s=20, directory=station.root / "two")
    station.drop("b.y", age_s=10, directory=station.root / "two")
    station.start()
    wait_for(lambda: running(station) == {"a.x", "b.y"}, 10, "a.x and b.y (different stems) at once")
    quiet_for(0.5, lambda: "a.y" not in running(station))
    station.open_gate("a.x")
    wait_for(lambda: "a.y" in running(station), 10, "a.y once a.x (same stem) ended")
    for name in ("a.y", "b.y"):
        station.open_gate(name)
    wait_for(lambda: len(station.ends()) == 3, 10, "every run")
    events = concurrency(station)
    assert events.index("end a.x") < events.index("start a.y")
    assert station.stop() == 0


def test_done_companion_marks_a_file_complete_and_goes_with_it(station):
    station.recorder()
    station.table(f"x in * {station.passdir}/rec 0 0 0 done={{name}}.done")
    station.start()
    deliver(station, "a.dat")
    station.signal(signal.SIGALRM)
    quiet_for(0.5, lambda: station.ran() == [])
    deliver(station, "a.dat.done")
    wait_for(lambda: len(station.ends()) == 1, 10, "the run once the companion is there")
    assert station.ran() == [os.fsencode(station.incoming / "a.dat")], "the companion ran, or another file"
    wait_for(lambda: os.listdir(station.incoming) == [], 10, "the file and its companion removed")
    wait_for(lambda: "the companion of a.dat" in station.log(), 10, "the companion's removal logged")
    assert station.stop() == 0


def test_a_companion_the_template_does_not_match_wakes_its_file_at_once(station):
    # Under inotify, news that name no file of a record make no pass: a
    # companion *.gz.done of a *.gz record once waited for the next poll.
    station.recorder()
    station.table(f"x in *.gz {station.passdir}/rec 0 0 0 done={{name}}.done")
    station.start(interval=60)
    deliver(station, "a.gz")
    quiet_for(2, lambda: station.ran() == [])  # and no pass of its own due since
    deliver(station, "a.gz.done")
    wait_for(lambda: len(station.ends()) == 1, 10, "the run once the companion is there")
    assert station.stop() == 0


def test_pattern_fields_reach_the_handler_and_a_name_that_does_not_parse_is_left_alone(station):
    station.handler(
        "showenv", f'echo "$WAITD_F_platform $WAITD_F_start_time $WAITD_F_segment" >> "{station.passdir}/env"\n'
    )
    station.table(
        f"x in *.dat {station.passdir}/showenv 0 -1 0 pattern={{platform}}_{{start_time:%Y%m%d%H%M}}_{{segment:d}}.dat"
    )
    station.drop("noaa19_202601011200_7.dat", age_s=5)
    station.drop("junk.dat", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1, 10, "the run")
    wait_for(lambda: "does not parse with pattern" in station.log(), 10, "junk.dat reported")
    assert (station.passdir / "env").read_text() == "noaa19 2026-01-01T12:00:00 7\n"
    quiet_for(0.5, lambda: len(station.ends()) == 1)
    assert station.log().count("junk.dat: does not parse") == 1
    assert station.stop() == 0


def test_check_v_prints_the_options_as_used(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0 jobs=2 key={{stem}}")
    r = station.run("--check", "-v")
    assert r.returncode == 0, r.stderr
    assert (
        "jobs=2 timeout=(none) retries=0 retry=60 key={stem} pattern=(none) done=(none) topic=(the telem)" in r.stdout
    )


def test_a_done_format_that_does_not_fit_is_logged_once_and_the_file_held(station):
    """A done= FORMAT that did not fit a file's fields once left it waiting
    for ever without a word: no log line, counted as waiting."""
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0 pattern={{platform}}_{{n:d}}.d done={{n:%Y}}.ok")
    station.start()
    deliver(station, "a_1.d")
    wait_for(lambda: "does not fit its fields" in station.log(), 10, "the file left alone, logged")
    assert f"{station.incoming}/a_1.d: done={{n:%Y}}.ok does not fit its fields; left alone" in station.log()
    status = json.loads(station.run("-s", "status", "--json").stdout)["records"][0]
    assert status["waiting"] == 0 and status["held"] == [
        {"file": "a_1.d", "why": "done={n:%Y}.ok does not fit its fields", "until": None}
    ]
    station.signal(signal.SIGALRM)
    quiet_for(0.5, lambda: station.ran() == [])
    assert station.log().count("does not fit its fields") == 1
    assert station.stop() == 0


def test_since_start_counts_retrying_attempts_apart_from_final_failures(station):
    """Each attempt that failed for now was once counted as failed: a file
    tried three times made "3 failed" while only one failure was final."""
    station.handler("temp", "exit 75\n")
    station.table(f"x in *.d {station.passdir}/temp 0 -1 0 retries=2 retry=0.1")
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: sum(1 for e in station.ends() if e.retry_at is None) == 1, 10, "the final attempt")
    counters = json.loads(station.run("-s", "status", "--json").stdout)["records"][0]["counters"]
    assert counters == {"ok": 0, "failed": 1, "retrying": 2, "removed": 0}
    wait_for(
        lambda: "since start: 0 ok, 1 failed, 2 retrying, 0 removed" in station.run("-s", "status").stdout,
        5,
        "the text status (its file is rewritten at most once a second)",
    )
    assert station.stop() == 0
