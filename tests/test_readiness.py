# SPDX-License-Identifier: MIT
"""Unit tests of decide.readiness: which files may run now (the heap is test_scan's)."""

from __future__ import annotations

import heapq

from hypothesis import given
from hypothesis import strategies as st

from waitd.config import options
from waitd.decide.facts import FOREVER_NS, FileFact
from waitd.decide.readiness import (
    WRITER_STALL_NS,
    Candidates,
    Holds,
    companion_name,
    held_until,
    in_drain,
    member_held,
)
from waitd.formats.history_line import Event, Status

S = 1_000_000_000


def fact(name: str, mtime_s: float = 100.0, size: int = 1) -> FileFact:
    return FileFact(int(mtime_s * S), name, int(mtime_s * S), size, 7)


def holds(**kw) -> Holds:
    base = dict(companions=(), left_alone=(), writing=(), drain=None, busy=lambda name: False)
    base.update(kw)
    return Holds(**base)


def event(f: FileFact, status: Status = Status.KNOWN, **kw) -> Event:
    return Event(f"/in/{f.name}", "h", f.mtime_ns // S, status, version=f.version, **kw)


def test_a_file_may_run_when_nothing_holds_it():
    assert held_until(holds(), fact("a"), None) is None


def test_never_by_itself_a_companion_a_name_left_alone_a_file_taken_or_busy():
    a = fact("a")
    assert held_until(holds(companions={"a"}), a, None) == FOREVER_NS
    assert held_until(holds(left_alone={"a": "does not parse"}), a, None) == FOREVER_NS
    assert held_until(holds(), a, None, taken={"a"}) == FOREVER_NS
    assert held_until(holds(busy=lambda name: name == "a"), a, None) == FOREVER_NS


def test_the_drain_takes_only_the_versions_ready_at_start():
    a = fact("a")
    assert held_until(holds(drain={"a": a.version}), a, None) is None
    assert held_until(holds(drain={"a": fact("a", size=2).version}), a, None) == FOREVER_NS
    assert held_until(holds(drain={}), a, None) == FOREVER_NS
    assert member_held(holds(drain={}), a) == FOREVER_NS


def test_a_writer_holds_a_file_until_it_closes_or_stalls():
    a = fact("a")
    assert held_until(holds(writing={"a"}), a, None) == a.mtime_ns + WRITER_STALL_NS
    assert member_held(holds(writing={"a"}), a) == a.mtime_ns + WRITER_STALL_NS
    assert member_held(holds(), a) is None


def test_a_retry_waits_for_its_time_and_the_later_hold_wins():
    a = fact("a")
    retry = event(a, Status.UNKNOWN, retry_at=500.0)
    assert held_until(holds(), a, retry) == 500 * S
    assert held_until(holds(writing={"a"}), a, retry) == max(500 * S, a.mtime_ns + WRITER_STALL_NS)


def test_done_waits_for_the_companion_and_its_wait_age():
    a = fact("a")
    there = fact("a.done", 300.0)
    assert held_until(holds(companion=lambda name: None, wait_ns=10 * S), a, None) == FOREVER_NS
    assert held_until(holds(companion=lambda name: there, wait_ns=10 * S), a, None) == 310 * S


def test_the_companion_name_of_done():
    opts, problems = options.parse(["done={name}.done"])
    assert not problems
    assert companion_name(opts, "a.dat", {"name": "a.dat"}) == ("a.dat.done", None)
    assert companion_name(opts, "a.dat", None)[1] is not None
    opts, _ = options.parse(["done={name}"])
    assert companion_name(opts, "a", {"name": "a"}) == (None, "done={name} names 'a', not another file here")
    opts, _ = options.parse(["done={nope}.ok"])
    assert companion_name(opts, "a", {"name": "a"}) == (None, "done={nope}.ok does not fit its fields")
    assert companion_name(options.parse([])[0], "a", {}) == (None, None)


def test_a_file_of_the_drain_is_still_to_run_until_it_is_handled():
    a = fact("a")
    v = a.version
    assert in_drain(a, v, None, 0)
    assert not in_drain(None, v, None, 0), "gone"
    assert not in_drain(fact("a", size=2), v, None, 0), "another version"
    assert not in_drain(a, v, event(a), 0), "handled"
    assert in_drain(a, v, event(a, Status.KNOWN, error="x", exit=None), 0) is False
    assert in_drain(a, v, event(a, Status.UNKNOWN, retry_at=5.0), 5 * S), "its retry is due"
    assert not in_drain(a, v, event(a, Status.UNKNOWN, retry_at=5.0), 4 * S), "its retry is for a later drain"


@given(
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_a_hold_never_ends_before_any_of_its_reasons(writing, drained, retry_s, companion_s):
    a = fact("a")
    h = holds(
        writing={"a"} if writing else set(),
        drain={} if drained else None,
        companion=None if companion_s is None else (lambda name: fact("a.ok", companion_s)),
        wait_ns=S,
    )
    e = event(a, Status.UNKNOWN, retry_at=float(retry_s)) if retry_s is not None else None
    until = held_until(h, a, e)
    if drained:
        assert until == FOREVER_NS
        return
    if writing:
        assert until is not None and until >= a.mtime_ns + WRITER_STALL_NS
    if retry_s is not None:
        assert until is not None and until >= retry_s * S
    if companion_s is not None:
        assert until is not None and until >= companion_s * S + S
    if not writing and retry_s is None and companion_s is None:
        assert until is None


def test_the_first_listing_orders_as_file_by_file_does():
    # Candidates.replace_all takes a first listing at once (issue 21: it
    # keeps the first sighting only of a file with its mtime in the future);
    # the order and the ages are those of the same files taken one by one.
    now = 1_000 * 10**9
    facts = [
        FileFact(now - 50 * 10**9, "old", now - 50 * 10**9, 1, 1),
        FileFact(now + 3 * 10**9, "soon", now, 1, 2),  # within FUTURE_S: its mtime counts
        FileFact(now + 60 * 10**9, "later", now, 1, 3),  # beyond: counts from now
        FileFact(now - 1, "new", now - 1, 1, 4),
    ]
    at_once, one_by_one = Candidates(), Candidates()
    at_once.replace_all(facts, now)
    for fact in facts:
        one_by_one.update(fact, now)
    for cands in (at_once, one_by_one):
        assert [cands.order_ns(f) for f in facts] == [now - 50 * 10**9, now + 3 * 10**9, now, now - 1]
    # Seen again later, same versions: nothing changes, the order stands.
    for cands in (at_once, one_by_one):
        assert cands.replace_all(facts, now + 30 * 10**9) == ([], [])
        taken, _ = cands.take(4, now + 30 * 10**9, 0, lambda f: False)
        assert [f.name for f in taken] == ["old", "new", "later", "soon"]


def _reference_take(cands, n, now_ns, wait_ns, consumed, held):
    """What Candidates.take gives, by a plain sort of the current facts
    (the heap and its fast paths must agree with it)."""
    taken, due = [], None
    for f in sorted(cands.facts.values(), key=lambda f: (cands.order_ns(f), f.name)):
        if len(taken) >= n:
            break
        if consumed(f):
            continue
        ready = cands.order_ns(f) + wait_ns
        if ready > now_ns:
            due = ready if due is None else min(due, ready)
            break
        until = held(f)
        if until is None or until <= now_ns:
            taken.append(f)
        elif until < FOREVER_NS:
            due = until if due is None else min(due, until)
    return taken, due


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["update", "remove", "requeue", "take", "consume"]),
        st.integers(0, 7),  # the file
        st.integers(-20, 80),  # its mtime (s), or how many to take
    ),
    max_size=40,
)


