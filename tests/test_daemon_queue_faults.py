# SPDX-License-Identifier: MIT
"""Queues under hostile trials: a name delivered again while its first
file runs, kill -9 of waitd mid-run, a second instance, a FIFO given to
--enqueue, an operator's files in errors/, a retry waiting in pending."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import Station, wait_for, waitd_cmd
from test_daemon_queues import cleanup, left, make_queue, ran, recorder  # noqa: F401 (cleanup: autouse)


def put(root: Path, name: str, data: bytes) -> None:
    """Deliver a file into the queue as a producer does: tmp/, then rename."""
    tmp = root / "tmp" / f".{name}.part"
    tmp.write_bytes(data)
    os.rename(tmp, root / "incoming" / name)


def reader(station: Station, out: Path) -> None:
    """A handler that reads its file, waits for gate.CONTENT (at most 60 s),
    reads it again, and writes both readings: what it ran on."""
    station.handler(
        "h",
        f'c=$(cat "$1")\ngate="{station.root}/gate.$c"\n'
        'i=0; while [ ! -e "$gate" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n'
        f'printf "%s %s\\n" "$c" "$(cat "$1" 2>/dev/null)" >> "{out}"\n',
    )


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def open_gates(station: Station, *names: str) -> None:
    for name in names:
        (station.root / f"gate.{name}").touch()


# -- 9: --enqueue never blocks on a FIFO -------------------------------------------


def test_enqueue_refuses_a_fifo_and_goes_on_with_the_rest(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    good = tmp_path / "good"
    good.write_bytes(b"data")
    r = subprocess.run(
        waitd_cmd("--enqueue", str(root), str(fifo), "/dev/null", str(good)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{fifo}: not enqueued: not a regular file (a FIFO)" in r.stderr
    assert "/dev/null: not enqueued: not a regular file (a character device)" in r.stderr
    assert f"{good}: enqueued as {root}/incoming/good" in r.stdout
    assert os.listdir(root / "incoming") == ["good"] and os.listdir(root / "tmp") == []


# -- 17: a name taken in a queue keeps matching the template ----------------------


def test_enqueue_of_a_name_taken_numbers_it_before_its_suffix_and_a_record_handles_both(tmp_path):
    root = make_queue(tmp_path / "Q", 0)
    src = tmp_path / "x.dat"
    src.write_bytes(b"x")
    for _ in range(3):
        r = subprocess.run(waitd_cmd("--enqueue", str(root), str(src)), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(root / "incoming")) == ["x.1.dat", "x.2.dat", "x.dat"]
    log = tmp_path / "ran"
    s = Station(tmp_path / "s")
    recorder(s, log, extra="exit 3")  # each a final failure: into errors/, numbered the same way
    s.table(f"q {root}/incoming *.dat {s.passdir}/rec 0 -1 0 claim=yes")
    s.start("--instance", "me")
    wait_for(lambda: len(left(root)["errors"]) == 3, 10, "the three in errors/")
    assert set(ran(log)) == {"x.dat", "x.1.dat", "x.2.dat"}
    assert left(root) == {"incoming": [], "errors": ["x.1.dat", "x.2.dat", "x.dat"], "pending": []}
    assert s.stop() == 0


# -- 11: expiry in errors/ removes the queue's files only --------------------------


def test_expiry_in_errors_leaves_the_operators_files_alone(tmp_path):
    """Only names the template matches (itself, or numbered: a.1.dat) are
    the queue's in errors/; a dot file never."""
    root = make_queue(tmp_path / "Q", 0)
    for name in (".keep", "README", "notes.txt"):
        (root / "errors" / name).write_text("mine\n")
    s = Station(tmp_path / "s")
    s.handler("h", "exit 3\n")
    table = f"q {root}/incoming *.dat {s.passdir}/h 0 -1 {{hours}} claim=yes"
    s.table(table.format(hours=1))
    s.start("--instance", "me", "--interval", "0.1")
    put(root, "a.dat", b"1")
    wait_for(lambda: "a.dat" in left(root)["errors"], 10, "a.dat in errors/")
    put(root, "a.dat", b"2")
    wait_for(lambda: "a.1.dat" in left(root)["errors"], 10, "the second a.dat in errors/ as a.1.dat")
    s.table(table.format(hours=0.0003))  # a second
    assert s.run("-s", "reload").returncode == 0
    wait_for(lambda: left(root)["errors"] == [".keep", "README", "notes.txt"], 15, "both expired")
    assert sorted(os.listdir(root / "errors")) == [".keep", "README", "notes.txt"]
    assert s.stop() == 0
