# SPDX-License-Identifier: MIT
"""The journal: one writer of the history and the outbox, one failure policy.

Real files: the history and the outbox in a temporary PASSDIR, and a full
disk made for real (a small tmpfs filled to its last byte) where the
failure policy is the subject.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest
from conftest import fill, small_tmpfs

from waitd.config import table
from waitd.config.errors import HistoryWriteError
from waitd.config.passdir import EVENTS as DIRECTORY
from waitd.formats import events as ev
from waitd.formats.history_line import Event, Status, Version
from waitd.journal import made as mk
from waitd.journal.history import History
from waitd.journal.outbox import Place, Reader, Writer
from waitd.journal.writer import Journal


@dataclass(frozen=True)
class FileFact:
    """What the journal needs of a file fact: its name and version."""

    name: str
    mtime_ns: int
    size: int
    ino: int


def _record(passdir: Path, options: str = "") -> table.Record:
    text = f"gvar {passdir}/in *.g8 /bin/true 0 -1 0 {options}\n"
    records, errors = table.parse(text, str(passdir / "incoming"), str(passdir), {})
    assert not errors and len(records) == 1
    return records[0]


def _journal(passdir: Path, outbox: bool = True) -> Journal:
    history = History(str(passdir / "incoming.history"))
    history.load()
    journal = Journal(str(passdir), history)
    if outbox:
        journal.outbox = Writer(str(passdir))
        journal.outbox.open()
        journal.wants = lambda kind, record: True
    return journal


def _line(path: str, status: Status = Status.STARTED, **fields: object) -> Event:
    return Event(path, "/bin/true", 1_700_000_000, status, at=1_700_000_100.5, version=Version(17e17, 5, 9), **fields)  # type: ignore[arg-type]


def _outbox(passdir: Path) -> list[ev.Event]:
    """Every event of the outbox, segment after segment."""
    reader = Reader(str(passdir / DIRECTORY), Place(0, 0, 0))
    got: list[dict[str, object]] = []
    while True:
        more, place = reader.batch(1000)
        if not more and place == reader.place:
            return [ev.from_json(obj) for obj in got]
        got.extend(more)
        reader.place = place


def _history(passdir: Path) -> list[str]:
    return (passdir / "incoming.history").read_text().splitlines()


def test_a_start_tells_ready_and_started_and_its_pid_tells_nothing(tmp_path: Path) -> None:
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    seen: list[ev.Event] = []
    journal.observers.append(seen.append)
    start = [_line(f"{tmp_path}/in/a.g8")]
    journal.started([(record, start)])
    journal.running(start, 4242)
    assert len(_history(tmp_path)) == 1  # kept for the turn's next write, or its flush
    journal.flush()
    made = _outbox(tmp_path)
    assert [type(e) for e in made] == [ev.Ready, ev.Started]
    assert seen == [replace(e, seq=None) for e in made]
    ready, started = made
    assert ready.about == ev.About(1, "gvar", "gvar", "/bin/true", path=f"{tmp_path}/in/a.g8", mtime=1.7e9, size=5)
    assert started.attempt == 1 and started.time == 1_700_000_100.5
    assert [line.split()[3] for line in _history(tmp_path)] == ["0", "0"]
    assert " pid=4242 " in _history(tmp_path)[1]


def test_the_pids_of_a_turn_go_out_with_its_next_write_and_before_a_start(tmp_path: Path) -> None:
    """One write(2) for a turn's pids and ends (issue 21); a start's sync
    writes them first, on their own, so that a start refused on a full
    disk does not take them along."""
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    a, b = [_line(f"{tmp_path}/in/a.g8")], [_line(f"{tmp_path}/in/b.g8")]
    journal.started([(record, a)])
    journal.running(a, 4242)
    journal.ended(record, [_line(f"{tmp_path}/in/c.g8", Status.KNOWN, exit=0, took=0.5)])
    assert [line.split()[0].rsplit("/", 1)[1] for line in _history(tmp_path)] == ["a.g8", "a.g8", "c.g8"]
    assert " pid=4242 " in _history(tmp_path)[1]
    journal.running(a, 4343)
    journal.started([(record, b)])
    assert " pid=4343 " in _history(tmp_path)[3] and _history(tmp_path)[4].startswith(f"{tmp_path}/in/b.g8 ")
    assert journal.history.latest(f"{tmp_path}/in/a.g8", "/bin/true").pid == 4343


def test_the_ids_are_the_same_when_an_event_is_made_again(tmp_path: Path) -> None:
    record = _record(tmp_path)
    ids = []
    for life in ("one", "two"):  # one PASSDIR's events, made again after a crash
        (tmp_path / life).mkdir()
        journal = _journal(tmp_path / life)
        journal.passdir = str(tmp_path)
        journal.started([(record, [_line("/in/a.g8")])])
        journal.ended(record, [_line("/in/a.g8", Status.KNOWN, exit=0, took=0.5)])
        ids.append([e.id for e in _outbox(tmp_path / life)])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3


def _segment_sizes(passdir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted((passdir / DIRECTORY).glob("*.jsonl"))}


def test_a_start_writes_its_events_after_its_handler_and_holds_them_if_their_sync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a handler waits for is its start's line on disk (issue 21):
    once the segment holds an event on disk (the first start of a segment
    writes and syncs its events first, so that a lost start's events are
    found missing after it), a start's events are made and written with
    the turn's next write (`flush`), and synced in a helper thread.  When
    that sync fails, the start stays (its handler runs), its events are cut
    off the outbox and held, nothing starts, and a poll writes and syncs
    them."""
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    assert journal.outbox is not None
    synced: list[tuple[int, str]] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append((fd, threading.current_thread().name)), real(fd))[1])
    journal.started([(record, [_line(f"{tmp_path}/in/a.g8")])])
    outbox, history = journal.outbox.fd, journal.history._fd
    assert synced == [(outbox, "MainThread"), (history, "MainThread")]  # in turn: the first of the segment
    journal.started([(record, [_line(f"{tmp_path}/in/c.g8")])])
    assert synced[2:] == [(history, "MainThread")] and len(_outbox(tmp_path)) == 2  # its line alone
    journal.flush()  # the end of the turn: its events written, their sync under way
    journal.retry()  # a poll: the sync under way is over
    assert synced[3:] == [(outbox, "waitd-fdatasync")] and len(_outbox(tmp_path)) == 4
    sizes = _segment_sizes(tmp_path)
    before = (tmp_path / "incoming.history").stat().st_size
    segment = journal.outbox.directory + "/" + max(sizes)
    os.close(outbox)  # its sync fails (EINVAL on /dev/null)
    moved = os.open(os.devnull, os.O_WRONLY)  # in the outbox's descriptor's place
    assert moved == outbox
    journal.started([(record, [_line(f"{tmp_path}/in/b.g8")])])  # no error: its handler may start
    assert (tmp_path / "incoming.history").stat().st_size > before
    journal.flush()
    assert journal.may_start  # the sync's end is not known yet
    assert journal.retry() == 0  # the next poll: it failed, and writing the events again fails
    assert _segment_sizes(tmp_path) == sizes
    assert journal.outbox.seq == 4 and not journal.may_start
    again = os.open(segment, os.O_WRONLY | os.O_APPEND)
    os.dup2(again, outbox)  # the outbox writable again
    os.close(again)
    assert journal.retry() == 0 and journal.may_start
    assert [(e.type, e.about.path) for e in _outbox(tmp_path)][-2:] == [
        ("ready", f"{tmp_path}/in/b.g8"),
        ("started", f"{tmp_path}/in/b.g8"),
    ]
    assert synced[-1] == (outbox, "MainThread")  # written again, and synced


