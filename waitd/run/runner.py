# SPDX-License-Identifier: MIT
"""A run's log file, its environment and its start in the history.

A start has three steps.  Its record's `template.Template` opens the
record's next log file (`logfiles/incoming.N.L`: the letter's old one
written over when it is a plain file of waitd's that nothing else has
open, else unlinked and made anew with O_EXCL; never through a planted
link), writes waitd's header line, and gives the run's environment.
`commit` records
the status 0 events of every start of a pass with the journal, with one
sync (a group commit): each status 0 line is on disk before its handler
runs, and a start that cannot be recorded never runs (its log file says
so).  Then the executor runs the handler (and the launcher tells the
journal its pid).  `footer` closes the log with waitd's footer line: the
outcome, the duration, and a retry time when one is set.

Each run may leave a response (formats.response) in the file
`response_name` names, beside its log (`incoming.N.L.response`, recycled
with the letter: opening the log removes the old one); WAITD_RESPONSE names it.
`response_of` reads it back (at most MOST + 1 bytes, never through a
link) and parses it (BadResponse), keeping one that came from a Celery
worker there;
`log_tail` reads the end of a run's log for its `ended` event, and
`read_body` the run's file as a message (for a `format = isis` sink).

The lines waitd writes into a log, and their order of letters, are
`formats.handler_log`'s.  `last_letter` finds, at start, the letter of a
record's most recent run from the start times in the header lines (not
from the mtimes, which a handler's background child can change), and
`next_letter` cycles A..Z.

Failures raise `StartError`: the log file cannot be opened, or the starts
cannot be recorded (`HistoryWriteError` as cause; none of the group is).
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any

from waitd.config.errors import HistoryWriteError, WaitdError
from waitd.config.passdir import handler_log_path, logfiles_path
from waitd.config.table import Record
from waitd.decide.outcome import Job, Outcome
from waitd.formats import handler_log, isis, response
from waitd.formats.handler_log import LETTERS, newest_first
from waitd.journal.history import Event, Status
from waitd.journal.writer import Journal
from waitd.run.runs import Run
from waitd.run.template import RESPONSE, StartError, Template, header_time

__all__ = ["StartError", "Template"]  # the launcher's, from here

next_letter = handler_log.next_letter  # the launcher picks a run's letter here


def make_logfiles(passdir: str) -> bool:
    """Make $PASSDIR/logfiles if it is missing; True if it was made.

    Raise WaitdError for one that is a symbolic link or not a directory
    (never followed, never replaced), or that cannot be made.
    """
    path = logfiles_path(passdir)
    made = True
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        made = False
    except OSError as exc:
        raise WaitdError(f"{path}: cannot make the directory: {exc.strerror or exc}") from exc
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise WaitdError(f"{path}: is a symbolic link; waitd does not follow links in PASSDIR")
    if not stat.S_ISDIR(st.st_mode):
        raise WaitdError(f"{path}: is not a directory")
    return made


def last_letter(passdir: str, record: int) -> str | None:
    """The letter of the record's most recent run's log file, if any.

    Runs are ordered by the start time in the header line waitd wrote at
    the top of each log, before the handler ran: not by the file's mtime,
    which a handler's background child writing to the log later bumps.  A
    file without waitd's header is not one of its logs and is ignored.
    """
    started = {}
    for letter in LETTERS:
        at = header_time(handler_log_path(passdir, record, letter))
        if at is not None:
            started[letter] = at
    order = newest_first(started)
    return order[0] if order else None


def start_events(job: Job, at: float, task: str | None = None) -> list[Event]:
    """The status 0 events of a run (one a file), written before its handler
    runs; a Celery run's carry its task id (`task`), known before it is sent."""
    return [
        Event(
            path,
            job.process,
            fact.mtime_ns // 1_000_000_000,
            Status.STARTED,
            at=at,
            attempt=job.attempt if job.attempt > 1 else None,
            group=job.group,
            task=task,
            version=fact.version,
        )
        for fact, path in zip(job.facts, job.paths, strict=True)
    ]


