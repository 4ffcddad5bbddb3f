# SPDX-License-Identifier: MIT
"""The inotify watcher's read (issue 21, round six): its events are taken
with plain-int masks; what it says is what the IntEnum tests said of
the same events, and a long queue is read whole."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from inotify_simple import flags, parse_events

from waitd.spool.watch import CLOSED, OPENED, Changes, Watcher


def _event(wd: int, mask: int, name: str = "", pad: int = 0) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    size = 0 if not raw and not pad else len(raw) + 1 + pad
    return struct.pack("iIII", wd, mask, 0, size) + raw.ljust(size, b"\0")


def _reference(watcher: Watcher, data: bytes) -> Changes:
    """What `read` said before, from inotify_simple's events."""
    changes = Changes()
    for event in parse_events(data):
        if event.mask & flags.Q_OVERFLOW:
            changes.overflow = True
            continue
        directory = watcher._by_wd.get(event.wd)
        if directory is None:
            continue
        if event.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF | flags.UNMOUNT):
            changes.gone.add(directory)
            continue
        if event.name:
            names = changes.names.setdefault(directory, {})
            if event.mask & flags.CREATE:
                names[event.name] = OPENED
            elif event.mask & (flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE):
                names[event.name] = CLOSED
            else:
                names.setdefault(event.name, None)
    return changes


def test_the_parse_says_what_inotify_simple_s_events_say() -> None:
    watcher = Watcher(enabled=False)
    watcher._by_wd = {1: "/in", 2: "/other"}
    data = b"".join(
        [
            _event(1, flags.CREATE, ".f1.tmp", pad=3),
            _event(1, flags.ATTRIB, ".f1.tmp"),
            _event(1, flags.CLOSE_WRITE, ".f1.tmp"),
            _event(1, flags.MOVED_FROM, ".f1.tmp"),
            _event(1, flags.MOVED_TO, "f1.dat", pad=10),
            _event(1, flags.ATTRIB, "touched.dat"),
            _event(1, flags.CREATE, "being-written.dat"),
            _event(1, flags.ATTRIB, "being-written.dat"),  # a touch does not undo the open
            _event(1, flags.DELETE, "gone.dat"),
            _event(2, flags.CREATE | flags.ISDIR, "sub"),
            _event(2, flags.CLOSE_WRITE, "caf\udce9.dat"),  # not UTF-8: os.fsdecode's surrogate
            _event(1, flags.ATTRIB | flags.ISDIR),  # the directory itself: no name
            _event(9, flags.CREATE, "unwatched.dat"),
            _event(-1, flags.Q_OVERFLOW),
        ]
    )
    ours = Changes()
    watcher._take(parse_events(data), ours)
    assert ours == _reference(watcher, data)
    assert ours.overflow and ours.names["/in"]["being-written.dat"] == OPENED
    assert ours.names["/other"]["caf\udce9.dat"] == CLOSED


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, Watcher]]:
    """A directory `in` under an inotify watch of its own."""
    directory = tmp_path / "in"
    directory.mkdir()
    watcher = Watcher()
    try:
        st = os.stat(directory)
        assert watcher.watch(str(directory), (st.st_dev, st.st_ino))
        yield directory, watcher
    finally:
        watcher.close()


def test_a_watch_gone_is_reported_and_dropped(watched: tuple[Path, Watcher]) -> None:
    directory, watcher = watched
    (directory / "a.dat").write_bytes(b"x")
    directory.rename(directory.parent / "moved")
    changes = watcher.read()
    assert changes.names == {str(directory): {"a.dat": CLOSED}}
    assert changes.gone == {str(directory)} and not watcher.watching(str(directory))
    assert watcher.read() == Changes()  # nothing left: no read blocks


def test_a_queue_of_over_64_kib_is_read_whole(watched: tuple[Path, Watcher]) -> None:
    directory, watcher = watched
    names = [f"{i:05d}-{'x' * 100}.dat" for i in range(600)]
    for name in names:
        (directory / name).write_bytes(b"x")  # CREATE and CLOSE_WRITE: 2 x 128 bytes
    assert 600 * 2 * 128 > 2 * 65536  # more than a read of 64 KiB
    changes = watcher.read()
    assert changes.names == {str(directory): dict.fromkeys(names, CLOSED)} and not changes.overflow
