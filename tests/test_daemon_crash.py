# SPDX-License-Identifier: MIT
"""Crash safety: SIGKILL waitd at random moments until every file is done.

A few hundred files go through a fast handler that records its argument
with one O_APPEND write.  waitd is killed with SIGKILL at random moments
(during its start, its recovery, its runs) and started again each time.
In the end every file has exactly one end event for its version in the
history: status 2 (the run ended under waitd's eyes) or status 1 (a crash
interrupted it); none is missing, no file reached the handler twice, and
every line of the history parses.

WAITD_SOAK=1 makes it a longer soak: more files, more kills.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter

import pytest
from conftest import wait_for, waitd_cmd

from waitd.journal.history import Event, Status, parse_line

SOAK = os.environ.get("WAITD_SOAK") == "1"
# The CI size: about a dozen kills spread over the whole drain (a kill every
# 0.3-0.6 s, each life handling some ten or twenty files), at each step of a
# start and of a run; the soak kills for minutes.
FILES = 2000 if SOAK else 200
MAX_KILLS = 300 if SOAK else 30
KILL_PHASE_S = 240 if SOAK else 6
MIN_KILLS = 3  # killed at least this often, even if the files were done sooner


def _events(text: str) -> list[Event]:
    # Every line must parse: a crash never leaves a torn or corrupt line.
    return [parse_line(line) for line in text.splitlines()]


# The handler records its argument with one O_APPEND write.  With options,
# files whose number is even fail with exit 75 on their first attempt and
# are retried once.
CLASSIC = ""
PARALLEL = "jobs=4 retries=1 retry=0.1"
FLAKY = 'case "$1" in *[02468].g8) [ "$WAITD_ATTEMPT" = 1 ] && exit 75;; esac\nexit 0\n'


@pytest.mark.parametrize("options", [CLASSIC, PARALLEL], ids=["classic", "jobs4-retries1"])
def test_sigkill_at_random_moments_loses_and_repeats_nothing(station, options):
    rng = random.Random(os.environ.get("WAITD_SEED") or time.time_ns())
    # A few milliseconds a run: the drain lasts long enough for the kills
    # however fast the machine is (the handler's time grows with its speed).
    station.recorder(extra="sleep 0.005\n" + (FLAKY if options else ""))
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0 {options}")
    paths = {os.fsdecode(station.drop(f"f{i:04d}.g8", age_s=5)) for i in range(FILES)}
    history = station.passdir / "incoming.history"
    seen: dict[tuple, Event] = {}  # every event ever on disk, across compactions

    def snapshot(live: bool = False) -> None:
        """The events on disk; no torn line in what a kill left.  While a
        daemon runs (`live`), a read may see an append in progress: only
        its whole lines count."""
        try:
            text = history.read_text("ascii")
        except FileNotFoundError:
            return
        if live:
            text = text[: text.rfind("\n") + 1]
        assert text == "" or text.endswith("\n"), "a torn last line"
        for e in _events(text):
            seen[(e.path, e.status, e.pid, e.at, e.exit, e.signal, e.error, e.retry_at)] = e

    def ended() -> set[str]:
        """Files whose latest event is an end with no retry to come."""
        latest: dict[str, Event] = {}
        for e in sorted(seen.values(), key=lambda e: e.at or 0.0):
            latest[e.path] = e
        return {p for p, e in latest.items() if e.status is not Status.STARTED and e.retry_at is None}

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            waitd_cmd("-f", "--passdir", str(station.passdir), "--interval", "0.1", "--stop-timeout", "5"),
            env=station.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    kills = 0
    phase_end = time.monotonic() + KILL_PHASE_S
    # MIN_KILLS whatever the time they take (a loaded machine starts waitd
    # slowly), then more until the phase ends or every file has its end.
    while kills < MAX_KILLS and (kills < MIN_KILLS or (time.monotonic() < phase_end and ended() != paths)):
        starts = station.log().count("waitd started")
        proc = launch()
        if kills % 4 == 3:
            # Now and then during the start itself: pid file, history load,
            # recovery of the runs the last crash interrupted, compaction.
            time.sleep(rng.uniform(0, 0.3))
        else:
            wait_for(
                lambda: station.log().count("waitd started") > starts or proc.poll() is not None,  # noqa: B023
                15,
                "waitd to start",
            )
            time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        proc.wait()
        kills += 1
        snapshot()

    # A last daemon finishes what is left (and records what was lost).
    starts = station.log().count("waitd started")
    station.proc = launch()
    try:
        wait_for(lambda: station.log().count("waitd started") > starts, 15, "the last waitd to start")
        wait_for(lambda: (snapshot(live=True), ended() == paths)[1], 60, "every file to have a final end event")
    finally:
        assert station.stop() == 0
    snapshot()

    ran = Counter(os.fsdecode(p) for p in station.ran())
    retries = Counter(e.path for e in seen.values() if e.retry_at is not None)
    twice = sorted(p for p, n in ran.items() if n > 1 + retries[p])
    assert not twice, f"handler ran twice on {twice[:5]} with no retry recorded"
    assert set(ran) <= paths
    if not options:
        assert not retries
    ends = Counter(e.path for e in seen.values() if e.status is not Status.STARTED and e.retry_at is None)
    assert set(ends) == paths, f"no final end event for {sorted(paths - set(ends))[:5]}"
    again = sorted(p for p, n in ends.items() if n != 1)
    assert not again, f"more than one final end event for {again[:5]}"
    done = {e.path for e in seen.values() if e.status is Status.KNOWN and e.exit == 0}
    assert all(e.exit in (0, 75) for e in seen.values() if e.status is Status.KNOWN and e.exit is not None)
    assert done <= set(ran), "status 2 for a file the handler never got"
    # The history left on disk is whole, and its latest events agree.
    final = {e.path: e for e in _events(history.read_text("ascii"))}
    assert all(final[p].status is not Status.STARTED and final[p].retry_at is None for p in paths)
    lost = len(paths) - len(done)
    print(
        f"\ncrash test ({options or 'classic'}): {FILES} files, {kills} kills, exit 0: {len(done)}, "
        f"status 1 or exit 75 with no retry left: {lost}, handler runs: {sum(ran.values())}, "
        f"retries recorded: {sum(retries.values())}"
    )
    assert kills >= MIN_KILLS, "the test did not crash waitd often enough to mean anything"
