# SPDX-License-Identifier: MIT
"""Crash recovery and history compaction across restarts."""

from __future__ import annotations

import os
import signal

from conftest import deliver, quiet_for, wait_for


def test_sigkill_during_run_then_restart_records_status_1_once(station):
    go = station.passdir / "go"
    station.handler(
        "slow",
        f'while [ ! -e "{go}" ]; do sleep 0.02; done; printf "%s\\0" "$1" >> "{station.passdir}/ran"\n',
    )
    station.table(f"x in *.g8 {station.passdir}/slow 0 -1 0")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(station.started, 5, "status 0")
    pid = station.started()[0].pid
    station.signal(signal.SIGKILL)
    station.proc.wait()
    # The orphaned handler still runs: the new waitd waits for it.
    station.start()
    wait_for(lambda: "still runs; waiting for it" in station.log(), 10, "the orphan adopted")
    go.touch()
    wait_for(lambda: station.ran(), 10, "the orphan to finish")
    wait_for(lambda: station.history()[-1].status == 1, 10, "status 1 for the lost run")
    station.stop()
    events = station.history()
    assert [(e.status, e.pid) for e in events] == [(0, pid), (1, pid)], events
    assert len(station.ran()) == 1, "the file ran twice"


def test_dead_handler_recorded_at_once_on_restart(station):
    station.handler("slow", "sleep 30\n")
    station.table(f"x in *.g8 {station.passdir}/slow 0 -1 0")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(station.started, 5)
    pid = station.started()[0].pid
    station.signal(signal.SIGKILL)
    station.proc.wait()
    os.killpg(pid, signal.SIGKILL)
    station.start()
    # Recorded at once, then compacted after the first pass to that one line.
    assert "recorded as status 1 (unknown)" in station.log()
    wait_for(lambda: [(e.status, e.pid) for e in station.history()] == [(1, pid)], 5, "the compacted history")
    station.signal(signal.SIGALRM)  # more passes: the file must not run again
    wait_for(lambda: (station.passdir / "waitd.status").exists(), 5)
    station.stop()
    assert [(e.status, e.pid) for e in station.history()] == [(1, pid)], "the file ran again"


