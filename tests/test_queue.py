# SPDX-License-Identifier: MIT
"""The retention of a queue's errors/ and tmp/ (listed by claims, planned by
the scheduler, removed by the sweep), on real files, at a clock moved forward; the names a taken name gets
(queue.numbered) and their inverse (queue.unnumbered)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waitd.config import table
from waitd.decide import removal, scheduler
from waitd.spool import claims, sweep
from waitd.spool import queue as q

HOUR_NS = 3600 * 10**9


def ANY(name: str) -> bool:  # noqa: N802 (a template: *)
    return table.matcher("*")(name)


def queue_with(tmp_path: Path) -> q.Queue:
    (tmp_path / "Q").mkdir()
    queue = q.Queue(str(tmp_path / "Q"))
    queue.make()
    for sub, name in (("errors", "failed"), ("tmp", ".half.part"), ("incoming", "waiting")):
        Path(queue.root, sub, name).write_bytes(b"x")
    return queue


def expire_files(number: int, queue: q.Queue, hours: float, now_ns: int, match) -> int:
    """The retention of a queue's errors/ and tmp/ for a record: listed,
    planned by the scheduler, carried out by the sweep; how many went."""
    errors, tmp = claims.listing(queue)
    facts = removal.Sweep(too_old_h=hours, errors=errors, tmp=tmp, ours=claims.ours(match))
    plan = scheduler.plan(0.0, scheduler.Situation(now_ns=now_ns, seats=[scheduler.Seat(number, sweep=facts)]))
    return sum(sweep.remove_queued(number, r.directory, r.fact, r.why) is not None for r in plan.remove if r.directory)


def names(queue: q.Queue, sub: str) -> list[str]:
    return sorted(os.listdir(os.path.join(queue.root, sub)))


def test_errors_kept_for_hours_too_old_and_tmp_for_36_hours_at_least(tmp_path):
    queue = queue_with(tmp_path)
    now = time.time_ns()
    assert expire_files(1, queue, 2.0, now + HOUR_NS, ANY) == 0
    assert expire_files(1, queue, 2.0, now + 3 * HOUR_NS, ANY) == 1
    assert names(queue, "errors") == [] and names(queue, "tmp") == [".half.part"]
    assert expire_files(1, queue, 2.0, now + 35 * HOUR_NS, ANY) == 0
    assert expire_files(1, queue, 2.0, now + 37 * HOUR_NS, ANY) == 1
    assert names(queue, "tmp") == [] and names(queue, "incoming") == ["waiting"], "incoming is the view's to expire"


def test_a_longer_hours_too_old_holds_tmp_too_and_zero_keeps_everything(tmp_path):
    queue = queue_with(tmp_path)
    now = time.time_ns()
    assert expire_files(1, queue, 0, now + 10**6 * HOUR_NS, ANY) == 0
    assert expire_files(1, queue, 48.0, now + 40 * HOUR_NS, ANY) == 0
    assert expire_files(1, queue, 48.0, now + 49 * HOUR_NS, ANY) == 2


def test_a_file_still_being_written_in_tmp_is_not_old(tmp_path):
    queue = queue_with(tmp_path)
    part = Path(queue.tmp, ".half.part")
    old = time.time() - 40 * 3600
    os.utime(part, (old, old))  # an archival mtime: its ctime is now, so it stays
    assert expire_files(1, queue, 1.0, time.time_ns(), ANY) == 0
    assert part.exists()


def test_errors_expire_only_the_names_the_template_takes_numbered_or_not(tmp_path):
    queue = queue_with(tmp_path)
    for name in ("x.dat", "x.1.dat", "x.dat.3", "y.2.tar.gz", ".keep", ".x.dat", "README", "x.txt", "x.1.txt"):
        Path(queue.errors, name).write_bytes(b"x")
    dat = table.matcher("*.dat")
    assert expire_files(1, queue, 2.0, time.time_ns() + 3 * HOUR_NS, dat) == 3
    assert names(queue, "errors") == [".keep", ".x.dat", "README", "failed", "x.1.txt", "x.txt", "y.2.tar.gz"]
    assert expire_files(1, queue, 2.0, time.time_ns() + 3 * HOUR_NS, table.matcher("*.tar.gz")) == 1
    assert expire_files(1, queue, 2.0, time.time_ns() + 3 * HOUR_NS, ANY) == 4
    assert names(queue, "errors") == [".keep", ".x.dat"], "a dot file is never the queue's"


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("x.dat", ["x.1.dat"]),
        ("x.tar.gz", ["x.1.tar.gz", "x.tar.1.gz"]),
        ("MOD021KM.A2020001.1200.hdf", ["MOD021KM.1.A2020001.1200.hdf", "MOD021KM.A2020001.1200.1.hdf"]),
        ("x", ["x.1"]),
        (".x.dat", [".x.1.dat"]),
        (".x", [".x.1"]),
    ],
)
def test_a_taken_name_is_numbered_before_its_suffix(name, taken):
    assert q.numbered(name, 1) == taken
    assert all(name in q.unnumbered(other) for other in taken)


NAMES = st.text(alphabet="ab.0123", min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@given(NAMES, st.integers(1, 9999))
def test_a_numbered_name_is_new_and_unnumbers_back(name, n):
    for other in q.numbered(name, n):
        assert other != name and name in q.unnumbered(other)


def test_a_move_into_a_taken_name_prefers_one_the_template_matches(tmp_path):
    queue = queue_with(tmp_path)
    for name in ("MOD.A1.hdf", "MOD.1.A1.hdf"):
        Path(queue.incoming, name).write_bytes(b"old")
    template = table.matcher("MOD.A*.hdf")
    for data in (b"1", b"2"):
        Path(queue.tmp, "new").write_bytes(data)
        os.rename(Path(queue.tmp, "new"), Path(queue.tmp, "MOD.A1.hdf"))
        q.release(os.path.join(queue.tmp, "MOD.A1.hdf"), queue, template)
    assert names(queue, "incoming") == ["MOD.1.A1.hdf", "MOD.A1.1.hdf", "MOD.A1.2.hdf", "MOD.A1.hdf", "waiting"]
    assert Path(queue.incoming, "MOD.A1.2.hdf").read_bytes() == b"2"
    Path(queue.tmp, "x.dat").write_bytes(b"x")
    assert q.to_errors(os.path.join(queue.tmp, "x.dat"), queue) == os.path.join(queue.errors, "x.dat")
    Path(queue.tmp, "x.dat").write_bytes(b"y")
    assert q.to_errors(os.path.join(queue.tmp, "x.dat"), queue) == os.path.join(queue.errors, "x.1.dat")


def test_a_claim_never_replaces_a_file_in_pending(tmp_path):
    queue = queue_with(tmp_path)
    queue.make("me")
    Path(queue.pending("me"), "waiting").write_bytes(b"under way")
    ino = os.stat(Path(queue.incoming, "waiting")).st_ino
    with pytest.raises(FileExistsError):
        q.claim(queue, "waiting", "me", ino)
    assert Path(queue.pending("me"), "waiting").read_bytes() == b"under way"
    assert names(queue, "incoming") == ["waiting"]
    os.unlink(Path(queue.pending("me"), "waiting"))
    assert q.claim(queue, "waiting", "me", ino) == os.path.join(queue.pending("me"), "waiting")
    assert q.claim(queue, "waiting", "other", ino) is None  # gone: another instance was first
