# SPDX-License-Identifier: MIT
"""A jsonl sink's process syncs its file once before it saves its place,
not once a batch (issue 21: each fdatasync is a commit of the file
system's journal, and waitd's syncs of its starts wait behind them), and a
sync that fails sends it back to its saved place: nothing is lost.

The sink's process (`sinks.child.SinkProcess`) runs here in this process,
one turn at a time, on a real outbox and a real jsonl file; os.fdatasync
is counted (and still done), and made to fail for real (the sink's file
replaced behind its back by /dev/null, which cannot be synced: EINVAL).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import read_jsonl

from waitd.config.passdir import events_path
from waitd.formats import events as ev
from waitd.journal.outbox import Writer, read_place
from waitd.sinks.child import SinkProcess
from waitd.sinks.jsonl import JsonLines


def _event(n: int) -> dict[str, object]:
    about = ev.About(1, "t", None, "/bin/true", path=f"/in/f{n}.d")
    return ev.to_json(ev.Started(ev.event_id("f", n), 1_700_000_000.0 + n, about))


def _sink(passdir: Path) -> tuple[SinkProcess, Writer]:
    writer = Writer(str(passdir))
    writer.open()
    writer.place_new("log")
    process = SinkProcess(str(passdir), {"name": "log", "type": "jsonl", "settings": {"path": "events.jsonl"}})
    return process, writer


def test_batches_are_synced_once_before_the_place_is_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    process, writer = _sink(tmp_path)
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    reader = process._reader()
    process.save_due = float("inf")  # events keep coming: not saved yet
    for n in range(3):
        writer.append([_event(n)], sync=False)
        process._turn(reader, 1.0)
    assert len(read_jsonl(tmp_path / "events.jsonl")) == 3
    assert synced == [] and read_place(events_path(str(tmp_path)), "log")[0].seq == 0
    process.save_due = 0.0  # nothing more: the place is saved, after one sync
    process._turn(reader, 1.0)
    assert len(synced) == 1
    assert read_place(events_path(str(tmp_path)), "log")[0].seq == 3
    process.sink.close()


def test_a_sync_that_fails_delivers_again_from_the_saved_place(tmp_path: Path) -> None:
    process, writer = _sink(tmp_path)
    reader = process._reader()
    process.save_due = float("inf")
    writer.append([_event(n) for n in range(2)], sync=False)
    process._turn(reader, 1.0)
    sink = process.sink
    assert isinstance(sink, JsonLines)
    os.close(sink._fd)
    assert os.open(os.devnull, os.O_RDONLY) == sink._fd  # its sync fails: EINVAL (the sink closes it)
    assert not process._commit(reader)
    assert reader.place == process.saved and reader.place.seq == 0
    assert process.down_since is not None
    process._turn(reader, 1.0)  # open again (up again: saved), deliver again
    process.save_due = 0.0
    process._turn(reader, 1.0)  # nothing more: sync, save
    assert [e["seq"] for e in read_jsonl(tmp_path / "events.jsonl")] == [1, 2, 1, 2]
    assert read_place(events_path(str(tmp_path)), "log")[0].seq == 2
    assert process.down_since is None
    process.sink.close()