def test_torn_last_line_is_ignored_and_history_stays_clean(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("a.g8", age_s=5)
    hist = station.passdir / "incoming.history"
    hist.write_bytes(f"{station.incoming}/old.g8 rec 1 2 exit=0\n{station.incoming}/torn.g8 re".encode())
    station.start()
    wait_for(lambda: station.ends(), 5)
    station.stop()
    assert "torn last line ignored" in station.log()
    for line in hist.read_text().splitlines():
        assert "torn.g8" not in line


def test_compaction_keeps_latest_and_drops_gone_files(station):
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(lambda: station.ends(), 5)
    station.stop()
    # Compacted once right after the first pass: the run's status 0 with its
    # pid, then its end.
    assert [(e.status, e.pid is None) for e in station.history()] == [(0, False), (2, False)]
    station.start()  # compacts at start: one line per key
    station.stop()
    assert [e.status for e in station.history()] == [2]
    os.unlink(station.incoming / "a.g8")
    station.start()
    station.stop()
    assert station.history() == []


def test_a_long_history_is_compacted_after_the_first_start_not_before(station):
    # 12,000 lines about ten files long gone: the history needs compacting
    # at start (lines > 4 x live + 10,000), and that must not delay the first
    # handler.
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    gone = "".join(f"{station.incoming}/old-{i % 10}.g8 rec 1000 2 exit=0\n" for i in range(12_000))
    (station.passdir / "incoming.history").write_text(gone, "ascii")
    station.drop("a.g8", age_s=5)
    station.start()
    wait_for(lambda: "compacted from 120" in station.log(), 10, "the compaction")
    wait_for(lambda: station.ends(), 5, "the run")
    station.stop()
    log = station.log()
    assert log.index(": started ") < log.index("compacted from 120"), log
    assert [e.status for e in station.history()] == [0, 2]


def test_restart_while_a_directory_is_unavailable_keeps_its_history(station):
    station.recorder()
    spool = station.root / "spool"
    spool.mkdir()
    station.table(f"x {spool} *.d {station.passdir}/rec 0 -1 0")
    deliver(station, "a.d", directory=spool)
    station.start()
    wait_for(lambda: len(station.ends()) == 1, 10, "the run")
    assert station.stop() == 0
    # The directory is away (an NFS mount, a disk) while waitd restarts and
    # compacts its history.
    os.rename(spool, station.root / "spool.away")
    station.start()
    wait_for(lambda: "inactive" in station.log() and (station.passdir / "waitd.status").exists(), 10)
    assert station.stop() == 0
    assert [e.path for e in station.history()] == [str(spool / "a.d")], "the history forgot the file"
    os.rename(station.root / "spool.away", spool)
    station.start()
    station.signal(signal.SIGALRM)
    quiet_for(1.0, lambda: len(station.ran()) == 1)
    assert station.stop() == 0


def test_adopted_handler_keeps_its_record_busy_and_its_file(station):
    station.gated()
    # hours-too-old 0.0015 = 5.4 s: both files expire while the adopted run goes on.
    station.table(f"x in *.d {station.passdir}/gated 0 -1 0.0015")
    station.drop("a.d", age_s=20)
    station.drop("b.d", age_s=10)
    a, b = station.incoming / "a.d", station.incoming / "b.d"
    station.start()
    wait_for(lambda: station.ran() == [os.fsencode(a)], 10, "a.d's run")
    wait_for(lambda: station.started(), 10, "the pid of a.d's run in the history")
    station.signal(signal.SIGKILL)
    station.proc.wait()
    station.start()
    assert "still runs; waiting for it" in station.log()
    wait_for(lambda: not b.exists(), 15, "b.d to expire")
    assert a.exists(), "the adopted run's file was removed under it"
    assert station.ran() == [os.fsencode(a)], "a second handler started beside the adopted one"
    station.open_gate("a.d")
    wait_for(lambda: any(e.status == 1 and e.path == str(a) for e in station.history()), 10, "a.d's end")
    wait_for(lambda: not a.exists(), 10, "a.d to expire once its run ended")
    assert station.stop() == 0
    assert station.ran() == [os.fsencode(a)]


def test_log_letter_after_restart_never_overwrites_a_newer_run(station):
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.drop("a.d", age_s=20)
    station.drop("b.d", age_s=10)
    station.start()
    wait_for(lambda: len(station.ends()) == 2, 10, "two runs")
    assert station.stop() == 0
    logs = station.passdir / "logfiles"
    assert "a.d" in (logs / "incoming.1.A").read_text() and "b.d" in (logs / "incoming.1.B").read_text()
    # A background child of the first run writes to its log later on.
    with open(logs / "incoming.1.A", "a") as f:
        f.write("late output\n")
    later = os.stat(logs / "incoming.1.B").st_mtime + 5
    os.utime(logs / "incoming.1.A", (later, later))
    station.start()
    deliver(station, "c.d")
    wait_for(lambda: len(station.ends()) == 3, 10, "the third run")
    assert station.stop() == 0
    assert "b.d" in (logs / "incoming.1.B").read_text(), "the log of b.d's run was overwritten"
    assert "c.d" in (logs / "incoming.1.C").read_text()


def test_open_run_with_a_malformed_pid_is_an_unknown_outcome_not_a_crash(station):
    # pid=-1 once stopped every start (psutil ValueError in recovery).  The
    # line is reported with its number and taken as status 1: the file is
    # consumed, never run; the other files are handled.
    station.recorder()
    station.table(f"x in *.g8 {station.passdir}/rec 0 -1 0")
    a = station.drop("a.g8", age_s=5)
    st = os.stat(a)
    hist = station.passdir / "incoming.history"
    hist.write_text(
        f"{station.incoming}/old.g8 rec 1 2 exit=0\n"
        f"{station.incoming}/a.g8 {station.passdir}/rec {st.st_mtime_ns // 10**9} 0 pid=-1 at=1700000000.000 "
        f"mtime_ns={st.st_mtime_ns} size={st.st_size} ino={st.st_ino}\n",
        "ascii",
    )
    station.drop("b.g8", age_s=5)
    station.drop("c.g8", age_s=5)
    proc = station.start()
    wait_for(lambda: len(station.ran()) == 2 or proc.poll() is not None, 10, "b.g8 and c.g8 to be handled")
    assert proc.poll() is None, station.stderr()
    station.signal(signal.SIGALRM)  # another pass: a.g8 must still not run
    wait_for(lambda: len(station.ends()) >= 2, 5, "the ends of b.g8 and c.g8")
    assert station.stop() == 0
    assert sorted(station.ran()) == [os.fsencode(station.incoming / n) for n in ("b.g8", "c.g8")]
    assert f"{hist}:2: pid=-1: " in station.log()
    assert "Traceback" not in station.stderr()
    (event,) = [e for e in station.history() if e.path == os.fsdecode(a)]
    assert (event.status, event.pid, event.error) == (1, None, None)
