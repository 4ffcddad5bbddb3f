# SPDX-License-Identifier: MIT
"""A handler run on a Celery worker (`waitd worker`), as the local executor runs it.

`run` is the body of waitd's Celery task.  It executes the handler as
the local executor (`run.executors.local.Local`) does: argv as given
(never a shell), the environment given, the incoming directory as working
directory, its own session (process group), stdin from /dev/null, stdout
and stderr on one file, every signal at its default.  It does so through a small supervisor, a
forked child of the pool process, so that the handler's process group
never outlives the worker that started it, whatever kills the worker:

- the supervisor leaves the worker's process group for one of its own,
  so that a kill of that whole group (`kill -9 -- -PGID`, job control)
  does not take it along before it has killed the handler's group;
- it asks the kernel for SIGTERM when the pool process dies
  (PR_SET_PDEATHSIG through ctypes), and then kills the group;
- it watches the worker's main process (a pidfd) and kills the group when
  that one dies (a worker SIGKILLed: its pool processes may linger);
- it kills the group at the run's deadline (its start plus `timeout=`,
  sent by waitd), in case waitd's revoke never reaches the worker;
- the handler itself gets SIGKILL when the supervisor dies
  (PR_SET_PDEATHSIG), and the pool process then kills what is left of
  its group: the supervisor killed on its own (`pkill -f`, the OOM
  killer) leaves nothing running either.

Limits: a handler that leaves its process group (setsid, a daemon) is
out of reach, as with the local executor; and when the supervisor and
the pool process die at once by SIGKILL, only the handler's own process
dies with them (the kernel's death signal), not what it started.

The result is a dict (JSON): `exit` or `signal`, `took` (seconds on the
worker), `host`, `pid` (the handler's), the output (base64, the first
`cap` bytes) and its full size, the response the handler left at
WAITD_RESPONSE (a file of the worker's own, base64, at most RESPONSE_CAP
bytes), and `lost` when the supervisor killed the
handler because its worker died.  A handler that cannot be executed ends
with exit 127 and says why in its output, as a shell would.

This module does not import Celery: the task is registered by
`worker.app`, and the tests call `run` directly.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import select
import signal
import socket
import tempfile
import time
from typing import Any

from waitd.run.executors.local import signal_name

OUTPUT_CAP = 1 << 20  # bytes of output a result carries
RESPONSE_CAP = 65536 + 1  # bytes of a response a result carries: one more than waitd takes
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
# Every signal a handler starts with at its default (the pool ignores some).
_DEFAULTS = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


def run(
    program: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    deadline: float | None = None,
    cap: int = OUTPUT_CAP,
) -> dict[str, Any]:
    """Run the handler under a supervisor; its result (see the module)."""
    began = time.monotonic()
    with tempfile.TemporaryFile(prefix="waitd-") as out, tempfile.TemporaryDirectory(prefix="waitd-") as private:
        env = {**env, "WAITD_RESPONSE": os.path.join(private, "response")}  # on this host; sent back
        report_r, report_w = os.pipe()
        master = os.getppid()  # the worker's main process, for a pool process
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the supervisor; it leaves by os._exit
            code = 70
            try:
                os.close(report_r)
                code = _supervise(parent, master, program, argv, env, cwd, deadline, out.fileno(), report_w)
            finally:
                os._exit(code)
        os.close(report_w)
        try:
            report = _read_all(report_r).decode("ascii", "replace").split()
        except BaseException:
            # Celery's terminate (a revoke) raises here in the pool process:
            # the supervisor kills the handler's group before it goes.
            os.kill(pid, signal.SIGTERM)
            raise
        finally:
            os.close(report_r)
            os.waitpid(pid, 0)
        _orphans(report)
        took = time.monotonic() - began
        output, size = _output(out, cap)
        response = _response(env["WAITD_RESPONSE"])
    result: dict[str, Any] = {"took": round(took, 3), "host": socket.gethostname(), "size": size}
    result["output"] = base64.b64encode(output).decode("ascii")
    if response is not None:
        result["response"] = base64.b64encode(response).decode("ascii")
    fields = dict(item.partition("=")[::2] for item in report)
    if "pid" in fields:
        result["pid"] = int(fields["pid"])
    if "error" in fields:
        result["exit"] = 127
        result["error"] = bytes.fromhex(fields["error"]).decode("utf-8", "replace")
    elif "lost" in fields:
        result["lost"] = fields["lost"]
    elif "code" in fields:
        code = int(fields["code"])
        if code < 0:
            result["signal"] = signal_name(-code)
        else:
            result["exit"] = code
        if "deadline" in fields:
            result["deadline"] = True
    else:
        result["lost"] = "its supervisor ended without a report"
    return result


def _supervise(
    parent: int,
    master: int,
    program: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    deadline: float | None,
    out_fd: int,
    report_fd: int,
) -> int:  # pragma: no cover - runs in the forked supervisor
    """Start the handler, wait for it, report; kill its group if the pool
    process, the worker or the deadline goes first."""
    handler = 0

    def kill_group(signum: int = 0, frame: object = None) -> None:
        if handler:
            try:
                os.killpg(handler, signal.SIGKILL)
            except OSError:
                pass
        os._exit(71)

    signal.signal(signal.SIGTERM, kill_group)
    # Out of the worker's process group: a kill of that whole group (job
    # control, `kill -9 -- -PGID`) must leave this process to kill the
    # handler's, which is in a session of its own.
    os.setpgid(0, 0)
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != parent:
        return 72  # no death signal, or the pool process already gone
    master_fd = _pidfd(master)
    try:
        os.chdir(cwd)
        handler = _spawn(program, argv, env, out_fd)
    except OSError as exc:
        message = f"waitd worker: cannot execute {program} in {cwd}: {exc.strerror or exc}\n"
        os.write(out_fd, message.encode("utf-8", "surrogateescape"))
        os.write(report_fd, f"error={(exc.strerror or str(exc)).encode().hex()}\n".encode())
        return 0
    os.write(report_fd, f"pid={handler}\n".encode())
    os.write(report_fd, _watch(handler, parent, master_fd, deadline))
    return 0


def _watch(handler: int, parent: int, master_fd: int | None, deadline: float | None) -> bytes:  # pragma: no cover
    """Wait for the first of: the handler's end, the death of its worker
    (its main process, `master_fd`, or the pool process, `parent`), the
    deadline; kill the handler's group but at its end.  The report's line."""
    handler_fd = _pidfd(handler)
    while True:
        ready = _wait([fd for fd in (handler_fd, master_fd) if fd is not None], deadline)
        if handler_fd is None or handler_fd in ready:
            pid, status = os.waitpid(handler, 0 if handler_fd is not None else os.WNOHANG)
            if pid:
                return f"code={os.waitstatus_to_exitcode(status)}\n".encode()
        if master_fd in ready or (master_fd is None and os.getppid() != parent):
            _kill_group(handler)
            return b"lost=its-worker-died\n"
        if deadline is not None and time.time() >= deadline:
            status = _kill_group(handler)
            return f"code={os.waitstatus_to_exitcode(status)} deadline=1\n".encode()


def _wait(fds: list[int], deadline: float | None) -> list[int]:  # pragma: no cover - supervisor
    """The descriptors ready within a second, or by the deadline if sooner."""
    if not fds:
        return []
    timeout_s = 1.0 if deadline is None else min(max(0.0, deadline - time.time()), 1.0)
    return select.select(fds, [], [], timeout_s)[0]


def _kill_group(handler: int) -> int:  # pragma: no cover - supervisor
    """SIGKILL the handler's process group; its wait status once reaped."""
    os.killpg(handler, signal.SIGKILL)
    return os.waitpid(handler, 0)[1]


