# SPDX-License-Identifier: MIT
"""spool/locks.py: the flock of a helper process (a sink's, a source's)."""

from __future__ import annotations

import fcntl
import os
import time

from waitd.spool.locks import wait_flock


def test_a_helper_lock_waits_telling_once_and_gives_up_when_stopped(tmp_path):
    path = str(tmp_path / "s.lock")
    holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process of the same name (an open file of its own)
    told = []
    stop_at = time.monotonic() + 0.35
    try:
        assert wait_flock(path, lambda: time.monotonic() > stop_at, lambda: told.append(1)) is None
        assert told == [1]  # said once, not at each try
    finally:
        os.close(holder)
    fd = wait_flock(path, lambda: True, lambda: told.append(2))
    assert fd is not None and told == [1]  # free now: taken at once, nothing said
    os.close(fd)
