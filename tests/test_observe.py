# SPDX-License-Identifier: MIT
"""A listing under an inotify watch (issue 21): the new names are stat'ed
at once, the gone ones forgotten; the known ones are left to the watch's
reports, except where it may not see every change (a network filesystem,
a symlink): those are stat'ed again a slice a turn (`observe.restat_some`),
so that a poll of a big spool does not hold up the files that arrive
meanwhile; a listing without a watch stats all."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from waitd.config import table
from waitd.journal.history import History
from waitd.spool import observe, ready
from waitd.spool.directory import Spool
from waitd.spool.state import FileState

KNOWN = 600


@pytest.fixture
def spool(tmp_path: Path, monkeypatch):
    """A record's FileState on a directory of KNOWN files, listed once,
    and the names each stat_all is asked for from then on."""
    directory = tmp_path / "in"
    directory.mkdir()
    for i in range(KNOWN):
        (directory / f"f{i:04d}.dat").write_bytes(b"x")
    records, errors = table.parse(f"t {directory} *.dat /bin/true 1 -1 0\n", "incoming", str(tmp_path), os.environ)
    assert not errors
    st = FileState.of(records[0], table.matcher(records[0].template))
    history = History(str(tmp_path / "incoming.history"))
    history.load()
    assert observe.refresh(st, history, time.time_ns())
    assert len(st.cands.facts) == KNOWN and not st.restat
    asked: list[list[str]] = []
    real = Spool.stat_all

    def counting(self: Spool, names):
        names = list(names)
        asked.append(names)
        return real(self, names)

    monkeypatch.setattr(Spool, "stat_all", counting)
    return directory, st, history, asked


def _changes(directory: Path) -> None:
    """A new file, one gone, one rewritten in place (bigger), and a
    directory mtime old enough that the next listing is a real one."""
    (directory / "new.dat").write_bytes(b"x")
    (directory / "f0001.dat").unlink()
    (directory / "f0002.dat").write_bytes(b"longer")
    old = time.time() - 60
    os.utime(directory, (old, old))


def test_a_watched_listing_stats_only_the_new_names(spool) -> None:
    directory, st, history, asked = spool
    assert st.spool.sees_all  # a local filesystem: the watch reports every change
    _changes(directory)
    assert observe.refresh(st, history, time.time_ns(), restat=False)
    assert asked == [["new.dat"]]
    assert "new.dat" in st.cands.facts and "f0001.dat" not in st.cands.facts
    assert not st.restat  # f0002.dat's rewrite is the watch's to report (`touched`)


def test_a_watched_listing_stats_a_known_symlink_again(spool, tmp_path: Path) -> None:
    """A symlink's target changes where no watch of the spool sees it."""
    directory, st, history, asked = spool
    target = tmp_path / "target"
    target.write_bytes(b"x")
    (directory / "link.dat").symlink_to(target)
    old = time.time() - 60
    os.utime(directory, (old, old))
    observe.refresh(st, history, time.time_ns(), restat=False)
    assert st.cands.facts["link.dat"].size == 1
    target.write_bytes(b"longer")
    (directory / "new.dat").write_bytes(b"x")
    os.utime(directory, (old + 1, old + 1))
    observe.refresh(st, history, time.time_ns(), restat=False)
    assert st.restat == ["link.dat"]
    observe.restat_some(st, history, time.time_ns())
    assert st.cands.facts["link.dat"].size == 6


