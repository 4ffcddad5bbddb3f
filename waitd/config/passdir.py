# SPDX-License-Identifier: MIT
"""The names of waitd's files in PASSDIR, in one place.

Every file and directory waitd keeps in its PASSDIR is named here, and
nowhere else: the table (incoming), waitd's log (incoming.log, and the
incoming.log.N that log rotation leaves), the history (incoming.history,
and the temporary file of a compaction), the pid file, the status file
(and its temporary file), the control socket, waitd.conf, the handler
logs (logfiles/incoming.N.L) and the outbox (events/).  Each `*_path`
function gives one of them for a PASSDIR; `handler_log_name` and
`parse_handler_log_name` write and read the name of a handler log.
`is_own` says whether a name in PASSDIR is one of them, so that a record
whose incoming-dir is PASSDIR itself never hands waitd's own state to a
handler nor removes it: `own_directory` says whether an incoming-dir is
PASSDIR or its logfiles/ (whose every file is waitd's), and `activate`
and `matcher` apply that to a record (they stat the directories; they
move out of config/, to where I/O belongs, in the next step).

The names are pure: joined and compared, nothing opened or created.  The
files themselves are written by their owners (the history by
`journal.history`, the pid file by `daemon.pidfile`, ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from waitd.config import table

TABLE = "incoming"
LOG = "incoming.log"
HISTORY = "incoming.history"
PID = "waitd.pid"
STATUS = "waitd.status"
SOCKET = "waitd.sock"
CONF = "waitd.conf"
LOGFILES = "logfiles"  # the handler logs: incoming.N.L
EVENTS = "events"  # the outbox's segments
TMP = ".tmp"  # suffix of a file being rewritten (history, status)
_OWN = frozenset({TABLE, LOG, HISTORY, HISTORY + TMP, PID, STATUS, STATUS + TMP, SOCKET, CONF, LOGFILES, EVENTS})
_HANDLER_LOG = re.compile(r"incoming\.(\d+)\.([A-Z])")


def table_path(passdir: str) -> str:
    return os.path.join(passdir, TABLE)


def log_path(passdir: str) -> str:
    return os.path.join(passdir, LOG)


def history_path(passdir: str) -> str:
    return os.path.join(passdir, HISTORY)


def pid_path(passdir: str) -> str:
    return os.path.join(passdir, PID)


def status_path(passdir: str) -> str:
    return os.path.join(passdir, STATUS)


def socket_path(passdir: str) -> str:
    return os.path.join(passdir, SOCKET)


def conf_path(passdir: str) -> str:
    return os.path.join(passdir, CONF)


def logfiles_path(passdir: str) -> str:
    return os.path.join(passdir, LOGFILES)


def events_path(passdir: str) -> str:
    return os.path.join(passdir, EVENTS)


def handler_log_name(record: int, letter: str) -> str:
    """The name of record `record`'s handler log `letter` (A to Z) in logfiles/."""
    return f"incoming.{record}.{letter}"


def handler_log_path(passdir: str, record: int, letter: str) -> str:
    return os.path.join(passdir, LOGFILES, handler_log_name(record, letter))


def parse_handler_log_name(name: str) -> tuple[int, str] | None:
    """(record, letter) of a handler log's name, or None for another name."""
    m = _HANDLER_LOG.fullmatch(name)
    return (int(m[1]), m[2]) if m else None


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
