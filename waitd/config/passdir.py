# SPDX-License-Identifier: MIT
"""The files of waitd in PASSDIR, named in one place.

`Layout` gives the path of each file waitd keeps in its PASSDIR: the
table, its log, the history (and the temporary file of a compaction), the
pid and status files, and the handler logs under logfiles/.  `is_own`
says whether a name in PASSDIR is one of them, so that a record whose
incoming-dir is PASSDIR itself never hands waitd's own state to a handler
nor removes it; `own_directory` says whether an incoming-dir is PASSDIR
or its logfiles/ (whose every file is waitd's), and `activate` and
`matcher` apply that to a record.

This module opens and creates nothing; it stats the directories it
compares.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from waitd.config import table

TABLE = "incoming"
LOG = "incoming.log"
HISTORY = "incoming.history"
PID = "waitd.pid"
STATUS = "waitd.status"
LOGFILES = "logfiles"
TMP = ".tmp"  # suffix of a file being rewritten (history, status)
_OWN = frozenset(
    {TABLE, LOG, HISTORY, HISTORY + TMP, PID, STATUS, STATUS + TMP, LOGFILES, "waitd.conf", "waitd.sock", "events"}
)


@dataclass(frozen=True, slots=True)
class Layout:
    passdir: str

    @property
    def table(self) -> str:
        return os.path.join(self.passdir, TABLE)

    @property
    def log(self) -> str:
        return os.path.join(self.passdir, LOG)

    @property
    def history(self) -> str:
        return os.path.join(self.passdir, HISTORY)

    @property
    def pid(self) -> str:
        return os.path.join(self.passdir, PID)

    @property
    def status(self) -> str:
        return os.path.join(self.passdir, STATUS)

    @property
    def logfiles(self) -> str:
        return os.path.join(self.passdir, LOGFILES)

    def handler_log(self, record: int, letter: str) -> str:
        return os.path.join(self.passdir, LOGFILES, f"incoming.{record}.{letter}")


def is_own(name: str) -> bool:
    """True for the name of a file of waitd's in PASSDIR (rotated logs,
    incoming.log.1 and the like, included)."""
    return name in _OWN or name.startswith(LOG + ".")


def own_directory(directory: str, passdir: str) -> str | None:
    """ "passdir" or "logfiles" when `directory` is that directory of waitd's
    (compared by device and inode, whatever the path), else None."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    for what, path in (("passdir", passdir), ("logfiles", os.path.join(passdir, LOGFILES))):
        try:
            other = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
            return what
    return None


def activate(record: table.Record, passdir: str, path_env: str) -> table.Activation:
    """`table.activate`, and a record on waitd's own logfiles/ is inactive."""
    if own_directory(record.directory, passdir) == "logfiles":
        return table.Activation(None, f"incoming-dir {record.directory} is waitd's own logfiles directory")
    return table.activate(record, passdir, path_env)


def matcher(record: table.Record, passdir: str) -> Callable[[str], bool]:
    """The record's template; in PASSDIR itself, waitd's own files never match."""
    match = table.matcher(record.template)
    if own_directory(record.directory, passdir) != "passdir":
        return match
    return lambda name: match(name) and not is_own(name)