def test_on_a_network_filesystem_the_known_files_are_stat_ed_a_slice_a_turn(spool) -> None:
    directory, st, history, asked = spool
    st.spool.sees_all = False  # as on NFS: another host's rewrite reaches no watch
    _changes(directory)
    assert observe.refresh(st, history, time.time_ns(), restat=False)
    assert asked == [["new.dat"]]  # the listing itself stats only what it did not know
    assert st.cands.facts["f0002.dat"].size == 1  # not seen yet
    assert len(st.restat) == KNOWN - 1
    turns = 0
    while st.restat:
        observe.restat_some(st, history, time.time_ns())
        turns += 1
    assert turns == -(-(KNOWN - 1) // observe.RESTAT_SLICE)
    assert all(len(names) <= observe.RESTAT_SLICE for names in asked[1:])
    assert sorted(n for names in asked[1:] for n in names) == sorted(n for n in st.cands.facts if n != "new.dat")
    assert st.cands.facts["f0002.dat"].size == 6  # the ground truth, within a few turns


def test_a_file_gone_before_its_slice_is_forgotten(spool) -> None:
    directory, st, history, asked = spool
    st.spool.sees_all = False
    _changes(directory)
    observe.refresh(st, history, time.time_ns(), restat=False)
    (directory / "f0003.dat").unlink()
    while st.restat:
        observe.restat_some(st, history, time.time_ns())
    assert "f0003.dat" not in st.cands.facts and len(st.cands.facts) == KNOWN - 1


def test_without_a_watch_a_listing_stats_every_file(spool) -> None:
    directory, st, history, asked = spool
    _changes(directory)
    observe.refresh(st, history, time.time_ns(), restat=True)
    assert len(asked) == 1 and len(asked[0]) == KNOWN  # 599 known and the new one
    assert not st.restat and st.cands.facts["f0002.dat"].size == 6


def test_the_status_looks_only_at_the_files_not_done(spool) -> None:
    """`ready.files` (the status) skips the files handled with exit 0,
    this version, without a look at each (`ready.not_done`)."""
    directory, st, history, asked = spool
    first, *others = st.cands.facts.values()
    for fact in others:
        st.done[fact.name] = fact
    st.done["gone.dat"] = first._replace(name="gone.dat")  # handled, since removed
    assert list(ready.not_done(st)) == [first]
    assert ready.files(st, history, time.time_ns()).waiting == 1


def test_inotify_news_of_no_record_file_need_no_turn(spool) -> None:
    # Issue 21: a file arriving by rename is written first under a name no
    # template matches (.f.tmp); inotify wakes the loop for it.  Its news
    # are taken at once and, touching no file of a record, cost no turn
    # (`Observer.quiet`); the rename's do, and the file is known by then.
    from types import SimpleNamespace

    from waitd.daemon.turn import Observer
    from waitd.spool.watch import Watcher

    directory, st, history, _ = spool
    watcher = Watcher()
    assert watcher.watch(str(directory), (st.spool.identity.dev, st.spool.identity.ino))
    entry = SimpleNamespace(record=st.record, files=st)
    observer = Observer(SimpleNamespace(watcher=watcher, entries=[entry], history=history))
    try:
        (directory / ".new.tmp").write_bytes(b"x")
        assert observer.quiet(1.0)  # read, and nothing for a record
        assert not observer.notified and "new.dat" not in st.cands.facts
        (directory / ".new.tmp").rename(directory / "new.dat")
        assert not observer.quiet(0.0)  # something else is due: the turn reads it
        assert "new.dat" not in st.cands.facts
        assert not observer.quiet(1.0)  # a file of the record: a turn
        assert "new.dat" in st.cands.facts
    finally:
        watcher.close()


def test_a_first_listing_of_a_plain_record_takes_its_files_as_one_by_one(tmp_path: Path) -> None:
    # Issue 21: a first listing (100,000 files at start) asks the history
    # only of the files it knows and picks the mtimes in the future in one
    # pass; what it finds is what `_take_all` finds file by file.
    from waitd.journal.history import Event, Status, Version

    directory = tmp_path / "in"
    directory.mkdir()
    now = time.time()
    for name in ("done.dat", "rewritten.dat", "failed.dat", "new.dat", "future.dat", "done-future.dat"):
        (directory / name).write_bytes(b"x")
    for name in ("future.dat", "done-future.dat"):
        os.utime(directory / name, (now + 3600, now + 3600))
    history = History(str(tmp_path / "incoming.history"))
    history.load()

    def ran(name: str, exit: int, version: Version | None = None) -> None:
        st = os.stat(directory / name)
        version = version or Version(st.st_mtime_ns, st.st_size, st.st_ino)
        history.append(
            Event(f"{directory}/{name}", "/bin/true", int(st.st_mtime), Status.KNOWN, exit=exit, version=version)
        )

    ran("done.dat", 0)
    ran("done-future.dat", 0)
    ran("failed.dat", 1)
    ran("rewritten.dat", 0, Version(1, 1, 1))
    text = f"t {directory} *.dat /bin/true 1 -1 0\nu {directory} *.dat /bin/true 1 -1 0 pattern={{x}}.dat\n"
    records, errors = table.parse(text, "incoming", str(tmp_path), os.environ)
    assert not errors
    states = [FileState.of(records[0], table.matcher(records[0].template)) for _ in range(2)]
    for st in states:
        assert observe.open_dir(st) and st.spool is not None
    assert states[0].spool is not None
    facts, _ = states[0].spool.stat_all(sorted(os.listdir(directory)))
    now_ns = time.time_ns()
    assert observe._take_first(states[0], history, facts.values(), now_ns)
    observe._take_all(states[1], history, facts.values(), now_ns)
    assert sorted(states[0].done) == sorted(states[1].done) == ["done-future.dat", "done.dat"]
    assert states[0].noted == states[1].noted and sorted(states[0].noted) == ["done-future.dat", "future.dat"]
    # A record whose files ask more (pattern=): `_take_all` takes them.
    other = FileState.of(records[1], table.matcher(records[1].template))
    assert not observe._take_first(other, history, facts.values(), now_ns) and not other.done
    history.close()


def test_a_watched_listing_takes_what_a_full_one_does_asking_the_template_of_new_names_only(spool, monkeypatch) -> None:
    # Issue 21, round six: a listing under a watch compares the directory's
    # names with the known ones as sets; the template is asked only of the
    # names it did not know (a spool keeping 2,000 handled files is listed
    # every second).  What it takes is what a first, full listing takes.
    directory, st, history, asked = spool
    _changes(directory)
    (directory / ".new.tmp").write_bytes(b"x")  # no template's
    (directory / "sub.dat").mkdir()  # a template's, not a file: noted
    old = time.time() - 60
    os.utime(directory, (old, old))
    matched: list[str] = []
    real = st.match
    monkeypatch.setattr(st, "match", lambda name: matched.append(name) or real(name))
    assert observe.refresh(st, history, time.time_ns(), restat=False)
    assert set(matched) == {".new.tmp", "new.dat", "sub.dat"}  # none of the 599 known
    assert list(st.noted) == ["sub.dat"]
    fresh = FileState.of(st.record, table.matcher(st.record.template))
    assert observe.refresh(fresh, history, time.time_ns())
    f0002 = fresh.cands.facts["f0002.dat"]
    assert st.cands.facts.keys() == fresh.cands.facts.keys()
    assert {n: f for n, f in st.cands.facts.items() if n != "f0002.dat"} == {
        n: f for n, f in fresh.cands.facts.items() if n != "f0002.dat"
    }
    assert f0002.size == 6 and st.cands.facts["f0002.dat"].size == 1  # a rewrite in place: the watch's to report
    assert fresh.noted == st.noted
    (directory / "sub.dat").rmdir()
    os.utime(directory, (old + 1, old + 1))
    observe.refresh(st, history, time.time_ns(), restat=False)
    assert not st.noted  # gone: forgotten


def test_one_name_s_stat_says_what_a_listing_s_stat_says(tmp_path: Path) -> None:
    # Issue 21, round six: inotify's names and a start's look are stat'ed
    # one at a time (`Spool.stat`, its fast path for a plain file); what it
    # says is what `stat_all` says of the same name.
    from waitd.spool.directory import Skip

    directory = tmp_path / "in"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    (directory / "plain.dat").write_bytes(b"x")
    (directory / "sub.dat").mkdir()
    (tmp_path / "target").write_bytes(b"xyz")
    (directory / "link.dat").symlink_to(tmp_path / "target")
    (directory / "dangling.dat").symlink_to(tmp_path / "nowhere")
    spool = Spool(str(directory))
    try:
        for name in ("plain.dat", "sub.dat", "link.dat", "dangling.dat", "gone.dat"):
            facts, skipped = spool.stat_all([name])
            try:
                assert spool.stat(name) == facts[name]
            except FileNotFoundError:
                assert not facts and not skipped
            except Skip as why:
                assert skipped == {name: str(why)}
        assert spool.stat("plain.dat").link_ino == 0 and spool.stat("link.dat").size == 3
    finally:
        spool.close()
