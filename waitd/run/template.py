# SPDX-License-Identifier: MIT
"""What the starts of one record share, and a run's log file opened.

A `Template` is made once a record (and again when the table or the
record's program changes): its log files' path but the letter, the start
of its header line, its environment but the run's own values; each start
then adds only what is its own (issue 21: a start's own cost).

`Template.open_log` opens the record's next log file
(`logfiles/incoming.N.L`): the letter's old one written over when it is a
plain file of waitd's with one link that nothing else has open
(`_recycle`: a lingering child of its old run still writing to it keeps
it), else unlinked and made anew with O_EXCL; never through a planted
link; the old response beside it (`incoming.N.L.response`) removed; and
writes waitd's header line (`formats.handler_log`).
`Template.environment` is waitd's environment with the run's WAITD_*
variables (waitd(8)).  `header_time` reads a log's start time back from
its header (the runner's letters, tlogview's order of runs).

Failures raise `StartError`: the log file cannot be opened.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import signal
import stat
from collections.abc import Mapping, Sequence

from waitd.config.errors import WaitdError
from waitd.config.passdir import handler_log_path
from waitd.config.table import Record
from waitd.decide.outcome import Job
from waitd.formats import handler_log

_LOG_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
_RECYCLE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
RESPONSE = ".response"  # a run's response file: its log's name and this
_EUID: list[int] = []  # waitd's effective uid, asked once (`_recycle`)


class StartError(WaitdError):
    """A run could not start; `recorded` says if a status 1 event was written."""

    def __init__(self, message: str, recorded: bool) -> None:
        super().__init__(message)
        self.recorded = recorded


class Template:
    """What every start of a record shares, made once (issue 21: a start's
    own cost): its log files' path but the letter, its header's start, its
    environment but the run's own WAITD_* variables.  Made anew when the
    record or its program changes (`fits`)."""

    __slots__ = ("record", "program", "base", "command", "_log_prefix", "_head", "_env", "_fields")

    def __init__(self, passdir: str, record: Record, program: str, base: Mapping[str, str]) -> None:
        self.record = record
        self.program = program
        self.base = base
        self.command = record.command  # argv[0]
        self._log_prefix = handler_log_path(passdir, record.number, "")  # ...incoming.N.: the letter goes on
        self._head = handler_log.header_prefix(record.number, record.telem, program)
        env = dict(base)
        # The run's own are set at each start: placed here, they keep their order.
        env.update(
            WAITD_RECORD=str(record.number),
            WAITD_TELEM=record.telem,
            WAITD_FILE="",
            WAITD_PASSDIR=passdir,
            WAITD_LOG="",
            WAITD_RESPONSE="",
            WAITD_ATTEMPT="1",
        )
        self._env = env
        self._fields = record.options.pattern is not None or record.options.fields_from == "json"

    def fits(self, record: Record, program: str, base: Mapping[str, str]) -> bool:
        """Whether this is the template of `record` run as `program`."""
        return record is self.record and program == self.program and base is self.base

    def open_log(self, paths: Sequence[str], letter: str, at: float) -> tuple[str, int, int]:
        """Make the run's log file and write its header; (its path, its
        descriptor, its size then: the header's bytes, -1 if not written)."""
        log_name = self._log_prefix + letter
        log_fd = _recycle(log_name)
        try:
            # The letter's old log is written over when nothing else has it
            # open (`_recycle`); else unlinked and made anew: O_EXCL never
            # follows a planted link.  Never truncated to nothing, which costs
            # ext4 a flush of the old blocks at its close.
            if log_fd < 0:
                _unlink(log_name)
            response = log_name + RESPONSE
            if os.access(response, os.F_OK, follow_symlinks=False):  # most runs leave none: no exception made
                _unlink(response)
            if log_fd < 0:
                log_fd = os.open(log_name, _LOG_FLAGS, 0o644)
                recycled = False
            else:
                recycled = True
        except OSError as exc:
            if log_fd >= 0:
                os.close(log_fd)
            raise StartError(f"cannot open log file {log_name}: {exc.strerror}", recorded=False) from exc
        head = handler_log.header_of(self._head, paths, at).encode("utf-8", "surrogateescape")
        try:
            written = os.write(log_fd, head)
        except OSError:
            written = -1  # a full disk must not stop the run; the history still says it
        if recycled:
            try:
                os.ftruncate(log_fd, written if written > 0 else 0)  # what the old run left goes
                fcntl.fcntl(log_fd, fcntl.F_SETFL, os.O_APPEND)  # as made anew: the handler appends
            except OSError as exc:
                os.close(log_fd)
                raise StartError(f"cannot open log file {log_name}: {exc.strerror}", recorded=False) from exc
        return log_name, log_fd, written if written == len(head) else -1

    def environment(self, job: Job, log_name: str) -> dict[str, str]:
        """`environment` of a run of the record: a copy of the template's,
        the run's own values set."""
        env = self._env.copy()
        env["WAITD_FILE"] = job.path
        env["WAITD_LOG"] = log_name
        env["WAITD_RESPONSE"] = log_name + RESPONSE
        if job.attempt != 1:
            env["WAITD_ATTEMPT"] = str(job.attempt)
        if job.group is not None:
            env["WAITD_GROUP"] = job.group
        if self._fields:
            for name, value in job.fields.items():
                if name not in ("name", "stem", "suffix", "dir", "telem"):
                    env[f"WAITD_F_{name}"] = _env_value(value)
        return env


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _recycle(path: str) -> int:
    """The letter's old log file, open to be written over from its start,
    or -1 (then it is made anew): only a plain file of waitd's with one
    link, that no other descriptor has open (a write lease is refused
    then: a lingering child of its old run still writing to it keeps it,
    its output never lands in a new run's log).  The lease is let go at
    once; its break, should a process open the file meanwhile, is told
    with SIGCHLD (handled), not SIGIO (which would end waitd)."""
    try:
        fd = os.open(path, _RECYCLE_FLAGS)
    except OSError:
        return -1  # not there (the first runs), or a planted symlink
    try:
        st = os.fstat(fd)
        if not _EUID:
            _EUID.append(os.geteuid())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != _EUID[0]:
            raise OSError("not a log file of waitd's own")
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGCHLD)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)  # refused while any other descriptor has it open
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _env_value(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def header_time(path: str) -> int | None:
    """The start time (ms since the epoch) in a log's header line, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.read(fd, 8192)
    except OSError:
        return None
    finally:
        os.close(fd)
    line, newline, _ = head.partition(b"\n")
    found = handler_log.parse_header(line.decode("ascii", "replace")) if newline else None
    return found.at_ms if found is not None else None
