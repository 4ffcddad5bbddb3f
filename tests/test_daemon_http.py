# SPDX-License-Identifier: MIT
"""--http: the status page, /status.json, /files/PATH, /metrics and the
POST verbs against the real daemon; the page in a real headless browser
(Debian's chromium), after its scripts ran."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for
from peers.activemq import free_port

from waitd.config.errors import WaitdError
from waitd.daemon.http import MAX_BODY, Http, read_token

TOKEN = "s3cret-token-for-tests"


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(port: int, verb: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/{verb}", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def paths(*files: str) -> bytes:
    return json.dumps({"paths": list(files)}).encode()


def _story(port: int, path: str) -> dict:
    code, body = get(port, "/files" + path)
    assert code == 200, body
    return json.loads(body)["records"][0]


def _station_with_runs(station) -> int:
    """A running file (a.d), a failed one (c.f), one handled (b.f); the port."""
    station.gated()
    station.handler("h", 'echo "output of $1"\ncase "$1" in *c.f) exit 3;; esac\n')
    station.table(f"x in *.d {station.passdir}/gated 0 -1 0", f"y in *.f {station.passdir}/h 0 -1 0")
    token = station.passdir / "http.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    (station.passdir / "waitd.conf").write_text("[http]\ncontrol = yes\ntoken = http.token\n")
    station.drop("a.d", age_s=5)
    station.drop("b.f", age_s=6)
    station.drop("c.f", age_s=5)
    port = free_port()
    station.start("--http", f"127.0.0.1:{port}")
    wait_for(lambda: station.ran() and len(station.ends()) == 2, 10, "the runs")
    return port


def test_the_api_over_http_and_its_refusals(station):
    port = _station_with_runs(station)
    a, c = str(station.incoming / "a.d"), str(station.incoming / "c.f")
    wait_for(lambda: get(port, "/status.json")[0] == 200, 5, "a status document")
    doc = json.loads(get(port, "/status.json")[1])
    assert [r["telem"] for r in doc["records"]] == ["x", "y"]
    assert _story(port, a)["state"] == "running" and _story(port, c)["state"] == "failed"
    code, body = get(port, "/files" + str(station.root / "elsewhere"))
    assert code == 404 and b"no record of the table takes this file" in body
    code, body = get(port, "/metrics")
    assert code == 200 and b'waitd_runs_total{outcome="failed",record="2",telem="y"} 1.0' in body
    assert get(port, "/nothing")[0] == 404
    # Refused: nothing changes.
    assert post(port, "pause", paths(a), token=None)[0] == 401
    assert post(port, "pause", paths(a), token="wrong-token-0000")[0] == 401
    assert post(port, "pause", b"{not json")[0] == 400
    assert post(port, "explode", paths(a))[0] == 404
    assert post(port, "pause", b"x" * (MAX_BODY + 1))[0] == 413
    assert _story(port, a)["state"] == "running"
    # A client that stalls mid-request holds neither the loop nor the others.
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET /status.json HTTP/1.1\r\nHost: x\r\n")
        code, reply = post(port, "pause", paths(a))
        assert code == 200 and reply["results"][0]["message"].startswith("paused: STOP sent")
        assert _story(port, a)["state"] == "paused"
        code, reply = post(port, "resume", paths(a))
        assert code == 200 and _story(port, a)["state"] == "running"
    code, reply = post(port, "retry", paths(str(station.incoming / "b.f")))
    assert code == 409 and "nothing to retry" in reply["results"][0]["message"]
    station.open_gate("a.d")
    assert station.stop() == 0


def test_a_server_without_control_is_read_only_and_tokens_are_private(tmp_path):
    server = Http("127.0.0.1", 0, None, None)
    try:
        port = server.address[1]
        assert post(port, "retry", paths("/x"))[0] == 403
        assert get(port, "/status.json")[0] == 503  # no document handed over yet
        assert get(port, "/metrics")[0] == 404  # no registry
    finally:
        server.close()
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    with pytest.raises(WaitdError, match="mode 0644; it must be 0600"):
        read_token(str(token))
    token.chmod(0o600)
    assert read_token(str(token)) == TOKEN


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    flags = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(["chromium", *flags, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (make deps)")
def test_the_page_in_a_real_browser_shows_records_runs_failures_and_the_timeline(station, tmp_path):
    port = _station_with_runs(station)
    url = f"http://127.0.0.1:{port}/"

    def shown() -> bool:  # what the page will show is in the document handed over (at most a second late)
        code, body = get(port, "/status.json")
        x, y = json.loads(body)["records"] if code == 200 else ({}, {})
        return bool(x.get("running")) and y.get("failed") == ["c.f"] and y["counters"]["ok"] == 1

    wait_for(shown, 5, "a status document with the runs")
    r = chromium("--virtual-time-budget=3000", "--dump-dom", url, tmp=tmp_path)
    dom = r.stdout
    assert "record 1 (x)" in dom and "record 2 (y)" in dom, dom[:2000]
    # The running file, with its log's tail; the failed one; the timeline's bars.
    assert '<tr class="running"><td>running</td><td><code>' + str(station.incoming / "a.d") in dom
    assert '<tr class="failed"><td>failed</td><td><code>c.f</code>' in dom
    assert "waitd: start record=1" in dom
    assert dom.count('class="run failed"') == 1 and dom.count('class="run ok"') == 1
    assert dom.count('class="run running"') == 1
    assert "http://" not in dom.replace(url, "").replace(
        "http://www.w3.org/2000/svg", ""
    )  # loads nothing from elsewhere
    shot = os.environ.get("WAITD_SCREENSHOT")  # a path: keep a screenshot of the page (README's)
    if shot:
        r = chromium("--virtual-time-budget=3000", f"--screenshot={shot}", "--window-size=1000,820", url, tmp=tmp_path)
        assert os.path.exists(shot), r.stderr
    station.open_gate("a.d")
    assert station.stop() == 0


def test_the_http_settings_of_waitd_conf():
    from waitd.config import conf

    parsed, errors = conf.parse("[daemon]\nhttp = 8023\n[http]\ncontrol = yes\ntoken = t\n", "c")
    assert errors == [] and parsed.daemon.http == ("127.0.0.1", 8023)
    assert (parsed.http.control, parsed.http.token) == (True, "t")
    _, errors = conf.parse("[http]\ncontrol = yes\n", "c")
    assert [str(e) for e in errors] == ["c:1: [http]: control = yes needs token = FILE"]
    _, errors = conf.parse("[http]\ncontrol = maybe\ntoken = t\n", "c")
    assert [str(e) for e in errors] == ["c:2: [http]: control = maybe: expected yes or no"]


def test_the_timeline_of_the_hour_before_a_start_comes_from_the_history(tmp_path):
    from waitd.daemon.http import timeline_of
    from waitd.formats.history_line import Event, Status, format_event

    now = 10_000.0
    lines = [
        Event("/in/a.d", "h", 1, Status.STARTED, pid=5, at=now - 100),
        Event("/in/a.d", "h", 1, Status.KNOWN, pid=5, exit=0, at=now - 90, took=10.0),
        Event("/in/b.d", "h", 1, Status.KNOWN, pid=6, exit=3, at=now - 80, took=1.0),
        Event("/in/c.d", "h", 1, Status.KNOWN, pid=7, exit=75, at=now - 70, took=1.0, retry_at=now),
        Event("/in/old.d", "h", 1, Status.KNOWN, pid=8, exit=0, at=now - 7200, took=1.0),  # over an hour ago
        Event("/in/d.x", "h", 1, Status.KNOWN, pid=9, exit=0, at=now - 60, took=1.0),  # no record's template
        Event("/in/e.d", "h", 1, Status.KNOWN, pid=9, exit=0, at=now + 5, took=1.0),  # after this start: the journal's
    ]
    history = tmp_path / "incoming.history"
    history.write_text("".join(format_event(e) for e in lines))
    doc = {"started_at": now, "records": [{"number": 4, "directory": "/in", "template": "*.d", "process": "h"}]}
    runs = timeline_of(str(history), doc, now - 3600)
    assert [(r["record"], r["file"], r["start"], r["outcome"]) for r in runs] == [
        (4, "/in/a.d", now - 100, "ok"),
        (4, "/in/b.d", now - 81, "failed"),
        (4, "/in/c.d", now - 71, "retrying"),
    ]