def task_log(passdir: str, record: int, task: str) -> tuple[str, int]:
    """The log file of a Celery run a previous waitd started (its second
    line names the task), open to append; ("", -1) if there is none."""
    mark = handler_log.task_mark(task)
    for letter in LETTERS:
        path = handler_log_path(passdir, record, letter)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            head = os.pread(fd, 8192, 0).split(b"\n", 2)
        except OSError:
            head = []
        if len(head) > 1 and head[1].startswith(mark):
            return path, fd
        os.close(fd)
    return "", -1


def commit(starts: list[tuple[Run, Record, list[Event]]], journal: Journal) -> None:
    """Record the status 0 events of these starts (each with its record)
    with one sync (a group commit); if that fails none is recorded, each
    log file says so and is closed, and StartError is raised."""
    try:
        journal.started([(record, events) for _, record, events in starts], [run.body for run, _, _ in starts])
    except HistoryWriteError as exc:
        for run, _, _ in starts:
            _write(run.log_fd, handler_log.footer(run.number, error=f"not started: {exc}", took=0.0, at=time.time()))
            os.close(run.log_fd)
            run.log_fd = -1
        raise StartError(f"cannot record the start, not running it: {exc}", recorded=False) from exc


def footer(run: Run, outcome: Outcome, end: Event) -> None:
    """Write waitd's footer line to the run's log file and close it."""
    if run.log_fd < 0:
        return
    line = handler_log.footer(
        run.number,
        exit=outcome.exit,
        signal=outcome.signal,
        error=end.error,
        attempt=end.attempt,
        retry_at=end.retry_at,
        took=end.took or 0.0,
        at=time.time(),
    )
    if not _ends_line(run.log_fd, run.log_head):
        line = "\n" + line  # the footer gets a line of its own
    _write(run.log_fd, line)
    os.close(run.log_fd)
    run.log_fd = -1


def response_name(log_name: str) -> str:
    """Where a run's response is kept: beside its log."""
    return log_name + RESPONSE


def response_of(run: Run, sent: bytes | None) -> response.Response | None:
    """The response a run left beside its log, or the one its Celery worker
    `sent` back (kept there); None if none; BadResponse if waitd cannot
    take it."""
    if not run.log_name or run.adopted:
        return None
    if sent is not None:
        keep_response(run.log_name, sent)
    data = sent if sent is not None else read_response(run.log_name)
    return response.parse(data) if data is not None else None


def read_response(log_name: str) -> bytes | None:
    """The bytes of a run's response file (at most response.MOST + 1: more
    is too big anyway); None if it has none.  Most runs leave none: asked
    first with access(2), which says so with no exception made (a third of
    an open's cost); then opened, never through a link."""
    name = response_name(log_name)
    if not os.access(name, os.F_OK):
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        chunks = []
        left = response.MOST + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def keep_response(log_name: str, data: bytes) -> None:
    """Keep the response a Celery worker sent back beside the run's log."""
    name = response_name(log_name)
    try:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        return  # the log says what happened; the event carries the response
    try:
        os.write(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_body(path: str) -> dict[str, Any] | None:
    """The JSON object of a run's file (a source message), or None."""
    try:
        with open(path, "rb") as f:
            return isis.body_of(f.read(isis.BODY_MOST + 1))
    except OSError:
        return None


def log_tail(run: Run) -> str | None:
    """The end of a run's log (what its handler wrote, waitd's header left
    out when it is in reach), before the footer; None without one."""
    if run.log_fd < 0:
        return None
    try:
        size = os.fstat(run.log_fd).st_size
        start = max(0, size - response.TAIL)
        data = os.pread(run.log_fd, size - start, start)
    except OSError:
        return None
    if start == 0:
        data = data.partition(b"\n")[2]  # the header line
    return response.tail(data)


def _ends_line(fd: int, head: int = -1) -> bool:
    """Whether the log ends a line (or is empty); `head`: the size of the
    header waitd wrote, a whole line (no read when the handler wrote nothing).
    The size is lseek's to the end, not fstat's (no stat result made): the
    descriptor appends, so where its offset stands does not matter."""
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        return size == 0 or size == head or os.pread(fd, 1, size - 1) == b"\n"
    except OSError:
        return True


def _write(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
    except OSError:
        pass  # a full disk must not stop the run; the history still says it