@given(_OPS, st.integers(0, 3), st.sets(st.integers(0, 7)), st.sets(st.integers(0, 7)))
def test_take_and_oldest_agree_with_a_plain_sort(ops, wait_s, held_names, forever_names):
    # Issue 21: take leaves the last file it gives in the heap (no pop and
    # push back), and `oldest` orders by mtime while no file is ahead of
    # its first sighting; both must give what a fresh sort gives, whatever
    # came before (updates, removals, requeues, files consumed).
    now = 100 * S
    cands, consumed = Candidates(), set()

    def is_consumed(f):
        return f.name in consumed

    def held(f):
        if f.name in forever_names:
            return FOREVER_NS
        return now + 5 * S if f.name in held_names else None

    for op, i, value in ops:
        name = f"f{i}"
        if op == "update":
            # A new or changed fact is a new version, not consumed; the same
            # one again changes nothing (a consumed file stays out of line).
            if cands.update(FileFact(now + value * S, name, now, 1 + i, 10 + i), now + (value % 3) * S):
                consumed.discard(name)
        elif op == "remove":
            cands.remove(name)
        elif op == "requeue":
            consumed.discard(name)
            cands.requeue(name)
        elif op == "consume":
            consumed.add(name)
        else:
            n = 1 + value % 4
            expected = _reference_take(cands, n, now, wait_s * S, is_consumed, held)
            assert cands.take(n, now, wait_s * S, is_consumed, held) == expected
        facts = list(cands.facts.values())
        assert cands.oldest(3, facts) == heapq.nsmallest(3, facts, key=cands.order_ns)
    expected = _reference_take(cands, 8, now, wait_s * S, is_consumed, held)
    assert cands.take(8, now, wait_s * S, is_consumed, held) == expected


