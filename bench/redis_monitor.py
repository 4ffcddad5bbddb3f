# SPDX-License-Identifier: MIT
"""Redis's own record of the commands it runs, for bench/celery.py.

`Monitor` runs `redis-cli monitor` (a process of its own, in C: it takes
no CPU of the process measured) and reads what it wrote: Redis stamps
each command it runs with its own clock, in microseconds, whoever sent
it.  `mark` puts a label in that record (an ECHO, sent on a connection of
its own, waited for until the record has it), so that what follows can
be told apart; `parts` cuts the record at the marks and, for each run of
Celery's task, gives the client's part of a run (from the worker's
publish of a result, SUCCESS, FAILURE or REVOKED, to the next task's
push onto the queue: the client's reading of the result, its own work
and its send) and the worker's part (from a task's push to its result's
publish: the worker's and Redis's time, the same whoever sends).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from bench.common import LogTail, Proc, wait_for

_LINE = re.compile(r'^(\d+\.\d+) \[[^\]]*\] "([A-Za-z]+)" "((?:[^"\\]|\\.)*)"(.*)$')
_ENDED = tuple(f'\\"status\\": \\"{s}\\"' for s in ("SUCCESS", "FAILURE", "REVOKED"))
_MARK = "waitd-bench-mark "


class Monitor:
    """`redis-cli monitor` of the Redis on `port`, into ROOT/NAME.out."""

    def __init__(self, root: Path, port: int, name: str = "redis-monitor") -> None:
        self.port = port
        self.path = root / f"{name}.out"
        self.proc = Proc(["redis-cli", "-p", str(port), "monitor"], root, name)
        self.marks = 0
        self.tail = LogTail(self.path)  # read on from where the last mark was found
        wait_for(lambda: self.path.read_bytes().startswith(b"OK"), 10, "redis-cli monitor")

    def mark(self, label: str) -> None:
        """A label in the record, there once this returns."""
        self.marks += 1
        text = f"{_MARK}{self.marks} {label}"
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(f"ECHO {text.replace(' ', '_')}\r\n".encode())
            s.recv(256)
        wait_for(lambda: self.tail.seen(text.replace(" ", "_")), 10, "redis-cli monitor")

    def parts(self, queue: str) -> list[tuple[str, list[float], list[float]]]:
        """`parts` of the record so far."""
        return parts(self.path.read_text(errors="replace"), queue)

    def stop(self) -> None:
        self.proc.stop()


def parts(record: str, queue: str) -> list[tuple[str, list[float], list[float]]]:
    """For each stretch of a MONITOR record between two marks, its label,
    the client's parts and the worker's parts (seconds) of the runs in it,
    as described above (a client's part only between two runs of the
    stretch: not before its first push)."""
    stretches: list[tuple[str, list[float], list[float]]] = []
    label = ""
    client: list[float] = []
    worker: list[float] = []
    pushed = ended = None
    for line in record.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        at, command, key, rest = float(m[1]), m[2].lower(), m[3], m[4]
        if command == "echo" and key.startswith(_MARK.replace(" ", "_")):
            if label:
                stretches.append((label, client, worker))
            label = key.split("_", 2)[2]
            client, worker, pushed, ended = [], [], None, None
        elif command == "lpush" and key == queue:
            if ended is not None:
                client.append(at - ended)
            pushed, ended = at, None
        elif command == "publish" and key.startswith("celery-task-meta-") and any(e in rest for e in _ENDED):
            if pushed is not None:
                worker.append(at - pushed)
            pushed, ended = None, at
    if label:
        stretches.append((label, client, worker))
    return stretches
