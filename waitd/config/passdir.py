# SPDX-License-Identifier: MIT
"""The names of waitd's files in PASSDIR, in one place.

Every file and directory waitd keeps in its PASSDIR is named here, and
nowhere else: the table (incoming), waitd's log (incoming.log, and the
incoming.log.N that log rotation leaves), the history (incoming.history,
and the temporary file of a compaction), the pid file, the status file
(and its temporary file), the control socket, waitd.conf, the handler
logs (logfiles/incoming.N.L), the outbox (events/) and the sources'
ledgers and states (sources/).  Each `*_path`
function gives one of them for a PASSDIR; `handler_log_name` and
`parse_handler_log_name` write and read the name of a handler log.
`is_own` says whether a name in PASSDIR is one of them, so that a record
whose incoming-dir is PASSDIR itself never hands waitd's own state to a
handler nor removes it (`spool.activation.matcher` applies it).

This module is pure: it joins and compares names, and opens, creates and
stats nothing.  The files themselves are written by their owners (the
history by `journal.history`, the pid file by `daemon.pidfile`, ...).
"""

from __future__ import annotations

import os
import re

TABLE = "incoming"
LOG = "incoming.log"
HISTORY = "incoming.history"
PID = "waitd.pid"
STATUS = "waitd.status"
SOCKET = "waitd.sock"
CONF = "waitd.conf"
LOGFILES = "logfiles"  # the handler logs: incoming.N.L
EVENTS = "events"  # the outbox's segments
SOURCES = "sources"  # each source's ledger, lock and state
TMP = ".tmp"  # suffix of a file being rewritten (history, status)
_OWN = frozenset(
    {TABLE, LOG, HISTORY, HISTORY + TMP, PID, STATUS, STATUS + TMP, SOCKET, CONF, LOGFILES, EVENTS, SOURCES}
)
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


def sources_path(passdir: str) -> str:
    return os.path.join(passdir, SOURCES)


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
