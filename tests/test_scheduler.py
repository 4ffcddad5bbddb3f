# SPDX-License-Identifier: MIT
"""The scheduler is pure: limits, keys, holds, timeouts, the stop, moves,
removals and deadlines, without a process or a directory."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Mapping, Sequence

from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from waitd.decide.facts import FileFact
from waitd.decide.handoff import Disposal, OutLimit, Outlook
from waitd.decide.outcome import Verdict, Why
from waitd.decide.removal import Entry, Sweep
from waitd.decide.scheduler import (
    KILL_AGAIN_S,
    KILL_GRACE_S,
    PUBLISH_BATCH,
    Candidate,
    End,
    Mode,
    Phase,
    Plan,
    Running,
    Seat,
    Situation,
    plan,
)
from waitd.decide.turns import LOOKAHEAD

S = 1_000_000_000


def cand(record: int, path: str, key: str | None = None) -> Candidate:
    return Candidate(record, path, key, ref=path, names=(path.lstrip("/"),))


def run(run_id: int, record: int | None, path: str, key: str | None = None, **kw) -> Running:
    return Running(run_id, record, path, key, kw.pop("phase", Phase.RUNNING), kw.pop("started", 0.0), **kw)


def seats(
    jobs: Mapping[int, Sequence[Candidate]], per_record: Mapping[int, int], **kw: Mapping[int, object]
) -> list[Seat]:
    """A seat a record, its ready jobs those given (asked for lazily)."""
    out = []
    for record in sorted(per_record):
        mine = list(jobs.get(record, ()))
        extra = {k: v[record] for k, v in kw.items() if record in v}
        out.append(Seat(record, per_record[record], lambda n, mine=mine: (mine[:n], None), **extra))
    return out


def plan_of(
    now: float,
    jobs: Mapping[int, Sequence[Candidate]],
    running: Sequence[Running],
    per_record: Mapping[int, int],
    total: int | None = None,
    **kw: Mapping[int, object],
) -> Plan:
    return plan(now, Situation(Mode.ACTIVE, 0, seats(jobs, per_record, **kw), running, total))


def test_one_at_a_time_oldest_first_by_default():
    p = plan_of(10.0, {1: [cand(1, "/a"), cand(1, "/b")]}, [], {1: 1})
    assert [c.claim for c in p.start] == ["/a"]
    p = plan_of(10.0, {1: [cand(1, "/b")]}, [run(1, 1, "/a")], {1: 1})
    assert p.start == ()


def test_jobs_n_starts_n_oldest_first():
    p = plan_of(0.0, {1: [cand(1, f"/{i}") for i in range(5)]}, [run(9, 1, "/x")], {1: 3})
    assert [c.claim for c in p.start] == ["/0", "/1"]


def test_a_record_is_asked_for_its_room_and_a_look_ahead_with_keys():
    asked: list[int] = []

    def ready(n: int) -> tuple[list[Candidate], float | None]:
        asked.append(n)
        return [], None

    plan(0.0, Situation(seats=[Seat(1, 3, ready), Seat(2, 2, ready, keyed=True)], running=[run(1, 1, "/x")]))
    assert asked == [2, 2 + LOOKAHEAD]
    asked.clear()
    plan(0.0, Situation(seats=[Seat(1, 1, ready)], running=[run(1, 1, "/x")]))
    assert asked == [], "a record with no room is not asked"


def test_total_cap_shared_by_records_in_turns():
    jobs = {1: [cand(1, "/a1"), cand(1, "/a2")], 2: [cand(2, "/b1"), cand(2, "/b2")]}
    p = plan_of(0.0, jobs, [], {1: 4, 2: 4}, total=3)
    assert [c.claim for c in p.start] == ["/a1", "/b1", "/a2"]
    # A run of a record out of the table counts for the cap.
    p = plan_of(0.0, jobs, [run(1, None, "/gone")], {1: 4, 2: 4}, total=2)
    assert [c.claim for c in p.start] == ["/a1"]


def test_a_busy_key_is_stepped_over_and_waits():
    jobs = {1: [cand(1, "/a.1", "a"), cand(1, "/b.1", "b")], 2: [cand(2, "/a.2", "a")]}
    p = plan_of(0.0, jobs, [], {1: 5, 2: 5})
    assert [c.claim for c in p.start] == ["/a.1", "/b.1"]
    p = plan_of(0.0, {2: [cand(2, "/a.2", "a")]}, [run(1, 1, "/a.1", "a")], {1: 5, 2: 5})
    assert p.start == ()


def test_a_path_never_runs_twice_at_once():
    p = plan_of(0.0, {1: [cand(1, "/a")]}, [run(1, 2, "/a")], {1: 5, 2: 5})
    assert p.start == ()


def test_a_record_backing_off_starts_nothing_and_its_hold_is_a_deadline():
    p = plan_of(5.0, {1: [cand(1, "/a")], 2: [cand(2, "/b")]}, [], {1: 1, 2: 1}, backoff_until={1: 15.0})
    assert [c.claim for c in p.start] == ["/b"]
    assert p.deadline == 15.0 and [(h.record, h.until) for h in p.hold] == [(1, 15.0)]
    assert plan_of(15.0, {1: [cand(1, "/a")]}, [], {1: 1}, backoff_until={1: 15.0}).start


def test_an_executor_that_takes_no_runs_holds_its_record():
    p = plan_of(0.0, {1: [cand(1, "/a")]}, [], {1: 1}, executor_ready={1: False})
    assert p.start == () and p.deadline is None and p.hold[0].until is None


def test_nothing_starts_unless_active_and_the_history_takes_starts():
    jobs = {1: [cand(1, "/a")]}
    for mode in (Mode.HIBERNATING, Mode.STOPPING):
        assert plan(0.0, Situation(mode, 0, seats(jobs, {1: 1}))).start == ()
    p = plan(5.0, Situation(Mode.ACTIVE, 0, seats(jobs, {1: 1}), held_until=7.0))
    assert p.start == () and p.deadline == 7.0
    assert plan(7.0, Situation(Mode.ACTIVE, 0, seats(jobs, {1: 1}), held_until=7.0)).start


def test_a_due_time_of_a_record_is_a_deadline():
    p = plan(0.0, Situation(seats=[Seat(1, 1, lambda n: ([], 12.5))]))
    assert p.deadline == 12.5


def test_publish_only_records_publish_a_batch_and_take_no_room():
    asked: list[int] = []

    def ready(n: int) -> tuple[list[Candidate], float | None]:
        asked.append(n)
        return [cand(2, "/p")], None

    p = plan(0.0, Situation(seats=[Seat(2, 1, ready, publish_only=True)], running=[run(1, 1, "/x")], total=1))
    assert [c.claim for c in p.publish] == ["/p"] and p.start == () and asked == [PUBLISH_BATCH]


# -- out-limit ---------------------------------------------------------------------


def test_out_limit_counts_the_next_queue_and_the_runs_not_handed_on():
    count = 7
    out = OutLimit(10, 5.0, Outlook(), lambda: count, "/q2")
    jobs = {1: [cand(1, f"/{i}") for i in range(5)]}
    p = plan_of(100.0, jobs, [run(1, 1, "/x", phase=Phase.ENDED, end=End())], {1: 9}, out={1: out})
    assert len(p.start) == 10 - 7 - 1
    assert p.looked == (("/q2", Outlook(100.0, False), 7),)
    count = 10
    p = plan_of(100.0, jobs, [], {1: 9}, out={1: out})
    assert p.start == () and p.looked == (("/q2", Outlook(100.0, True), 10),)
    assert p.deadline == 105.0 and p.hold[0].why == "out-limit"


def test_a_full_next_queue_is_not_counted_again_before_out_wait():
    counted: list[int] = []
    out = OutLimit(1, 5.0, Outlook(100.0, True), lambda: counted.append(1) or 0, "/q2")
    p = plan_of(103.0, {1: [cand(1, "/a")]}, [], {1: 1}, out={1: out})
    assert p.start == () and counted == [] and p.deadline == 105.0
    p = plan_of(105.0, {1: [cand(1, "/a")]}, [], {1: 1}, out={1: out})
    assert [c.claim for c in p.start] == ["/a"] and counted == [1]


# -- timeouts, the stop, ended runs -----------------------------------------------


def test_timeout_term_then_kill_then_kill_again():
    r = run(7, 1, "/a", started=100.0, timeout_s=2.0)
    assert plan_of(101.0, {}, [r], {1: 1}) == plan_of(101.0, {}, [r], {1: 1})
    assert plan_of(101.0, {}, [r], {1: 1}).deadline == 102.0
    p = plan_of(102.0, {}, [r], {1: 1})
    assert [(s.run_id, s.signum, s.why) for s in p.signal] == [(7, signal.SIGTERM, Why.TIMEOUT)]
    assert p.deadline == 102.0 + KILL_GRACE_S
    stopping = run(7, 1, "/a", phase=Phase.STOPPING, started=100.0, timeout_s=2.0, signalled_at=102.0)
    assert plan_of(103.0, {}, [stopping], {1: 1}).signal == ()
    p = plan_of(102.0 + KILL_GRACE_S, {}, [stopping], {1: 1})
    assert [(s.run_id, s.signum) for s in p.signal] == [(7, signal.SIGKILL)]
    killed = run(7, 1, "/a", phase=Phase.KILLED, started=100.0, signalled_at=110.0)
    assert plan_of(110.5, {}, [killed], {1: 1}).deadline == 110.0 + KILL_AGAIN_S
    assert [s.signum for s in plan_of(111.0, {}, [killed], {1: 1}).signal] == [signal.SIGKILL]


def test_a_paused_run_has_no_timeout_and_its_clock_starts_later_by_its_pauses():
    paused = run(7, 1, "/a", started=100.0, timeout_s=2.0, paused=True)
    p = plan_of(500.0, {}, [paused], {1: 1})
    assert p.signal == () and p.deadline is None
    # Resumed after a pause of 10 s: `started` is moved on by it (Runs.scheduled).
    resumed = run(7, 1, "/a", started=110.0, timeout_s=2.0)
    assert plan_of(111.0, {}, [resumed], {1: 1}).deadline == 112.0


def test_the_stop_terms_own_runs_at_the_stop_timeout_and_kills_after_the_grace():
    runs = [run(1, 1, "/a"), run(2, 1, "/b", stays=True, timeout_s=1.0), run(3, None, "/c", timeout_s=45.0)]
    stopping = Situation(Mode.STOPPING, 0, running=runs, stop_at=50.0, stop_grace_s=2.0)
    p = plan(40.0, stopping)
    assert p.signal == () and p.deadline == 45.0, "runs go on until the stop timeout (or their own)"
    assert [(s.run_id, s.why) for s in plan(45.0, stopping).signal] == [(3, Why.TIMEOUT)]
    p = plan(50.0, stopping)
    assert [(s.run_id, s.signum, s.why, s.grace_s) for s in p.signal] == [
        (1, signal.SIGTERM, Why.STOP, 2.0),
        (3, signal.SIGTERM, Why.STOP, 2.0),
    ], "TERM with the grace of the stop; a run a stop leaves running is not signalled"
    after = [run(1, 1, "/a", phase=Phase.STOPPING, signalled_at=50.0, grace_s=2.0), runs[1]]
    p = plan(52.0, Situation(Mode.STOPPING, 0, running=after, stop_at=50.0, stop_grace_s=2.0))
    assert [(s.run_id, s.signum) for s in p.signal] == [(1, signal.SIGKILL)]
    p = plan(50.0, Situation(Mode.STOPPING, 0, running=runs, stop_at=50.0, stop_grace_s=0.0))
    assert {s.grace_s for s in p.signal} == {0.5}, "at least half a second, at most the kill grace"


def test_an_ended_run_that_was_signalled_gets_its_group_killed_and_its_file_moved():
    ended = [
        run(1, 1, "/a", phase=Phase.ENDED, end=End(signalled=True)),
        run(2, 1, "/b", phase=Phase.ENDED, end=End(queue=True, forward=True)),
        run(3, 1, "/c", phase=Phase.ENDED, end=End(verdict=Verdict.FINAL, queue=True)),
        run(4, 1, "/d", phase=Phase.ENDED, end=End(verdict=Verdict.TEMPORARY, retry_at=9.0, queue=True)),
        run(5, None, "/e", phase=Phase.ENDED, end=End()),
    ]
    for mode in Mode:
        p = plan(0.0, Situation(mode, running=ended, stop_at=0.0))
        assert [(s.run_id, s.signum) for s in p.signal] == [(1, signal.SIGKILL)]
        assert [(m.run_id, m.disposal) for m in p.move] == [
            (2, Disposal.FORWARD),
            (3, Disposal.ERRORS),
            (4, Disposal.RETRY),
        ]


# -- removals ----------------------------------------------------------------------


def fact(name: str, mtime_s: float) -> FileFact:
    ns = int(mtime_s * S)
    return FileFact(ns, name, ns, 1, 1)


def test_removals_expire_keep_after_and_retention_only_while_active():
    old, young, done1, done2 = fact("old", 0), fact("young", 7000), fact("d1", 10), fact("d2", 20)
    sweep = Sweep(
        keep=1,
        done=[done1, done2],
        too_old_h=1.0,
        expirable=[old, young],
        handled=lambda f: f.name == "old",
        errors=("/q/errors", [Entry(fact("x.dat", 0), True), Entry(fact("README", 0), True)]),
        tmp=("/q/tmp", [Entry(fact("part", 0), True)]),
        ours=lambda name: name.endswith(".dat"),
    )
    situation = Situation(Mode.ACTIVE, 7200 * S, [Seat(1, sweep=sweep, busy=lambda name: name == "young")])
    p = plan(0.0, situation)
    assert [(r.fact.name, r.directory) for r in p.remove] == [("old", None), ("d1", None), ("x.dat", "/q/errors")]
    assert p.remove[0].why == "expired: in the spool 2 h, hours-too-old is 1"
    assert p.remove[1].why == "handled with exit 0; keep-after is 1"
    assert p.remove[2].why == "expired in errors/ after 1 hours"
    late = Situation(Mode.ACTIVE, 40 * 3600 * S, situation.seats)
    assert ("part", "/q/tmp") in [(r.fact.name, r.directory) for r in plan(0.0, late).remove]
    for mode in (Mode.HIBERNATING, Mode.STOPPING):
        assert plan(0.0, Situation(mode, 7200 * S, situation.seats)).remove == ()


def test_a_file_removed_in_a_plan_does_not_start_in_it():
    sweep = Sweep(too_old_h=1.0, expirable=[fact("a", 0)])
    seat = Seat(1, 2, lambda n: ([cand(1, "/a"), cand(1, "/b")], None), sweep=sweep)
    p = plan(0.0, Situation(Mode.ACTIVE, 7200 * S, [seat]))
    assert [c.claim for c in p.start] == ["/b"] and [r.fact.name for r in p.remove] == ["a"]


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


@settings(max_examples=examples(300), deadline=None)
@given(situations())
def test_limits_keys_and_paths_are_never_exceeded(situation):
    per_record, total, jobs, running = situation
    p = plan_of(0.0, jobs, running, per_record, total)
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


@settings(max_examples=examples(200), deadline=None)
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
        p = plan_of(now, waiting, live, per_record, total, backoff_until={min(per_record): 3.0})
        assert p.deadline is None or p.deadline > now
        for c in p.start:
            waiting[c.record].remove(c)
            live.append(run(next_id, c.record, c.claim, c.key, started=now))
            next_id += 1
        if live and (not p.start or rnd.random() < 0.5):
            live.pop(rnd.randrange(len(live)))  # a run ends (successfully)
        now += 1.0
    assert not any(waiting.values()), f"never started: {waiting}"


@settings(max_examples=examples(200), deadline=None)
@given(
    st.floats(0, 1000),
    st.lists(
        st.tuples(
            st.sampled_from([p for p in Phase if p is not Phase.ENDED]),
            st.floats(0, 1000),
            st.one_of(st.none(), st.floats(0.01, 100)),
        ),
        max_size=5,
    ),
    st.floats(0, 2000),
    st.sampled_from(list(Mode)),
    st.one_of(st.none(), st.floats(0, 2000)),
)
def test_deadlines_are_never_in_the_past(now, runs, hold, mode, stop_at):
    running = [
        Running(i, 1, f"/{i}", None, phase, started, timeout, signalled_at=None if phase is Phase.RUNNING else started)
        for i, (phase, started, timeout) in enumerate(runs)
    ]
    seat = Seat(1, 1, lambda n: ([cand(1, "/new")], hold), backoff_until=hold)
    p = plan(now, Situation(mode, 0, [seat], running, held_until=hold, stop_at=stop_at))
    assert p.deadline is None or p.deadline > now
