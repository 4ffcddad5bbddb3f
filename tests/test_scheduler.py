# SPDX-License-Identifier: MIT
"""The scheduler is pure: limits, keys, holds, timeouts and deadlines,
without a process or a directory."""

from __future__ import annotations

import signal
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from waitd.decide.scheduler import KILL_AGAIN_S, KILL_GRACE_S, Candidate, Limits, Phase, Running, plan


def cand(record: int, path: str, key: str | None = None) -> Candidate:
    return Candidate(record, path, key, ref=path)


def run(run_id: int, record: int | None, path: str, key: str | None = None, **kw) -> Running:
    return Running(run_id, record, path, key, kw.pop("phase", Phase.RUNNING), kw.pop("started", 0.0), **kw)


def test_one_at_a_time_oldest_first_by_default():
    p = plan(10.0, {1: [cand(1, "/a"), cand(1, "/b")]}, [], Limits({1: 1}))
    assert [c.claim for c in p.start] == ["/a"]
    p = plan(10.0, {1: [cand(1, "/b")]}, [run(1, 1, "/a")], Limits({1: 1}))
    assert p.start == ()


def test_jobs_n_starts_n_oldest_first():
    p = plan(0.0, {1: [cand(1, f"/{i}") for i in range(5)]}, [run(9, 1, "/x")], Limits({1: 3}))
    assert [c.claim for c in p.start] == ["/0", "/1"]


def test_total_cap_shared_by_records_in_turns():
    jobs = {1: [cand(1, "/a1"), cand(1, "/a2")], 2: [cand(2, "/b1"), cand(2, "/b2")]}
    p = plan(0.0, jobs, [], Limits({1: 4, 2: 4}, total=3))
    assert [c.claim for c in p.start] == ["/a1", "/b1", "/a2"]
    # A run of a record out of the table counts for the cap.
    p = plan(0.0, jobs, [run(1, None, "/gone")], Limits({1: 4, 2: 4}, total=2))
    assert [c.claim for c in p.start] == ["/a1"]


def test_a_busy_key_is_stepped_over_and_waits():
    jobs = {1: [cand(1, "/a.1", "a"), cand(1, "/b.1", "b")], 2: [cand(2, "/a.2", "a")]}
    p = plan(0.0, jobs, [], Limits({1: 5, 2: 5}))
    assert [c.claim for c in p.start] == ["/a.1", "/b.1"]
    p = plan(0.0, {2: [cand(2, "/a.2", "a")]}, [run(1, 1, "/a.1", "a")], Limits({1: 5, 2: 5}))
    assert p.start == ()


def test_a_path_never_runs_twice_at_once():
    p = plan(0.0, {1: [cand(1, "/a")]}, [run(1, 2, "/a")], Limits({1: 5, 2: 5}))
    assert p.start == ()


def test_a_held_record_starts_nothing_and_its_hold_is_a_deadline():
    p = plan(5.0, {1: [cand(1, "/a")], 2: [cand(2, "/b")]}, [], Limits({1: 1, 2: 1}, held_until={1: 15.0}))
    assert [c.claim for c in p.start] == ["/b"]
    assert p.deadline == 15.0
    assert plan(15.0, {1: [cand(1, "/a")]}, [], Limits({1: 1}, held_until={1: 15.0})).start


def test_a_record_not_in_the_table_starts_nothing():
    assert plan(0.0, {3: [cand(3, "/a")]}, [], Limits({1: 1})).start == ()


def test_timeout_term_then_kill_then_kill_again():
    r = run(7, 1, "/a", started=100.0, timeout_s=2.0)
    assert plan(101.0, {}, [r], Limits({1: 1})) == plan(101.0, {}, [r], Limits({1: 1}))
    assert plan(101.0, {}, [r], Limits({1: 1})).deadline == 102.0
    p = plan(102.0, {}, [r], Limits({1: 1}))
    assert p.signal == ((7, signal.SIGTERM),) and p.deadline == 102.0 + KILL_GRACE_S
    stopping = run(7, 1, "/a", phase=Phase.STOPPING, started=100.0, timeout_s=2.0, signalled_at=102.0)
    assert plan(103.0, {}, [stopping], Limits({1: 1})).signal == ()
    p = plan(102.0 + KILL_GRACE_S, {}, [stopping], Limits({1: 1}))
    assert p.signal == ((7, signal.SIGKILL),)
    killed = run(7, 1, "/a", phase=Phase.KILLED, started=100.0, signalled_at=110.0)
    assert plan(110.5, {}, [killed], Limits({1: 1})).deadline == 110.0 + KILL_AGAIN_S
    assert plan(111.0, {}, [killed], Limits({1: 1})).signal == ((7, signal.SIGKILL),)


