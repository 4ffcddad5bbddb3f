# SPDX-License-Identifier: MIT
"""Unit tests of the candidate heap (decide.readiness.Candidates) and the spool directory (spool.directory)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from waitd.config.table import matcher
from waitd.decide.facts import FileFact
from waitd.decide.readiness import FUTURE_S, Candidates
from waitd.spool.directory import Skip, Spool

S = 1_000_000_000
NOW = 1_000_000 * S


def next_(c, now_ns, wait_ns, consumed, held=lambda f: None):
    """The oldest ready candidate and None, or None and when one will be."""
    facts, due = c.take(1, now_ns, wait_ns, consumed, held)
    return (facts[0], None) if facts else (None, due)


def ready_(c, now_ns, wait_ns, consumed):
    """Every candidate ready now, oldest first."""
    return c.take(len(c), now_ns, wait_ns, consumed)[0]


def fact(name: str, mtime_s: float, *, size: int = 1, ino: int | None = None, ctime_s: float | None = None) -> FileFact:
    ino = abs(hash(name)) % 100_000 if ino is None else ino
    mtime_ns = int(mtime_s * S)
    ctime_ns = mtime_ns if ctime_s is None else int(ctime_s * S)
    return FileFact(mtime_ns, name, ctime_ns, size, ino)


def never(_: FileFact) -> bool:
    return False


def consumed_names(*names: str) -> Callable[[FileFact], bool]:
    return lambda f: f.name in names


# -- FileFact --------------------------------------------------------------------------


def test_fact_version_and_spool_time() -> None:
    f = FileFact(10 * S, "a", 50 * S, 3, 7, 8)
    assert (f.version.mtime_ns, f.version.size, f.version.ino) == (10 * S, 3, 7)
    assert f.spool_ns == 50 * S
    assert FileFact(60 * S, "a", 50 * S, 3, 7).spool_ns == 60 * S


# -- Candidates ------------------------------------------------------------------------------


def test_empty() -> None:
    c = Candidates()
    assert len(c) == 0
    assert next_(c, NOW, 0, never) == (None, None)
    assert ready_(c, NOW, 0, never) == []


def test_update_says_whether_new_or_changed() -> None:
    c = Candidates()
    a = fact("a", 100)
    assert c.update(a, NOW) is True
    assert c.update(fact("a", 100), NOW) is False
    assert c.update(fact("a", 100, size=2), NOW) is True
    assert len(c) == 1 and c.facts["a"].size == 2


def test_next_returns_oldest_ready_by_mtime_then_name() -> None:
    c = Candidates()
    for each in (fact("c", 300), fact("b", 200), fact("a", 200), fact("d", 100.5)):
        c.update(each, NOW)
    order: list[str] = []
    consumed: set[str] = set()
    while True:
        f, due = next_(c, NOW, 10 * S, lambda x: x.name in consumed)
        if f is None:
            assert due is None
            break
        order.append(f.name)
        consumed.add(f.name)
    assert order == ["d", "a", "b", "c"]


def test_next_gives_due_time_of_the_oldest() -> None:
    c = Candidates()
    c.update(fact("young", NOW / S - 5), NOW)
    c.update(fact("older", NOW / S - 8), NOW)
    assert next_(c, NOW, 10 * S, never) == (None, NOW + 2 * S)
    assert next_(c, NOW + 2 * S, 10 * S, never) == (c.facts["older"], None)
    assert next_(c, NOW + 2 * S, 10 * S, consumed_names("older")) == (None, NOW + 5 * S)
    assert next_(c, NOW + 5 * S, 10 * S, consumed_names("older")) == (c.facts["young"], None)


def test_next_exactly_at_wait_age_is_ready() -> None:
    c = Candidates()
    c.update(fact("a", 100), NOW)
    assert next_(c, 100 * S + 30 * S, 30 * S, never)[0] is c.facts["a"]
    assert next_(c, 100 * S + 30 * S - 1, 30 * S, never) == (None, 130 * S)


def test_update_moves_a_file_that_is_written_again() -> None:
    c = Candidates()
    c.update(fact("a", 100), NOW)
    c.update(fact("b", 200), NOW)
    c.update(fact("a", 300, size=5), NOW)  # a is still being written
    f, _ = next_(c, NOW, 0, never)
    assert f is not None and f.name == "b"
    f, _ = next_(c, NOW, 0, consumed_names("b"))
    assert f == fact("a", 300, size=5)


def test_update_with_same_mtime_and_new_ctime() -> None:
    # chmod, a hard link or a rewrite within one timestamp tick: same
    # order time and name, another fact.  Must not compare FileFacts.
    c = Candidates()
    c.update(fact("a", 100), NOW)
    assert c.update(fact("a", 100, ctime_s=101), NOW) is True
    assert c.update(fact("a", 100, ctime_s=101, size=9), NOW) is True
    f, _ = next_(c, NOW, 0, never)
    assert f == fact("a", 100, ctime_s=101, size=9)


def test_remove_then_add_again_same_name() -> None:
    c = Candidates()
    c.update(fact("a", 100), NOW)
    assert c.remove("a") == fact("a", 100)
    assert c.remove("a") is None
    assert next_(c, NOW, 0, never) == (None, None)
    c.update(fact("a", 100, size=2), NOW)
    assert next_(c, NOW, 0, never)[0] == fact("a", 100, size=2)


def test_removed_entry_is_dropped_lazily() -> None:
    c = Candidates()
    c.update(fact("a", 100), NOW)
    c.update(fact("b", 200), NOW)
    c.remove("a")
    assert next_(c, NOW, 0, never)[0] == fact("b", 200)
    assert next_(c, 1000 * S, 1000 * S, never) == (None, 1200 * S)


def test_replace_all_reports_changed_and_gone() -> None:
    c = Candidates()
    a, b = fact("a", 100), fact("b", 200)
    changed, gone = c.replace_all([a, b], NOW)
    assert (sorted(f.name for f in changed), gone) == (["a", "b"], [])
    b2, d = fact("b", 250, size=3), fact("d", 50)
    changed, gone = c.replace_all([b2, d], NOW)
    assert (sorted(f.name for f in changed), gone) == (["b", "d"], ["a"])
    assert set(c.facts) == {"b", "d"}
    names: list[str] = []
    while (f := next_(c, NOW, 0, consumed_names(*names))[0]) is not None:
        names.append(f.name)
    assert names == ["d", "b"]
    assert c.replace_all([], NOW) == ([], ["b", "d"])
    assert next_(c, NOW, 0, never) == (None, None)


def test_links_names_the_symlinks_known() -> None:
    """What a listing under a watch stats again (`decide.watching`)."""
    c = Candidates()
    link = FileFact(100 * S, "l", 100 * S, 1, 7, 8)
    c.replace_all([fact("a", 100), link], NOW)
    assert c.links == {"l"}
    c.update(fact("l", 200), NOW)  # replaced by a plain file
    c.update(link._replace(name="m"), NOW)
    assert c.links == {"m"}
    c.remove("m")
    assert not c.links


def test_replace_all_rebuilds_a_heap_full_of_stale_entries() -> None:
    c = Candidates()
    for i in range(200):
        c.replace_all([fact("a", 100 + i), fact("b", 50)], NOW)
    assert len(c._heap) <= 2 * len(c.facts) + 64
    assert next_(c, NOW, 0, never)[0] == fact("b", 50)
    assert next_(c, NOW, 0, consumed_names("b"))[0] == fact("a", 299)


def test_consumed_files_are_skipped() -> None:
    c = Candidates()
    for f in (fact("a", 1), fact("b", 2), fact("c", 3)):
        c.update(f, NOW)
    assert next_(c, NOW, 0, consumed_names("a", "b"))[0] == fact("c", 3)
    assert ready_(c, NOW, 0, consumed_names("a", "b")) == [fact("c", 3)]
    assert next_(c, NOW, 0, consumed_names("a", "b", "c")) == (None, None)


def test_future_mtime_ages_from_first_seen() -> None:
    c = Candidates()
    future = fact("f", NOW / S + 3600)
    c.update(future, NOW)
    assert c.order_ns(future) == NOW
    assert next_(c, NOW, 10 * S, never) == (None, NOW + 10 * S)
    assert next_(c, NOW + 10 * S, 10 * S, never) == (future, None)
    # Seen again later, unchanged: still aged from the first sight.
    assert c.update(future, NOW + 60 * S) is False
    assert c.order_ns(future) == NOW


def test_slightly_future_mtime_is_trusted() -> None:
    c = Candidates()
    near = fact("n", NOW / S + FUTURE_S)
    c.update(near, NOW)
    assert c.order_ns(near) == near.mtime_ns
    assert next_(c, NOW, 10 * S, never) == (None, near.mtime_ns + 10 * S)


def test_future_file_rewritten_is_seen_anew() -> None:
    c = Candidates()
    c.update(fact("f", NOW / S + 3600), NOW)
    again = fact("f", NOW / S + 3700, size=2)
    c.update(again, NOW + 100 * S)
    assert c.order_ns(again) == NOW + 100 * S


def test_future_file_orders_among_others_by_first_seen() -> None:
    c = Candidates()
    c.update(fact("old", NOW / S - 100), NOW)
    c.update(fact("future", NOW / S + 10_000), NOW - 50 * S)
    c.update(fact("recent", NOW / S - 10), NOW)
    got: list[str] = []
    while (f := next_(c, NOW, 0, consumed_names(*got))[0]) is not None:
        got.append(f.name)
    assert got == ["old", "future", "recent"]


def test_ready_lists_every_ready_candidate_oldest_first() -> None:
    c = Candidates()
    for f in (fact("c", 30), fact("a", 20), fact("b", 20), fact("young", NOW / S - 1)):
        c.update(f, NOW)
    assert [f.name for f in ready_(c, NOW, 10 * S, never)] == ["a", "b", "c"]
    assert [f.name for f in ready_(c, NOW, 0, never)] == ["a", "b", "c", "young"]
    assert [f.name for f in ready_(c, NOW, 10 * S, consumed_names("b"))] == ["a", "c"]
    # A consumed file leaves the heap for good, until it is queued again
    # (a retry is due, say).
    assert [f.name for f in ready_(c, NOW, 0, never)] == ["a", "c", "young"]
    c.requeue("b")
    assert [f.name for f in ready_(c, NOW, 0, never)] == ["a", "b", "c", "young"]


# -- hypothesis: next is the minimum -------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
_FACTS = st.builds(
    lambda name, mtime, size, ctime: FileFact(mtime * S, name, (mtime + ctime) * S, size, 1),
    _NAMES,
    st.integers(0, 20),
    st.integers(0, 2),
    st.integers(0, 2),
)
_OPS = st.one_of(
    st.tuples(st.just("update"), _FACTS),
    st.tuples(st.just("remove"), _NAMES),
    st.tuples(st.just("replace_all"), st.lists(_FACTS, max_size=6)),
)


@settings(max_examples=examples(200), deadline=None)
@given(
    ops=st.lists(_OPS, max_size=25),
    consumed=st.sets(_NAMES),
    now_s=st.integers(0, 40),
    wait_s=st.integers(0, 20),
)
def test_next_is_the_minimum_over_not_consumed(
    ops: list[tuple[str, object]], consumed: set[str], now_s: int, wait_s: int
) -> None:
    c = Candidates()
    model: dict[str, FileFact] = {}
    for op, arg in ops:
        if op == "update":
            assert isinstance(arg, FileFact)
            c.update(arg, 50 * S)
            model[arg.name] = arg
        elif op == "remove":
            assert isinstance(arg, str)
            c.remove(arg)
            model.pop(arg, None)
        else:
            assert isinstance(arg, list)
            c.replace_all(arg, 50 * S)
            model = {f.name: f for f in arg}
    assert c.facts == model
    is_consumed = consumed_names(*consumed)
    left = sorted((f.mtime_ns, f.name) for f in model.values() if f.name not in consumed)
    got = next_(c, now_s * S, wait_s * S, is_consumed)
    if not left:
        assert got == (None, None)
    elif left[0][0] + wait_s * S <= now_s * S:
        assert got == (model[left[0][1]], None)
    else:
        assert got == (None, left[0][0] + wait_s * S)
    ready = [model[n] for m, n in left if m + wait_s * S <= now_s * S]
    assert ready_(c, now_s * S, wait_s * S, is_consumed) == ready
    # Draining by next, consuming each file handed out, gives the same order.
    drained: list[FileFact] = []
    while (f := next_(c, now_s * S, wait_s * S, consumed_names(*consumed, *(d.name for d in drained))))[0]:
        drained.append(f[0])
    assert drained == ready


# -- Spool ------------------------------------------------------------------------------------


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    d.chmod(0o755)
    return d


def _open(d: Path) -> Spool:
    return Spool(str(d))


def test_regular_file(spool_dir: Path) -> None:
    (spool_dir / "a.dat").write_bytes(b"hello")
    os.utime(spool_dir / "a.dat", ns=(5 * S, 7 * S))
    sp = _open(spool_dir)
    try:
        f = sp.stat("a.dat")
        st_ = os.lstat(spool_dir / "a.dat")
        assert f == FileFact(7 * S, "a.dat", st_.st_ctime_ns, 5, st_.st_ino)
        assert f.spool_ns == st_.st_ctime_ns
    finally:
        sp.close()
    sp.close()  # twice is harmless


def test_fifo_and_directory_are_skipped(spool_dir: Path) -> None:
    os.mkfifo(spool_dir / "pipe")
    (spool_dir / "sub").mkdir()
    sp = _open(spool_dir)
    try:
        with pytest.raises(Skip, match="not a regular file"):
            sp.stat("pipe")
        with pytest.raises(Skip, match="not a regular file"):
            sp.stat("sub")
    finally:
        sp.close()


def test_missing_name(spool_dir: Path) -> None:
    sp = _open(spool_dir)
    try:
        with pytest.raises(FileNotFoundError):
            sp.stat("nope")
    finally:
        sp.close()


def test_symlink_to_regular_file_counts_in_a_private_dir(spool_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"123")
    os.utime(target, ns=(9 * S, 9 * S))
    os.symlink(target, spool_dir / "link")
    sp = _open(spool_dir)
    try:
        assert sp.identity.shared is False
        f = sp.stat("link")
    finally:
        sp.close()
    t, link = os.stat(target), os.lstat(spool_dir / "link")
    assert f.is_link
    assert (f.mtime_ns, f.size, f.ino, f.entry_ino) == (9 * S, 3, t.st_ino, link.st_ino)
    assert f.ctime_ns == max(t.st_ctime_ns, link.st_ctime_ns)


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777, 0o770])
def test_symlink_skipped_in_a_shared_dir(spool_dir: Path, tmp_path: Path, mode: int) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"123")
    os.symlink(target, spool_dir / "link")
    (spool_dir / "plain").write_bytes(b"x")
    spool_dir.chmod(mode)
    sp = _open(spool_dir)
    try:
        assert sp.identity.shared is True
        with pytest.raises(Skip, match="writable by group or others"):
            sp.stat("link")
        assert sp.stat("plain").size == 1
    finally:
        sp.close()


def test_dangling_symlink_skipped(spool_dir: Path) -> None:
    os.symlink(spool_dir / "nowhere", spool_dir / "dangling")
    sp = _open(spool_dir)
    try:
        with pytest.raises(Skip, match="dangling symlink"):
            sp.stat("dangling")
    finally:
        sp.close()


def test_symlink_to_a_directory_or_fifo_skipped(spool_dir: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path, spool_dir / "dirlink")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fifo", spool_dir / "fifolink")
    sp = _open(spool_dir)
    try:
        for name in ("dirlink", "fifolink"):
            with pytest.raises(Skip, match="not a regular file"):
                sp.stat(name)
    finally:
        sp.close()


def test_names_with_a_matcher(spool_dir: Path) -> None:
    for name in ("a.dat", "b.dat", ".a.dat.tmp", "c.txt", "line\nbreak.dat"):
        (spool_dir / name).write_bytes(b"")
    (spool_dir / "sub.dat").mkdir()
    raw = os.fsencode(spool_dir) + b"/\xff.dat"
    with open(raw, "wb"):
        pass
    sp = _open(spool_dir)
    try:
        assert sorted(sp.names(matcher("*.dat"))) == sorted(
            ["a.dat", "b.dat", "line\nbreak.dat", "sub.dat", "\udcff.dat"]
        )
        assert sp.names(matcher(".*.tmp")) == [".a.dat.tmp"]
        # A listing after the first asks only the names it does not know: the same names.
        assert sorted(sp.names(matcher("*.dat"), {"a.dat", "c.txt"})) == sorted(sp.names(matcher("*.dat")) + ["c.txt"])
        assert sp.names(matcher("nothing")) == []
        assert sp.stat("\udcff.dat").size == 0
    finally:
        sp.close()


def test_names_stay_in_the_opened_directory(spool_dir: Path, tmp_path: Path) -> None:
    # The descriptor follows the directory it opened, not the path.
    (spool_dir / "a").write_bytes(b"")
    sp = _open(spool_dir)
    try:
        assert sp.replaced() is False
        moved = tmp_path / "moved"
        spool_dir.rename(moved)
        assert sp.replaced() is None
        spool_dir.mkdir()
        (spool_dir / "b").write_bytes(b"")
        assert sp.replaced() is True
        assert sp.names(matcher("*")) == ["a"]
        assert sp.mtime_ns() == os.stat(moved).st_mtime_ns
    finally:
        sp.close()


def test_identity_of_private_dir(spool_dir: Path) -> None:
    sp = _open(spool_dir)
    try:
        st_ = os.stat(spool_dir)
        assert (sp.identity.dev, sp.identity.ino, sp.identity.shared) == (st_.st_dev, st_.st_ino, False)
        assert stat.S_ISDIR(os.fstat(sp.fd).st_mode)
    finally:
        sp.close()
