# SPDX-License-Identifier: MIT
"""Queues: several waitd claim files from one queue by rename; chains."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import Station, quiet_for, read_jsonl, wait_for, waitd_cmd
from peers.activemq import free_port
from test_events_metrics import Scrape

from waitd.spool import queue as q


@pytest.fixture(autouse=True)
def cleanup():
    """Kill, at the end of a test, every daemon its Stations left running."""
    made: list[Station] = []
    original = Station.__init__

    def init(self, root: Path) -> None:
        original(self, root)
        made.append(self)

    Station.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        Station.__init__ = original  # type: ignore[method-assign]
        stop_all(made)


def make_queue(root: Path, count: int, prefix: str = "f") -> Path:
    for sub in q.SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        tmp = root / "tmp" / f"{prefix}{i:05d}"
        tmp.write_bytes(b"x")
        os.rename(tmp, root / "incoming" / tmp.name)
    return root


def recorder(station: Station, log: Path, extra: str = "") -> None:
    """A handler that appends the file's name (NUL-terminated) to a log
    shared by every instance: one O_APPEND write, so no two mix."""
    station.handler("rec", f'printf "%s\\0" "$(basename "$1")" >> "{log}"\n{extra}')


def ran(log: Path) -> Counter[str]:
    try:
        return Counter(n.decode() for n in log.read_bytes().split(b"\0") if n)
    except FileNotFoundError:
        return Counter()


def left(root: Path) -> dict[str, list[str]]:
    out = {sub: sorted(os.listdir(root / sub)) for sub in ("incoming", "errors")}
    pending = root / "pending"
    out["pending"] = sorted(f"{d}/{n}" for d in os.listdir(pending) if d[0] != "." for n in os.listdir(pending / d))
    return out


def instances(tmp_path: Path, n: int, table: str, log: Path, extra: str = "") -> list[Station]:
    stations = []
    for i in range(n):
        s = Station(tmp_path / f"i{i}")
        recorder(s, log, extra)
        s.table(table.format(passdir=s.passdir))
        stations.append(s)
    return stations


def stop_all(stations: list[Station]) -> None:
    for s in stations:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


QUEUED = 300  # each instance lists and claims from the same names a hundred times and more


def test_three_instances_drain_one_queue_each_file_once(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    log = tmp_path / "ran"
    stations = instances(tmp_path, 3, f"q {root}/incoming * {{passdir}}/rec 0 -1 0 claim=yes jobs=2", log)
    try:
        for i, s in enumerate(stations):
            s.start("--instance", f"i{i}")
        # The work comes once all three run: on a busy machine the first one
        # up could drain a queue filled before the others are ready.
        make_queue(root, QUEUED)
        wait_for(lambda: sum(ran(log).values()) >= QUEUED, 60, "every file handled")
        wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 20, "an empty queue")
        for s in stations:
            assert s.stop() == 0
    finally:
        stop_all(stations)
    counts = ran(log)
    assert len(counts) == QUEUED and set(counts.values()) == {1}, "a file ran twice, or not at all"
    shares = [sum(1 for line in s.log().splitlines() if ": started " in line) for s in stations]
    assert sum(shares) == QUEUED and all(share > 0 for share in shares), shares


KILLED_QUEUE = 300  # about 4 s of runs: a kill every 0.05-0.4 s meets each step of a claim many times


def test_sigkill_at_random_moments_never_runs_a_file_twice(tmp_path):
    rng = random.Random(os.environ.get("WAITD_SEED") or time.time_ns())
    root = make_queue(tmp_path / "Q", KILLED_QUEUE)
    log = tmp_path / "ran"
    stations = instances(
        tmp_path, 3, f"q {root}/incoming * {{passdir}}/rec 0 -1 0 claim=yes jobs=2", log, extra="sleep 0.005"
    )

    def launch(i: int) -> subprocess.Popen[bytes]:
        s = stations[i]
        s.proc = subprocess.Popen(
            waitd_cmd("-f", "--passdir", str(s.passdir), "--interval", "0.1", "--instance", f"i{i}"),
            env=s.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return s.proc

    kills = 0
    try:
        procs = [launch(i) for i in range(3)]
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and (kills < 6 or os.listdir(root / "incoming")):
            time.sleep(rng.uniform(0.05, 0.4))
            victim = rng.randrange(3)
            procs[victim].kill()
            procs[victim].wait()
            kills += 1
            procs[victim] = launch(victim)
        # The last lives finish, and sort out what the killed ones left.
        wait_for(lambda: not os.listdir(root / "incoming"), 60, "an empty incoming")
        wait_for(lambda: left(root)["pending"] == [], 30, "an empty pending")
        for i in range(3):  # each last life has caught its signals
            wait_for(lambda: f"waitd started: pid {procs[i].pid}," in stations[i].log(), 20, "the last lives")  # noqa: B023
        for p in procs:
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=30) == 0
    finally:
        stop_all(stations)
    counts = ran(log)
    assert not [n for n, c in counts.items() if c > 1], "a file ran twice"
    errors = {n.split(".")[0] for n in os.listdir(root / "errors")}
    handled = set(counts) - errors
    assert len(handled | errors) == KILLED_QUEUE, f"lost: {KILLED_QUEUE - len(handled | errors)}"
    assert kills >= 3
    print(f"\nqueue crash test: {KILLED_QUEUE} files, {kills} kills, handled {len(handled)}, in errors {len(errors)}")


CHAINED, OUT_LIMIT = 60, 25  # over twice the limit: A is held back, then has room again


def test_chain_with_out_limit_pauses_and_resumes(tmp_path):
    qa, qb = make_queue(tmp_path / "A", CHAINED), make_queue(tmp_path / "B", 0)
    log = tmp_path / "ran"
    a = Station(tmp_path / "a")
    a.handler("pass", "exit 0\n")
    a.table(f"a {qa}/incoming * {a.passdir}/pass 0 -1 0 claim=yes next={qb} out-limit={OUT_LIMIT} out-wait=0.1 jobs=2")
    b = Station(tmp_path / "b")
    recorder(b, log)
    b.table(f"b {qb}/incoming * {b.passdir}/rec 0 -1 0 claim=yes")
    most = [0]
    try:
        b.start("-i", "--instance", "b")  # hibernating: its incoming fills up
        a.start("--instance", "a")
        wait_for(lambda: "claiming nothing for now" in a.log(), 20, "A to stop at the out-limit")

        def watch_b() -> bool:
            most[0] = max(most[0], q.Queue(str(qb)).count())
            return True

        quiet_for(0.5, watch_b)
        assert len(os.listdir(qa / "incoming")) > 0, "A did not hold back"
        assert most[0] == OUT_LIMIT, most[0]
        b.signal(signal.SIGCONT)
        wait_for(lambda: watch_b() and sum(ran(log).values()) == CHAINED, 30, f"B to handle all {CHAINED} files")
        assert "has room again" in a.log()
        assert most[0] <= OUT_LIMIT, most[0]
        assert a.stop() == 0 and b.stop() == 0
    finally:
        stop_all([a, b])
    assert set(ran(log).values()) == {1}
    assert left(qa) == left(qb) == {"incoming": [], "errors": [], "pending": []}


def test_next_queue_on_another_filesystem_goes_through_its_tmp(tmp_path):
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is not another filesystem here")
    qa = make_queue(tmp_path / "A", 0)
    qb = Path(tempfile_dir := __import__("tempfile").mkdtemp(dir="/dev/shm"))
    try:
        make_queue(qb, 0)
        a = Station(tmp_path / "a")
        a.handler("pass", "exit 0\n")
        a.table(f"a {qa}/incoming * {a.passdir}/pass 0 -1 0 claim=yes next={qb}")
        data = os.urandom(1 << 20)
        (qa / "tmp" / "big").write_bytes(data)
        os.rename(qa / "tmp" / "big", qa / "incoming" / "big")
        a.start("--instance", "a")
        wait_for(lambda: (qb / "incoming" / "big").exists(), 10, "the file in the next queue")
        assert (qb / "incoming" / "big").read_bytes() == data
        # The pending copy goes after the next queue has the file: wait for it, not assume it.
        wait_for(lambda: left(qa) == {"incoming": [], "errors": [], "pending": []}, 10, "the pending copy removed")
        assert os.listdir(qb / "tmp") == []
        assert a.stop() == 0
    finally:
        __import__("shutil").rmtree(tempfile_dir, ignore_errors=True)


def test_enqueue_is_never_seen_half_written(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    size = 100 << 20
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(size)
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while True:
            last = stop.is_set()  # one more look after the enqueue returned: the whole file is seen at least once
            for name in os.listdir(root / "incoming"):
                seen.append(os.stat(root / "incoming" / name).st_size)
            if last:
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        r = subprocess.run(waitd_cmd("--enqueue", str(root), str(big)), capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    assert (root / "incoming" / "big").stat().st_size == size
    assert seen and set(seen) == {size}, "a reader saw the file before it was whole"
    assert os.listdir(root / "tmp") == []


def test_enqueue_names_strange_files_escaped_and_keeps_their_bytes(tmp_path):
    """A name with a newline, a leading dash and a byte that is not UTF-8
    arrives unchanged; the messages show it escaped, one line each."""
    root = make_queue(tmp_path / "Q", 0)
    name = b"-new\nline\xff.d"
    src = os.path.join(os.fsencode(tmp_path), name)
    with open(src, "wb") as f:
        f.write(b"data")
    r = subprocess.run(
        waitd_cmd("--enqueue", str(root), "--", os.fsdecode(src), str(tmp_path / "missing")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert os.listdir(os.fsencode(root / "incoming")) == [name]
    assert r.stdout.count("\n") == 1 and "-new\\012line\\377.d: enqueued as" in r.stdout
    assert "missing: not enqueued: No such file or directory" in r.stderr


def test_enqueue_that_cannot_rename_in_leaves_nothing_in_tmp(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    root = make_queue(tmp_path / "Q", 0)
    if subprocess.run(["chattr", "+i", str(root / "incoming")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        r = subprocess.run(
            waitd_cmd("--enqueue", str(root), "/etc/hostname"), capture_output=True, text=True, timeout=60
        )
    finally:
        subprocess.run(["chattr", "-i", str(root / "incoming")], capture_output=True)
    assert r.returncode == 1 and "/etc/hostname: not enqueued: Operation not permitted" in r.stderr
    assert os.listdir(root / "tmp") == [] and os.listdir(root / "incoming") == []


def test_a_temporary_failure_waits_in_pending_for_its_retry(tmp_path):
    root = make_queue(tmp_path / "Q", 1)
    s = Station(tmp_path / "s")
    s.handler("h", f'echo "$WAITD_ATTEMPT $1" >> "{tmp_path}/tries"\n[ "$WAITD_ATTEMPT" = 1 ] && exit 75\nexit 0\n')
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes retries=1 retry=1")
    s.start("--instance", "me")
    wait_for(lambda: (tmp_path / "tries").exists(), 10, "the first attempt")
    wait_for(lambda: left(root)["pending"] == ["me/f00000"], 10, "the file waiting in pending")
    assert left(root)["incoming"] == []
    wait_for(lambda: len((tmp_path / "tries").read_text().splitlines()) == 2, 10, "the retry")
    wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 10, "the file gone")
    tries = (tmp_path / "tries").read_text().split()
    assert tries == ["1", f"{root}/pending/me/f00000", "2", f"{root}/pending/me/f00000"]
    assert s.stop() == 0


def test_a_retry_that_cannot_start_stays_in_pending_with_its_attempt(tmp_path):
    """The retry's start fails (logfiles/ immutable): the file is not put
    back in incoming, where it would start over at attempt 1; once the
    start can be made, attempt 2 runs."""
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    root = make_queue(tmp_path / "Q", 1)
    s = Station(tmp_path / "s")
    s.handler("h", f'echo "$WAITD_ATTEMPT" >> "{tmp_path}/tries"\n[ "$WAITD_ATTEMPT" = 1 ] && exit 75\nexit 0\n')
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0 claim=yes retries=1 retry=1")
    s.start("--instance", "me")
    wait_for(lambda: len(s.ends()) == 1, 10, "the first attempt's end")
    logfiles = s.passdir / "logfiles"
    if subprocess.run(["chattr", "+i", str(logfiles)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        wait_for(lambda: "cannot open log file" in s.log(), 10, "the retry's start failing")
        quiet_for(0.5, lambda: left(root)["pending"] == ["me/f00000"] and left(root)["incoming"] == [])
    finally:
        subprocess.run(["chattr", "-i", str(logfiles)], capture_output=True)
    s.signal(signal.SIGHUP)  # a HUP ends the back-off
    wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 10, "the retry done")
    assert (tmp_path / "tries").read_text().split() == ["1", "2"]
    assert s.stop() == 0


def test_at_start_a_claimed_file_never_run_goes_back_and_a_failure_to_errors(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    (root / "pending" / "me").mkdir(parents=True)
    (root / "pending" / "me" / "orphan").write_bytes(b"x")
    (root / "tmp" / "bad").write_bytes(b"x")
    os.rename(root / "tmp" / "bad", root / "incoming" / "bad")
    log = tmp_path / "ran"
    s = Station(tmp_path / "s")
    recorder(s, log, extra='[ "$(basename "$1")" = bad ] && exit 3\nexit 0')
    s.table(f"q {root}/incoming * {s.passdir}/rec 0 -1 0 claim=yes")
    s.start("--instance", "me")
    wait_for(lambda: sum(ran(log).values()) == 2, 10, "both files handled")
    wait_for(lambda: left(root) == {"incoming": [], "errors": ["bad"], "pending": []}, 10, "bad in errors")
    assert "claimed but never run; back in the queue" in s.log()
    wait_for(lambda: "pending: none, errors: 1" in s.run("-s", "status").stdout, 10, "the queue in the status")
    assert s.stop() == 0


def test_a_second_daemon_with_the_same_instance_name_claims_nothing(tmp_path):
    """Two waitd given one --instance on one queue: the second would take
    the first's pending files for its own leftovers and run them again.
    Its claiming record is inactive instead (said before detaching and
    logged), until the first has let the name go."""
    root = make_queue(tmp_path / "Q", 1)
    a, b = Station(tmp_path / "a"), Station(tmp_path / "b")
    log = tmp_path / "ran"
    for s in (a, b):
        recorder(s, log, extra=f'while [ ! -e "{tmp_path}/gate" ]; do sleep 0.01; done')
        s.table(f"q {root}/incoming * {s.passdir}/rec 0 -1 0 claim=yes")
    a.start("--instance", "same")
    wait_for(lambda: ran(log) == Counter({"f00000": 1}), 10, "a's run")
    r = b.run("-g", "--instance", "same", "--interval", "0.1")  # detached: stopped below, come what may
    try:
        assert r.returncode == 0, r.stderr
        assert "record 1 is inactive: instance 'same' is in use in its queue by another waitd" in r.stderr
        wait_for(lambda: "is in use by another waitd" in b.log(), 10, "b's refusal logged")
        quiet_for(0.5, lambda: left(root)["pending"] == ["same/f00000"] and ran(log) == Counter({"f00000": 1}))
        (tmp_path / "gate").touch()
        assert a.stop() == 0
        make_queue(root, 1, prefix="g")
        assert b.run("-s", "reload").returncode == 0  # the name is free now: b claims
        wait_for(lambda: ran(log) == Counter({"f00000": 1, "g00000": 1}), 10, "b's run after a stopped")
        wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 10, "b's run to end")
    finally:
        (tmp_path / "gate").touch()
        assert b.run("-s", "stop").returncode == 0


def test_a_failure_waits_in_errors_for_hours_too_old_then_goes(tmp_path):
    """hours-too-old 0.0015 (5.4 s) is also how long errors/ keeps a file."""
    root = make_queue(tmp_path / "Q", 1)
    s = Station(tmp_path / "s")
    s.handler("h", "exit 3\n")
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0.0015 claim=yes")
    s.start("--interval", "0.2")
    wait_for(lambda: left(root)["errors"] == ["f00000"], 10, "the failure in errors/")
    moved = time.monotonic()
    wait_for(lambda: left(root)["errors"] == [], 15, "its expiry in errors/")
    assert time.monotonic() - moved > 4, "expired before hours-too-old"
    # Logged just after the unlink the test saw: a moment later, under load.
    wait_for(lambda: "expired in errors/ after 0.0015 hours" in s.log(), 10, "the expiry in incoming.log")
    assert s.stop() == 0


def test_a_queue_records_removals_are_events_too(tmp_path):
    """The file of a successful run removed from pending, and a failure
    expired in errors/: a `removed` and an `expired` event, with the path
    the file had, and counted by reason in the metrics' removals."""
    root = make_queue(tmp_path / "Q", 0)
    s = Station(tmp_path / "s")
    (s.passdir / "waitd.conf").write_text("[sink log]\ntype = jsonl\npath = events.jsonl\n")
    s.handler("h", 'case "$(basename "$1")" in bad*) exit 3;; esac\n')
    s.table(f"q {root}/incoming * {s.passdir}/h 0 -1 0.0015 claim=yes")
    port = free_port()
    s.start("--instance", "me", "--metrics", f"127.0.0.1:{port}")
    make_queue(root, 1, prefix="good")
    make_queue(root, 1, prefix="bad")
    wait_for(lambda: left(root) == {"incoming": [], "errors": [], "pending": []}, 20, "both files gone")

    def removals() -> dict[str, str]:
        return {
            e["type"]: e["path"] for e in read_jsonl(s.passdir / "events.jsonl") if e["type"] in ("removed", "expired")
        }

    wait_for(lambda: len(removals()) == 2, 10, "both removal events")
    assert removals() == {"removed": f"{root}/pending/me/good00000", "expired": f"{root}/errors/bad00000"}
    runs = [e for e in read_jsonl(s.passdir / "events.jsonl") if e["type"] in ("ready", "started", "ended")]
    assert len(runs) == 6 and all((e["record"], e["telem"]) == (1, "q") for e in runs), "a claimed file's record"
    scrape = Scrape(port)
    for reason in ("handled", "expired"):
        assert scrape.get("waitd_removals_total", record="1", telem="q", reason=reason) == 1, reason
    assert s.stop() == 0


def test_check_names_the_queue_mistakes_of_each_line(station, tmp_path):
    """A claim outside a queue's incoming/, a next= that is the record's own
    queue (its files would come back for ever) and an out-limit= without
    next=: each a FILE:LINE error of --check."""
    root = make_queue(tmp_path / "q", 0)
    station.table(
        f"a {tmp_path} * cat 0 1 1 claim=yes",
        f"b {root}/incoming * cat 0 1 1 claim=yes next={root}/",
        f"c {root}/incoming * cat 0 1 1 claim=yes out-limit=5",
    )
    r = station.run("--check")
    assert r.returncode == 2
    table = station.passdir / "incoming"
    assert f"{table}:1: claim=yes: incoming-dir" in r.stderr
    assert f"{table}:2: next={root}: the record's own queue" in r.stderr
    assert f"{table}:3: option out-limit= needs next=" in r.stderr
