# SPDX-License-Identifier: MIT
"""The retention of a queue's errors/ and tmp/ (claims.expire_files), on
real files, at a clock moved forward."""

from __future__ import annotations

import os
import time
from pathlib import Path

from waitd import claims
from waitd import queue as q

HOUR_NS = 3600 * 10**9


def queue_with(tmp_path: Path) -> q.Queue:
    (tmp_path / "Q").mkdir()
    queue = q.Queue(str(tmp_path / "Q"))
    queue.make()
    for sub, name in (("errors", "failed"), ("tmp", ".half.part"), ("incoming", "waiting")):
        Path(queue.root, sub, name).write_bytes(b"x")
    return queue


def names(queue: q.Queue, sub: str) -> list[str]:
    return sorted(os.listdir(os.path.join(queue.root, sub)))


def test_errors_kept_for_hours_too_old_and_tmp_for_36_hours_at_least(tmp_path):
    queue = queue_with(tmp_path)
    now = time.time_ns()
    assert claims.expire_files(1, queue, 2.0, now + HOUR_NS) == 0
    assert claims.expire_files(1, queue, 2.0, now + 3 * HOUR_NS) == 1
    assert names(queue, "errors") == [] and names(queue, "tmp") == [".half.part"]
    assert claims.expire_files(1, queue, 2.0, now + 35 * HOUR_NS) == 0
    assert claims.expire_files(1, queue, 2.0, now + 37 * HOUR_NS) == 1
    assert names(queue, "tmp") == [] and names(queue, "incoming") == ["waiting"], "incoming is the view's to expire"


def test_a_longer_hours_too_old_holds_tmp_too_and_zero_keeps_everything(tmp_path):
    queue = queue_with(tmp_path)
    now = time.time_ns()
    assert claims.expire_files(1, queue, 0, now + 10**6 * HOUR_NS) == 0
    assert claims.expire_files(1, queue, 48.0, now + 40 * HOUR_NS) == 0
    assert claims.expire_files(1, queue, 48.0, now + 49 * HOUR_NS) == 2


def test_a_file_still_being_written_in_tmp_is_not_old(tmp_path):
    queue = queue_with(tmp_path)
    part = Path(queue.tmp, ".half.part")
    old = time.time() - 40 * 3600
    os.utime(part, (old, old))  # an archival mtime: its ctime is now, so it stays
    assert claims.expire_files(1, queue, 1.0, time.time_ns()) == 0
    assert part.exists()
