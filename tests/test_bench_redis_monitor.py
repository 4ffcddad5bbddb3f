# SPDX-License-Identifier: MIT
"""bench/redis_monitor.py: a run's client and worker parts from a MONITOR record."""

from __future__ import annotations

import pytest

from bench.redis_monitor import parts

RECORD = r"""OK
100.000000 [0 127.0.0.1:1] "ECHO" "waitd-bench-mark_1_waitd"
100.001000 [0 127.0.0.1:2] "SMEMBERS" "_kombu.binding.oh"
100.002000 [0 127.0.0.1:2] "LPUSH" "oh" "{\"body\": \"...\"}"
100.003000 [0 127.0.0.1:3] "BRPOP" "oh" "1"
100.010000 [0 127.0.0.1:4] "PUBLISH" "celery-task-meta-a" "{\"status\": \"STARTED\", \"result\": {}}"
100.020000 [0 127.0.0.1:4] "PUBLISH" "celery-task-meta-a" "{\"status\": \"SUCCESS\", \"result\": {}}"
100.023000 [0 127.0.0.1:2] "LPUSH" "oh" "{\"body\": \"...\"}"
100.043000 [0 127.0.0.1:4] "PUBLISH" "celery-task-meta-b" "{\"status\": \"FAILURE\", \"result\": {}}"
100.050000 [0 127.0.0.1:1] "ECHO" "waitd-bench-mark_2_between"
100.060000 [0 127.0.0.1:5] "LPUSH" "oh" "{\"body\": \"...\"}"
100.070000 [0 127.0.0.1:1] "ECHO" "waitd-bench-mark_3_bare"
100.071000 [0 127.0.0.1:5] "LPUSH" "other" "{\"body\": \"...\"}"
100.080000 [0 127.0.0.1:4] "PUBLISH" "celery-task-meta-c" "{\"status\": \"SUCCESS\", \"result\": {}}"
"""


def test_parts_cut_at_the_marks_client_part_from_a_result_to_the_next_push() -> None:
    got = parts(RECORD, "oh")
    assert [label for label, _, _ in got] == ["waitd", "between", "bare"]
    _, client, worker = got[0]
    assert client == [pytest.approx(0.003)]  # the SUCCESS's publish to the next push, not the STARTED's
    assert worker == [pytest.approx(0.018), pytest.approx(0.020)]
    assert got[1][1:] == ([], [])  # a push after the mark follows no result of its stretch
    assert got[2][1:] == ([], [])  # another queue's push, a result of no push of this stretch