# -- properties -------------------------------------------------------------------

KEYS = st.one_of(st.none(), st.sampled_from("abc"))


@st.composite
def situations(draw):
    records = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4, unique=True))
    per_record = {r: draw(st.integers(1, 3)) for r in records}
    total = draw(st.one_of(st.none(), st.integers(1, 6)))
    paths = [f"/p{i}" for i in range(12)]
    jobs = {}
    used = set()
    for r in records:
        mine = [p for p in draw(st.lists(st.sampled_from(paths), max_size=5, unique=True)) if p not in used]
        used.update(mine)
        jobs[r] = [cand(r, p, draw(KEYS)) for p in mine]
    running = []
    for i, p in enumerate(draw(st.lists(st.sampled_from(paths), max_size=4, unique=True))):
        running.append(run(100 + i, draw(st.sampled_from([*records, None])), p, draw(KEYS)))
    return per_record, total, jobs, running


@settings(max_examples=300, deadline=None)
@given(situations())
def test_limits_keys_and_paths_are_never_exceeded(situation):
    per_record, total, jobs, running = situation
    p = plan(0.0, jobs, running, Limits(per_record, total))
    started = Counter(c.record for c in p.start)
    for record, limit in per_record.items():
        already = sum(1 for r in running if r.record == record)
        assert started[record] <= max(0, limit - already)
    if total is not None:
        assert len(p.start) <= max(0, total - len(running))
    keys = [r.key for r in running if r.key] + [c.key for c in p.start if c.key]
    assert not [k for k, n in Counter(keys).items() if n > 1 and k not in {r.key for r in running}]
    assert not {c.key for c in p.start if c.key} & {r.key for r in running}
    assert len({c.claim for c in p.start}) == len(p.start)
    assert not {c.claim for c in p.start} & {r.claim for r in running}
    for record, queue in jobs.items():  # oldest first within a record
        order = [c.claim for c in queue]
        mine = [order.index(c.claim) for c in p.start if c.record == record]
        assert mine == sorted(mine)


@settings(max_examples=200, deadline=None)
@given(situations(), st.randoms(use_true_random=False))
def test_every_ready_job_eventually_starts_while_runs_end(situation, rnd):
    per_record, total, jobs, running = situation
    waiting = {r: list(q) for r, q in jobs.items()}
    live = list(running)
    now = 0.0
    next_id = 1000
    for _ in range(200):
        if not any(waiting.values()):
            break
        p = plan(now, waiting, live, Limits(per_record, total, held_until={min(per_record): 3.0}))
        assert p.deadline is None or p.deadline > now
        for c in p.start:
            waiting[c.record].remove(c)
            live.append(run(next_id, c.record, c.claim, c.key, started=now))
            next_id += 1
        if live and (not p.start or rnd.random() < 0.5):
            live.pop(rnd.randrange(len(live)))  # a run ends (successfully)
        now += 1.0
    assert not any(waiting.values()), f"never started: {waiting}"


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0, 1000),
    st.lists(
        st.tuples(st.sampled_from(list(Phase)), st.floats(0, 1000), st.one_of(st.none(), st.floats(0.01, 100))),
        max_size=5,
    ),
    st.floats(0, 2000),
)
def test_deadlines_are_never_in_the_past(now, runs, hold):
    running = [
        Running(i, 1, f"/{i}", None, phase, started, timeout, signalled_at=None if phase is Phase.RUNNING else started)
        for i, (phase, started, timeout) in enumerate(runs)
    ]
    p = plan(now, {1: [cand(1, "/new")]}, running, Limits({1: 1}, held_until={1: hold}))
    assert p.deadline is None or p.deadline > now