def _spawn(program: str, argv: list[str], env: dict[str, str], out_fd: int) -> int:  # pragma: no cover - supervisor
    """Fork and execute the handler, as the local executor does (its own session,
    stdin from /dev/null, stdout and stderr on `out_fd`, every signal at
    its default and none blocked), and with SIGKILL when this supervisor
    dies (PR_SET_PDEATHSIG), however it dies.  Its pid; OSError if it
    cannot be executed."""
    supervisor = os.getpid()
    failed_r, failed_w = os.pipe()  # close-on-exec: EOF once the handler is executed
    pid = os.fork()
    if pid == 0:
        try:
            os.close(failed_r)
            os.setsid()
            if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != supervisor:
                os._exit(127)  # the supervisor is gone already
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            for signum in _DEFAULTS:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.execve(program, argv, env)
        except OSError as exc:
            os.write(failed_w, str(exc.errno or 0).encode())
        finally:
            os._exit(127)
    os.close(failed_w)
    try:
        failed = _read_all(failed_r)
    finally:
        os.close(failed_r)
    if failed:
        os.waitpid(pid, 0)
        number = int(failed)
        raise OSError(number, os.strerror(number))
    return pid


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _orphans(report: list[str]) -> None:
    """The supervisor died without a word of the handler's end (killed
    itself): the handler died with it (PR_SET_PDEATHSIG); kill what is
    left of its process group."""
    fields = dict(item.partition("=")[::2] for item in report)
    if "pid" in fields and not {"code", "lost", "error"} & fields.keys():
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(fields["pid"]), signal.SIGKILL)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _response(path: str) -> bytes | None:
    """What the handler left at WAITD_RESPONSE (at most RESPONSE_CAP bytes:
    more is too big for waitd anyway, and it says so)."""
    try:
        with open(path, "rb") as f:
            return f.read(RESPONSE_CAP)
    except OSError:
        return None


def _output(out: Any, cap: int) -> tuple[bytes, int]:
    """The first `cap` bytes of the output file, and its size."""
    size = os.fstat(out.fileno()).st_size
    return os.pread(out.fileno(), min(size, cap), 0), size
