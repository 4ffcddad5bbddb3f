# SPDX-License-Identifier: MIT
"""Whether a record can run here: its incoming-dir and handler checked on the system.

`config.table` parses a record without looking at the system; `activate`
then does the checks that need it: the incoming-dir exists and is a
directory (and is not waitd's own logfiles/), the handler is found (in
$PATH for a bare name, else against PASSDIR) and may be executed, and it
is safe from other users (a world-writable handler is refused).  It says
why a record is inactive in an `Activation`; the loop logs that once, and
`--check` and a detaching `waitd` say it on the terminal.
`activate_handler` is the handler's part alone (a queue's incoming/ that
the daemon will make is no reason), `writable_by_others` the check of a
table, waitd.conf or handler that anyone may change.

`matcher` is the record's name template (`config.wildcard`) and, for a
record whose incoming-dir is PASSDIR itself, never matches waitd's own
files (`config.passdir.is_own`); `own_directory` says whether a directory
is PASSDIR or its logfiles/, by device and inode, whatever the path.

This module reads and changes nothing: it stats paths and searches $PATH.
Claiming records also have their queue made (`claims`, by the loop).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass

from waitd.config.passdir import is_own, logfiles_path
from waitd.config.table import Record
from waitd.config.wildcard import Matcher
from waitd.config.wildcard import matcher as template_matcher


@dataclass(slots=True)
class Activation:
    """The result of checking a record against the system."""

    program: str | None  # absolute path of the handler, when found
    problem: str | None  # why the record is inactive, or None


def activate(record: Record, passdir: str, path_env: str) -> Activation:
    """Check the record's directory and handler; say why it cannot run, if so."""
    try:
        st = os.stat(record.directory)
    except OSError as exc:
        return Activation(None, f"incoming-dir {record.directory}: {exc.strerror}")
    if not stat.S_ISDIR(st.st_mode):
        return Activation(None, f"incoming-dir {record.directory}: not a directory")
    if own_directory(record.directory, passdir) == "logfiles":
        return Activation(None, f"incoming-dir {record.directory} is waitd's own logfiles directory")
    return activate_handler(record, passdir, path_env)


def activate_handler(record: Record, passdir: str, path_env: str) -> Activation:
    """`activate` but for the directory: the handler found, or why not."""
    if record.publish_only:
        return Activation(None, None)  # nothing to run: its files are published
    command = record.command
    program = find_program(command, passdir, path_env)
    if program is None:
        where = " in $PATH" if "/" not in command else ""
        return Activation(None, f"process-name {command}: not found{where} or not executable")
    unsafe = writable_by_others(program)
    if unsafe is not None:
        name = command if program == command else f"{command} ({program})"
        return Activation(None, f"process-name {name}: {unsafe}; refusing to run it")
    return Activation(program, None)


def writable_by_others(path: str) -> str | None:
    """Say so when any user may change the file at `path`, else None.

    A table or handler that anyone can write lets anyone run commands as
    waitd's user: the loop warns about such a table, `activate` refuses
    such a handler.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & stat.S_IWOTH:
        return f"writable by others (mode {stat.S_IMODE(mode):04o})"
    return None


def find_program(process: str, passdir: str, path_env: str) -> str | None:
    """Return the absolute path of an executable regular file, or None."""
    if "/" not in process:
        found = shutil.which(process, path=path_env)
        return os.path.abspath(found) if found else None
    candidate = os.path.normpath(os.path.join(passdir, os.path.expanduser(process)))
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return None


def own_directory(directory: str, passdir: str) -> str | None:
    """ "passdir" or "logfiles" when `directory` is that directory of waitd's
    (compared by device and inode, whatever the path), else None."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    for what, path in (("passdir", passdir), ("logfiles", logfiles_path(passdir))):
        try:
            other = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
            return what
    return None


def matcher(record: Record, passdir: str) -> Matcher:
    """The record's template; in PASSDIR itself, waitd's own files never match."""
    match = template_matcher(record.template)
    if own_directory(record.directory, passdir) != "passdir":
        return match
    return match.but(is_own)