def test_the_first_listing_leaves_the_files_done_out_of_line_as_take_drops_them():
    # Issue 21: the files a first listing finds handled already (exit 0,
    # this version) are known but never put in line: the first plan does
    # not step over them; `take` gives what it gives when it drops them.
    now = 1_000 * 10**9
    facts = [FileFact(now - i * 10**9, name, now - i * 10**9, 1, i) for i, name in enumerate("abcdef", 1)]
    done = {"c", "e", "f"}
    left_out, dropped = Candidates(), Candidates()
    changed, gone = left_out.replace_all(facts, now, done)
    assert (list(changed), gone) == (facts, [])
    dropped.replace_all(facts, now)
    assert left_out.facts == dropped.facts
    for wait_s in (0, 3):
        taken = [cands.take(6, now, wait_s * 10**9, lambda f: f.name in done) for cands in (left_out, dropped)]
        assert taken[0] == taken[1]
    assert [f.name for f in left_out.take(6, now, 0, lambda f: False)[0]] == ["d", "b", "a"]
    left_out.requeue("f")  # a retry of a file done: back in line
    assert [f.name for f in left_out.take(6, now, 0, lambda f: False)[0]] == ["f", "d", "b", "a"]


@given(st.lists(st.tuples(st.integers(-20, 80), st.booleans()), max_size=12), st.integers(0, 3))
def test_a_first_listing_lines_up_as_files_taken_one_by_one(files, wait_s):
    # Issue 21: the first listing heapifies the facts themselves, and puts
    # the files ahead of their first sighting (mtime more than FUTURE_S in
    # the future) in a line of their own; the files done are left out.
    # `take` must give what it gives for the same files updated one by one
    # (the general path), the done ones dropped as consumed.
    now = 100 * S
    facts = [FileFact(now + value * S, f"f{i}", now, 1, 10 + i) for i, (value, _) in enumerate(files)]
    done = {f.name for f, (_, is_done) in zip(facts, files, strict=True) if is_done}
    at_once, one_by_one = Candidates(), Candidates()
    at_once.replace_all(facts, now, done)
    for fact in facts:
        one_by_one.update(fact, now)
    for later in (now, now + 30 * S, now + 90 * S):
        for n in (1, 3, 12):
            expected = one_by_one.take(n, later, wait_s * S, lambda f: f.name in done)
            assert at_once.take(n, later, wait_s * S, lambda f: False) == expected
