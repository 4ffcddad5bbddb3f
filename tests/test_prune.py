# SPDX-License-Identifier: MIT
"""Unit tests of the removal rules (decide.removal) and the safe removal (spool.unlink)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waitd.decide import removal as prune
from waitd.decide.facts import FileFact
from waitd.formats.history_line import Event, Status
from waitd.spool import unlink
from waitd.spool.directory import Spool
from waitd.spool.unlink import Outcome, Removal

S = 1_000_000_000
H = 3600 * S
NOW = 1_000_000 * S


def fact(name: str, mtime_ns: int, ctime_ns: int | None = None) -> FileFact:
    return FileFact(mtime_ns, name, mtime_ns if ctime_ns is None else ctime_ns, 1, 1)


# -- expired ------------------------------------------------------------------------------


def test_expired_by_hours() -> None:
    old, young = fact("old", NOW - 25 * H), fact("young", NOW - 23 * H)
    assert prune.expired([old, young], NOW, 24) == [old]
    assert prune.expired([old, young], NOW, 22.5) == [old, young]


def test_expired_at_exactly_the_limit() -> None:
    edge = fact("edge", NOW - 2 * H)
    assert prune.expired([edge], NOW, 2) == [edge]
    assert prune.expired([edge], NOW - 1, 2) == []


def test_expired_zero_never_removes() -> None:
    ancient = fact("ancient", 0)
    assert prune.expired([ancient], NOW, 0) == []


def test_expired_fractional_hours() -> None:
    f = fact("f", NOW - 30 * 60 * S)
    assert prune.expired([f], NOW, 0.5) == [f]
    assert prune.expired([f], NOW, 0.51) == []


def test_expired_counts_from_arrival_not_an_old_mtime() -> None:
    # rsync -t: an old mtime, but it arrived (ctime) a minute ago.
    copied = fact("copied", NOW - 1000 * H, NOW - 60 * S)
    assert prune.expired([copied], NOW, 24) == []
    # Arrived 25 h ago: expired, however old its mtime.
    arrived = fact("arrived", NOW - 30 * H, NOW - 25 * H)
    assert prune.expired([arrived], NOW, 24) == [arrived]
    # Written (mtime) after it arrived: counts from the mtime.
    assert prune.expired([fact("w", NOW - 23 * H, NOW - 25 * H)], NOW, 24) == []


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=10),
    st.floats(0, 100, allow_nan=False),
)
def test_expired_is_spool_time_past_the_limit(times: list[tuple[int, int]], hours: float) -> None:
    facts = [fact(f"f{i}", NOW - m * H, NOW - c * H) for i, (m, c) in enumerate(times)]
    got = prune.expired(facts, NOW, hours)
    if hours == 0:
        assert got == []
    else:
        assert got == [f for f in facts if NOW - max(f.mtime_ns, f.ctime_ns) >= int(hours * H)]


# -- over_keep -------------------------------------------------------------------------------


def _done(*pairs: tuple[str, int]) -> list[FileFact]:
    return [fact(name, t * S) for name, t in pairs]


def test_over_keep_keeps_the_newest() -> None:
    done = _done(("a", 1), ("b", 3), ("c", 2), ("d", 4))
    assert sorted(f.name for f in prune.over_keep(done, 2)) == ["a", "c"]
    assert [f.name for f in prune.over_keep(done, 1)] == ["b", "c", "a"]


def test_over_keep_ties_by_name() -> None:
    done = _done(("b", 5), ("a", 5), ("c", 5))
    # Newest first by (mtime, name): c, b, a; keep 1 keeps c.
    assert [f.name for f in prune.over_keep(done, 1)] == ["b", "a"]


def test_over_keep_minus_one_keeps_all() -> None:
    assert prune.over_keep(_done(("a", 1), ("b", 2)), -1) == []


def test_over_keep_zero_removes_all() -> None:
    assert sorted(f.name for f in prune.over_keep(_done(("a", 1), ("b", 2)), 0)) == ["a", "b"]


def test_over_keep_fewer_than_keep() -> None:
    assert prune.over_keep(_done(("a", 1)), 5) == []
    assert prune.over_keep([], 0) == []


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 5), max_size=10), st.integers(-1, 12))
def test_over_keep_property(times: dict[str, int], keep: int) -> None:
    done = [fact(n, t * S) for n, t in times.items()]
    removed = prune.over_keep(done, keep)
    if keep < 0:
        assert removed == []
        return
    assert len(removed) == max(0, len(done) - keep)
    kept = [f for f in done if f not in removed]
    # Every kept file is newer, by (mtime, name), than every removed one.
    for k in kept:
        for r in removed:
            assert (k.mtime_ns, k.name) > (r.mtime_ns, r.name)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.text("abcd", min_size=1, max_size=2), st.integers(0, 5), st.booleans()), max_size=30),
    st.integers(0, 12),
)
def test_done_order_gives_what_over_keep_does(steps: list[tuple[str, int, bool]], keep: int) -> None:
    """DoneOrder (keep-after without a sort of every kept file), after any
    run of files done (again, in another version) and forgotten, names the
    same files in the same order as over_keep."""
    order = prune.DoneOrder()
    done: dict[str, FileFact] = {}
    for name, t, forget in steps:
        if forget:
            done.pop(name, None)
            continue
        done[name] = fact(name, t * S)
        order.push(done[name])
    over = max(0, len(done) - keep)
    assert order.oldest(over, done)[::-1] == prune.over_keep(done.values(), keep)
    assert prune.beyond_keep(
        done.values(), keep, lambda n: False, lambda f: True, oldest=lambda k: order.oldest(k, done)
    ) == (prune.over_keep(done.values(), keep))


def test_done_order_drops_what_is_no_longer_done() -> None:
    order = prune.DoneOrder()
    done = {f.name: f for f in _done(("a", 1), ("b", 2), ("c", 3))}
    for f in done.values():
        order.push(f)
    del done["a"]
    done["b"] = fact("b", 9 * S)  # done again, another version
    order.push(done["b"])
    assert [f.name for f in order.oldest(2, done)] == ["c", "b"]
    assert len(order._heap) == 2  # "a" and the old "b" are gone from it


def test_expiries_step_over_busy_files_and_say_whether_they_ran() -> None:
    old, busy, young = fact("old", NOW - 3 * H), fact("busy", NOW - 3 * H), fact("young", NOW)
    found = prune.expiries([old, busy, young], NOW, 2, lambda name: name == "busy", lambda f: False)
    assert [(e.fact.name, round(e.hours, 3), e.handled) for e in found] == [("old", 3.0, False)]


def test_beyond_keep_counts_groups_and_waits_for_runs_and_other_records() -> None:
    files = [fact(f"{g}{i}", NOW + t) for g, t in (("a", 1), ("b", 2), ("c", 3)) for i in range(2)]

    def group_of(f: FileFact) -> str | None:
        return f.name[0]

    assert prune.beyond_keep(files, 1, lambda n: False, lambda f: True, group_of) == files[:4]
    assert prune.beyond_keep(files, 3, lambda n: False, lambda f: True, group_of) == []
    assert [f.name for f in prune.beyond_keep(files, 4, lambda n: False, lambda f: True)] == ["a1", "a0"]
    assert prune.beyond_keep(files, 6, lambda n: False, lambda f: True) == []
    assert prune.beyond_keep(files, -1, lambda n: False, lambda f: True) == []
    kept = prune.beyond_keep(files, 1, lambda n: n == "a0", lambda f: f.name != "b1", group_of)
    assert [f.name for f in kept] == ["a1", "b0"], "a busy file, and one another record is not done with, wait"


def test_a_queue_keeps_what_is_not_the_records_and_tmp_36_hours_at_least() -> None:
    entries = [
        prune.Entry(fact("x.dat", NOW - 3 * H), True),
        prune.Entry(fact("README", NOW - 3 * H), True),
        prune.Entry(fact("sub", NOW - 3 * H), False),
        prune.Entry(fact("y.dat", NOW - H), True),
    ]
    found = prune.stale(entries, NOW, 2, lambda name: name.endswith(".dat"))
    assert [e.fact.name for e in found] == ["x.dat"]
    assert prune.stale(entries, NOW, 0, lambda name: True) == []
    assert prune.tmp_hours(2) == prune.TMP_KEPT_H and prune.tmp_hours(48) == 48 and prune.tmp_hours(0) == 0


# -- remove ---------------------------------------------------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[tuple[Path, Spool]]:
    d = tmp_path / "in"
    d.mkdir()
    sp = Spool(str(d))
    yield d, sp
    sp.close()


def test_remove_regular_file(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    (d / "a").write_bytes(b"x")
    f = sp.stat("a")
    assert unlink.remove(sp.fd, f) == Removal(Outcome.REMOVED)
    assert not (d / "a").exists()


def test_remove_odd_name(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    name = os.fsdecode(b"a b\n\xff")
    with open(os.path.join(os.fsencode(d), os.fsencode(name)), "wb"):
        pass
    assert unlink.remove(sp.fd, sp.stat(name)) == Removal(Outcome.REMOVED)
    assert os.listdir(d) == []


def test_remove_symlink_not_its_target(spool: tuple[Path, Spool], tmp_path: Path) -> None:
    d, sp = spool
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    os.symlink(target, d / "link")
    f = sp.stat("link")
    assert f.is_link
    assert unlink.remove(sp.fd, f) == Removal(Outcome.REMOVED)
    assert not os.path.lexists(d / "link")
    assert target.read_bytes() == b"precious"


def test_remove_refuses_a_replaced_entry(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    (d / "a").write_bytes(b"old")
    f = sp.stat("a")
    (d / "a.new").write_bytes(b"new")
    os.rename(d / "a.new", d / "a")  # re-delivered under the same name
    assert unlink.remove(sp.fd, f) == Removal(Outcome.CHANGED, "replaced by another file since it was seen")
    assert (d / "a").read_bytes() == b"new"


def test_remove_refuses_a_symlink_swapped_for_another(spool: tuple[Path, Spool], tmp_path: Path) -> None:
    d, sp = spool
    (tmp_path / "t").write_bytes(b"t")
    os.symlink(tmp_path / "t", d / "link")
    f = sp.stat("link")
    os.symlink(tmp_path / "t", d / "link.new")  # a new link: another inode
    os.rename(d / "link.new", d / "link")
    assert unlink.remove(sp.fd, f) == Removal(Outcome.CHANGED, "replaced by another file since it was seen")
    assert os.path.islink(d / "link")


def test_remove_refuses_a_directory(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    (d / "sub").mkdir()
    (d / "sub" / "keep").write_bytes(b"")
    ino = os.lstat(d / "sub").st_ino
    f = FileFact(0, "sub", 0, 0, ino)
    assert unlink.remove(sp.fd, f) == Removal(Outcome.REFUSED, "no longer a regular file")
    assert (d / "sub" / "keep").exists()


def test_remove_a_directory_under_a_file_name(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    (d / "a").write_bytes(b"")
    f = sp.stat("a")
    os.unlink(d / "a")
    (d / "a").mkdir()
    assert unlink.remove(sp.fd, f).outcome is not Outcome.REMOVED
    assert (d / "a").is_dir()


def test_remove_refuses_a_fifo(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    os.mkfifo(d / "p")
    ino = os.lstat(d / "p").st_ino
    assert unlink.remove(sp.fd, FileFact(0, "p", 0, 0, ino)) == Removal(Outcome.REFUSED, "no longer a regular file")
    assert (d / "p").exists()


def test_remove_already_gone(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    (d / "a").write_bytes(b"")
    f = sp.stat("a")
    os.unlink(d / "a")
    assert unlink.remove(sp.fd, f) == Removal(Outcome.GONE)


def test_remove_works_through_the_descriptor(spool: tuple[Path, Spool], tmp_path: Path) -> None:
    # The directory is renamed away and another takes its path: removal
    # still acts on the directory that was opened, never on the new one.
    d, sp = spool
    (d / "a").write_bytes(b"")
    f = sp.stat("a")
    d.rename(tmp_path / "moved")
    d.mkdir()
    (d / "a").write_bytes(b"other")
    assert unlink.remove(sp.fd, f) == Removal(Outcome.REMOVED)
    assert not (tmp_path / "moved" / "a").exists()
    assert (d / "a").read_bytes() == b"other"


def test_remove_reports_permission_denied(spool: tuple[Path, Spool]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may unlink in a read-only directory")
    d, sp = spool
    (d / "a").write_bytes(b"")
    f = sp.stat("a")
    d.chmod(0o555)
    try:
        assert unlink.remove(sp.fd, f) == Removal(Outcome.REFUSED, "Permission denied")
    finally:
        d.chmod(0o755)


def test_remove_refuses_a_file_rewritten_in_place(spool: tuple[Path, Spool]) -> None:
    d, sp = spool
    (d / "a").write_bytes(b"one")
    f = sp.stat("a")
    with open(d / "a", "r+b") as out:  # same inode, new size and mtime
        out.write(b"second")
    removal = unlink.remove(sp.fd, f)
    assert removal.outcome is Outcome.CHANGED and "rewritten in place" in removal.reason
    assert (d / "a").read_bytes() == b"second"


def test_remove_refuses_a_link_whose_target_changed(spool: tuple[Path, Spool], tmp_path: Path) -> None:
    d, sp = spool
    target = tmp_path / "t"
    target.write_bytes(b"one")
    os.symlink(target, d / "link")
    f = sp.stat("link")
    target.write_bytes(b"second")
    assert unlink.remove(sp.fd, f).outcome is Outcome.CHANGED
    assert os.path.islink(d / "link")


def test_a_file_is_done_when_every_record_matching_it_handled_this_version_with_exit_0() -> None:
    f = fact("a", NOW)

    def end(exit: int, version_of: FileFact = f) -> Event:
        return Event("/in/a", "h", version_of.mtime_ns // S, Status.KNOWN, exit=exit, version=version_of.version)

    assert prune.done_by_all(f, [end(0), end(0)])
    assert prune.done_by_all(f, []), "no record matches it any more"
    assert not prune.done_by_all(f, [end(0), None]), "a record that never ran it (an inactive one too)"
    assert not prune.done_by_all(f, [end(0), end(3)])
    assert not prune.done_by_all(f, [end(0, fact("a", NOW - S))]), "another version"
