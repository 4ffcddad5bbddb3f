# SPDX-License-Identifier: MIT
"""One message, one file in a waitd queue: exactly once.

`Spooler.put` takes a batch of messages and returns once each is in the
queue, where it stays, or known not to need a file: only then does the
source acknowledge them.  For each message:

- its body is checked: at most `max-size` bytes, a JSON object (a posttroll
  message's data, already one), with the fields `name=` needs.  One that
  is not goes to Q/errors as a JSON object saying why (`error`), with the
  message's id, headers and the start of its body, and is logged once;
- its NAME is `name=` rendered with the body's fields, or the message's id
  (made a file name: `safe`);
- a NAME in the ledger (below) is a redelivery: nothing is written;
- a NAME cancelled before it came (`cancelled`) goes to Q/errors at once;
- otherwise the body is written into Q/tmp, the NAME appended to the
  ledger, both made durable, and the file renamed into Q/incoming
  without replacing anything (RENAME_NOREPLACE: a NAME waiting there,
  claimed in Q/pending/*, or in Q/errors, is a message taken already); then Q/incoming is
  fsync'd.  Durable: each file and the ledger fsync'd, or, for a batch of
  SYNCFS_AT files or more, one syncfs(2) of the queue's filesystem and an
  fsync of the ledger (whose filesystem may be another): a burst costs a
  few syncs a batch, not one a message (a fsync of a new file costs a
  journal commit, some milliseconds).

The ledger, $PASSDIR/sources/SOURCE.names, is what makes a redelivered
message run at most once: one line a NAME (`+ NAME` taken, `x NAME`
cancelled), appended before the rename into incoming.  A kill -9 at any
point leaves one of: nothing (the message comes again: written anew); a
file in Q/tmp and no line (removed at the next start, the message comes
again); a line and a file in Q/tmp (the next start renames it into
incoming: `recover`; the message that comes again finds its NAME taken);
a line and the file in incoming (it comes again and is acknowledged
only).  The ledger keeps the last KEEP names; it is rewritten (tmp,
fsync, rename) when it holds twice as many: a message given again is one
not acknowledged yet, never one that old.

posttroll has no acknowledgement: what was sent while the source was
down is not seen, and a `uid` seen again is a NAME in the ledger: it is
not run again.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from waitd.config import namefields
from waitd.formats.history_line import escape
from waitd.journal.disk import fsync_dir
from waitd.spool import queue as q

log = logging.getLogger("waitd")

KEEP = 100_000  # names the ledger remembers
SYNCFS_AT = 4  # files in a batch from which one syncfs(2) makes them durable
MAX_NAME = 170  # bytes of a NAME: its tmp name (source-error.SOURCE.NAME, SOURCE up to 64) fits NAME_MAX, 255
SHOWN_BODY = 4096  # bytes of a bad body kept in its errors/ file
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,:=+@-]")


@dataclass(slots=True)
class Message:
    """One message of a source: its id, its body, and what acks it."""

    id: str
    body: bytes | dict[str, Any]  # a STOMP body; a posttroll message's data (an object already)
    headers: Mapping[str, Any] = field(default_factory=dict)
    token: Any = None  # the kind's: what `ack` needs
    cancel: bool = False  # from the cancel destination


@dataclass(slots=True)
class Placed:
    """What became of a message: its NAME and where it went."""

    name: str
    where: str  # incoming, duplicate, errors, cancelled
    path: str | None = None
    why: str | None = None


def safe(text: str) -> str:
    """A message id made a file name: odd characters as _, not hidden."""
    name = _UNSAFE.sub("_", text)[:MAX_NAME]
    return name if name and name[0] != "." else f"m{name}"[:MAX_NAME]


class Spooler:
    def __init__(self, source: str, ledger_path: str, queue: str, name_format: str | None, max_size: int) -> None:
        self.source = source
        self.queue = q.Queue(queue)
        self.name_format = name_format
        self.max_size = max_size
        self.ledger_path = ledger_path
        self.taken: set[str] = set()
        self.cancelled: set[str] = set()
        self.count = 0  # lines in the ledger
        self._ledger: Any = None

    # -- start ---------------------------------------------------------------------

    def open(self) -> None:
        """Make the queue's directories, read the ledger, finish what a
        previous process left half done."""
        self.queue.make()
        lines = _read_lines(self.ledger_path)
        for line in lines:
            mark, _, name = line.partition(" ")
            (self.taken if mark == "+" else self.cancelled).add(name)
        self.count = len(lines)
        if self.count > 2 * KEEP:
            self._compact(lines[-KEEP:])
        self._ledger = open(self.ledger_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self.recover()

    def _trim(self) -> None:
        """The ledger holds twice KEEP names: rewritten with the last KEEP."""
        self.close()
        self._compact(_read_lines(self.ledger_path)[-KEEP:])
        self._ledger = open(self.ledger_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    def _compact(self, lines: list[str]) -> None:
        tmp = self.ledger_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.ledger_path)
        self.taken, self.cancelled = set(), set()
        for line in lines:
            mark, _, name = line.partition(" ")
            (self.taken if mark == "+" else self.cancelled).add(name)
        self.count = len(lines)

    def recover(self) -> None:
        """Files of this source left in Q/tmp: those in the ledger go where
        they were going (their messages were taken), the others are
        removed (not acknowledged: they come again)."""
        for bad, directory in ((False, self.queue.incoming), (True, self.queue.errors)):
            prefix = self._tmp_prefix(bad)
            with os.scandir(self.queue.tmp) as it:
                mine = [e.name for e in it if e.name.startswith(prefix)]
            for tmp_name in mine:
                name = tmp_name[len(prefix) :]
                path = os.path.join(self.queue.tmp, tmp_name)
                if name not in self.taken:
                    os.unlink(path)
                elif bad:
                    q.move_unique(path, directory, name)
                elif not q.rename_noreplace(path, os.path.join(directory, name)):
                    os.unlink(path)
                else:
                    log.info("source %s: %s: put into %s (taken before a crash)", self.source, escape(name), directory)
            if mine:
                fsync_dir(directory)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # -- messages --------------------------------------------------------------------

    def put(self, messages: Iterable[Message]) -> list[Placed]:
        """Put each message where it goes (see the module); return once all
        are there, durably: then they may be acknowledged."""
        placed: list[Placed] = []
        new: list[tuple[Placed, str]] = []  # and its tmp path
        names: set[str] = set()
        for msg in messages:
            try:
                body, name, why = self.read(msg)
            except Exception as exc:  # input: never a crash, nor one again at each redelivery
                body, name, why = b"", safe(msg.id), f"cannot be read: {type(exc).__name__}: {exc}"
            if why is not None:
                placed.append(self._bad(msg, name, why))
            elif name in self.taken or name in names:
                placed.append(Placed(name, "duplicate"))
            elif name in self.cancelled:
                placed.append(self._bad(msg, name, "cancelled before it came", body))
            else:
                names.add(name)
                item = Placed(name, "incoming")
                placed.append(item)
                new.append((item, self._write_tmp(name, body, synced=False)))
        if new:
            self._sync([tmp for _, tmp in new])
            self._note("+", [item.name for item, _ in new])
            for item, tmp in new:
                target = os.path.join(self.queue.incoming, item.name)
                if self._elsewhere(item.name) or not q.rename_noreplace(tmp, target):
                    os.unlink(tmp)
                    item.where = "duplicate"
                else:
                    item.path = target
            fsync_dir(self.queue.incoming)
        return placed

    def read(self, msg: Message) -> tuple[bytes, str, str | None]:
        """The body as written, the NAME, and why it cannot be taken (or None)."""
        fallback = safe(msg.id)
        if isinstance(msg.body, dict):
            body = msg.body
            data = json.dumps(body, sort_keys=True, default=str).encode()
        else:
            data = msg.body
            if len(data) > self.max_size:
                return data, fallback, f"too big: {len(data)} bytes (max-size = {self.max_size})"
            try:
                body = json.loads(data)
            except (ValueError, RecursionError) as exc:
                return data, fallback, f"not JSON: {exc}"
            if not isinstance(body, dict):
                return data, fallback, "not a JSON object"
        if self.name_format is None:
            return data, fallback, None
        name = namefields.render(self.name_format, body)
        if name is None:
            fields = ", ".join(namefields.named(self.name_format))
            return data, fallback, f"lacks a field name = {self.name_format} needs ({fields}), or it does not fit"
        if (
            not name
            or not name.isprintable()
            or "/" in name
            or name in (".", "..")
            or name.startswith(".")
            or len(name.encode()) > MAX_NAME
        ):
            return data, fallback, f"name = {self.name_format} gives {name!r}, which is no file name"
        return data, name, None

    def _elsewhere(self, name: str) -> bool:
        """The NAME is claimed in Q/pending/* already, or failed for good in
        Q/errors (a message taken before the ledger's memory)."""
        if os.path.lexists(os.path.join(self.queue.errors, name)):
            return True
        try:
            with os.scandir(os.path.join(self.queue.root, "pending")) as it:
                return any(os.path.lexists(os.path.join(e.path, name)) for e in it)
        except FileNotFoundError:
            return False

    def _tmp_prefix(self, bad: bool = False) -> str:
        return f"source{'-error' if bad else ''}.{self.source}."

    def _write_tmp(self, name: str, data: bytes, bad: bool = False, synced: bool = True) -> str:
        path = os.path.join(self.queue.tmp, self._tmp_prefix(bad) + name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if synced:
                os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def _sync(self, paths: list[str]) -> None:
        """Make the files written durable: each fsync'd, or a batch at once."""
        if len(paths) >= SYNCFS_AT and _syncfs(self.queue.tmp):
            return
        for path in paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _note(self, mark: str, names: list[str]) -> None:
        """Append to the ledger, fsync'd."""
        assert self._ledger is not None
        self._ledger.write("".join(f"{mark} {n}\n" for n in names))
        self._ledger.flush()
        os.fsync(self._ledger.fileno())
        (self.taken if mark == "+" else self.cancelled).update(names)
        self.count += len(names)
        if self.count > 2 * KEEP:
            self._trim()

    def _bad(self, msg: Message, name: str, why: str, body: bytes | None = None) -> Placed:
        """Into Q/errors, saying why; logged (once: its NAME is then taken)."""
        if name in self.taken:
            return Placed(name, "duplicate")
        if body is not None and why.startswith("cancelled"):
            data = body
        else:
            raw = msg.body if isinstance(msg.body, bytes) else json.dumps(msg.body, default=str).encode()
            record = {
                "error": why,
                "source": self.source,
                "message_id": msg.id,
                "headers": {str(k): str(v) for k, v in msg.headers.items()},
                "body": raw[:SHOWN_BODY].decode("utf-8", "replace"),
                "body_bytes": len(raw),
            }
            data = json.dumps(record, sort_keys=True).encode()
        tmp = self._write_tmp(name, data, bad=True)
        self._note("+", [name])
        target = q.move_unique(tmp, self.queue.errors, name)
        fsync_dir(self.queue.errors)
        log.warning("source %s: message %s: %s; put into %s", self.source, escape(msg.id), why, escape(target))
        return Placed(name, "errors" if not why.startswith("cancelled") else "cancelled", target, why)

    def remember_cancel(self, name: str) -> None:
        self._note("x", [name])


_LIBC = ctypes.CDLL(None, use_errno=True)


def _syncfs(directory: str) -> bool:
    """syncfs(2) of the filesystem of `directory`; False where there is none
    (then each file is fsync'd).  OSError if it fails."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        return False
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), directory)
    finally:
        os.close(fd)
    return True


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line[:2] in ("+ ", "x ")]
