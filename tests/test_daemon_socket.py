# SPDX-License-Identifier: MIT
"""The control socket: status as JSON, retry, cancel, and who may ask."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import jsonschema
from conftest import ROOT, Station, deliver, quiet_for, wait_for

from waitd.journal.history import Status

SCHEMA = json.loads((ROOT / "doc" / "status.schema.json").read_text())


def test_socket_is_private_and_status_json_has_the_documented_shape(station):
    station.gated()
    station.handler("bad", "exit 75\n")
    station.table(
        f"x in *.d {station.passdir}/gated 0 -1 0 jobs=2 timeout=60 key={{stem}}",
        f"y in *.f {station.passdir}/bad 0 -1 0 retries=1 retry=3600",
        "z missing *.z rec 0 -1 0",
    )
    station.drop("a.d", age_s=5)
    station.drop("c.f", age_s=5)
    station.start()
    wait_for(lambda: station.ran(), 10, "a.d's run")
    wait_for(lambda: len(station.ends()) == 1, 10, "c.f's first attempt")
    st = os.lstat(station.passdir / "waitd.sock")
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    r = station.run("-s", "status", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    jsonschema.validate(status, SCHEMA)
    x, y, z = status["records"]
    assert [run["file"] for run in x["running"]] == [str(station.incoming / "a.d")]
    assert x["running"][0]["attempt"] == 1 and x["running"][0]["pid"] > 1
    assert x["options"]["jobs"] == 2 and x["options"]["key"] == "{stem}" and x["options"]["topic"] == "x"
    assert [item["file"] for item in y["retrying"]] == ["c.f"]
    assert z["problem"]
    # The status file holds the same document.
    jsonschema.validate(json.loads((station.passdir / "waitd.status").read_text()), SCHEMA)
    station.open_gate("a.d")
    assert station.stop() == 0
    assert not (station.passdir / "waitd.sock").exists()


def test_retry_runs_a_final_failure_again_as_a_new_attempt(station):
    code = station.passdir / "code"
    code.write_text("3")
    station.handler("h", f'echo "$WAITD_ATTEMPT" >> "{station.passdir}/attempts"\nexit $(cat "{code}")\n')
    station.table(f"x in *.d {station.passdir}/h 0 -1 0")
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: len(station.ends()) == 1, 10, "the failed run")
    code.write_text("0")
    path = str(station.incoming / "a.d")
    r = station.run("-s", "retry", path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "to run again now" in r.stdout
    wait_for(lambda: station.ends()[-1].exit == 0, 10, "the second attempt")
    # The failure, the operator's retry (the same end, to run again now), the success.
    assert [(e.exit, e.runs, e.retry_at is not None) for e in station.ends()] == [
        (3, 1, False),
        (3, 1, True),
        (0, 2, False),
    ]
    assert (station.passdir / "attempts").read_text().split() == ["1", "2"]
    # Nothing to retry now, and a path no record takes.
    r = station.run("-s", "retry", path, str(station.root / "elsewhere"))
    assert r.returncode == 1
    assert "handled with exit 0: nothing to retry" in r.stderr
    assert "no record of the table takes this file" in r.stderr
    assert station.stop() == 0


def test_cancel_a_running_run_and_a_waiting_file(station):
    station.gated()
    station.table(
        f"x in *.d {station.passdir}/gated 0 -1 0 retries=3 retry=1", f"y in *.w {station.passdir}/rec 60 -1 0"
    )
    station.recorder()
    station.drop("a.d", age_s=5)
    station.start()
    wait_for(lambda: station.ran(), 10, "a.d's run")
    r = station.run("-s", "cancel", str(station.incoming / "a.d"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cancelled: TERM sent" in r.stdout
    wait_for(lambda: station.ends(), 10, "the cancelled run's end")
    (end,) = station.ends()
    assert end.status is Status.UNKNOWN and end.error == "cancelled" and end.retry_at is None, end
    # A file still waiting for its age: cancelled, it never runs.
    deliver(station, "b.w", age_s=0)
    wait_for(lambda: "waiting: 1 file(s)" in station.run("-s", "status").stdout, 10, "b.w seen")
    r = station.run("-s", "cancel", str(station.incoming / "b.w"))
    assert r.returncode == 0 and "it will not run" in r.stdout, r.stdout + r.stderr
    cancel = station.ends()[-1]
    assert cancel.status is Status.KNOWN and cancel.error == "cancelled" and cancel.pid is None
    quiet_for(1.0, lambda: len(station.ran()) == 1)
    r = station.run("-s", "cancel", str(station.incoming / "b.w"))
    assert r.returncode == 1 and "nothing to cancel" in r.stderr
    assert station.stop() == 0


def test_cancel_names_a_strange_file_escaped(station):
    """A name with a newline, a space and a byte that is not UTF-8: the
    daemon finds the file, the reply names it escaped, on one line."""
    station.recorder()
    station.table(f"y in *.w {station.passdir}/rec 60 -1 0")
    name = b"-x\n\xff y.w"
    station.drop(name)
    station.start()
    wait_for(lambda: "waiting: 1 file(s)" in station.run("-s", "status").stdout, 10, "the file seen")
    r = station.run("-s", "cancel", os.fsdecode(os.path.join(os.fsencode(station.incoming), name)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("\n") == 1 and "/-x\\012\\377\\040y.w: record 1:" in r.stdout
    assert "it will not run" in r.stdout
    assert station.stop() == 0


def test_a_peer_of_another_user_is_refused(tmp_path):
    # A PASSDIR another user can reach (pytest's own directories are 0700),
    # and a client that is another user: a forked child that drops to
    # nobody and speaks to the socket (it cannot exec root's Python).
    root = Path(tempfile.mkdtemp(prefix="waitd-peer-"))
    os.chmod(root, 0o755)
    station = Station(root)
    try:
        os.chmod(station.passdir, 0o755)
        station.recorder()
        station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
        station.start()
        nobody = pwd.getpwnam("nobody")
        sock = station.passdir / "waitd.sock"
        # Mode 0600: the kernel refuses another user's connect.
        assert ask_as(nobody, sock) == "connect: Permission denied"
        # Opened up by mistake: waitd itself refuses the peer (SO_PEERCRED).
        os.chmod(sock, 0o666)
        reply = json.loads(ask_as(nobody, sock))
        assert reply == {
            "ok": False,
            "error": f"permission denied: uid {nobody.pw_uid} is neither root nor waitd's user",
        }
        assert "refused a request of uid" in station.log()
        assert station.stop() == 0
    finally:
        if station.proc is not None and station.proc.poll() is None:
            station.proc.kill()
            station.proc.communicate()
        shutil.rmtree(root, ignore_errors=True)


def ask_as(user: pwd.struct_passwd, path: Path) -> str:
    """Send a cancel request to the socket as `user`; the reply or the error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                try:
                    s.connect(str(path))
                except OSError as exc:
                    os.write(write, f"connect: {exc.strerror}".encode())
                    os._exit(0)
                try:
                    s.sendall(b'{"cmd": "cancel", "paths": ["/x"]}\n')
                except BrokenPipeError:
                    pass  # refused before the request was read: the reply is there
                os.write(write, s.makefile("rb").readline().strip())
        except BaseException as exc:
            os.write(write, f"child: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_peers_that_stall_hold_neither_the_loop_nor_other_peers(station):
    """Seventy connections that send nothing and one that sends half a
    request: files are still handled and other requests answered at once;
    the stalled ones are given up after a few seconds, logged."""
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    address = str(station.passdir / "waitd.sock")
    stalled = []
    for _ in range(70):
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(address)
        stalled.append(peer)
    stalled[-1].sendall(b'{"cmd": "sta')
    try:
        station.drop("a.d")
        wait_for(lambda: len(station.ran()) == 1, 5, "a.d's run while peers stall")
        r = station.run("-s", "status", "--json", timeout=5)
        assert r.returncode == 0 and json.loads(r.stdout)["records"], r.stderr
        stalled[-1].settimeout(20)
        assert stalled[-1].recv(100) == b"", "a stalled request is closed in the end"
        wait_for(lambda: "request(s): no whole request or reply within 5 s" in station.log(), 10, "the give-up logged")
        assert re.search(r"over 64 requests under way: gave up the \d+ oldest", station.log())
    finally:
        for peer in stalled:
            peer.close()
    assert station.stop() == 0


def test_socket_commands_without_a_daemon(station):
    station.table("")
    for args in (("-s", "retry", "/x"), ("-s", "cancel", "/x"), ("-s", "status", "--json")):
        r = station.run(*args)
        assert r.returncode == 1 and "no waitd is running" in r.stderr, r.stderr
    r = station.run("-s", "retry")
    assert r.returncode == 2 and "needs one or more PATHs" in r.stderr


def test_a_deep_passdir_still_gets_its_socket(tmp_path):
    # A UNIX socket's address holds 108 bytes; PASSDIR may be longer.
    station = Station(tmp_path.joinpath(*["d" * 40] * 3))
    try:
        station.table("")
        station.start()
        assert len(bytes(station.passdir / "waitd.sock")) > 108
        r = station.run("-s", "status", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["passdir"] == str(station.passdir)
        assert station.stop() == 0
    finally:
        if station.proc is not None and station.proc.poll() is None:
            station.proc.kill()
            station.proc.communicate()


def ask_raw(address: str, data: bytes, close_after: bool = True) -> tuple[dict | None, bool]:
    """Send raw bytes as a request; the reply (None if the connection was
    reset before one came) and whether waitd closed the connection then."""
    peer = socket.socket(socket.AF_UNIX)
    peer.settimeout(10)
    peer.connect(address)
    try:
        try:
            peer.sendall(data)
            if close_after:
                peer.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all read: the reply says why
        got = b""
        try:
            while True:
                chunk = peer.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            return (json.loads(got) if got.endswith(b"\n") else None), True
        return (json.loads(got) if got else None), True
    finally:
        peer.close()


def test_malformed_requests_get_an_error_each_and_waitd_goes_on(station):
    """A request nested too deep, too long, not JSON, not an object, or one
    that breaks a command: each gets an error reply and is closed; waitd
    logs no traceback for them, handles files, and answers the next peer.
    Once, such a request raised RecursionError in the loop on every turn
    until the guard's back-off overflowed and waitd exited."""
    station.recorder()
    station.table(f"x in *.d {station.passdir}/rec 0 -1 0")
    station.start()
    address = str(station.passdir / "waitd.sock")
    deep = b"[" * 200_000 + b"\n"
    reply, closed = ask_raw(address, deep)
    assert reply == {"ok": False, "error": "bad request: nested deeper than 32"} and closed
    # The same, from a peer that keeps its end open: answered and closed too.
    reply, closed = ask_raw(address, b'{"cmd": "status", "x": ' + b"[" * 5000 + b"\n", close_after=False)
    assert reply is not None and reply["ok"] is False and "nested deeper" in reply["error"] and closed
    for data, error in (
        (b"not json\n", "bad request: Expecting value: line 1 column 1 (char 0)"),
        (b'"a string"\n', "bad request: not a JSON object"),
        (b'{"cmd": "retry", "paths": [[["/x"]]]}\n', "retry: give one or more paths"),
        (
            b'{"cmd": ["status"]}\n',
            "unknown command ['status'] (known: status, retry, cancel, pause, resume, show, list)",
        ),
    ):
        assert ask_raw(address, data) == ({"ok": False, "error": error}, True), data
    reply, closed = ask_raw(address, b"x" * (3 << 20))
    assert closed and (reply is None or reply == {"ok": False, "error": "bad request: longer than 1048576 bytes"})
    station.drop("a.d")
    wait_for(lambda: len(station.ran()) == 1, 10, "a.d's run after the bad requests")
    r = station.run("-s", "status", "--json", timeout=10)
    assert r.returncode == 0 and json.loads(r.stdout)["records"], r.stderr
    assert "unexpected error" not in station.log() and "Traceback" not in station.log()
    assert station.stop() == 0