def test_a_start_leaves_its_events_sync_under_way_and_its_end_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start's events' sync is left under way after the turn (issue 21),
    and the next write (the run's end) waits for it, so that an end is
    never on disk before its start's events."""
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    assert journal.outbox is not None
    journal.started([(record, [_line(f"{tmp_path}/in/a.g8")])])  # anchors the segment
    outbox = journal.outbox.fd
    gate = threading.Event()
    real = os.fdatasync

    def held_back(fd: int) -> None:
        if fd == outbox and threading.current_thread().name == "waitd-fdatasync":
            assert gate.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", held_back)
    journal.started([(record, [_line(f"{tmp_path}/in/b.g8")])])
    journal.flush()  # returns with the outbox's sync held back
    history = tmp_path / "incoming.history"
    assert history.read_text().count("/in/b.g8") == 1
    ending = threading.Thread(
        target=journal.ended, args=(record, [_line(f"{tmp_path}/in/b.g8", Status.KNOWN, exit=0, took=0.5)])
    )
    ending.start()
    ending.join(0.3)
    assert ending.is_alive() and history.read_text().count("/in/b.g8") == 1  # the end waits for the sync
    gate.set()
    ending.join(10)
    assert not ending.is_alive() and history.read_text().count("/in/b.g8") == 2
    assert [e.type for e in _outbox(tmp_path)] == ["ready", "started", "ready", "started", "ended"]


def test_an_end_written_with_its_start_events_has_them_synced_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that could not be executed ends in the turn of its start:
    its end goes in the write of its start's events, which are synced
    before the end's line is written (not left under way)."""
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    assert journal.outbox is not None
    journal.started([(record, [_line(f"{tmp_path}/in/a.g8")])])  # anchors the segment
    outbox, history = journal.outbox.fd, journal.history._fd
    order: list[tuple[str, int]] = []
    real_sync, real_write = os.fdatasync, os.write
    monkeypatch.setattr(os, "fdatasync", lambda fd: (order.append(("sync", fd)), real_sync(fd))[1])
    monkeypatch.setattr(os, "write", lambda fd, data: (order.append(("write", fd)), real_write(fd, data))[1])
    journal.started([(record, [_line(f"{tmp_path}/in/b.g8")])])
    del order[:]
    journal.ended(record, [_line(f"{tmp_path}/in/b.g8", Status.UNKNOWN, error="cannot execute")])
    assert order == [("write", outbox), ("sync", outbox), ("write", history)]
    assert [e.type for e in _outbox(tmp_path)][2:] == ["ready", "started", "ended"]


def test_a_start_the_outbox_lost_is_made_again_when_its_run_is_found_open(tmp_path: Path) -> None:
    """A crash or a power failure after a start's lines are on disk, before
    its events are (written after its handler started), may keep the lines
    and lose the events: the next waitd makes them again (same ids) for the
    runs it finds open, and only those the outbox lacks."""
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    assert journal.outbox is not None
    b = [_line(f"{tmp_path}/in/b.g8")]
    a = [replace(_line(f"{tmp_path}/in/a.g8"), at=1_700_000_200.0)]
    journal.started([(record, b)])
    kept = _segment_sizes(tmp_path)
    journal.started([(record, a)])
    journal.flush()  # the turn's end: a.d's events written
    first = [e.id for e in _outbox(tmp_path)]
    journal.close()
    (name,) = kept
    os.truncate(tmp_path / DIRECTORY / name, kept[name])  # a.d's lines kept, its events lost
    again = _journal(tmp_path)
    again.reopened(record, a)
    again.reopened(record, b)  # in the outbox: not made again
    older = [replace(_line(f"{tmp_path}/in/c.g8"), at=1_600_000_000.0)]
    again.reopened(record, older)  # older than any event there: may have been delivered and pruned
    assert [e.id for e in _outbox(tmp_path)] == first
    assert [type(e) for e in _outbox(tmp_path)] == [ev.Ready, ev.Started, ev.Ready, ev.Started]


def test_an_end_tells_its_outcome_and_a_group_is_one_event(tmp_path: Path) -> None:
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    journal.ended(record, [_line("/in/ok.g8", Status.KNOWN, exit=0, took=0.25)])
    journal.ended(record, [_line("/in/t.g8", Status.KNOWN, exit=75, retry_at=1_700_000_200.0)])
    journal.ended(None, [_line("/in/lost.g8", Status.UNKNOWN)])
    members = [_line(f"/in/{n}.g8", Status.KNOWN, exit=3, group="g1") for n in ("b", "a")]
    journal.ended(record, members)
    ok, retrying, unknown, group = _outbox(tmp_path)
    assert isinstance(ok, ev.Ended) and (ok.outcome, ok.exit, ok.took) == ("ok", 0, 0.25)
    assert isinstance(retrying, ev.Ended) and (retrying.outcome, retrying.retry_at) == ("retrying", 1_700_000_200.0)
    assert isinstance(unknown, ev.Ended) and (unknown.outcome, unknown.error) == ("failed", "unknown")
    assert unknown.about.record is None and unknown.about.telem is None
    assert isinstance(group, ev.Ended) and group.about.paths == ("/in/a.g8", "/in/b.g8")
    assert group.about.group == "g1" and group.about.path is None
    assert len(_history(tmp_path)) == 5


def test_publications_and_removals_and_groups(tmp_path: Path) -> None:
    record = _record(tmp_path)
    journal = _journal(tmp_path)
    members = [_line(f"/in/{n}.g8", Status.KNOWN, published=1, group="g2") for n in ("a", "b")]
    journal.published([(record, members)])
    journal.removed(record, FileFact("x.g8", 1, 2, 3), "expired: in the spool 2 h")
    journal.removed(record, FileFact("y.g8", 1, 2, 4), "handled with exit 0; keep-after is 0", "/q/pending")
    journal.group(record, "g3", "incomplete", ["c.g8"], ["1:2"])
    made = _outbox(tmp_path)
    assert [e.type for e in made] == ["ready", "group", "expired", "removed", "group"]
    assert isinstance(made[1], ev.Grouped) and made[1].state == "complete" and made[1].missing is None
    assert isinstance(made[4], ev.Grouped) and (made[4].state, made[4].missing) == ("incomplete", ("1:2",))
    assert made[2].about.path == f"{tmp_path}/in/x.g8" and made[2].about.mtime is None
    assert made[3].about.path == "/q/pending/y.g8"
    assert made[4].about.paths == (f"{tmp_path}/in/c.g8",) and made[4].about.group == "g3"
    assert len(_history(tmp_path)) == 2  # removals and groups have no line


def test_without_sinks_or_observers_no_event_is_made(tmp_path: Path) -> None:
    journal = _journal(tmp_path, outbox=False)
    journal.started([(_record(tmp_path), [_line("/in/a.g8")])])
    assert not (tmp_path / DIRECTORY).exists() and len(_history(tmp_path)) == 1


def test_the_json_of_each_event_reads_back_the_same(tmp_path: Path) -> None:
    record = _record(tmp_path, "pattern={stem}_{n:d}.g8")
    journal = _journal(tmp_path)
    journal.started([(record, [_line(f"{tmp_path}/in/x_5.g8")])])
    journal.ended(record, [_line(f"{tmp_path}/in/x_5.g8", Status.UNKNOWN, signal="SIGKILL", took=1.0)])
    raw = [json.loads(line) for p in sorted((tmp_path / DIRECTORY).glob("*.jsonl")) for line in p.open()]
    assert raw[0]["fields"] == {"n": 5}
    for obj in raw:
        assert ev.to_json(ev.from_json(obj)) == obj
    with pytest.raises(ValueError):
        ev.from_json({"type": "nonsense", "id": "x"})
    with pytest.raises(ValueError, match="outcome is one of ok, failed, retrying"):
        ev.from_json({**raw[-1], "outcome": "fine"})
    with pytest.raises(ValueError, match="not an event"):
        ev.from_json({k: v for k, v in raw[-1].items() if k != "process"})


@pytest.fixture
def full(tmp_path: Path):
    """A PASSDIR on a small tmpfs (`fill` fills it)."""
    with small_tmpfs(tmp_path / "small", "512k") as mnt:
        yield mnt


def test_a_full_disk_refuses_a_start_and_holds_every_start_until_a_poll(full: Path) -> None:
    record = _record(full)
    journal = _journal(full)
    filler = fill(full)
    with pytest.raises(HistoryWriteError):
        journal.started([(record, [_line(f"/in/{n:03d}.g8") for n in range(200)])])
    assert not journal.may_start and journal.unwritten == 0
    assert not _history(full)  # all or nothing, cut back
    filler.unlink()
    assert journal.retry() == 0 and journal.may_start
    journal.started([(record, [_line("/in/a.g8")])])
    assert len(_history(full)) == 1


def test_a_full_disk_holds_what_is_not_a_start_in_order_until_it_is_written(
    full: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="waitd")
    record = _record(full)
    journal = _journal(full)
    journal.started([(record, [_line(f"/in/{n:03d}.g8") for n in range(3)])])
    filler = fill(full)
    long = "x" * 5000  # longer than the free tail of the files' last pages
    for n in range(3):
        journal.ended(record, [_line(f"/in/{n:03d}.g8", Status.UNKNOWN, error=long)])
    journal.removed(record, FileFact("gone.g8", 1, 2, 3), "expired: " + long)
    assert journal.unwritten == 3 and not journal.may_start
    assert caplog.text.count("cannot") == 1, "the failure is logged once"
    assert journal.retry() == 3, "still full"
    filler.unlink()
    assert journal.retry() == 0 and journal.may_start
    assert [line.split()[0] for line in _history(full)[3:]] == ["/in/000.g8", "/in/001.g8", "/in/002.g8"]
    kinds = [e.type for e in _outbox(full)]
    assert kinds[-4:] == ["ended", "ended", "ended", "expired"]
    assert "writable again" in caplog.text
    assert journal.close() == 0


def test_what_is_held_at_exit_is_logged_and_counted(full: Path, caplog: pytest.LogCaptureFixture) -> None:
    record = _record(full)
    journal = _journal(full, outbox=False)
    fill(full)
    journal.ended(record, [_line("/in/a.g8", Status.UNKNOWN, error="y" * 5000)])
    assert journal.close() == 1
    assert "exiting with an event not written: /in/a.g8" in caplog.text
    assert os.path.getsize(full / "incoming.history") == 0


def test_a_pid_line_is_its_start_line_with_the_pid() -> None:
    """`with_pid` (the cheap copy each start's pid line is made with) is
    `dataclasses.replace`, every field kept: a field added to Event later
    is carried too."""
    from dataclasses import fields

    from waitd.journal.made import with_pid

    values = {
        "path": "/in/a b",
        "process": "proc",
        "mtime": 7,
        "status": Status.STARTED,
        "pid": None,
        "version": Version(7_000_000_001, 3, 9),
        "extra": ("k=v",),
    }
    line = Event(
        **values,  # type: ignore[arg-type]
        **{f.name: f"x{i}" for i, f in enumerate(fields(Event)) if f.name not in values},
    )
    assert with_pid(line, 4321) == replace(line, pid=4321)
    assert with_pid(line, 4321).pid == 4321 and line.pid is None


def test_an_end_without_events_writes_and_holds_as_one_with_events_does(full: Path) -> None:
    """`ended` with no event to make (no sink, no observer) writes the same
    history, holds the same lines on a full disk and writes them at the
    poll's retry, as a journal that makes events (for an observer)."""
    seen: list[ev.Event] = []
    journals = []
    for name in ("short", "general"):
        (full / name).mkdir()
        journal = _journal(full / name, outbox=False)
        if name == "general":
            journal.observers.append(seen.append)
        journals.append(journal)
    record = _record(full / "short")
    long = "x" * 5000  # longer than the free tail of the files' last pages
    filler = None
    for step in range(4):
        if step == 2:
            filler = fill(full)
        a = [_line(f"/in/{step}.g8")]
        for journal in journals:
            if step < 2:
                journal.started([(record, a)])
            journal.running(a, 100 + step)
            journal.ended(record, [_line(f"/in/{step}.g8", Status.KNOWN, exit=0, took=0.5, error=long)])
        assert [j.unwritten for j in journals] == ([0, 0] if step < 2 else [2 * (step - 1)] * 2)
        assert [j.may_start for j in journals] == [step < 2] * 2
    assert filler is not None
    filler.unlink()
    assert [j.retry() for j in journals] == [0, 0]
    short, general = ((full / name / "incoming.history").read_text() for name in ("short", "general"))
    assert short == general and len(short.splitlines()) == 2 + 2 * 4
    assert [e.type for e in seen].count("ended") == 4
    key = ("/in/3.g8", "/bin/true")
    assert journals[0].history.latest(*key) == journals[1].history.latest(*key)


def test_a_sync_in_the_background_tells_its_error_and_goes_one_at_a_time(tmp_path):
    """`disk.fdatasync_in_background`: the helper thread's sync, its OSError
    raised by `result()`; a second started before the first's result was asked
    waits for the first (one at a time), and the helper goes on after an
    error."""
    from waitd.journal import disk

    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        disk.fdatasync_in_background(fd).result()
        bad = os.dup(fd)
        os.close(bad)
        with pytest.raises(OSError) as raised:
            disk.fdatasync_in_background(bad).result()
        assert raised.value.errno == errno.EBADF
        disk.fdatasync_in_background(bad)  # its error never asked for: dropped by the next start
        disk.fdatasync_in_background(fd).result()
    finally:
        os.close(fd)


def _to_json_reference(event: ev.Event) -> dict[str, object]:
    """`to_json` as it was written first, field by field (the reference of
    the one that makes a job's About once and takes values by attrgetter)."""
    out: dict[str, object] = {"id": event.id, "type": event.type, "time": event.time}
    about = event.about
    for f in fields(ev.About):
        value = getattr(about, f.name)
        if value is None and f.name not in ("record", "telem", "topic"):
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else dict(value) if f.name == "fields" else value
    if about.paths is not None and "group" not in out:
        out["group"] = None
    for f in fields(type(event)):
        if f.name not in ("id", "type", "time", "about", "seq") and getattr(event, f.name) is not None:
            value = getattr(event, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
    if event.seq is not None:
        out["seq"] = event.seq
    return out


def test_the_outbox_writes_each_event_as_the_reference_json_would(tmp_path: Path) -> None:
    """The fast way (issue 21: a job's About turned to JSON once, the C
    encoder made once) writes what json.dumps(separators=(",", ":"),
    default=str) of the reference object writes, key order and escapes
    (odd names, surrogates) included, and each event's lists and dicts
    are its own."""
    odd = '/in/q"u\\ote é\udcff x_7.g8'
    one = ev.About(1, "t", None, "/bin/true", path=odd, mtime=float("nan"), size=3, fields={"n": 7, "d": "2026"})
    group = ev.About(None, None, "/topic", "-", paths=("/in/b", "/in/a"), group=None)
    made: list[ev.Event] = [
        ev.Ready("a" * 32, 1.5, one),
        ev.Started("b" * 32, 1.5, one, 2, body={"run_number": 7}),
        ev.Ended("c" * 32, 2.5, one, outcome="retrying", exit=1, took=0.25, retry_at=9.0, response={"x": [1]}),
        ev.Ready("d" * 32, 3, group),
        ev.Grouped("e" * 32, 3, group, state="incomplete", missing=("/in/c",)),
        ev.Removed("f" * 32, 4.0, group, reason="expired after 2 h"),
    ]
    for event in made:
        assert ev.to_json(event) == _to_json_reference(event)
        assert list(ev.to_json(event)) == list(_to_json_reference(event))  # the order of the keys
    first, second = ev.to_json(made[3]), ev.to_json(made[4])
    assert first["paths"] == second["paths"] and first["paths"] is not second["paths"]
    writer = Writer(str(tmp_path))
    writer.open()
    writer.append([ev.to_json(e) for e in made], sync=False)
    writer.close()
    (segment,) = (tmp_path / DIRECTORY).glob("*.jsonl")
    written = segment.read_text().splitlines()
    for seq, (event, line) in enumerate(zip(made, written, strict=True), start=1):
        assert line == json.dumps({**_to_json_reference(event), "seq": seq}, separators=(",", ":"), default=str)


def test_the_versions_text_of_a_one_line_job_is_the_general_one() -> None:
    """The ids' parts: a job of one line writes its versions' text out
    (issue 21), the same as the general way's for many lines, so that an
    event made again after an upgrade keeps its id."""
    for path in ("/in/a.g8", '/in/it\'s "odd"\\ é\udcff\n.g8'):
        for version in (Version(17e17, 5, 9), Version(1_796_573_948_123_456_789, 0, 2**40), None):
            line = replace(_line(path), version=version)
            assert mk._one_version(line) == str(sorted([(line.path, line.version)]))
